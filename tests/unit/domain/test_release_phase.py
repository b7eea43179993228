"""The release phase by direct calls: the command runs once before any instance; exit 0 starts the
instances, another code or the timeout fails with nothing moved; skipping is recorded."""

from __future__ import annotations

from conveyor.domain import deploy_machine as dm
from conveyor.domain.wire import InstanceState as S

CMD = "python manage.py migrate"


def _dep(state: str = "queued", **params: object) -> dm.Deployment:
    return dm.Deployment(
        id=7, kind="deploy", strategy="bluegreen", state=state, from_release=1, to_release=2,
        params={"instances": 2, "ready_timeout": 30.0, "release_command": CMD, "release_timeout": 60.0, **params},
        progress={"release_started": 100.0, "phase_started": 100.0} if state != "queued" else {}, created_at=100.0,
    )


def _task(state: S, code: int | None = None, message: str = "") -> dm.ObservedInstance:
    return dm.ObservedInstance("t", 2, "release", state, 0, message, "release", code)


def _world(now: float, *insts: dm.ObservedInstance) -> dm.World:
    return dm.World(now=now, instances=insts)


def test_start_runs_only_the_release_command() -> None:
    step = dm.start(_dep(), 100.0)
    assert step.state == "releasing"
    assert [a for a in step.actions if isinstance(a, dm.EnsureInstances)] == [dm.EnsureInstances(2, 1, "release", "release")]
    assert not any(isinstance(a, dm.SetRoutes) for a in step.actions)


def test_waits_while_it_runs_then_exit_0_starts_the_instances() -> None:
    running = dm.step(_dep("releasing"), _world(110.0, _task(S.STARTING)))
    assert running.state == "releasing" and running.actions == [dm.EnsureInstances(2, 1, "release", "release")]
    done = dm.step(_dep("releasing"), _world(111.0, _task(S.EXITED, 0)))
    assert done.state == "starting" and done.progress["phase_started"] == 111.0
    assert dm.RemoveInstances(2, role="release") in done.actions and dm.EnsureInstances(2, 2) in done.actions


def test_a_non_zero_exit_fails_with_nothing_moved() -> None:
    step = dm.step(_dep("releasing"), _world(111.0, _task(S.EXITED, 3, "exited with code 3; last output:\nno such column")))
    assert step.state == "failed"
    assert "exited with code 3" in (step.reason or "") and "no such column" in (step.reason or "")
    assert dm.RemoveInstances(2) in step.actions and not any(isinstance(a, (dm.SetRoutes, dm.MakeCurrent)) for a in step.actions)


def test_a_timeout_fails_and_stops_it() -> None:
    assert dm.step(_dep("releasing"), _world(159.0, _task(S.STARTING))).state == "releasing"
    step = dm.step(_dep("releasing"), _world(161.0, _task(S.STARTING)))
    assert step.state == "failed" and "did not finish within 60s" in (step.reason or "")
    assert dm.RemoveInstances(2) in step.actions


def test_skipping_is_an_event_and_goes_straight_to_the_instances() -> None:
    step = dm.start(_dep(skip_release_phase=True, skip_release_phase_by="alice"), 100.0)
    assert step.state == "starting"
    (skipped,) = [a for a in step.actions if isinstance(a, dm.Event) and a.kind == "release_phase_skipped"]
    assert "alice" in skipped.message
    assert not any(isinstance(a, dm.EnsureInstances) and a.role == "release" for a in step.actions)


def test_workers_wait_for_the_release_command_too() -> None:
    step = dm.step(_dep("releasing", workers={"worker": 1}), _world(110.0, _task(S.STARTING)))
    assert not any(isinstance(a, dm.EnsureInstances) and a.role == "worker" for a in step.actions)


def test_the_release_task_is_not_a_ready_web_instance() -> None:
    assert _world(1.0, _task(S.READY)).ready(2) == 0
