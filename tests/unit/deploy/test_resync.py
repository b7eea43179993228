"""The orchestrator's full pass (``RESYNC``): between deployments an environment whose facts show
nothing to do (``idle_steps``) still gets every step every 5 s, so a release short of its count (a
lost host's replacements that found no room, a crash between two steps) is made good without a
deployment. On an in-process database, tick by tick, with a fake clock."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, delete, insert, select

from conveyor.deploy.notify import Notifier
import pytest

from conveyor.deploy import orchestrator
from conveyor.deploy.orchestrator import RESYNC, Orchestrator
from conveyor.store.tables import environments, instances, releases
from store_world import T0, Clock, hello_world, report_ready


def _world(tmp_path: Path) -> Engine:
    """Release 1 of hello/production asks for 2 instances; one runs, on h1, which reports it ready."""
    engine = hello_world(tmp_path, {"instances": 2, "drain": 10.0, "bake": 0.0}, [("r1-0", "h1")])
    report_ready(engine, T0)
    return engine


def _serving(engine: Engine, env_id: int = 1) -> int:
    with engine.connect() as conn:
        return len(conn.execute(select(instances.c.id).where(instances.c.draining_since.is_(None),
                                                             instances.c.env_id == env_id)).all())


def test_a_release_short_of_its_count_is_made_good_by_the_full_pass(tmp_path: Path) -> None:
    engine = _world(tmp_path)
    clock = Clock(T0 + 1)
    orch = Orchestrator(engine, Notifier(), clock=clock, verdicts=lambda *_: None, started_at=T0 - 3600)
    orch.tick()  # the first tick is a full pass (a restarted control plane)
    assert _serving(engine) == 2
    with engine.begin() as conn:  # an instance vanishes without any fact saying so (no draining row left)
        conn.execute(delete(instances).where(instances.c.id != "r1-0"))
    report_ready(engine, clock.t)
    clock.t += 1
    orch.tick()
    assert _serving(engine) == 1  # idle_steps sees nothing to do: no transaction for this environment
    clock.t = T0 + 1 + RESYNC
    report_ready(engine, clock.t)
    orch.tick()
    assert _serving(engine) == 2  # the full pass held release 1 at its count


def test_full_passes_past_the_budget_wait_for_the_next_tick_longest_waiting_first(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(orchestrator, "RESYNC_BUDGET", 0.0)  # one full pass per tick (the least)
    engine = _world(tmp_path)
    with engine.begin() as conn:  # two more environments whose release 1 asks for 2 and has none yet
        for env_id, name in ((2, "staging"), (3, "dev")):
            conn.execute(insert(environments).values(id=env_id, app_id=1, name=name, routes={"1": 100},
                                                     current_release=1, created_at=T0))
            conn.execute(insert(releases).values(env_id=env_id, number=1, image_digest="sha256:" + "1" * 64,
                                                 status="live", config={"instances": 2}, created_at=T0))
    clock = Clock(T0 + 1)
    orch = Orchestrator(engine, Notifier(), clock=clock, verdicts=lambda *_: None, started_at=T0 - 3600)
    seen = []
    for _ in range(3):  # a tick every RESYNC: env 1 is due again each time, but env 2 and 3 waited longer
        report_ready(engine, clock.t)  # h1 stays alive
        orch.tick()
        seen.append([_serving(engine, e) for e in (1, 2, 3)])
        clock.t += RESYNC
    assert seen == [[2, 0, 0], [2, 2, 0], [2, 2, 2]]  # one full pass a tick, none starved
    with engine.begin() as conn:
        conn.execute(delete(instances).where(instances.c.env_id == 2))  # env 2: short again, unseen by facts
    clock.t = T0 + 1 + 3 * RESYNC  # env 1 is due first (resynced longest ago), then env 2, then env 3
    report_ready(engine, clock.t)
    orch.tick()
    assert _serving(engine, 2) == 0
    clock.t += RESYNC
    report_ready(engine, clock.t)
    orch.tick()
    assert _serving(engine, 2) == 2
