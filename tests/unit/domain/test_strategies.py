"""Canary, bake, pause and rolling states of the deployment machine, by direct calls.

Each test builds a deployment row and a snapshot of the world, calls the pure
machine and checks the state, the reason and the actions (order matters where
the issue says so: traffic back first, then the new instances drain).
"""

from __future__ import annotations

from typing import Any

from conveyor.deploy.analysis_source import window_start
from conveyor.domain import deploy_machine as dm
from conveyor.domain import strategies as st
from conveyor.domain.wire import InstanceState as S

STEPS = [{"weight": 10, "for": 5.0}, {"weight": 50, "for": 5.0}]


def _dep(state: str, progress: dict[str, Any] | None = None, *, strategy: str = "canary",
         command: dict[str, Any] | None = None, **params: Any) -> dm.Deployment:
    return dm.Deployment(
        id=3, kind="deploy", strategy=strategy, state=state, from_release=1, to_release=2,
        params={"instances": 2, "ready_timeout": 30.0, "steps": STEPS, "bake": 4.0, "strategy": strategy, **params},
        progress=progress or {}, created_at=0.0, command=command,
    )


def _world(now: float, *insts: tuple[str, int, S], verdict: dict[str, Any] | None = None) -> dm.World:
    return dm.World(now, tuple(dm.ObservedInstance(i, r, "main", s, 3, "Traceback: boom") for i, r, s in insts),
                    verdict=verdict)


def _at_step(index: int, started: float = 100.0) -> dict[str, Any]:
    return {"phase": "step", "step": index, "step_started": started, "steps": 2,
            "weights": {"1": 100 - STEPS[index]["weight"], "2": STEPS[index]["weight"]}}


CANARY_UP = (("old-a", 1, S.READY), ("old-b", 1, S.READY), ("new-a", 2, S.READY))


def _routes(step: dm.Step) -> list[dict[int, int]]:
    return [a.weights for a in step.actions if isinstance(a, dm.SetRoutes)]


def _assert_rolled_back(step: dm.Step) -> None:
    """Traffic back to release 1 first (one table change), then release 2's instances drain."""
    assert step.state == "rolled_back" and step.finished
    kinds = [type(a).__name__ for a in step.actions]
    assert step.actions[0] == dm.SetRoutes({1: 100}), kinds
    assert kinds.index("RemoveInstances") > 0 and dm.RemoveInstances(2) in step.actions
    assert any(isinstance(a, dm.Event) and a.kind == "rolled_back" for a in step.actions)


# --- canary steps ----------------------------------------------------------------


def test_canary_ready_enters_the_first_step_with_its_weight() -> None:
    step = dm.step(_dep("starting", {"phase_started": 90.0}), _world(100.0, *CANARY_UP))
    assert step.state == "canary" and step.progress["step"] == 0 and step.progress["step_started"] == 100.0
    assert _routes(step) == [{1: 90, 2: 10}]
    req = st.analysis_request(_dep("canary", step.progress))
    assert req == st.AnalysisRequest("step", 100.0, 5.0, 0)


def test_canary_size_covers_the_largest_step() -> None:
    assert dm.canary_size(_dep("queued")) == 1  # 50 % of 2 instances
    assert dm.canary_size(_dep("queued", instances=10)) == 5


def test_a_passing_step_moves_to_the_next_and_the_last_one_promotes() -> None:
    step = dm.step(_dep("canary", _at_step(0)), _world(105.0, *CANARY_UP, verdict={"outcome": "pass", "reason": "ok"}))
    assert step.state == "canary" and step.progress["step"] == 1 and _routes(step) == [{1: 50, 2: 50}]
    step = dm.step(_dep("canary", _at_step(1)), _world(110.0, *CANARY_UP, verdict={"outcome": "pass", "reason": "ok"}))
    assert step.progress["phase"] == "promoting" and dm.EnsureInstances(2, 2) in step.actions
    assert _routes(step) == []  # no traffic moves until the full size is ready


def test_continue_changes_nothing() -> None:
    dep = _dep("canary", _at_step(0))
    step = dm.step(dep, _world(101.0, *CANARY_UP, verdict={"outcome": "continue", "reason": "Analysing"}))
    assert step.state == "canary" and step.actions == [] and step.progress["step"] == 0


