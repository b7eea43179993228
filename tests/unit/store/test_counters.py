"""Version counters: a new routing-table version is only ever given to content read after the last one."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine

from conveyor.store import repo
from conveyor.store.db import migrate


def test_advance_counter_is_a_compare_and_set(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'c.db'}")
    migrate(engine)
    with engine.begin() as conn:
        assert repo.advance_counter(conn, "routing", 0, "k1")  # created at 1
        assert not repo.advance_counter(conn, "routing", 0, "stale")  # someone else created it
        assert repo.counter(conn, "routing") == (1, "k1")
        # Two readers both saw version 1; the first to write wins, the second must re-read.
        assert repo.advance_counter(conn, "routing", 1, "k2")
        assert not repo.advance_counter(conn, "routing", 1, "stale content read before k2")
        assert repo.counter(conn, "routing") == (2, "k2")
