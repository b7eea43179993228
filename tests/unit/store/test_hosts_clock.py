"""One notion of a live host, on the caller's clock: the orchestrator's injectable clock decides
when a host is lost and where instances go, and the grace period after a start is measured from the
orchestrator's own start, never from when a module was imported."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, select

from conveyor.deploy.notify import Notifier
from conveyor.deploy.orchestrator import Orchestrator
from conveyor.domain.healing import HOST_LOST_AFTER, lost_cutoff
from conveyor.store import hosts, repo
from conveyor.store.tables import events, instances

from store_world import T0, Clock, hello_world


def test_lost_cutoff_has_a_grace_period_from_the_callers_start() -> None:
    assert lost_cutoff(T0 + HOST_LOST_AFTER - 0.1, started_at=T0) == 0.0  # nobody is lost yet
    assert lost_cutoff(T0 + 100, started_at=T0) == T0 + 100 - HOST_LOST_AFTER


def _world(tmp_path: Path, clock: Clock) -> Engine:
    """An environment serving release 1 with one instance on h1; h1 fell silent long ago, h2 reports now."""
    engine = hello_world(tmp_path, {"drain": 10.0, "bake": 120.0}, [("hello-production-r1-aaaaaa", "h1")])
    with engine.begin() as conn:
        hosts.save_report(conn, "h1", "10.0.0.1", 0, {"instances": []}, clock.t - 600)
        hosts.save_report(conn, "h2", "10.0.0.2", 0, {"instances": []}, clock.t)
    return engine


def _placement(engine: Engine) -> dict[str, tuple[str, bool]]:
    with engine.connect() as conn:
        return {r.id: (r.host, r.draining_since is not None) for r in conn.execute(select(instances))}


def test_alive_and_lost_follow_the_given_time(tmp_path: Path) -> None:
    clock = Clock(T0 + 3600)
    engine = _world(tmp_path, clock)
    with engine.connect() as conn:
        assert hosts.alive_names(conn, clock.t) == ["h2"]
        assert hosts.alive_names(conn, clock.t + HOST_LOST_AFTER + 1) == []
        with engine.begin() as w:
            hosts.save_report(w, "h1", "10.0.0.1", 0, {"instances": [{"id": "x", "state": "ready"}]}, clock.t - 600)
        assert "x" in hosts.instance_status_map(conn, clock.t, started_at=clock.t - 5)  # grace: h1 still trusted
        assert "x" not in hosts.instance_status_map(conn, clock.t, started_at=clock.t - 60)  # h1 lost


def test_the_orchestrator_replaces_a_lost_hosts_instances_on_its_own_clock(tmp_path: Path) -> None:
    clock = Clock(T0 + 3600)
    engine = _world(tmp_path, clock)
    orch = Orchestrator(engine, Notifier(), clock=clock, verdicts=lambda *a: None)
    assert orch.started_at == clock.t
    orch.tick()
    assert _placement(engine) == {"hello-production-r1-aaaaaa": ("h1", False)}  # grace period: no judgement yet
    clock.t += HOST_LOST_AFTER + 1
    with engine.begin() as conn:
        hosts.save_report(conn, "h2", "10.0.0.2", 0, {"instances": []}, clock.t)
    orch.tick()
    placed = _placement(engine)
    assert placed["hello-production-r1-aaaaaa"] == ("h1", True)  # drained
    assert sorted(v for k, v in placed.items() if k != "hello-production-r1-aaaaaa") == [("h2", False)]
    with engine.connect() as conn:
        assert [r.kind for r in conn.execute(select(events.c.kind))] == ["instances_replaced"]
        assert repo.counter(conn, "desired")[0] >= 1
