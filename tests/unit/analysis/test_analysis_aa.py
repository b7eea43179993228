"""The A/A property: a good canary is not rolled back across many seeded runs; a bad one is caught."""

from __future__ import annotations

import numpy as np
from analysis_simdata import intervals

from conveyor.analysis import AnalysisConfig, Outcome, evaluate

RUNS = 300


def test_good_canaries_are_not_failed_across_many_seeded_runs() -> None:
    cfg = AnalysisConfig()  # the default: sequential + generous thresholds, alpha = 0.01
    failed = []
    for seed in range(RUNS):
        rng = np.random.default_rng(1000 + seed)
        canary = intervals(rng, 60, 10, 0.01)
        baseline = intervals(rng, 60, 10, 0.01)
        # Evaluating once at the end sees every crossing of the (causal) evidence path,
        # so this counts the runs a per-second evaluation would have failed.
        v = evaluate(cfg, canary, baseline, step_elapsed_s=60, step_duration_s=60)
        assert v.outcome in (Outcome.PASS, Outcome.FAIL)
        if v.outcome == Outcome.FAIL:
            failed.append((seed, v.reason))
    # alpha = 0.01 bounds the expected share at 1 % (3 of 300); allow for sampling noise.
    assert len(failed) <= 6, failed


def test_bad_canaries_are_caught() -> None:
    cfg = AnalysisConfig()
    caught = 0
    for seed in range(20):
        rng = np.random.default_rng(5000 + seed)
        canary = intervals(rng, 120, 10, 0.10)  # x10 errors over a 1 % base
        baseline = intervals(rng, 120, 10, 0.01)
        v = evaluate(cfg, canary, baseline, step_elapsed_s=120, step_duration_s=120)
        caught += v.outcome == Outcome.FAIL
    assert caught >= 19
