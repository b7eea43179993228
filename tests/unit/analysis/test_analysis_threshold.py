"""The threshold judge on fixed data with known answers."""

from __future__ import annotations

import pytest

from conveyor.analysis import AnalysisConfig, Interval, Outcome, parse_analysis_config, threshold_judge
from conveyor.domain.histogram import Histogram, bucket_index, bucket_value


def seconds(n: int, requests: int, errors: int, latency_s: float) -> list[Interval]:
    return [
        Interval(t=float(i), requests=requests, errors=errors, latency=Histogram({bucket_index(latency_s): requests}))
        for i in range(n)
    ]


CFG = parse_analysis_config({"min_requests": 100, "threshold": {"max_error_rate": 0.05, "max_p99": "500ms", "min_requests": 40}})


def test_waits_for_its_minimum_traffic_before_judging() -> None:
    canary = seconds(3, 10, 10, 0.01)  # 100% errors, but only 30 requests
    v = threshold_judge(CFG, canary, [], step_elapsed_s=3, step_duration_s=30)
    assert v.outcome == Outcome.CONTINUE
    assert v.numbers["canary_requests"] == 30


def test_error_rate_over_the_limit_fails_with_the_numbers() -> None:
    canary = seconds(5, 10, 2, 0.01)  # 20 % > 5 %: at least 12.7 % with 95 % confidence
    v = threshold_judge(CFG, canary, [], step_elapsed_s=5, step_duration_s=30)
    assert v.outcome == Outcome.FAIL
    assert v.numbers["canary_error_rate"] == 0.2
    assert v.numbers["canary_error_rate_lower"] == pytest.approx(0.1127, abs=0.001)
    assert "error rate 20.00% (10/50), at least 11.27% with 95% confidence, > 5.00%" in v.reason, v.reason


def test_an_error_rate_over_the_limit_by_noise_alone_does_not_fail() -> None:
    # The CI run that rolled a 6 %-failing canary back "by threshold": 3 errors in 27 requests read as
    # 11 % > 10 %. Its rate is over 10 % with far less than 95 % confidence, so the judge waits.
    cfg = parse_analysis_config({"threshold": {"max_error_rate": 0.10, "min_requests": 20}})
    canary = [Interval(t=float(i), requests=r, errors=e, latency=Histogram({bucket_index(0.001): r}))
              for i, (r, e) in enumerate([(9, 1), (9, 1), (9, 1)])]
    v = threshold_judge(cfg, canary, [], step_elapsed_s=3, step_duration_s=30)
    assert v.outcome == Outcome.CONTINUE, v.reason
    assert v.numbers["canary_error_rate"] == pytest.approx(3 / 27) and v.numbers["canary_error_rate_lower"] < 0.04
    # The same share over ten times the traffic is still not over 10 % with confidence: the true rate
    # could be 10 %. Half the requests failing is, at once.
    assert threshold_judge(cfg, canary * 10, [], step_elapsed_s=3, step_duration_s=30).outcome == Outcome.CONTINUE
    v = threshold_judge(cfg, seconds(3, 9, 5, 0.001), [], step_elapsed_s=3, step_duration_s=30)
    assert v.outcome == Outcome.FAIL, v.reason


def test_latency_over_the_limit_fails() -> None:
    canary = seconds(5, 10, 0, 0.8)
    v = threshold_judge(CFG, canary, [], step_elapsed_s=5, step_duration_s=30)
    assert v.outcome == Outcome.FAIL
    assert "p99 latency" in v.reason and "> 500 ms" in v.reason
    assert v.numbers["canary_p99_ms"] == round(bucket_value(bucket_index(0.8)) * 1000, 1)


def test_within_limits_passes_at_the_end_of_the_step() -> None:
    canary = seconds(30, 10, 0, 0.05)
    assert threshold_judge(CFG, canary, [], step_elapsed_s=10, step_duration_s=30).outcome == Outcome.CONTINUE
    v = threshold_judge(CFG, canary, [], step_elapsed_s=30, step_duration_s=30)
    assert v.outcome == Outcome.PASS
    assert v.numbers["canary_requests"] == 300


def test_too_little_traffic_at_the_end_is_inconclusive_never_a_pass() -> None:
    canary = seconds(6, 10, 0, 0.05)  # 60 requests: over threshold.min_requests, under min_requests
    v = threshold_judge(CFG, canary, [], step_elapsed_s=30, step_duration_s=30)
    assert v.outcome == Outcome.INCONCLUSIVE
    assert "at least 100" in v.reason
    v = threshold_judge(CFG, [], [], step_elapsed_s=30, step_duration_s=30)
    assert v.outcome == Outcome.INCONCLUSIVE