def test_failed_verdict_rolls_back_traffic_first_with_the_judges_reason() -> None:
    verdict = {"outcome": "fail", "reason": "Failed by sequential: canary error rate 30.00% (6/20) vs 0.00%."}
    step = dm.step(_dep("canary", _at_step(0)), _world(101.5, *CANARY_UP, verdict=verdict))
    _assert_rolled_back(step)
    assert step.reason == "analysis failed at step 1: " + verdict["reason"]
    assert not any(isinstance(a, dm.MakeCurrent) for a in step.actions)  # release 1 never stopped being current


def test_inconclusive_pauses_and_says_why() -> None:
    verdict = {"outcome": "inconclusive", "reason": "Not enough traffic: the canary served 3 requests"}
    step = dm.step(_dep("canary", _at_step(0)), _world(106.0, *CANARY_UP, verdict=verdict))
    assert step.state == "paused" and "inconclusive at step 1" in (step.reason or "")
    assert "Not enough traffic" in (step.reason or "") and _routes(step) == []  # the split is held


def test_crash_loop_of_the_canary_rolls_back() -> None:
    world = _world(102.0, ("old-a", 1, S.READY), ("old-b", 1, S.READY), ("new-a", 2, S.CRASHLOOP))
    step = dm.step(_dep("canary", _at_step(1)), world)
    _assert_rolled_back(step)
    assert "new-a is in a crash loop: Traceback: boom" in (step.reason or "")


def test_promotion_goes_live_when_full_size_is_ready_then_bakes() -> None:
    progress = {**_at_step(1), "phase": "promoting", "promote_started": 110.0}
    waiting = dm.step(_dep("canary", progress), _world(111.0, *CANARY_UP))
    assert waiting.state == "canary" and waiting.actions == [dm.EnsureInstances(2, 2)]
    live = dm.step(_dep("canary", progress), _world(112.0, *CANARY_UP, ("new-b", 2, S.READY)))
    assert live.state == "baking" and _routes(live) == [{2: 100}] and dm.MakeCurrent(2, 1) in live.actions
    assert st.analysis_request(_dep("baking", live.progress)) == st.AnalysisRequest("bake", 112.0, 4.0, -1)


def test_promotion_that_never_scales_rolls_back() -> None:
    progress = {**_at_step(1), "phase": "promoting", "promote_started": 110.0}
    step = dm.step(_dep("canary", progress), _world(141.0, *CANARY_UP))
    _assert_rolled_back(step)
    assert "did not scale to 2 ready instances within 30s" in (step.reason or "")


# --- bake ------------------------------------------------------------------------

BAKING = {"phase": "baking", "bake_started": 200.0, "weights": {"2": 100}}
LIVE = (("new-a", 2, S.READY), ("new-b", 2, S.READY), ("old-a", 1, S.READY))


def test_bake_succeeds_after_its_period_without_regression() -> None:
    assert dm.step(_dep("baking", BAKING), _world(203.0, *LIVE)).state == "baking"
    step = dm.step(_dep("baking", BAKING), _world(204.0, *LIVE, verdict={"outcome": "pass", "reason": "ok"}))
    assert step.state == "succeeded" and any(isinstance(a, dm.Event) and a.kind == "baked" for a in step.actions)


def test_regression_during_bake_rolls_back_and_makes_the_old_release_current_again() -> None:
    verdict = {"outcome": "fail", "reason": "Failed by threshold: error rate 25.00% > 10.00%"}
    step = dm.step(_dep("baking", BAKING), _world(201.0, *LIVE, verdict=verdict))
    _assert_rolled_back(step)
    assert dm.MakeCurrent(1, 2, retire_as="rolled_back") in step.actions
    assert dm.EnsureInstances(1, 2) in step.actions  # the warm release gets back to full size
    assert step.reason == "regression during the bake: " + verdict["reason"]


# --- commands --------------------------------------------------------------------


def _cmd(action: str, full: bool = False) -> dict[str, Any]:
    return {"action": action, "full": full, "by": "ana"}


