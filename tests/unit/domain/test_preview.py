"""Blue/green preview: pinned-only traffic, pre-promotion analysis, auto-promotion — by direct calls."""

from __future__ import annotations

from conveyor.domain import deploy_machine as dm
from conveyor.domain import preview
from conveyor.domain.wire import InstanceState as S


def _dep(state: str = "starting", progress: dict | None = None, command: dict | None = None, **params: object) -> dm.Deployment:
    return dm.Deployment(id=3, kind="deploy", strategy="bluegreen", state=state, from_release=1, to_release=2,
                         params={"instances": 1, **params}, progress=progress or {}, created_at=0.0, command=command)


def _world(now: float, verdict: dict | None = None, state: S = S.READY) -> dm.World:
    return dm.World(now, (dm.ObservedInstance("n", 2, "main", state, 3, "boom"),
                          dm.ObservedInstance("o", 1, "main", S.READY)), 1, verdict)


def test_wanted_only_when_asked_and_not_for_a_first_release() -> None:
    assert not preview.wanted(_dep())
    assert preview.wanted(_dep(pre_promotion_analysis=True))
    assert preview.wanted(_dep(auto_promote=False)) and preview.wanted(_dep(auto_promote_after=30))
    first = dm.Deployment(3, "deploy", "bluegreen", "starting", None, 1, {"pre_promotion_analysis": True}, {}, 0.0)
    assert not preview.wanted(first)


def test_enter_routes_the_new_release_by_pin_only() -> None:
    step = preview.enter(_dep(pre_promotion_analysis=True), {}, now=10.0)
    assert step.state == "preview" and step.progress["phase"] == "analysis"
    assert dm.SetRoutes({1: 100, 2: 0}) in step.actions
    assert preview.analysis_window(dm.Deployment(3, "deploy", "bluegreen", "preview", 1, 2, {"preview_for": 20.0},
                                                 step.progress, 0.0)) == (10.0, 20.0)


def test_analysis_pass_then_auto_promotion_delay_then_switch() -> None:
    prog = preview.enter(_dep(pre_promotion_analysis=True, auto_promote_after=5), {}, 10.0).progress
    dep = _dep("preview", prog, pre_promotion_analysis=True, auto_promote_after=5)
    assert preview.handle(dep, _world(12.0, {"outcome": "continue"})).state == "preview"
    passed = preview.handle(dep, _world(40.0, {"outcome": "pass", "reason": "fine"}))
    assert passed.state == "preview" and passed.progress["phase"] == "waiting" and passed.progress["waiting_since"] == 40.0
    dep2 = _dep("preview", passed.progress, pre_promotion_analysis=True, auto_promote_after=5)
    assert preview.handle(dep2, _world(44.0)).state == "preview"
    done = preview.handle(dep2, _world(45.0))
    assert done.state == "succeeded" and dm.SetRoutes({2: 100}) in done.actions and dm.MakeCurrent(2, 1) in done.actions


def test_failed_analysis_fails_without_moving_traffic() -> None:
    prog = preview.enter(_dep(pre_promotion_analysis=True), {}, 10.0).progress
    step = preview.handle(_dep("preview", prog, pre_promotion_analysis=True),
                          _world(20.0, {"outcome": "fail", "reason": "errors 30% vs 0%"}))
    assert step.state == "failed" and "pre-promotion analysis failed: errors 30% vs 0%" in (step.reason or "")
    assert step.actions[0] == dm.SetRoutes({1: 100}) and dm.RemoveInstances(2) in step.actions
    assert not any(isinstance(a, dm.MakeCurrent) for a in step.actions)


def test_inconclusive_holds_for_a_human_and_promote_or_abort_end_it() -> None:
    prog = preview.enter(_dep(pre_promotion_analysis=True), {}, 10.0).progress
    held = preview.handle(_dep("preview", prog, pre_promotion_analysis=True),
                          _world(80.0, {"outcome": "inconclusive", "reason": "3 pinned requests"}))
    assert held.state == "preview" and held.progress["phase"] == "held" and "3 pinned requests" in (held.reason or "")
    later = preview.handle(_dep("preview", held.progress, pre_promotion_analysis=True), _world(999.0))
    assert later.state == "preview"  # held: no auto-promotion
    promoted = preview.handle(_dep("preview", held.progress, {"action": "promote", "by": "ada"}), _world(1000.0))
    assert promoted.state == "succeeded" and promoted.consumed_command
    aborted = preview.handle(_dep("preview", held.progress, {"action": "abort", "by": "ada"}), _world(1000.0))
    assert aborted.state == "failed" and "aborted by ada" in (aborted.reason or "") and aborted.consumed_command


def test_manual_promotion_waits_for_the_command_and_crash_loop_fails() -> None:
    prog = preview.enter(_dep(auto_promote=False), {}, 0.0).progress
    assert prog["phase"] == "waiting"
    assert preview.handle(_dep("preview", prog, auto_promote=False), _world(3600.0)).state == "preview"
    crashed = preview.handle(_dep("preview", prog, auto_promote=False), _world(1.0, state=S.CRASHLOOP))
    assert crashed.state == "failed" and "crash loop during the preview: boom" in (crashed.reason or "")


def test_blue_green_with_preview_enters_it_when_all_new_instances_are_ready() -> None:
    dep = _dep("starting", {"phase_started": 0.0}, pre_promotion_analysis=True)
    step = dm.step(dep, _world(1.0))
    assert step.state == "preview" and dm.SetRoutes({1: 100, 2: 0}) in step.actions
    assert "preview" in dm.ACTIVE


def test_canary_with_a_baseline_starts_it_and_splits_traffic_three_ways() -> None:
    from conveyor.domain.wire import baseline_route

    dep = dm.Deployment(4, "deploy", "canary", "starting", 1, 2,
                        {"instances": 2, "baseline": True, "steps": [{"weight": 10, "for": 30}]},
                        {"phase_started": 0.0}, 0.0)
    waiting = dm.step(dep, dm.World(1.0, (dm.ObservedInstance("c", 2, "main", S.READY),), 1))
    assert waiting.state == "starting" and dm.EnsureInstances(1, 1, role="baseline") in waiting.actions
    ready = dm.step(dep, dm.World(2.0, (dm.ObservedInstance("c", 2, "main", S.READY),
                                        dm.ObservedInstance("b", 1, "baseline", S.READY)), 1))
    assert ready.state == "canary" and dm.SetRoutes({1: 80, baseline_route(1): 10, 2: 10}) in ready.actions
    canary = dm.Deployment(4, "deploy", "canary", "canary", 1, 2, dep.params, ready.progress, 0.0)
    failed = dm.step(canary, dm.World(3.0, (), 1, {"outcome": "fail", "reason": "errors"}))
    assert failed.state == "rolled_back" and dm.RemoveInstances(1, role="baseline") in failed.actions
