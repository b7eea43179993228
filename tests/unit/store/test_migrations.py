"""The Alembic migrations build exactly the schema that tables.py declares (no drift either way)."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from conveyor.store.db import migrate
from conveyor.store.tables import metadata


def test_migrations_match_the_declared_schema(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'c.db'}")
    migrate(engine)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    assert "web_sessions" in inspect(engine).get_table_names()
    migrate(engine)  # at head already: a second run changes nothing
