"""The threshold judge: absolute limits on the canary alone.

Why it exists beside the comparative judges: a release can be bad in a way
the baseline shares (both slow because a dependency is slow), or the operator
simply has a service-level objective. Why it waits for ``min_requests``: an
error rate over the first ten requests is noise, and a limit checked every
second on noise would roll good releases back. The limits apply to the
canary's totals over the step so far, so each new second only sharpens them.
The error-rate limit is judged on a confidence bound, not the point estimate:
the canary fails only when its rate is over the limit with
:data:`OVER_CONFIDENCE` confidence (the one-sided Clopper-Pearson lower bound
exceeds the limit). On the point estimate, 3 errors in 27 requests of a canary
whose true rate is 6 % read as "11 % > 10 %", a verdict naming a limit the
release is not over (one run in five at that size). Latency quantiles are
point estimates: set those limits well above the service's normal level; the
sequential judge handles subtle differences with a bounded false-alarm rate. When the baseline's own value is
near a limit, the limit follows the baseline or is dropped
(:func:`effective_limits`), and the verdict says which.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import beta

from conveyor.analysis.model import AnalysisConfig, Interval, Outcome, Verdict, no_regression
from conveyor.analysis.sequential import requests_to_judge
from conveyor.analysis.series import align, column_value, fmt_ms, ms, pct, quantile_column

NAME = "threshold"


_KEYS = ("error_rate", "p50", "p95", "p99")
_Q = {"p50": 0.5, "p95": 0.95, "p99": 0.99}


@dataclass(frozen=True)
class Limits:
    """The limits over a batch of rollouts after each second, and what the canary showed.

    Arrays have shape (..., T): the canary's value so far per key (``canary``),
    the limit applied (``limit``, NaN when off or unset), and ``mode`` per key:
    0 absolute, 1 relative to the baseline, 2 off, -1 unset.
    """

    canary: dict[str, np.ndarray]
    baseline: dict[str, np.ndarray]
    limit: dict[str, np.ndarray]
    mode: dict[str, np.ndarray]
    canary_requests: np.ndarray
    alarm: np.ndarray  # (..., T): some limit exceeded over at least min_requests canary requests


ABSOLUTE, RELATIVE, OFF, UNSET = 0, 1, 2, -1
#: Confidence of the upper bound on the baseline's error rate used to decide "near the limit".
NEAR_CONFIDENCE = 0.95
#: Confidence that the canary's error rate is over its limit before the judge fails it.
OVER_CONFIDENCE = 0.95


def error_rate_lower_bound(requests: np.ndarray, errors: np.ndarray) -> np.ndarray:
    """The one-sided Clopper-Pearson lower bound at :data:`OVER_CONFIDENCE` of errors/requests (0 with no errors)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        lower = np.where(errors > 0, beta.ppf(1.0 - OVER_CONFIDENCE, np.maximum(errors, 1),
                                                 np.maximum(requests - errors + 1, 1)), 0.0)
    return np.where(requests > 0, lower, np.nan)


