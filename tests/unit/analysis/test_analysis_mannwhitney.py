"""The Mann-Whitney judge: Kayenta's classifier on fixed data, its special cases, the score and the judge."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from conveyor.analysis import AnalysisConfig, Interval, Outcome, mannwhitney_judge
from conveyor.analysis import mannwhitney as mw
from conveyor.domain.histogram import Histogram, bucket_index

LOW_VALUES = np.arange(1.0, 11.0)  # 1..10
HIGH_VALUES = np.arange(11.0, 21.0)  # 11..20


def classify(c: object, b: object, **kw: object) -> mw.Classified:
    opts = {"confidence": 0.98, "tolerance": 0.25, **kw}
    return mw.classify_batch(np.asarray(c, dtype=float)[None, :], np.asarray(b, dtype=float)[None, :], **opts)  # type: ignore[arg-type]


def test_a_clear_increase_is_high_with_hodges_lehmann_numbers() -> None:
    r = classify(HIGH_VALUES, LOW_VALUES, direction="either")
    assert r.classification[0] == mw.HIGH
    diffs = np.sort((HIGH_VALUES[:, None] - LOW_VALUES[None, :]).ravel())
    assert r.estimate[0] == np.median(diffs) == 10.0
    assert r.p_value[0] == pytest.approx(stats.mannwhitneyu(HIGH_VALUES, LOW_VALUES, method="asymptotic").pvalue)
    # Moses interval: order statistics k and mn+1-k, k = floor(mn/2 - z sqrt(mn(m+n+1)/12)).
    k = math.floor(50 - stats.norm.ppf(0.99) * math.sqrt(100 * 21 / 12))
    assert (r.lower[0], r.upper[0]) == (diffs[k - 1], diffs[100 - k])
    assert r.ratio[0] == pytest.approx(15.5 / 5.5)


def test_direction_decides_which_side_can_fail() -> None:
    assert classify(HIGH_VALUES, LOW_VALUES, direction="decrease").classification[0] == mw.PASS
    assert classify(LOW_VALUES, HIGH_VALUES, direction="increase").classification[0] == mw.PASS
    assert classify(LOW_VALUES, HIGH_VALUES, direction="either").classification[0] == mw.LOW
    assert classify(LOW_VALUES, HIGH_VALUES, direction="decrease").classification[0] == mw.LOW


def test_tolerance_is_a_fraction_of_the_estimate() -> None:
    # Lower confidence bound 8 (> 0.25 * 10) fails; with tolerance 0.9 the bound is 9 > 8: passes.
    assert classify(HIGH_VALUES, LOW_VALUES, tolerance=0.9).classification[0] == mw.PASS


def test_allowed_increase_is_the_effect_size_the_mean_ratio_must_exceed() -> None:
    assert classify(HIGH_VALUES, LOW_VALUES, direction="increase", allowed_increase=3.0).classification[0] == mw.PASS
    assert classify(HIGH_VALUES, LOW_VALUES, direction="increase", allowed_increase=2.5).classification[0] == mw.HIGH


def test_no_difference_passes() -> None:
    rng = np.random.default_rng(7)
    r = classify(rng.normal(10, 1, 30), rng.normal(10, 1, 30))
    assert r.classification[0] == mw.PASS and r.special[0] == 0


def test_kayenta_special_case_no_data() -> None:
    assert classify([], LOW_VALUES).classification[0] == mw.NODATA
    assert classify(LOW_VALUES, []).classification[0] == mw.NODATA


def test_kayenta_special_case_identical_data_in_any_order() -> None:
    r = classify(LOW_VALUES[::-1], LOW_VALUES)
    assert (r.classification[0], r.special[0]) == (mw.PASS, 1)


def test_kayenta_special_case_constant_series() -> None:
    r = classify([3.0] * 12, [3.0] * 10)
    assert (r.classification[0], r.special[0]) == (mw.PASS, 2)
    # Two different constants are not a special case: every difference is +1, so High.
    r = classify([4.0] * 10, [3.0] * 10)
    assert (r.classification[0], r.special[0]) == (mw.HIGH, 0)
    assert r.estimate[0] == 1.0


def test_too_few_samples_for_the_confidence_level_is_no_data() -> None:
    assert mw.min_p_value(4, 4) == pytest.approx(2 / 70)
    r = classify([10.0, 11, 12, 13], [1.0, 2, 3, 4])
    assert (r.classification[0], r.special[0]) == (mw.NODATA, 3)
    assert classify([10.0, 11, 12, 13, 14], [1.0, 2, 3, 4, 5]).classification[0] == mw.HIGH


def test_batch_rows_are_independent() -> None:
    c = np.stack([HIGH_VALUES, LOW_VALUES, LOW_VALUES])
    b = np.stack([LOW_VALUES, HIGH_VALUES, LOW_VALUES])
    r = mw.classify_batch(c, b, confidence=0.98, tolerance=0.25, direction="either")
    assert r.classification.tolist() == [mw.HIGH, mw.LOW, mw.PASS]


def test_score_is_the_share_of_passing_metrics_and_zero_on_a_critical_failure() -> None:
    assert mw.score([mw.PASS, mw.PASS, mw.HIGH], [False, False, False]) == pytest.approx(200 / 3)
    assert mw.score([mw.PASS, mw.NODATA, mw.PASS], [False, False, False]) == 100.0
    assert mw.score([mw.HIGH, mw.PASS, mw.PASS], [True, False, False]) == 0.0
    assert mw.score([mw.NODATA, mw.NODATA], [True, False]) is None


def intervals(seconds: int, rps: int, errors: int, latency_s: float, jitter: int = 0) -> list[Interval]:
    out = []
    for i in range(seconds):
        b = bucket_index(latency_s) + (i % 3 if jitter else 0)
        out.append(Interval(t=100.0 + i, requests=rps, errors=errors if i % 2 else 0, latency=Histogram({b: rps})))
    return out


CFG = AnalysisConfig.model_validate({"judges": ["mannwhitney"], "min_requests": 100})


def test_judge_waits_for_the_end_of_the_step() -> None:
    v = mannwhitney_judge(CFG, intervals(60, 10, 5, 0.05), intervals(60, 10, 0, 0.05), step_elapsed_s=59, step_duration_s=60)
    assert v.outcome == Outcome.CONTINUE


def test_judge_fails_a_critical_error_rate_regression() -> None:
    canary = intervals(60, 10, 5, 0.05, jitter=1)
    baseline = intervals(60, 10, 0, 0.05, jitter=1)
    v = mannwhitney_judge(CFG, canary, baseline, step_elapsed_s=60, step_duration_s=60)
    assert v.outcome == Outcome.FAIL
    assert v.numbers["score"] == 0.0
    assert v.numbers["error_rate_class"] == mw.HIGH
    assert "error_rate High" in v.reason and "critical" in v.reason
    # identical latencies are reported as Kayenta's special case
    assert "latency_p50 Pass (identical data)" in v.reason


def test_judge_passes_a_good_canary_and_reports_special_cases() -> None:
    v = mannwhitney_judge(CFG, intervals(60, 10, 0, 0.05), intervals(60, 10, 0, 0.05), step_elapsed_s=60, step_duration_s=60)
    assert v.outcome == Outcome.PASS
    assert v.numbers["score"] == 100.0
    assert "identical data" in v.reason


def test_judge_fails_below_the_pass_threshold_on_one_latency_metric() -> None:
    canary = intervals(60, 10, 0, 0.08, jitter=1)
    baseline = intervals(60, 10, 0, 0.05, jitter=1)
    cfg = AnalysisConfig.model_validate({"mannwhitney": {"metrics": [{"name": "error_rate"}, {"name": "latency_p50"}]}})
    v = mannwhitney_judge(cfg, canary, baseline, step_elapsed_s=60, step_duration_s=60)
    assert v.outcome == Outcome.FAIL
    assert v.numbers["score"] == 50.0
    assert "latency_p50 High" in v.reason


def test_judge_without_data_is_inconclusive() -> None:
    v = mannwhitney_judge(CFG, [], [], step_elapsed_s=60, step_duration_s=60)
    assert v.outcome == Outcome.INCONCLUSIVE
    # 30 s of 10 s samples: 3 per side, too few for 98 % confidence.
    v = mannwhitney_judge(CFG, intervals(30, 10, 5, 0.05, 1), intervals(30, 10, 0, 0.05, 1), step_elapsed_s=30, step_duration_s=30)
    assert v.outcome == Outcome.INCONCLUSIVE
    assert "critical metric error_rate could not be compared" in v.reason
    assert "error_rate Nodata (too few samples for the confidence level)" in v.reason


def test_judge_with_a_good_score_but_little_traffic_is_inconclusive() -> None:
    cfg = AnalysisConfig.model_validate({"judges": ["mannwhitney"], "min_requests": 10_000})
    v = mannwhitney_judge(cfg, intervals(60, 10, 0, 0.05), intervals(60, 10, 0, 0.05), step_elapsed_s=60, step_duration_s=60)
    assert v.outcome == Outcome.INCONCLUSIVE


def test_early_fail_judges_mid_step_below_the_marginal_score() -> None:
    cfg = AnalysisConfig.model_validate({"mannwhitney": {"early_fail": True}})
    canary = intervals(60, 10, 5, 0.05, jitter=1)
    baseline = intervals(60, 10, 0, 0.05, jitter=1)
    v = mannwhitney_judge(cfg, canary, baseline, step_elapsed_s=60, step_duration_s=300)
    assert v.outcome == Outcome.FAIL and "marginal threshold" in v.reason
    good = mannwhitney_judge(cfg, baseline, baseline, step_elapsed_s=60, step_duration_s=300)
    assert good.outcome == Outcome.CONTINUE


def test_missing_seconds_do_not_shift_the_samples() -> None:
    canary = [i for i in intervals(60, 10, 0, 0.05) if i.t != 105.0]
    v = mannwhitney_judge(CFG, canary, intervals(60, 10, 0, 0.05), step_elapsed_s=60, step_duration_s=60)
    assert v.numbers["error_rate_samples"] == 6


def test_a_long_step_with_more_than_515_samples_a_side_is_judged() -> None:
    # One-second samples over 10 minutes: 600 a side. This used to raise OverflowError in min_p_value.
    cfg = AnalysisConfig.model_validate({"judges": ["mannwhitney"], "mannwhitney": {"sample_period_s": 1}})
    v = mannwhitney_judge(cfg, intervals(600, 10, 0, 0.05, jitter=1), intervals(600, 10, 0, 0.05, jitter=1),
                          step_elapsed_s=600, step_duration_s=600)
    assert v.outcome == Outcome.PASS and v.numbers["latency_p50_samples"] == 600, v.reason
    v = mannwhitney_judge(cfg, intervals(600, 10, 0, 0.06, jitter=1), intervals(600, 10, 0, 0.05, jitter=1),
                          step_elapsed_s=600, step_duration_s=600)
    assert v.outcome == Outcome.FAIL and "latency_p50 High" in v.reason, v.reason


def test_critical_effect_thresholds_from_the_manifest() -> None:
    # p50 x1.6 slower: High. Critical only beyond critical_increase (Kayenta's effectSize.criticalIncrease).
    canary = intervals(60, 10, 0, 0.08, jitter=1)
    baseline = intervals(60, 10, 0, 0.05, jitter=1)

    def run(critical_increase: float) -> object:
        cfg = AnalysisConfig.model_validate({"judges": ["mannwhitney"], "mannwhitney": {"metrics": [
            {"name": "error_rate"}, {"name": "latency_p50", "critical": True, "critical_increase": critical_increase},
            {"name": "latency_p99"}, {"name": "latency_mean"},
        ]}})
        return mannwhitney_judge(cfg, canary, baseline, step_elapsed_s=60, step_duration_s=60)

    critical = run(1.5)
    assert critical.numbers["score"] == 0.0 and "latency_p50 High" in critical.reason and "critical" in critical.reason
    mild = run(2.0)
    assert mild.numbers["score"] > 0.0 and "critical" not in mild.reason, mild.reason
