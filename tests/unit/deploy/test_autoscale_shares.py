"""The orchestrator applies domain/shares.py during a deployment, pass by pass, on an in-process
database with no agent: what it asks of each release (instances rows), that a repeated pass does
nothing more (level-triggered), that a rollback asks for the stable release at the autoscaler's
count in the pass that rolls back, and that instance counts are recorded for the metrics page."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, insert, select, update

from conveyor.deploy.notify import Notifier
from conveyor.deploy.orchestrator import Orchestrator
from conveyor.store import instance_counts
from conveyor.store.tables import autoscalers, deployments, environments, instances, process_counts
from store_world import T0, Clock, add_release, hello_world, report_ready

STEPS = [{"weight": 10, "for": 600.0}, {"weight": 50, "for": 600.0}]


def _world(tmp_path: Path, total: int = 8) -> Engine:
    """Release 1 serves with 8 instances; a canary of release 2 has just moved to its 50 % step with
    its 1 instance; the web process is autoscaled and the autoscaler's count is ``total``."""
    config = {"drain": 10.0, "bake": 0.0}
    engine = hello_world(tmp_path, config, [(f"r1-{i}", "h1") for i in range(8)], routes={"1": 50, "2": 50})
    with engine.begin() as conn:
        add_release(conn, 2, config, live=False)
        conn.execute(insert(instances).values(id="r2-0", env_id=1, release=2, host="h1", role="main", created_at=T0))
        conn.execute(insert(deployments).values(
            id=1, env_id=1, kind="deploy", strategy="canary", state="canary", from_release=1, to_release=2,
            params={"instances": 4, "steps": STEPS, "ready_timeout": 60.0}, created_at=T0, started_at=T0,
            progress={"phase": "step", "step": 1, "steps": 2, "step_started": T0, "weights": {"1": 50, "2": 50}}))
        conn.execute(insert(autoscalers).values(env_id=1, process="web", updated_at=T0, updated_by="t", policy={
            "min": 1, "max": 20, "metric": "inflight", "target": 2.0, "down_window": 600.0}))
        conn.execute(insert(process_counts).values(env_id=1, process="web", count=total, updated_at=T0, updated_by="t"))
    report_ready(engine, T0)
    return engine


def _counts(engine: Engine) -> dict[int, int]:
    """release → instances not draining."""
    with engine.connect() as conn:
        out: dict[int, int] = {}
        for r in conn.execute(select(instances).where(instances.c.draining_since.is_(None))):
            out[r.release] = out.get(r.release, 0) + 1
        return out


def _orchestrator(engine: Engine, clock: Clock) -> Orchestrator:
    return Orchestrator(engine, Notifier(), clock=clock, verdicts=lambda *_: None, started_at=T0 - 3600)


def test_a_canary_step_grows_the_canary_first_then_the_stable_side_shrinks_to_its_share(tmp_path: Path) -> None:
    engine = _world(tmp_path)
    clock = Clock(T0 + 1)
    orch = _orchestrator(engine, clock)
    orch.tick()
    assert _counts(engine) == {1: 8, 2: 4}  # 50 % of 8; the stable side keeps its 8 while the canary starts
    with engine.connect() as conn:
        params = conn.execute(select(deployments.c.params)).scalar_one()
    assert params["instances"] == 8 and params["autoscaled"] is True  # the deployment follows the total
    clock.t += 1
    orch.tick()
    assert _counts(engine) == {1: 8, 2: 4}  # the new ones are not ready yet: nothing more
    report_ready(engine, clock.t)
    clock.t += 1
    orch.tick()
    assert _counts(engine) == {1: 4, 2: 4}  # now the stable side drains to its share
    before = _counts(engine)
    clock.t += 1
    orch.tick()
    assert _counts(engine) == before  # level-triggered: nothing to do