def limits_batch(
    config: AnalysisConfig,
    canary_requests: np.ndarray,
    canary_errors: np.ndarray,
    canary_hist: np.ndarray,
    baseline_requests: np.ndarray,
    baseline_errors: np.ndarray,
    baseline_hist: np.ndarray,
    offset: int,
) -> Limits:
    """The judge's arithmetic on per-second arrays (..., T) and dense histograms (..., T, B).

    Why the limits move: an absolute limit sits near the normal level of some
    services (10 % errors for a service that normally fails 5 % of requests), and
    then ordinary noise crosses it: 6.7 % of healthy canaries of such a service
    were rolled back. When the baseline itself is at ``near_fraction`` of a limit
    or above (for errors: the 95 % upper confidence bound of the baseline's rate,
    so a few quiet seconds do not count as "far"), ``near_baseline = "relative"``
    moves the limit with the baseline (errors: that bound + limit; latency: at
    least twice the baseline's quantile) and
    ``"off"`` drops it; the comparative judges still apply.
    """
    th = config.threshold
    cr = np.cumsum(canary_requests, axis=-1)
    br = np.cumsum(baseline_requests, axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        c_vals = {"error_rate": np.where(cr > 0, np.cumsum(canary_errors, axis=-1) / np.maximum(cr, 1), np.nan)}
        b_vals = {"error_rate": np.where(br > 0, np.cumsum(baseline_errors, axis=-1) / np.maximum(br, 1), np.nan)}
    c_cum = np.cumsum(canary_hist, axis=-2)
    b_cum = np.cumsum(baseline_hist, axis=-2)
    for key, q in _Q.items():
        c_vals[key] = column_value(quantile_column(c_cum, q), offset)
        b_vals[key] = column_value(quantile_column(b_cum, q), offset)
    # The baseline's error rate as an upper confidence bound (95 %, Clopper-Pearson): judging "near the
    # limit" on the point estimate would flip on noise in the first seconds, exactly when a limit on
    # the canary's own few requests is noisiest. Latency quantiles are taken as measured.
    be = np.cumsum(baseline_errors, axis=-1)
    c_vals["error_rate_lower"] = error_rate_lower_bound(cr, np.cumsum(canary_errors, axis=-1))
    with np.errstate(divide="ignore", invalid="ignore"):
        b_upper = np.where(br > be, beta.ppf(NEAR_CONFIDENCE, be + 1, np.maximum(br - be, 1)), 1.0)
    b_upper = np.where(br > 0, b_upper, np.nan)
    b_vals["error_rate_bound"] = b_upper
    limit: dict[str, np.ndarray] = {}
    mode: dict[str, np.ndarray] = {}
    alarm = np.zeros(cr.shape, dtype=bool)
    for key in _KEYS:
        written = th.max_error_rate if key == "error_rate" else getattr(th, f"max_{key}")
        if written is None:
            limit[key] = np.full(cr.shape, np.nan)
            mode[key] = np.full(cr.shape, UNSET)
            continue
        b = b_upper if key == "error_rate" else b_vals[key]
        with np.errstate(invalid="ignore"):
            near = np.isfinite(b) & (b >= th.near_fraction * written)
        if th.near_baseline == "absolute":
            near = np.zeros_like(near)
        moved = np.minimum(1.0, b + written) if key == "error_rate" else np.maximum(written, 2.0 * b)
        if th.near_baseline == "off":
            moved = np.full(cr.shape, np.nan)
        limit[key] = np.where(near, moved, written)
        mode[key] = np.where(near, RELATIVE if th.near_baseline == "relative" else OFF, ABSOLUTE)
        # The error rate must be over its limit with OVER_CONFIDENCE confidence, not by a noisy point estimate.
        judged = c_vals["error_rate_lower"] if key == "error_rate" else c_vals[key]
        with np.errstate(invalid="ignore"):
            alarm |= (cr >= th.min_requests) & (judged > limit[key])
    return Limits(c_vals, b_vals, limit, mode, cr, alarm)


def judge(
    config: AnalysisConfig,
    canary: Sequence[Interval],
    baseline: Sequence[Interval],
    *,
    step_elapsed_s: float,
    step_duration_s: float,
) -> Verdict:
    """Fail when a limit is exceeded over at least ``threshold.min_requests`` canary requests.

    The limits apply to the canary's totals over the window so far: the last
    second of :func:`limits_batch` on the window.
    """
    th = config.threshold
    al = align(canary, baseline)
    requests = int(al.canary_requests.sum())
    errors = int(al.canary_errors.sum())
    if al.length:
        lim = limits_batch(config, al.canary_requests, al.canary_errors, al.canary_hist,
                           al.baseline_requests, al.baseline_errors, al.baseline_hist, al.offset)
        last = {k: _num(v[-1]) for k, v in lim.canary.items()}
        limits = {k: _num(v[-1]) for k, v in lim.limit.items()}
        modes = {k: int(v[-1]) for k, v in lim.mode.items()}
        b_last = {k: _num(v[-1]) for k, v in lim.baseline.items()}
        failing = bool(lim.alarm[-1])
    else:
        last = dict.fromkeys((*_KEYS, "error_rate_lower"))
        b_last = dict.fromkeys((*_KEYS, "error_rate_bound"))
        limits = {k: (th.max_error_rate if k == "error_rate" else getattr(th, f"max_{k}")) for k in _KEYS}
        modes = {k: (UNSET if limits[k] is None else ABSOLUTE) for k in _KEYS}
        failing = False
    rate = last["error_rate"]
    numbers: dict[str, float | int | None] = {
        "canary_requests": requests,
        "canary_errors": errors,
        "canary_error_rate": rate,
        "canary_error_rate_lower": last["error_rate_lower"],
        "baseline_error_rate": b_last["error_rate"],
        "baseline_error_rate_bound": b_last["error_rate_bound"],
        **{f"canary_{n}_ms": ms(last[n]) for n in _Q},
        "max_error_rate": limits["error_rate"],
        **{f"max_{n}_ms": ms(limits[n]) for n in _Q},
        **{f"{k}_limit_relative": int(m == RELATIVE) for k, m in modes.items() if m != UNSET},
        **{f"{k}_limit_off": int(m == OFF) for k, m in modes.items() if m != UNSET},
        "min_requests": th.min_requests,
    }
    notes = [_mode_note(k, m, config, b_last["error_rate_bound" if k == "error_rate" else k])
             for k, m in modes.items() if m in (RELATIVE, OFF)]
    for n in ("p95", "p99"):
        need = requests_to_judge(_Q[n])
        if modes[n] in (ABSOLUTE, RELATIVE) and requests < need:
            notes.append(f"{n} judged on {requests:,} requests, ~{need:,} are needed for a stable {n}")
    note = f" ({'; '.join(notes)})" if notes else ""
    if failing:
        broken: list[str] = []
        lower = last["error_rate_lower"]
        if limits["error_rate"] is not None and lower is not None and lower > limits["error_rate"]:
            broken.append(f"error rate {pct(rate)} ({errors}/{requests}), at least {pct(lower)} with "
                          f"{OVER_CONFIDENCE:.0%} confidence, > {pct(limits['error_rate'])}")
        for n in _Q:
            v, cap = last[n], limits[n]
            if cap is not None and v is not None and v > cap:
                broken.append(f"{n} latency {fmt_ms(v)} > {fmt_ms(cap)}")
        return Verdict(
            judge=NAME,
            outcome=Outcome.FAIL,
            reason=f"Canary over its limits after {requests} requests: {'; '.join(broken)}{note}.",
            numbers=numbers,
        )
    summary = f"error rate {pct(rate)}, p50 {fmt_ms(last['p50'])}, p99 {fmt_ms(last['p99'])}{note}"
    needed = max(th.min_requests, config.min_requests)
    return no_regression(
        NAME, numbers, over=step_elapsed_s >= step_duration_s, enough=requests >= needed,
        going=f"Within limits so far ({requests} canary requests, {summary}).",
        short=f"Not enough traffic to check the limits: {requests} canary requests in "
        f"{round(step_elapsed_s, 1):g} s, at least {needed} are required.",
        passed=f"Canary within its limits over {requests} requests: {summary}.",
    )


def _num(v: float | np.floating) -> float | None:
    f = float(v)
    return f if math.isfinite(f) else None


def _mode_note(key: str, mode: int, config: AnalysisConfig, baseline_value: float | None) -> str:
    th = config.threshold
    written = th.max_error_rate if key == "error_rate" else getattr(th, f"max_{key}")
    shown = pct(written) if key == "error_rate" else fmt_ms(written)
    label = "error rate" if key == "error_rate" else f"{key} latency"
    if mode == OFF:
        return f"{label} limit {shown} off: the baseline's own {pct(baseline_value) if key == 'error_rate' else fmt_ms(baseline_value)} is near it (near_baseline = \"off\")"
    if key == "error_rate":
        return (f"{label} limit relative to the baseline: its rate (at most {pct(baseline_value)}, 95 % bound) + {shown}, "
                "as it is near the absolute limit")
    return f"{label} limit relative to the baseline: twice its {fmt_ms(baseline_value)}, as it is near the absolute {shown}"
