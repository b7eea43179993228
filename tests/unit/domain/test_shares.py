"""How a deployment and the autoscaler share an environment's instances (domain/shares.py), by direct calls."""

from __future__ import annotations

import dataclasses
import re

import pytest

from conveyor.domain import deploy_machine as dm
from conveyor.domain.shares import Release, ShareError, held_releases, release_counts, share
from conveyor.domain.strategies import PAUSED_WATCH, analysis_request
from conveyor.domain.wire import InstanceState


def settled(**weights: int) -> dict[int, Release]:
    """Releases r1, r2… with these weights, each with ``ready == instances == 1`` (settled)."""
    return {int(k[1:]): Release(w, 1, 1) for k, w in weights.items()}


@pytest.mark.parametrize(("total", "weight", "want"), [
    (8, 10, 1), (8, 50, 4), (8, 90, 8), (8, 100, 8), (8, 25, 2), (10, 33, 4), (3, 10, 1), (0, 10, 1), (8, 0, 0),
])
def test_a_share_rounds_up_and_is_at_least_one_while_it_has_weight(total: int, weight: int, want: int) -> None:
    assert share(total, weight) == want


def test_a_canary_follows_its_weight_and_the_stable_side_keeps_its_share() -> None:
    assert release_counts(8, settled(r1=90, r2=10)) == {1: 8, 2: 1}
    assert release_counts(8, settled(r1=50, r2=50)) == {1: 4, 2: 4}
    # the autoscaler's total moves during the step: both follow it
    assert release_counts(12, settled(r1=50, r2=50)) == {1: 6, 2: 6}
    assert release_counts(3, settled(r1=50, r2=50)) == {1: 2, 2: 2}


def test_never_both_at_full_size_during_a_canary() -> None:
    for total in range(2, 30):
        for weight in (1, 10, 25, 50, 75, 90, 99):
            counts = release_counts(total, settled(r1=100 - weight, r2=weight))
            assert not (counts[1] == total and counts[2] == total), (total, weight, counts)
            assert counts[1] + counts[2] <= total + 1  # rounding up costs at most one instance


def test_start_new_then_drain_old_when_a_step_moves_traffic() -> None:
    # 10 % → 50 %: the canary has 1 of the 4 it now needs; the stable side keeps its 8 meanwhile
    moving = {1: Release(50, 8, 8), 2: Release(50, 1, 1)}
    assert release_counts(8, moving) == {1: 8, 2: 4}
    growing = {1: Release(50, 8, 8), 2: Release(50, 4, 2)}
    assert release_counts(8, growing) == {1: 8, 2: 4}
    ready = {1: Release(50, 8, 8), 2: Release(50, 4, 4)}
    assert release_counts(8, ready) == {1: 4, 2: 4}
    # growing is never held back: the stable side takes a higher total at once
    assert release_counts(16, growing) == {1: 8, 2: 8}


def test_held_and_draining_releases_are_left_alone() -> None:
    assert release_counts(8, settled(r1=50, r2=50), held={2}) == {1: 4}
    assert release_counts(8, settled(r1=50, r2=50), draining={2}) == {1: 4}
    # a release with no weight is not sized (a new one starting, a warm one through a bake)
    assert release_counts(8, settled(r1=100, r2=0)) == {1: 8}
    assert release_counts(8, settled(r1=0, r2=100)) == {2: 8}
    # a held release still short of what the machine asked: the other one does not shrink yet
    promoting = {1: Release(50, 8, 8), 2: Release(50, 8, 5)}
    assert release_counts(8, promoting, held={2}) == {1: 8}


def test_nothing_to_do_when_counts_are_right() -> None:
    assert release_counts(8, {1: Release(90, 8, 8), 2: Release(10, 1, 1)}) == {1: 8, 2: 1}
    assert release_counts(8, {}) == {}


@pytest.mark.parametrize(("call", "message"), [
    (lambda: share(-1, 10), "total count must be at least 0, got -1"),
    (lambda: share(8, 101), "percentage from 0 to 100, got 101"),
    (lambda: release_counts(8, settled(r1=80, r2=30)), "add up to more than 100 %"),
    (lambda: release_counts(8, {1: Release(100, 2, 3)}), "release 1: 3 ready of 2 instances"),
])
def test_bad_input_is_named(call: object, message: str) -> None:
    with pytest.raises(ShareError, match=re.escape(message)):
        call()  # type: ignore[operator]


def test_which_releases_the_deployment_machine_holds() -> None:
    new = 2
    # a new release before traffic moves, a promoted canary, a blue/green switch: the machine's
    assert held_releases("canary", "starting", None, new, baseline=False) == {2}
    assert held_releases("canary", "canary", "promoting", new, baseline=False) == {2}
    assert held_releases("bluegreen", "starting", None, new, baseline=False) == {2}
    assert held_releases("bluegreen", "preview", None, new, baseline=False) == {2}
    # a canary in its steps (or paused in one) is sized by its weight, unless its baseline is compared with it
    assert held_releases("canary", "canary", "step", new, baseline=False) == frozenset()
    assert held_releases("canary", "paused", "step", new, baseline=False) == frozenset()
    assert held_releases("canary", "canary", "step", new, baseline=True) == {2}
    # growing for its next step: the machine asks for that step's share (the weight has not moved)
    assert held_releases("canary", "canary", "sizing", new, baseline=False) == {2}
    # live through its bake: the total, like between deployments
    assert held_releases("canary", "baking", "baking", new, baseline=True) == frozenset()
    # a rolling deployment's batches are its counts
    assert held_releases("rolling", "rolling", None, new, baseline=False) is None


