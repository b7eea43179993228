"""One orchestrator among control-plane replicas sharing a database: the lease."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine, insert, select

from conveyor.deploy.notify import Notifier
from conveyor.deploy.orchestrator import LEASE, LEASE_TTL, Orchestrator
from conveyor.store import repo
from conveyor.store.db import migrate
from conveyor.store.tables import apps, environments, instances
from store_world import Clock




def test_take_renew_and_expire(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'c.db'}")
    migrate(engine)
    with engine.begin() as conn:
        assert repo.take_lease(conn, LEASE, "a", 100.0, 5.0)
        assert not repo.take_lease(conn, LEASE, "b", 101.0, 5.0)  # a holds it until 105
        assert repo.take_lease(conn, LEASE, "a", 104.0, 5.0)  # renewed until 109
        assert not repo.take_lease(conn, LEASE, "b", 108.0, 5.0)
        assert repo.take_lease(conn, LEASE, "b", 110.0, 5.0)  # a stopped renewing: b takes over
        repo.release_lease(conn, LEASE, "b")
        assert repo.take_lease(conn, LEASE, "a", 110.5, 5.0)  # released: no need to wait for expiry


def _drained_instance(engine: object, iid: str, since: float) -> None:
    """Work for the orchestrator: an instance whose drain period is long over (it deletes the row)."""
    with engine.begin() as conn:  # type: ignore[attr-defined]
        if conn.execute(select(apps.c.id)).first() is None:
            conn.execute(insert(apps).values(id=1, name="hello", created_at=since, created_by="t"))
            conn.execute(insert(environments).values(id=1, app_id=1, name="production", routes={}, created_at=since))
        conn.execute(insert(instances).values(id=iid, env_id=1, release=1, host="h1", role="main",
                                              created_at=since, draining_since=since))


def _instance_ids(engine: object) -> set[str]:
    with engine.connect() as conn:  # type: ignore[attr-defined]
        return {r.id for r in conn.execute(select(instances.c.id))}


def test_only_the_leader_orchestrates_and_a_standby_takes_over(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'c.db'}")
    migrate(engine)
    clock = Clock(1_800_000_000.0)
    _drained_instance(engine, "i-1", clock.t - 3600)
    first = Orchestrator(engine, Notifier(), clock=clock, verdicts=lambda *a: None)
    second = Orchestrator(engine, Notifier(), clock=clock, verdicts=lambda *a: None)
    second.tick()
    first.tick()
    assert second.leader and not first.leader
    assert _instance_ids(engine) == set()  # the leader did the work
    _drained_instance(engine, "i-2", clock.t - 3600)
    first.tick()
    assert _instance_ids(engine) == {"i-2"}  # the standby did not
    clock.t += LEASE_TTL / 2
    second.tick()
    first.tick()
    assert second.leader and not first.leader  # renewed in time
    assert _instance_ids(engine) == set()
    clock.t += LEASE_TTL + 1  # the leader died without releasing its lease
    _drained_instance(engine, "i-3", clock.t - 3600)
    first.tick()
    assert first.leader and _instance_ids(engine) == set()  # the standby took over, and the work
    second.tick()
    assert not second.leader  # came back: stands by
