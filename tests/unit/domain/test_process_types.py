"""Process types by direct calls: workers ship with a deployment (and fail it when they crash-loop),
go with the previous release once it succeeded, come back with a rollback; scale and its bad input."""

from __future__ import annotations

import pytest

from conveyor.domain import deploy_machine as dm
from conveyor.domain.processes import parse_counts, scale
from conveyor.domain.wire import InstanceState as S


def _dep(state: str = "starting", **params: object) -> dm.Deployment:
    return dm.Deployment(
        id=7, kind="deploy", strategy="bluegreen", state=state, from_release=1, to_release=2,
        params={"instances": 1, "ready_timeout": 30.0, "workers": {"worker": 2}, "previous_workers": True, **params},
        progress={"phase_started": 100.0}, created_at=100.0,
    )


def _inst(i: str, release: int, state: S, role: str = "main", process: str = "web", restarts: int = 0) -> dm.ObservedInstance:
    return dm.ObservedInstance(i, release, role, state, restarts, "boom", process)


def _world(now: float, *insts: dm.ObservedInstance) -> dm.World:
    return dm.World(now=now, instances=insts)


def test_the_new_release_workers_start_with_it_and_do_not_count_as_web_instances() -> None:
    step = dm.step(_dep(), _world(101.0, _inst("w1", 2, S.READY, "worker", "worker"), _inst("w2", 2, S.READY, "worker", "worker")))
    assert step.state == "starting"  # two ready workers are not the one web instance it waits for
    assert dm.EnsureInstances(2, 2, role="worker", process="worker") in step.actions
    assert dm.EnsureInstances(2, 1) in step.actions


def test_the_switch_waits_for_the_workers_then_drains_the_previous_ones() -> None:
    web = _inst("a", 2, S.READY)
    waiting = dm.step(_dep(), _world(101.0, web, _inst("w1", 2, S.READY, "worker", "worker"), _inst("w2", 2, S.STARTING, "worker", "worker")))
    assert waiting.state == "starting"
    done = dm.step(_dep(), _world(103.0, web, _inst("w1", 2, S.READY, "worker", "worker"), _inst("w2", 2, S.READY, "worker", "worker")))
    assert done.state == "succeeded"
    assert dm.RemoveInstances(1, role="worker") in done.actions
    assert dm.EnsureInstances(2, 2, role="worker", process="worker") in done.actions  # kept at their count


def test_a_crash_looping_worker_fails_the_deployment_with_nothing_routed() -> None:
    step = dm.step(_dep(), _world(104.0, _inst("a", 2, S.READY), _inst("w1", 2, S.CRASHLOOP, "worker", "worker", 3)))
    assert step.state == "failed" and "w1" in (step.reason or "") and "crashloop" in (step.reason or "")
    assert dm.RemoveInstances(2) in step.actions
    assert not any(isinstance(a, dm.SetRoutes) for a in step.actions)


def test_a_rollback_brings_the_previous_release_workers_back() -> None:
    dep = _dep()
    step = dm.roll_back(dep, {}, "analysis failed", was_current=True)
    assert dm.EnsureInstances(1, 2, role="worker", process="worker") in step.actions
    assert dm.RemoveInstances(2) in step.actions


def test_without_workers_nothing_changes() -> None:
    dep = _dep(workers={}, previous_workers=False)
    step = dm.step(dep, _world(101.0, _inst("a", 2, S.READY)))
    assert step.state == "succeeded"
    assert not any(isinstance(a, dm.RemoveInstances) or (isinstance(a, dm.EnsureInstances) and a.role == "worker")
                   for a in step.actions)
    # the previous release had workers, this one none: they still go
    step = dm.step(_dep(workers={}), _world(101.0, _inst("a", 2, S.READY)))
    assert dm.RemoveInstances(1, role="worker") in step.actions


def test_scale_holds_each_known_process_type() -> None:
    assert scale(3, {"web": 4, "worker": 0, "gone": 2}, {"web", "worker"}) == [
        dm.EnsureInstances(3, 4, role="main", process="web"),
        dm.EnsureInstances(3, 0, role="worker", process="worker"),
    ]


@pytest.mark.parametrize(("pairs", "needle"), [
    (["web=3", "mailer=1"], "process type 'mailer' is unknown: this release has web, worker"),
    (["web=-1"], "web=-1: a count is between 0 and 100"),
    (["web=101"], "a count is between 0 and 100"),
    (["web"], "'web' is not TYPE=COUNT"),
    (["web=x"], "'web=x' is not TYPE=COUNT"),
    ([], "give at least one TYPE=COUNT"),
])
def test_bad_counts_say_what_to_fix(pairs: list[str], needle: str) -> None:
    with pytest.raises(ValueError, match=needle.replace("(", r"\(")):
        parse_counts(pairs, {"web", "worker"})
    assert parse_counts(["web=3", "worker=0"], {"web", "worker"}) == {"web": 3, "worker": 0}


def test_restart_surges_one_then_drains_the_oldest_once_the_new_one_is_ready() -> None:
    from conveyor.domain.processes import RestartPlan, Running, restart_plan

    old = [Running("a", 1.0, True), Running("b", 2.0, True)]
    assert restart_plan(10.0, 2, old) == RestartPlan(3, [], False)  # start one new
    starting = [*old, Running("n1", 11.0, False)]
    assert restart_plan(10.0, 2, starting) == RestartPlan(None, [], False)  # wait for it
    ready = [*old, Running("n1", 11.0, True)]
    assert restart_plan(10.0, 2, ready) == RestartPlan(None, ["a"], False)  # then the oldest goes
    after = [Running("b", 2.0, True), Running("n1", 11.0, True)]
    assert restart_plan(10.0, 2, after) == RestartPlan(3, [], False)
    assert restart_plan(10.0, 2, [Running("n1", 11.0, True), Running("n2", 12.0, True)]) == RestartPlan(None, [], True)
    assert restart_plan(10.0, 0, []) == RestartPlan(None, [], True)
