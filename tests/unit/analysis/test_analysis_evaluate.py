"""Combining judges: fail wins, continue mid-step, inconclusive without traffic, pass when all pass."""

from __future__ import annotations

import json

import numpy as np
import pytest
from analysis_simdata import intervals

from conveyor.analysis import JUDGE_FUNCTIONS, AnalysisConfig, Interval, Outcome, evaluate
from conveyor.domain.histogram import Histogram

ALL = AnalysisConfig.model_validate({"judges": ["sequential", "threshold", "mannwhitney"], "min_requests": 100})


def pair(seed: int, seconds: int, canary_error: float, baseline_error: float, rps: float = 10) -> tuple[list[Interval], list[Interval]]:
    rng = np.random.default_rng(seed)
    return intervals(rng, seconds, rps, canary_error), intervals(rng, seconds, rps, baseline_error)


def test_every_judge_is_registered_with_the_same_signature() -> None:
    c, b = pair(1, 60, 0.01, 0.01)
    for name, judge in JUDGE_FUNCTIONS.items():
        v = judge(ALL, c, b, step_elapsed_s=60, step_duration_s=60)
        assert v.judge == name


def test_all_pass_at_the_end_of_the_step() -> None:
    c, b = pair(2, 120, 0.01, 0.01)
    v = evaluate(ALL, c, b, step_elapsed_s=120, step_duration_s=120)
    assert v.outcome == Outcome.PASS
    assert [p.judge for p in v.parts] == ["sequential", "threshold", "mannwhitney"]
    assert all(p.outcome == Outcome.PASS for p in v.parts)
    assert v.numbers["sequential.canary_requests"] == v.numbers["canary_requests"]
    json.dumps(v.model_dump(mode="json"))  # storable as is


def test_continue_while_the_step_runs() -> None:
    c, b = pair(3, 30, 0.01, 0.01)
    v = evaluate(ALL, c, b, step_elapsed_s=30, step_duration_s=120)
    assert v.outcome == Outcome.CONTINUE
    assert "30 of 120 s" in v.reason


def test_any_failure_fails_and_names_the_judge() -> None:
    # Both sides at 30 % errors: no regression against the baseline, but over the absolute limit
    # (kept absolute: by default a limit the baseline is near follows the baseline, see test_analysis_threshold).
    c, b = pair(4, 30, 0.3, 0.3)
    absolute = ALL.model_copy(update={"threshold": ALL.threshold.model_copy(update={"near_baseline": "absolute"})})
    v = evaluate(absolute, c, b, step_elapsed_s=30, step_duration_s=120)
    assert v.outcome == Outcome.FAIL
    assert v.reason.startswith("Failed by threshold:")
    assert {p.judge: p.outcome for p in v.parts}["sequential"] == Outcome.CONTINUE


def test_failures_from_several_judges_are_all_named() -> None:
    c, b = pair(5, 120, 0.5, 0.01)
    v = evaluate(ALL, c, b, step_elapsed_s=120, step_duration_s=120)
    assert v.outcome == Outcome.FAIL
    assert v.reason.startswith("Failed by sequential, threshold, mannwhitney:")


def test_not_enough_traffic_at_the_end_is_inconclusive_never_a_silent_pass() -> None:
    c, b = pair(6, 30, 0.0, 0.0, rps=1)
    v = evaluate(AnalysisConfig.model_validate({"min_requests": 100}), c, b, step_elapsed_s=30, step_duration_s=30)
    assert v.outcome == Outcome.INCONCLUSIVE
    assert "at least 100 are required; pausing" in v.reason
    v = evaluate(AnalysisConfig(), [], [], step_elapsed_s=30, step_duration_s=30)
    assert v.outcome == Outcome.INCONCLUSIVE


def test_one_inconclusive_judge_makes_the_step_inconclusive() -> None:
    # Enough requests overall, but a 30 s step gives Mann-Whitney only 3 samples per side.
    c, b = pair(7, 30, 0.01, 0.01, rps=20)
    v = evaluate(ALL, c, b, step_elapsed_s=30, step_duration_s=30)
    assert v.outcome == Outcome.INCONCLUSIVE
    assert v.reason.startswith("Inconclusive (mannwhitney):")


def test_an_idle_canary_is_inconclusive_even_with_no_minimum() -> None:
    cfg = AnalysisConfig.model_validate({"judges": ["threshold"], "min_requests": 0, "threshold": {"min_requests": 1}})
    idle = [Interval(t=float(i), requests=0, errors=0, latency=Histogram()) for i in range(10)]
    v = evaluate(cfg, idle, [], step_elapsed_s=10, step_duration_s=10)
    assert v.outcome == Outcome.INCONCLUSIVE
    assert "0 canary requests" in v.reason
    one = [Interval(t=0.0, requests=1, errors=0, latency=Histogram({-30: 1}))]
    assert evaluate(cfg, one, [], step_elapsed_s=10, step_duration_s=10).outcome == Outcome.PASS


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), "10"])
def test_bad_step_times_are_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="finite number of seconds"):
        evaluate(AnalysisConfig(), [], [], step_elapsed_s=bad, step_duration_s=10)  # type: ignore[arg-type]


def test_a_canary_without_any_baseline_data_is_inconclusive_not_passed() -> None:
    c, _ = pair(8, 60, 0.01, 0.01)
    v = evaluate(AnalysisConfig(), c, [], step_elapsed_s=60, step_duration_s=60)
    assert v.outcome == Outcome.INCONCLUSIVE
    assert "0 baseline requests" in v.reason