def _canary(**params: object) -> dm.Deployment:
    return dm.Deployment(id=1, kind="deploy", strategy="canary", state="queued", from_release=1, to_release=2,
                         params={"steps": [{"weight": 10}, {"weight": 50}], **params}, progress={}, created_at=0.0)


def test_an_autoscaled_canary_starts_at_its_first_steps_share() -> None:
    assert dm.canary_size(_canary(instances=8)) == 4  # not autoscaled: warm for its largest step
    assert dm.canary_size(_canary(instances=8, autoscaled=True)) == 1  # 10 % of 8
    assert dm.canary_size(_canary(instances=8, autoscaled=True, baseline=True)) == 4  # the strategy's


def _in_step(step: int = 0, **params: object) -> dm.Deployment:
    """An autoscaled canary (total 8) in step ``step`` of 10 % → 50 %, started 60 s ago."""
    weights = {"1": 90, "2": 10} if step == 0 else {"1": 50, "2": 50}
    return dm.Deployment(id=1, kind="deploy", strategy="canary", state="canary", from_release=1, to_release=2,
                         params={"steps": [{"weight": 10, "for": 30}, {"weight": 50, "for": 30}], "instances": 8,
                                 "autoscaled": True, "ready_timeout": 60.0, **params},
                         progress={"phase": "step", "step": step, "step_started": 0.0, "steps": 2, "weights": weights},
                         created_at=0.0)


def _world(now: float, ready: int, verdict: str | None = None) -> dm.World:
    inst = tuple(dm.ObservedInstance(f"r2-{i}", 2, "main", InstanceState.READY) for i in range(ready))
    return dm.World(now=now, instances=inst, verdict={"outcome": verdict, "reason": "r"} if verdict else None)


def _apply(dep: dm.Deployment, result: dm.Step) -> dm.Deployment:
    return dataclasses.replace(dep, state=result.state, progress=result.progress)


def test_an_autoscaled_canary_grows_to_the_next_steps_share_before_its_weight_moves() -> None:
    dep = _in_step(0)
    result = dm.step(dep, _world(60.0, ready=1, verdict="pass"))  # step 1 passed; the canary has 1 instance
    assert result.state == "canary" and result.progress["phase"] == "sizing"
    assert dm.EnsureInstances(2, 4) in result.actions  # 50 % of 8
    assert not [a for a in result.actions if isinstance(a, dm.SetRoutes)]  # the weight stays at 10 %
    assert result.progress["weights"] == {"1": 90, "2": 10}
    dep = _apply(dep, result)
    assert analysis_request(dep).duration == PAUSED_WATCH  # still watched: only a failure acts
    waiting = dm.step(dep, _world(62.0, ready=3))
    assert waiting.progress["phase"] == "sizing" and not [a for a in waiting.actions if isinstance(a, dm.SetRoutes)]
    moved = dm.step(dep, _world(63.0, ready=4))  # the 4 are ready: now the step's weight moves
    assert moved.progress["phase"] == "step" and moved.progress["step"] == 1
    assert dm.SetRoutes({1: 50, 2: 50}) in moved.actions


def test_a_canary_already_at_its_share_moves_at_once_and_a_fixed_size_canary_never_waits() -> None:
    assert dm.step(_in_step(0), _world(60.0, ready=4, verdict="pass")).progress["phase"] == "step"
    fixed = _in_step(0, autoscaled=False)  # started at its largest step's size before any traffic moved
    assert dm.step(fixed, _world(60.0, ready=1, verdict="pass")).progress["step"] == 1


def test_growing_for_a_step_rolls_back_on_a_failed_analysis_or_past_the_ready_timeout() -> None:
    dep = _apply(_in_step(0), dm.step(_in_step(0), _world(60.0, ready=1, verdict="pass")))
    failed = dm.step(dep, _world(61.0, ready=2, verdict="fail"))
    assert failed.state == "rolled_back" and "analysis failed at step 1" in failed.reason
    late = dm.step(dep, _world(60.0 + 61.0, ready=2))
    assert late.state == "rolled_back"
    assert late.reason == "release 2 did not grow to 4 ready instances for step 2 within 60s"
    assert dm.step(dep, _world(60.0 + 59.0, ready=2)).state == "canary"  # within it: still waiting


def test_commands_while_growing_for_a_step() -> None:
    dep = _apply(_in_step(0), dm.step(_in_step(0), _world(60.0, ready=1, verdict="pass")))
    paused = dm.step(dataclasses.replace(dep, command={"action": "pause", "by": "ann"}), _world(61.0, ready=2))
    assert paused.state == "paused" and paused.consumed_command
    aborted = dm.step(dataclasses.replace(dep, command={"action": "abort", "by": "ann"}), _world(61.0, ready=2))
    assert aborted.state == "rolled_back" and "aborted by ann" in aborted.reason
    full = dm.step(dataclasses.replace(dep, command={"action": "promote", "full": True, "by": "ann"}), _world(61.0, ready=2))
    assert full.progress["phase"] == "promoting" and dm.EnsureInstances(2, 8) in full.actions
