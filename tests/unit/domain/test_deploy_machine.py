"""The deployment state machine, by direct calls: no processes, no clock, no database."""

from __future__ import annotations

import pytest

from conveyor.domain import deploy_machine as dm
from conveyor.domain.wire import InstanceState as S


def _dep(state: str = "queued", kind: str = "deploy", progress: dict | None = None, **params: object) -> dm.Deployment:
    return dm.Deployment(
        id=7, kind=kind, strategy="bluegreen", state=state, from_release=1, to_release=2,  # type: ignore[arg-type]
        params={"instances": 2, "ready_timeout": 30.0, **params}, progress=progress or {}, created_at=100.0,
    )


def _world(now: float, *insts: tuple[str, int, S], restarts: int = 0, hosts: int = 1) -> dm.World:
    return dm.World(
        now=now,
        instances=tuple(dm.ObservedInstance(i, r, "main", s, restarts, "last line") for i, r, s in insts),
        hosts_alive=hosts,
    )


def test_start_brings_up_new_instances_and_routes_nothing() -> None:
    step = dm.start(_dep(), now=100.0)
    assert step.state == "starting" and step.progress["phase_started"] == 100.0
    assert dm.EnsureInstances(2, 2) in step.actions
    assert not any(isinstance(a, dm.SetRoutes) for a in step.actions)


def test_start_from_a_non_queued_state_is_illegal_and_says_so() -> None:
    with pytest.raises(dm.IllegalTransition, match="deployment 7: cannot start from state 'starting'"):
        dm.start(_dep("starting"), 1.0)


def test_waits_while_instances_are_starting_and_does_the_same_thing_again() -> None:
    dep = _dep("starting", progress={"phase_started": 100.0})
    world = _world(105.0, ("a", 2, S.READY), ("b", 2, S.STARTING), ("old", 1, S.READY))
    first, second = dm.step(dep, world), dm.step(dep, world)
    assert first.state == second.state == "starting"
    assert first.actions == second.actions == [dm.EnsureInstances(2, 2)]  # idempotent: safe to repeat after a crash


def test_all_ready_switches_atomically_then_keeps_old_warm() -> None:
    dep = _dep("starting", progress={"phase_started": 100.0})
    step = dm.step(dep, _world(103.0, ("a", 2, S.READY), ("b", 2, S.READY), ("old", 1, S.READY)))
    assert step.state == "succeeded"
    routes = [a for a in step.actions if isinstance(a, dm.SetRoutes)]
    assert routes == [dm.SetRoutes({2: 100})]  # one table change moves all traffic
    assert dm.MakeCurrent(2, 1) in step.actions
    assert not any(isinstance(a, dm.RemoveInstances) for a in step.actions)  # release 1 stays warm


def test_never_ready_fails_after_the_deadline_and_removes_new_instances() -> None:
    dep = _dep("starting", progress={"phase_started": 100.0})
    world = _world(131.0, ("a", 2, S.STARTING), ("b", 2, S.READY))
    step = dm.step(dep, world)
    assert step.state == "failed" and step.finished
    assert step.reason == "release 2 did not become ready within 30s: 1/2 instances ready (ready, starting)"
    assert dm.RemoveInstances(2) in step.actions
    assert not any(isinstance(a, (dm.SetRoutes, dm.MakeCurrent)) for a in step.actions)


def test_no_agent_is_its_own_reason() -> None:
    step = dm.step(_dep("starting", progress={"phase_started": 0.0}), _world(31.0, hosts=0))
    assert step.state == "failed" and "no agent is connected" in (step.reason or "")


def test_crash_loop_fails_at_once_with_the_instance_output() -> None:
    dep = _dep("starting", progress={"phase_started": 100.0})
    step = dm.step(dep, _world(101.0, ("a", 2, S.CRASHLOOP), ("b", 2, S.STARTING), restarts=3))
    assert step.state == "failed"
    assert step.reason == "instance a of release 2 is crashloop after 3 restarts: last line"