def test_pause_holds_the_split_and_resume_restarts_the_steps_window() -> None:
    paused = dm.step(_dep("canary", _at_step(1), command=_cmd("pause")), _world(103.0, *CANARY_UP))
    assert paused.state == "paused" and paused.consumed_command and paused.reason == "paused by ana"
    assert _routes(paused) == []
    assert st.analysis_request(_dep("paused", paused.progress)) is not None  # monitoring goes on while paused
    resumed = dm.step(_dep("paused", paused.progress, command=_cmd("resume")), _world(150.0, *CANARY_UP))
    assert resumed.state == "canary" and resumed.consumed_command
    assert resumed.progress["step"] == 1 and resumed.progress["step_started"] == 150.0
    assert _routes(resumed) == [{1: 50, 2: 50}]


def test_promote_goes_to_the_next_step_and_full_skips_the_rest() -> None:
    step = dm.step(_dep("canary", _at_step(0), command=_cmd("promote")), _world(101.0, *CANARY_UP))
    assert step.consumed_command and step.progress["step"] == 1
    step = dm.step(_dep("canary", _at_step(0), command=_cmd("promote", full=True)), _world(101.0, *CANARY_UP))
    assert step.consumed_command and step.progress["phase"] == "promoting"
    step = dm.step(_dep("paused", {**_at_step(0), "paused_at": 1.0}, command=_cmd("promote", full=True)),
                   _world(101.0, *CANARY_UP))
    assert step.state == "canary" and step.progress["phase"] == "promoting"


def test_abort_rolls_back_from_every_state_with_traffic() -> None:
    for state, progress in (("canary", _at_step(0)), ("paused", {**_at_step(0), "paused_at": 1.0}), ("baking", BAKING)):
        step = dm.step(_dep(state, progress, command=_cmd("abort")), _world(101.0, *CANARY_UP))
        _assert_rolled_back(step)
        assert step.consumed_command and "aborted" in (step.reason or "") and "ana" in (step.reason or "")


def test_abort_before_any_traffic_fails_without_routing() -> None:
    step = dm.step(_dep("starting", {"phase_started": 0.0}, command=_cmd("abort")), _world(1.0))
    assert step.state == "failed" and step.consumed_command and _routes(step) == []


# --- paused canaries stay watched (fix) -------------------------------------------


def test_crash_loop_while_paused_rolls_back() -> None:
    progress = {**_at_step(0), "paused_at": 101.0}
    world = _world(110.0, ("old-a", 1, S.READY), ("new-a", 2, S.CRASHLOOP))
    step = dm.step(_dep("paused", progress), world)
    _assert_rolled_back(step)
    assert "crash loop" in (step.reason or "")


def test_failed_verdict_while_paused_rolls_back_and_others_keep_it_paused() -> None:
    progress = {**_at_step(0), "paused_at": 101.0}
    dep = _dep("paused", progress)
    req = st.analysis_request(dep)
    assert req is not None and req.since == 101.0 and req.step == 0
    assert req.duration >= 3600  # watched until a human acts, never "passed" by the clock
    step = dm.step(dep, _world(120.0, *CANARY_UP, verdict={"outcome": "fail", "reason": "error rate 30%"}))
    _assert_rolled_back(step)
    assert step.reason == "analysis failed while paused at step 1: error rate 30%"
    for outcome in ("continue", "pass", "inconclusive"):
        step = dm.step(dep, _world(120.0, *CANARY_UP, verdict={"outcome": outcome, "reason": "x"}))
        assert step.state == "paused" and step.actions == []


# --- rolling ---------------------------------------------------------------------


def _rolling(progress: dict[str, Any]) -> dm.Deployment:
    return _dep("rolling", progress, strategy="rolling", instances=3, max_surge=1)


def test_rolling_moves_weights_with_each_ready_batch_and_drains_as_many_old() -> None:
    world = _world(10.0, ("o1", 1, S.READY), ("o2", 1, S.READY), ("o3", 1, S.READY), ("n1", 2, S.READY))
    step = dm.step(_rolling({"new": 0, "batch_started": 5.0}), world)
    assert step.state == "rolling" and step.progress["new"] == 1
    assert _routes(step) == [{1: 2, 2: 1}]
    assert dm.EnsureInstances(1, 2) in step.actions and dm.EnsureInstances(2, 2) in step.actions


