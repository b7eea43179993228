"""The deploy trains' queries on both databases: SQLite and a throwaway PostgreSQL cluster (the
fixture of test_store_backends.py), from the migrations up."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from conveyor.store import repo
from conveyor.store import trains as rows
from conveyor.store.db import make_engine, migrate
from conveyor.store.repo import NotFound
from test_store_backends import postgres_url  # noqa: F401  (fixture)

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    url = f"sqlite:///{tmp_path / 'c.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    eng = make_engine(url)
    migrate(eng)
    yield eng
    if request.param == "postgresql":
        from conveyor.store.tables import metadata

        with eng.begin() as conn:  # the cluster is shared by the module: leave it empty
            for table in reversed(metadata.sorted_tables):
                conn.execute(table.delete())
    eng.dispose()


def test_trains_and_steps_round_trip(engine: Engine) -> None:
    with engine.begin() as conn:
        repo.create_app(conn, "hello", None, "t", 1.0)
        env = repo.get_env(conn, repo.get_app(conn, "hello")["id"], "production", create=True)
        commits = [{"sha": "a" * 40, "time": 1.0, "author": "A", "message": "one"}]
        tid = rows.insert_train(conn, env["id"], "/r.git", commits, 2, "push", "ada", 5.0)
        assert rows.collecting(conn, env["id"], "/r.git")["id"] == tid
        assert rows.collecting(conn, env["id"], "/other.git") is None
        assert rows.set_commits(conn, tid, commits + [{"sha": "b" * 40}])
        assert rows.known_shas(conn, env["id"]) == {"a" * 40, "b" * 40}
        assert [t["id"] for t in rows.open_trains(conn)] == [tid]
        assert rows.advance(conn, tid, "collecting", {"state": "running", "started_at": 6.0})
        assert not rows.advance(conn, tid, "collecting", {"state": "running"})  # the CAS: one pass wins
        assert not rows.set_commits(conn, tid, [])  # no longer collecting
        assert rows.running_in_env(conn, env["id"])["id"] == tid
        step = rows.add_step(conn, tid, 1, 7.0)
        rows.update_step(conn, step, {"build_id": 3, "deployment_id": 9, "outcome": "fail", "reason": "r"})
        assert rows.step_of_deployment(conn, 9)["position"] == 1
        assert rows.step_of_deployment(conn, 10) is None
        assert rows.advance(conn, tid, "running", {"state": "blocked", "culprit": {"position": 1}, "shipped": 0})
        got = rows.get(conn, tid)
        assert got["app"] == "hello" and got["env"] == "production" and got["culprit"] == {"position": 1}
        app_id = repo.get_app(conn, "hello")["id"]
        assert [t["id"] for t in rows.of_app(conn, app_id, "production")] == [tid]
        assert rows.of_app(conn, app_id, "staging") == []
        assert rows.open_trains(conn) == []
        with pytest.raises(NotFound, match="train 999 not found"):
            rows.get(conn, 999)