def test_failed_image_gets_a_grace_period_then_fails() -> None:
    dep = _dep("starting", progress={"phase_started": 100.0})
    step = dm.step(dep, _world(101.0, ("a", 2, S.FAILED), ("b", 2, S.FAILED)))
    assert step.state == "starting" and step.progress["broken_since"] == 101.0
    later = dm.step(_dep("starting", progress=step.progress), _world(101.0 + dm.FAILED_GRACE, ("a", 2, S.FAILED)))
    assert later.state == "failed" and "is failed" in (later.reason or "")
    recovered = dm.step(_dep("starting", progress=step.progress), _world(105.0, ("a", 2, S.STARTING)))
    assert "broken_since" not in recovered.progress


def test_rollback_to_a_warm_release_is_only_a_routing_change() -> None:
    dep = dm.Deployment(id=9, kind="rollback", strategy="bluegreen", state="starting", from_release=3, to_release=2,
                        params={"instances": 2}, progress={"phase_started": 0.0}, created_at=0.0)
    step = dm.step(dep, _world(0.1, ("w1", 2, S.READY), ("w2", 2, S.READY), ("n1", 3, S.READY)))
    assert step.state == "succeeded"
    assert [a for a in step.actions if not isinstance(a, dm.Event)] == [dm.SetRoutes({2: 100}), dm.MakeCurrent(2, 3)]


def test_rollback_to_a_cold_release_starts_it_first() -> None:
    dep = dm.Deployment(id=9, kind="rollback", strategy="bluegreen", state="starting", from_release=3, to_release=2,
                        params={"instances": 1}, progress={"phase_started": 0.0}, created_at=0.0)
    step = dm.step(dep, _world(0.1, ("n1", 3, S.READY)))
    assert step.state == "starting" and step.actions == [dm.EnsureInstances(2, 1)]


def test_cancel_only_when_queued() -> None:
    assert dm.cancel(_dep()).state == "cancelled"
    with pytest.raises(dm.IllegalTransition, match="only a queued deployment can be cancelled"):
        dm.cancel(_dep("starting"))


def test_queue_is_fifo_and_one_at_a_time() -> None:
    def d(i: int, state: str, at: float) -> dm.Deployment:
        return dm.Deployment(i, "deploy", "bluegreen", state, None, i, {}, {}, at)

    assert dm.next_to_start([d(3, "queued", 3.0), d(2, "queued", 2.0)]).id == 2  # type: ignore[union-attr]
    assert dm.next_to_start([d(1, "starting", 1.0), d(2, "queued", 2.0)]) is None
    assert dm.next_to_start([d(1, "succeeded", 1.0)]) is None


def test_retention_keeps_current_routed_busy_and_the_warm_previous_release() -> None:
    R = dm.ReleaseInfo
    releases = [
        R(1, "superseded", retired_at=10.0, bake=120.0, drain=10.0),
        R(2, "superseded", retired_at=50.0, bake=120.0, drain=10.0),
        R(3, "live", retired_at=None, bake=120.0, drain=10.0),
    ]
    # at t=55: release 1 has drained (45 s ago) and is not the newest retired one → stop; 2 is warm
    assert dm.releases_to_stop(3, {3}, set(), releases, {1, 2, 3}, now=55.0) == [1]
    # release 1 retired only 5 s ago: still draining
    assert dm.releases_to_stop(3, {3}, set(), releases, {1, 2, 3}, now=15.0) == []
    # after the bake, the warm one goes too
    assert dm.releases_to_stop(3, {3}, set(), releases, {2, 3}, now=171.0) == [2]
    # a release in an active deployment is never stopped
    assert dm.releases_to_stop(3, {3}, {2}, releases, {2, 3}, now=999.0) == []
    # a rolled-back release is not kept warm: only its drain period
    rb = [R(4, "rolled_back", retired_at=100.0, bake=120.0, drain=10.0), R(3, "live", None, 120.0, 10.0)]
    assert dm.releases_to_stop(3, {3}, set(), rb, {3, 4}, now=111.0) == [4]
