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


def test_bump_counter_creates_and_adds_in_one_statement(tmp_path: Path) -> None:
    """No check-then-insert: two writers bumping a counter that does not exist yet cannot both create it."""
    from sqlalchemy import event

    engine = create_engine(f"sqlite:///{tmp_path / 'c.db'}")
    migrate(engine)
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda _c, _cur, sql, *_a: statements.append(sql))
    with engine.begin() as conn:
        statements.clear()
        assert repo.bump_counter(conn, "desired", "a") == 1
        assert len(statements) == 1 and statements[0].lstrip().upper().startswith("INSERT")
        assert repo.bump_counter(conn, "desired", "b") == 2
        assert repo.bump_counter(conn, "desired") == 3
        assert len(statements) == 3
        assert repo.counter(conn, "desired") == (3, "")
        assert repo.bump_counter(conn, "other") == 1  # counters are independent
