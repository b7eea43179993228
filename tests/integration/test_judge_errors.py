"""One bad judge stalls nothing else (issue 10, item 10).

The orchestrator drives every environment in one pass. Here two canaries run
side by side, on each SQL backend (SQLite and a real PostgreSQL), and the
analysis of the first raises: a plain exception (like the Mann-Whitney judge's
``OverflowError`` on large samples), or a database error (which on PostgreSQL
aborts the whole transaction unless the analysis runs in a savepoint). The
first canary must pause with the error in its verdict and still obey ``abort``;
the second must be driven as if nothing happened. The analysis is the one
injected part (``Orchestrator(verdicts=...)``, the hook the server fills with
the real judges); the orchestrator, its transactions and the databases are real.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, insert, select, text, update

from conveyor.deploy.notify import Notifier
from conveyor.deploy.orchestrator import JUDGE_ERROR, Orchestrator
from conveyor.domain import deploy_machine as dm
from conveyor.store.db import make_engine, migrate
from conveyor.store.tables import apps, deployments, environments, leases, releases, verdicts

from test_store_backends import postgres_url  # noqa: F401  (fixture: a throwaway PostgreSQL)

pytestmark = pytest.mark.integration

STEPS = [{"weight": 10, "for": 30.0}, {"weight": 50, "for": 30.0}]


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    url = f"sqlite:///{tmp_path / 'c.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    eng = make_engine(url)
    migrate(eng)
    with eng.begin() as conn:  # the PostgreSQL cluster is shared by the module's tests: start clean
        conn.execute(deployments.delete())
        conn.execute(releases.delete())
        conn.execute(environments.delete())
        conn.execute(apps.delete())
        conn.execute(update(leases).values(expires_at=0.0))  # the previous test's orchestrator would still lead
    yield eng
    eng.dispose()


def _canary(engine: Engine, app: str, now: float, progress: dict[str, Any] | None = None) -> int:
    """An app whose production environment runs a canary at its first step; returns the deployment id."""
    with engine.begin() as conn:
        app_id = conn.execute(insert(apps).values(name=app, created_at=now, created_by="t")).inserted_primary_key[0]
        env_id = conn.execute(insert(environments).values(
            app_id=app_id, name="production", routes={"1": 90, "2": 10}, current_release=1, created_at=now,
        )).inserted_primary_key[0]
        for number, status in ((1, "live"), (2, "pending")):  # the releases the environment and canary name
            conn.execute(insert(releases).values(
                env_id=env_id, number=number, image_digest="sha256:" + str(number) * 64, status=status,
                config={"command": ["true"], "instances": 1}, created_at=now - 10, created_by="t"))
        return int(conn.execute(insert(deployments).values(
            env_id=env_id, kind="deploy", strategy="canary", state="canary", from_release=1, to_release=2,
            params={"strategy": "canary", "steps": STEPS, "bake": 5.0},
            progress=progress if progress is not None else {
                "phase": "step", "step": 0, "step_started": now - 1, "steps": 2, "weights": {"1": 90, "2": 10}},
            reason="", created_by="t", created_at=now - 5, started_at=now - 5,
        )).inserted_primary_key[0])


def _row(engine: Engine, dep_id: int) -> dict[str, Any]:
    with engine.connect() as conn:
        return dict(conn.execute(select(deployments).where(deployments.c.id == dep_id)).mappings().one())


def _verdict_rows(engine: Engine, dep_id: int) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(
            select(verdicts).where(verdicts.c.deployment_id == dep_id).order_by(verdicts.c.id)).mappings()]


def _judges(bad: int, raise_it: Callable[[Connection], None]) -> Any:
    """A verdict source: deployment ``bad``'s analysis raises; every other deployment passes its step."""

    def source(conn: Connection, env_id: int, dep: dm.Deployment, now: float) -> dict[str, Any] | None:
        if dep.id == bad:
            raise_it(conn)
        return {"outcome": "pass", "reason": "within its limits", "numbers": {}}

    return source


def _overflow(_conn: Connection) -> None:
    raise OverflowError("integer division result too large for a float")


def _database_error(conn: Connection) -> None:
    conn.execute(text("SELECT no_such_column FROM no_such_table"))


@pytest.mark.parametrize("raise_it", [_overflow, _database_error], ids=["overflow", "database-error"])
def test_a_judge_that_raises_pauses_its_canary_and_stops_nothing_else(engine: Engine, raise_it: Any) -> None:
    now = time.time()
    bad = _canary(engine, "first", now)  # driven first: lower environment id
    good = _canary(engine, "second", now)
    orch = Orchestrator(engine, Notifier(), verdicts=_judges(bad, raise_it))
    orch.tick()

    # the other canary went on to its second step in the same pass
    other = _row(engine, good)
    assert other["state"] == "canary" and other["progress"]["step"] == 1, other

    # the canary whose judge raised is paused, with the error in its verdict and its reason
    row = _row(engine, bad)
    assert row["state"] == "paused", row
    assert "the analysis raised" in row["reason"], row["reason"]
    (v,) = _verdict_rows(engine, bad)
    assert v["judge"] == JUDGE_ERROR and v["outcome"] == "inconclusive" and v["step"] == 0, v
    expected = "OverflowError" if raise_it is _overflow else "no_such_table"
    assert expected in v["reason"] and expected in row["reason"], (v["reason"], row["reason"])

    # the judge keeps raising on every pass (a paused canary stays watched): recorded once, not per tick
    orch.tick()
    orch.tick()
    assert _row(engine, bad)["state"] == "paused"
    assert len(_verdict_rows(engine, bad)) == 1

    # and abort still works
    with engine.begin() as conn:
        conn.execute(update(deployments).where(deployments.c.id == bad).values(command={"action": "abort", "by": "t"}))
    orch.tick()
    row = _row(engine, bad)
    assert row["state"] == "rolled_back" and "aborted by t" in row["reason"], row


def test_an_environment_whose_pass_fails_does_not_stop_the_others(engine: Engine) -> None:
    now = time.time()
    # a corrupt deployment (a canary step without its step number): driving it raises KeyError
    broken = _canary(engine, "first", now, progress={"phase": "step", "step_started": now - 1, "steps": 2})
    good = _canary(engine, "second", now)
    orch = Orchestrator(engine, Notifier(), verdicts=_judges(-1, _overflow))
    orch.tick()
    assert _row(engine, good)["progress"]["step"] == 1  # driven despite the other's failure
    assert _row(engine, broken)["state"] == "canary"  # its pass was rolled back, to be retried
    orch.tick()  # and the next pass is not stuck either
    assert _row(engine, good)["state"] in ("canary", "succeeded")
