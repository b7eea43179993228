"""The threshold judge on fixed data with known answers."""

from __future__ import annotations

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
    canary = seconds(5, 10, 1, 0.01)  # 10% > 5%
    v = threshold_judge(CFG, canary, [], step_elapsed_s=5, step_duration_s=30)
    assert v.outcome == Outcome.FAIL
    assert v.numbers["canary_error_rate"] == 0.1
    assert "error rate 10.00% (5/50) > 5.00%" in v.reason


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
