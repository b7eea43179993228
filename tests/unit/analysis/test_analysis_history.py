"""The bake's judge: the new release alone against the previous release's earlier error rate."""

from __future__ import annotations

import numpy as np

from conveyor.analysis import Interval, Outcome, evaluate, parse_analysis_config
from conveyor.analysis.history import judge, log_e_process, reference_rate_bound

CONFIG = parse_analysis_config({})  # alpha 1 %, error tolerance 10 %


def _bake(rng: np.random.Generator, rps: float, rate: float, seconds: int = 300) -> list[Interval]:
    n = rng.poisson(rps, seconds)
    x = rng.binomial(n, rate)
    return [Interval(float(t), int(a), int(b)) for t, (a, b) in enumerate(zip(n, x, strict=True))]


def _reference(rng: np.random.Generator, requests: int, rate: float) -> list[Interval]:
    return [Interval(-1.0, requests, int(rng.binomial(requests, rate)))]


def _fail_share(rng: np.random.Generator, rps: float, new_rate: float, runs: int = 300) -> float:
    fails = 0
    for _ in range(runs):
        v = judge(CONFIG, _bake(rng, rps, new_rate), _reference(rng, 20_000, 0.01), step_elapsed_s=300, step_duration_s=300)
        fails += v.outcome == Outcome.FAIL
    return fails / runs


def test_same_error_rate_rarely_fails() -> None:
    # alpha = 1 % bounds it; the bound on the reference's rate makes it conservative in practice
    assert _fail_share(np.random.default_rng(7), 30, 0.01) <= 0.02


def test_doubled_error_rate_is_caught_by_the_bake() -> None:
    # 1 % -> 2 % at 30 req/s for a 5-minute bake (the thresholds alone pass it every time)
    assert _fail_share(np.random.default_rng(8), 30, 0.02) >= 0.7


def test_five_times_the_errors_fails_even_at_low_traffic() -> None:
    assert _fail_share(np.random.default_rng(9), 10, 0.05, runs=100) >= 0.95


def test_no_reference_traffic_leaves_it_to_the_thresholds() -> None:
    v = judge(CONFIG, _bake(np.random.default_rng(1), 10, 0.5), [], step_elapsed_s=10, step_duration_s=60)
    assert v.outcome == Outcome.PASS and "thresholds only" in v.reason


def test_a_reference_without_errors_still_gives_a_positive_bound() -> None:
    bound = reference_rate_bound(0, 5000, 0.995)
    assert 0.0 < bound < 0.002
    assert reference_rate_bound(3, 3, 0.995) == 1.0
    v = judge(CONFIG, [Interval(0.0, 100, 0)], [Interval(-1.0, 5000, 0)], step_elapsed_s=1, step_duration_s=60)
    assert v.outcome == Outcome.CONTINUE and np.isfinite(v.numbers["log_e"])


def test_the_e_process_is_causal_and_grows_with_errors() -> None:
    path = log_e_process(np.array([0, 5, 5, 0]), np.array([100, 100, 100, 100]), 0.01)
    assert path.shape == (4,) and path[0] < 0 < path[1] < path[2] and path[3] < path[2]
    assert log_e_process(np.array([]), np.array([]), 0.01).size == 0


def test_evaluate_runs_it_for_the_bake() -> None:
    config = CONFIG.model_copy(update={"judges": ["threshold", "history"]})
    rng = np.random.default_rng(3)
    # 3 % errors: under the thresholds' 10 % limit, three times the previous release's 1 %
    v = evaluate(config, _bake(rng, 20, 0.03, 120), _reference(rng, 20_000, 0.01), step_elapsed_s=120, step_duration_s=300)
    assert v.outcome == Outcome.FAIL and v.reason.startswith("Failed by history:"), v.reason


def test_the_bake_needs_an_effect_above_the_error_floors() -> None:
    # 1 % -> 1.5 % at 200 req/s: +50 % and +0.5 points, above the default floors (+25 %, +0.2 points).
    rng = np.random.default_rng(21)
    bake = _bake(rng, 200, 0.015, 300)
    reference = _reference(rng, 200_000, 0.01)
    v = judge(CONFIG, bake, reference, step_elapsed_s=300, step_duration_s=300)
    assert v.outcome == Outcome.FAIL and "(floors +25% and +0.2 points)" in v.reason, v.reason
    # The same evidence with a floor of +1 point: not a regression worth a rollback, and the verdict shows why.
    floored = parse_analysis_config({"effects": {"error_rate": {"absolute": 0.01}}})
    v = judge(floored, bake, reference, step_elapsed_s=300, step_duration_s=300)
    assert v.outcome == Outcome.PASS and "(floors +25% and +1 points)" in v.reason, v.reason