def test_rolling_last_batch_goes_live_and_drains_the_last_old_instances() -> None:
    """Fix: the last old instance used to stay up for the whole bake though rolling keeps nothing warm."""
    world = _world(20.0, ("o3", 1, S.READY), ("n1", 2, S.READY), ("n2", 2, S.READY), ("n3", 2, S.READY))
    step = dm.step(_rolling({"new": 2, "batch_started": 15.0}), world)
    assert step.state == "succeeded" and _routes(step) == [{2: 100}]
    assert dm.MakeCurrent(2, 1) in step.actions
    kinds = [type(a).__name__ for a in step.actions]
    assert step.actions[-1] == dm.EnsureInstances(1, 0), kinds  # after the routes moved


def test_rolling_batch_not_ready_in_time_fails_first_then_rolls_back() -> None:
    world = _world(40.0, ("o1", 1, S.READY), ("n1", 2, S.STARTING))
    first = dm.step(_rolling({"new": 0, "batch_started": 5.0}), world)
    assert first.state == "failed" and "not ready within 30s (0/1 ready)" in (first.reason or "")
    later = dm.step(_rolling({"new": 1, "batch_started": 5.0}), world)
    _assert_rolled_back(later)


# --- the analysis window (fix) -----------------------------------------------------


def test_analysis_window_includes_the_point_that_holds_the_first_second_of_the_step() -> None:
    # a scrape at 100.9 stores its delta (covering 99.9..100.9) at t=100; a step that began at 100.3
    # must read it, or the canary's first requests are lost and the verdict comes a second late.
    assert window_start(100.3) <= 100.0 < window_start(100.3) + 1.0
    assert window_start(100.0) <= 100.0 and window_start(100.0) > 99.0
    assert window_start(100.999) > 99.0


# --- scrapes twice a second (fix: faster reaction) ------------------------------------


def _snap(t: float, requests: int, errors: int) -> dict[str, Any]:
    rel = {"app": "a", "env": "production", "release": 2, "requests": requests, "status": {"5xx": errors}, "latency": {}}
    return {"started_at": 50.0, "time": t, "releases": [rel]}


def test_half_second_scrapes_add_up_to_the_cumulative_counts() -> None:
    """Two scrapes within one second each store their delta; the second's point holds the sum."""
    from conveyor.deploy.scraper import Scraper, deltas

    import inspect

    assert inspect.signature(Scraper).parameters["interval"].default <= 0.5
    prev: dict[str, Any] = {"r1": (50.0, {})}
    total_requests = total_errors = 0
    for t, (req, err) in zip((100.2, 100.7, 101.2), ((10, 3), (25, 7), (31, 9)), strict=True):
        found, prev = deltas(prev, {"r1": _snap(t, req, err)})
        d = found[("a", "production", 2)]
        total_requests += d.requests
        total_errors += d.errors
    assert (total_requests, total_errors) == (31, 9)  # nothing counted twice, nothing lost


def test_rolling_lets_max_unavailable_old_instances_go_before_the_new_batch_is_ready() -> None:
    from conveyor.domain import deploy_machine as dm
    from conveyor.domain.wire import InstanceState as S

    dep = dm.Deployment(8, "deploy", "rolling", "rolling", 1, 2,
                        {"instances": 4, "max_surge": 0, "max_unavailable": 2, "ready_timeout": 30.0},
                        {"new": 0, "batch_started": 0.0}, 0.0)
    old = tuple(dm.ObservedInstance(f"o{i}", 1, "main", S.READY) for i in range(4))
    step = dm.step(dep, dm.World(1.0, old, 1))
    # batch of 2 (surge 0 + unavailable 2): two new ones start, two old ones already drain
    assert step.state == "rolling"
    assert dm.EnsureInstances(2, 2) in step.actions and dm.EnsureInstances(1, 2) in step.actions
    new = tuple(dm.ObservedInstance(f"n{i}", 2, "main", S.READY) for i in range(2))
    step = dm.step(dep, dm.World(2.0, old[:2] + new, 1))
    assert step.progress["new"] == 2 and dm.SetRoutes({1: 2, 2: 2}) in step.actions
