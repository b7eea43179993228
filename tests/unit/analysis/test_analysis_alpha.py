"""Tests that pin the false-rollback budget (alpha) of the sequential and history judges.

Why these exist: an alarm level ten times too low (``e >= 40`` instead of 400) or
the bake's level at ``log(0.2 / alpha)`` instead of ``log(2 / alpha)`` used to pass
every test, because the other tests only check that bad canaries fail and that
good ones *mostly* pass. Here:

* the evidence is built second by second so that it sits just below the alarm
  level (a little more than a tenth of it), then just above: the judge must say
  ``continue``, then ``fail``. The e-values and the levels are computed here from
  their definitions, not by the judge's code;
* an A/A simulation at alpha = 0.1, on the worst case the null allows (the canary
  exactly at the tolerated error ratio), with enough runs that a doubling of the
  false-alarm rate leaves the band the judge's calibration sits in.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import beta

from conveyor.analysis import Interval, Outcome, parse_analysis_config
from conveyor.analysis import history, sequential
from conveyor.domain.histogram import Histogram

ALPHA = 0.01
T0 = 5_000.0


def _seconds(n: int, requests: int, errors: int) -> list[Interval]:
    return [Interval(T0 + s, requests, errors, Histogram({-70: requests})) for s in range(n)]


def _mixture(log_lr_per_second: np.ndarray, k: int) -> float:
    """E after k seconds: the mean over the alternatives of the product of per-second likelihood ratios."""
    return float(np.mean(np.exp(k * log_lr_per_second)))


def test_sequential_continues_just_below_the_alarm_level_and_fails_just_above() -> None:
    cfg = parse_analysis_config({"alpha": ALPHA})  # errors + p50 + p99: the error test has alpha / 2
    level = 1.0 / (ALPHA / 2)  # 200
    # Each second: canary 100 requests with 1 error, baseline 100 requests with none.
    r0 = 1.0 + cfg.sequential.error_tolerance
    r = r0 * sequential.GRID
    theta_r, theta_0 = r * 100 / (r * 100 + 100), r0 * 100 / (r0 * 100 + 100)
    log_lr = np.log(theta_r / theta_0)  # x = 1 canary event, y = 0 baseline events
    k = next(k for k in range(1, 200) if _mixture(log_lr, k) >= level)
    below, above = _mixture(log_lr, k - 1), _mixture(log_lr, k)
    assert level / 10 < below < level <= above  # "just below": a level ten times lower would already fail

    v = sequential.judge(cfg, _seconds(k - 1, 100, 1), _seconds(k - 1, 100, 0), step_elapsed_s=k - 1, step_duration_s=600)
    assert v.outcome == Outcome.CONTINUE, v.reason
    assert math.isclose(v.numbers["error_e_value"], below, rel_tol=1e-3)
    assert v.numbers["error_e_value_level"] == level
    v = sequential.judge(cfg, _seconds(k, 100, 1), _seconds(k, 100, 0), step_elapsed_s=k, step_duration_s=600)
    assert v.outcome == Outcome.FAIL and "error rate" in v.reason, v.reason
    assert v.numbers["detected_after_s"] == k


def test_sequential_latency_test_is_held_to_its_own_share() -> None:
    # Latency tests share the other half of alpha: two quantiles -> each needs 1 / (alpha / 4) = 400.
    cfg = parse_analysis_config({"alpha": ALPHA})
    assert sequential.judge(cfg, _seconds(5, 10, 0), _seconds(5, 10, 0), step_elapsed_s=5, step_duration_s=60).numbers[
        "latency_e_value_level"
    ] == 1.0 / (ALPHA / 4)
    only_errors = parse_analysis_config({"alpha": ALPHA, "sequential": {"latency_quantiles": []}})
    v = sequential.judge(only_errors, _seconds(5, 10, 0), _seconds(5, 10, 0), step_elapsed_s=5, step_duration_s=60)
    assert v.numbers["error_e_value_level"] == 1.0 / ALPHA


def test_history_continues_just_below_the_alarm_level_and_fails_just_above() -> None:
    cfg = parse_analysis_config({"alpha": ALPHA})
    ref_requests, ref_errors = 20_000, 200  # the previous release: 1 %
    level = 2.0 / ALPHA  # half of alpha for the e-process, half for the reference's bound
    p_ref = float(beta.ppf(1.0 - ALPHA / 2, ref_errors + 1, ref_requests - ref_errors))
    p0 = p_ref * (1.0 + cfg.sequential.error_tolerance)
    p1 = np.minimum(p0 * sequential.GRID, 1.0 - 1e-9)
    log_lr = np.log(p1 / p0) + 29 * (np.log1p(-p1) - math.log1p(-p0))  # 1 error in 30 requests a second
    k = next(k for k in range(1, 500) if _mixture(log_lr, k) >= level)
    below = _mixture(log_lr, k - 1)
    assert level / 10 < below < level  # log(0.2 / alpha) would already fail here

    reference = [Interval(T0 - 100.0, ref_requests, ref_errors)]
    bake = [Interval(T0 + s, 30, 1) for s in range(k)]
    v = history.judge(cfg, bake[:-1], reference, step_elapsed_s=k - 1, step_duration_s=900)
    assert v.outcome == Outcome.CONTINUE, v.reason
    assert math.isclose(v.numbers["log_level"], math.log(level), abs_tol=1e-3)
    v = history.judge(cfg, bake, reference, step_elapsed_s=k, step_duration_s=900)
    assert v.outcome == Outcome.FAIL, v.reason


def test_a_a_at_alpha_0_1_stays_in_its_calibrated_band() -> None:
    """3,000 simulated canaries of 300 s at 100 req/s a side, the canary's error rate exactly at the
    tolerated 1.1 x the baseline's 2 % (the null's worst case), read every second.

    Ville's inequality bounds the error test's false alarms by its share, alpha / 2 = 5 %; the
    mixture is conservative and sits near 2 % here (0.0197 with this seed). The band [0.8 %, 3.2 %]
    is about five standard errors either side; doubling the false-alarm rate (the error test given
    all of alpha, or its level halved) moves it to ~4.5 %, and a level ten times too low to ~22 %.
    Effect floors are set to zero: this pins the statistics, the floors only ever remove alarms.
    """
    zero = {"relative": 0, "absolute": 0}
    cfg = parse_analysis_config(
        {"alpha": 0.1, "effects": {"error_rate": zero, "latency_p50": zero, "latency_p99": zero}}
    )
    rng = np.random.default_rng(2)
    runs, seconds = 3000, 300
    a, b = rng.poisson(100, (runs, seconds)), rng.poisson(100, (runs, seconds))
    x, y = rng.binomial(a, 0.02 * 1.1), rng.binomial(b, 0.02)
    one_bucket = np.zeros((runs, seconds, 1), dtype=np.int64)
    tests = sequential.sequential_tests(cfg, a, x, one_bucket + a[..., None], b, y, one_bucket + b[..., None], 0)
    rate = float((sequential.first_alarm(tests) >= 0).mean())
    assert 0.008 <= rate <= 0.032, rate
    assert rate <= cfg.alpha / 2  # and, of course, within the guarantee