def _state(engine: Engine) -> tuple[dict[str, int], dict[str, object]]:
    """The environment's routes and the deployment's progress."""
    with engine.connect() as conn:
        return (conn.execute(select(environments.c.routes)).scalar_one(),
                conn.execute(select(deployments.c.progress)).scalar_one())


def test_a_passed_step_grows_the_canary_before_the_next_weight_moves(tmp_path: Path) -> None:
    engine = _world(tmp_path)
    with engine.begin() as conn:  # back in step 1 (10 %), its one canary instance ready
        conn.execute(update(deployments).values(progress={
            "phase": "step", "step": 0, "steps": 2, "step_started": T0, "weights": {"1": 90, "2": 10}}))
        conn.execute(update(environments).values(routes={"1": 90, "2": 10}))
    clock = Clock(T0 + 1)
    orch = Orchestrator(engine, Notifier(), clock=clock, started_at=T0 - 3600,
                        verdicts=lambda *_: {"outcome": "pass", "reason": "within its limits", "numbers": {}})
    orch.tick()  # the step passes: the canary is asked for 50 % of 8, the weight stays
    routes, progress = _state(engine)
    assert routes == {"1": 90, "2": 10} and progress["phase"] == "sizing", (routes, progress)
    assert _counts(engine) == {1: 8, 2: 4}
    clock.t += 1
    orch.tick()
    assert _state(engine)[0] == {"1": 90, "2": 10}  # 1 of 4 ready: still waiting
    report_ready(engine, clock.t)
    clock.t += 1
    orch.tick()
    routes, progress = _state(engine)
    assert routes == {"1": 50, "2": 50} and progress["phase"] == "step" and progress["step"] == 1, (routes, progress)


def test_a_rollback_asks_for_the_stable_release_at_the_autoscalers_count_at_once(tmp_path: Path) -> None:
    engine = _world(tmp_path)
    clock = Clock(T0 + 1)
    orch = _orchestrator(engine, clock)
    orch.tick()
    report_ready(engine, clock.t)
    clock.t += 1
    orch.tick()
    assert _counts(engine) == {1: 4, 2: 4}
    with engine.begin() as conn:
        conn.execute(update(process_counts).values(count=10))  # the load grew: the autoscaler wants 10
        conn.execute(update(deployments).values(command={"action": "abort", "by": "t"}))
    clock.t += 1
    orch.tick()
    with engine.connect() as conn:
        assert conn.execute(select(deployments.c.state)).scalar_one() == "rolled_back"
    assert _counts(engine) == {1: 10}  # in the pass that rolled back; the canary drains


def test_instance_counts_are_recorded_when_they_change(tmp_path: Path) -> None:
    engine = _world(tmp_path)
    clock = Clock(T0 + 1)
    orch = _orchestrator(engine, clock)
    orch.tick()
    with engine.connect() as conn:
        assert instance_counts.newest(conn, 1) == {"web": (9, 8)}  # 9 ready (8 + the canary), count 8
    report_ready(engine, clock.t)
    clock.t += 2
    orch.tick()
    clock.t += 2
    orch.tick()
    with engine.connect() as conn:
        rows = instance_counts.window(conn, 1, T0)["web"]
        assert [(r["ready"], r["count"]) for r in rows] == [(9, 8), (8, 8)]  # the canary grew, the stable side shrank
        # a window starting later begins with the value in force then
        assert instance_counts.window(conn, 1, clock.t + 10)["web"] == [{"t": clock.t + 10, "ready": 8, "count": 8}]
    with engine.begin() as conn:
        instance_counts.prune(conn, clock.t + 100)  # the newest row of a process type stays
    with engine.connect() as conn:
        assert len(instance_counts.window(conn, 1, T0)["web"]) == 1
    # a restarted orchestrator reads what was recorded rather than writing it again
    again = _orchestrator(engine, clock)
    clock.t += 2
    again.tick()
    with engine.connect() as conn:
        assert len(instance_counts.window(conn, 1, T0)["web"]) == 1