def test_unset_limits_are_not_checked() -> None:
    cfg = AnalysisConfig.model_validate({"min_requests": 1, "threshold": {"max_error_rate": None, "max_p99": None}})
    v = threshold_judge(cfg, seconds(10, 10, 10, 9.0), [], step_elapsed_s=10, step_duration_s=10)
    assert v.outcome == Outcome.PASS


# --- Limits near the baseline's own level (issue 10, item 11) ------------------------------------


def _aa_fail_share(config: AnalysisConfig, runs: int, base: float, seed: int) -> float:
    """Share of simulated healthy canaries the threshold judge fails at any second (300 s, 10 req/s each side)."""
    import numpy as np

    from conveyor.analysis import threshold

    rng = np.random.default_rng(seed)
    shape = (runs, 300)
    c_req, b_req = rng.poisson(10, shape), rng.poisson(10, shape)
    c_err, b_err = rng.binomial(c_req, base), rng.binomial(b_req, base)
    hist = np.zeros((*shape, 1), dtype=np.int64)  # latency is not what this test is about
    lim = threshold.limits_batch(config, c_req, c_err, hist + c_req[..., None], b_req, b_err, hist + b_req[..., None], -30)
    return float(lim.alarm.any(axis=-1).mean())


def test_a_service_whose_normal_error_rate_is_near_the_limit_is_not_rolled_back() -> None:
    # The numbers: normal error rate 5 %, default limit 10 %, 300 A/A runs.
    absolute = parse_analysis_config({"threshold": {"near_baseline": "absolute"}})
    # On point estimates an absolute limit failed several % of these healthy canaries; judged on the
    # 95 % lower bound of the canary's rate, it fails none, and the moved limits keep that margin.
    assert _aa_fail_share(absolute, 300, 0.05, 1) <= 0.01
    assert _aa_fail_share(parse_analysis_config({}), 300, 0.05, 1) <= 0.01
    assert _aa_fail_share(parse_analysis_config({"threshold": {"near_baseline": "off"}}), 300, 0.05, 1) == 0.0


def test_the_verdict_says_which_limit_applied() -> None:
    cfg = parse_analysis_config({})
    base = seconds(30, 20, 1, 0.01)  # 5 % errors: at half the 10 % limit
    v = threshold_judge(cfg, seconds(30, 20, 2, 0.01), base, step_elapsed_s=30, step_duration_s=30)
    bound = v.numbers["baseline_error_rate_bound"]
    assert 0.05 < bound < 0.07  # 30 errors of 600: the 95 % upper bound
    assert v.outcome == Outcome.PASS and "error rate limit relative to the baseline: its rate (at most " in v.reason, v.reason
    assert v.numbers["max_error_rate"] == pytest.approx(bound + 0.10) and v.numbers["error_rate_limit_relative"] == 1
    # A broken canary is still failed against the moved limit.
    v = threshold_judge(cfg, seconds(30, 20, 5, 0.01), base, step_elapsed_s=30, step_duration_s=30)
    assert v.outcome == Outcome.FAIL and "25.00% (150/600), at least 22.10% with 95% confidence, > 16." in v.reason, v.reason
    off = parse_analysis_config({"threshold": {"near_baseline": "off"}})
    v = threshold_judge(off, seconds(30, 20, 5, 0.01), base, step_elapsed_s=30, step_duration_s=30)
    assert v.outcome == Outcome.PASS and 'error rate limit 10.00% off' in v.reason and v.numbers["max_error_rate"] is None
    # A quiet baseline keeps the absolute limit, and says nothing about it.
    v = threshold_judge(cfg, seconds(30, 20, 3, 0.01), seconds(30, 20, 0, 0.01), step_elapsed_s=30, step_duration_s=30)
    assert v.outcome == Outcome.FAIL and "> 10.00%" in v.reason and "relative" not in v.reason


def test_latency_limits_follow_a_slow_baseline() -> None:
    cfg = parse_analysis_config({"threshold": {"max_p99": "500ms"}})
    v = threshold_judge(cfg, seconds(60, 20, 0, 0.6), seconds(60, 20, 0, 0.4), step_elapsed_s=60, step_duration_s=60)
    assert v.outcome == Outcome.PASS and "p99 latency limit relative to the baseline" in v.reason, v.reason
    v = threshold_judge(cfg, seconds(60, 20, 0, 0.9), seconds(60, 20, 0, 0.4), step_elapsed_s=60, step_duration_s=60)
    assert v.outcome == Outcome.FAIL, v.reason


def test_a_tail_quantile_on_too_few_requests_is_said() -> None:
    v = threshold_judge(CFG, seconds(7, 20, 0, 0.01), [], step_elapsed_s=7, step_duration_s=7)
    assert "p99 judged on 140 requests, ~1,000 are needed for a stable p99" in v.reason, v.reason
