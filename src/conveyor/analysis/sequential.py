"""The sequential judge: anytime-valid tests, safe to evaluate after every new second.

Why: a fixed-sample test (Mann-Whitney, a t-test) promises its false-alarm
rate only if it is looked at once. Re-running it every second, as a rollout
controller wants to, multiplies the chances of a false rollback. An
*e-process* is a running product of likelihood ratios that is a nonnegative
supermartingale under the null hypothesis; Ville's inequality then bounds the
probability that it *ever* reaches ``1/alpha`` by ``alpha``. So we may stop
the moment the evidence crosses the line, and a good canary is failed with
probability at most ``alpha`` however long and however often we look.

The test, for errors: in second ``t`` the canary served ``a`` requests with
``x`` errors and the baseline ``b`` requests with ``y`` errors. Conditional on
the second's total ``x + y``, with error rates ``p_c = r * p_b`` (Poisson
approximation), ``x`` is Binomial(``x + y``, ``r a / (r a + b)``). The null
hypothesis is "``r <= r0``" with ``r0 = 1 + error_tolerance``; the alternative
is a log-uniform mixture over a grid of ratios above ``r0``. Conditioning on
each second's totals makes the test immune to load swings and incidents that
hit canary and baseline alike, and needs no estimate of the baseline's rate.
The likelihood ratio is increasing in ``x`` and the exact conditional law of
binomial counts (a hypergeometric) is dominated by the binomial in convex
order, so the product stays a supermartingale under the null with exact
binomial errors too (up to the risk-ratio vs odds-ratio difference, negligible
at error rates of a few percent).

For latency at quantile ``q``: a threshold ``tau`` is the baseline's
``q``-quantile bucket *from the seconds before* ``t`` (so it is fixed before
second ``t`` is seen, which keeps the test valid); each second then gives the
count of canary requests slower than ``tau * (1 + latency_tolerance)`` and of
baseline requests slower than ``tau``, tested exactly like errors with
``r0 = 1``. The null "the canary is at most ``latency_tolerance`` slower"
(``P(L_c > s) <= P(L_b > s / (1 + tol))``) makes the two counts' rates obey
``r <= 1``. Early on, when the baseline has too few requests to place its
p99, ``tau`` sits at a lower quantile (still a valid, fixed-in-advance choice).

Several tests share ``alpha`` (Bonferroni): the error test gets half of it
(it is the one a broken release trips first) and the latency tests share the
other half; without latency tests the error test gets all of it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp

from conveyor.analysis.model import AnalysisConfig, Interval, Outcome, Verdict
from conveyor.analysis.series import Aligned, align, column_value, fmt_ms, ms, pct, quantile_column
from conveyor.domain.histogram import GAMMA

NAME = "sequential"
#: Baseline requests expected beyond the latency threshold before it is used.
MIN_TAIL = 5
#: Alternatives: ratios from 1.2 to 40 times the null ratio, log-uniform. Few points
#: keep the price of the mixture low (log 12 nats); their spacing (x1.37) is
#: finer than what a few dozen events can resolve, so little power is lost.
GRID = np.exp(np.linspace(math.log(1.2), math.log(40.0), 12))


def log_e_process(x: np.ndarray, y: np.ndarray, a: np.ndarray, b: np.ndarray, r0: float) -> np.ndarray:
    """Log of the mixture e-process after each step, along the last axis.

    ``x``/``y``: canary/baseline event counts per step; ``a``/``b``: their
    exposures (requests). Shapes (..., T); returns (..., T). Causal: the value at
    ``t`` depends only on steps ``<= t``.
    """
    x, y, a, b = (np.asarray(v, dtype=float) for v in (x, y, a, b))
    r = r0 * GRID
    with np.errstate(divide="ignore", invalid="ignore"):
        log_null = np.log(r0 * a + b)[..., None]
        log_alt = np.log(r * a[..., None] + b[..., None])
        step = x[..., None] * np.log(r / r0) + (x + y)[..., None] * (log_null - log_alt)
    step = np.where((a + b > 0)[..., None], step, 0.0)
    cum = np.cumsum(step, axis=-2)
    return logsumexp(cum, axis=-1) - math.log(r.size)  # type: ignore[no-any-return]


def error_evidence(
    canary_requests: np.ndarray,
    canary_errors: np.ndarray,
    baseline_requests: np.ndarray,
    baseline_errors: np.ndarray,
    tolerance: float,
) -> np.ndarray:
    """Log e-process for "canary error rate > (1 + tolerance) x baseline's", shape (..., T)."""
    return log_e_process(canary_errors, baseline_errors, canary_requests, baseline_requests, 1.0 + tolerance)


def tolerance_buckets(tolerance: float) -> int:
    """Latency tolerance in whole histogram buckets (each a factor GAMMA), rounded to nearest."""
    return max(0, round(math.log1p(tolerance) / math.log(GAMMA)))


@dataclass(frozen=True)
class LatencyCounts:
    """Per-step exceedance counts for one quantile, shape (..., T) each."""

    canary_slow: np.ndarray
    baseline_slow: np.ndarray
    canary_total: np.ndarray
    baseline_total: np.ndarray
    threshold_col: np.ndarray  # baseline threshold column used at each step (-1: none yet)


def latency_counts(canary_hist: np.ndarray, baseline_hist: np.ndarray, q: float, shift: int) -> LatencyCounts:
    """Exceedance counts for the latency test at quantile ``q`` from dense (..., T, B) histograms."""
    ch = np.asarray(canary_hist)
    bh = np.asarray(baseline_hist)
    width = ch.shape[-1]
    before = np.cumsum(bh, axis=-2) - bh  # baseline counts strictly before each step
    n_before = before.sum(axis=-1)
    q_eff = np.minimum(q, 1.0 - MIN_TAIL / np.maximum(n_before, 1))
    usable = (n_before >= 2 * MIN_TAIL) & (q_eff > 0)
    col = np.where(usable, quantile_column(before, np.clip(q_eff, 0.0, 1.0)), -1)

    def above(hist: np.ndarray, c: np.ndarray) -> np.ndarray:
        cum = np.cumsum(hist, axis=-1)
        total = cum[..., -1]
        idx = np.clip(c, 0, width - 1)[..., None]
        at_or_below = np.take_along_axis(cum, idx, axis=-1)[..., 0]
        return np.where(c >= width - 1, 0, total - at_or_below)  # type: ignore[no-any-return]

    c_tot = ch.sum(axis=-1)
    b_tot = bh.sum(axis=-1)
    zero = np.zeros_like(c_tot)
    return LatencyCounts(
        canary_slow=np.where(usable, above(ch, col + shift), zero),
        baseline_slow=np.where(usable, above(bh, col), zero),
        canary_total=np.where(usable, c_tot, zero),
        baseline_total=np.where(usable, b_tot, zero),
        threshold_col=col,
    )


def latency_evidence(counts: LatencyCounts) -> np.ndarray:
    """Log e-process for "canary slower than the tolerance allows at this quantile", shape (..., T)."""
    return log_e_process(counts.canary_slow, counts.baseline_slow, counts.canary_total, counts.baseline_total, 1.0)


def tests_count(config: AnalysisConfig) -> int:
    s = config.sequential
    return int(s.errors) + len(s.latency_quantiles)


def alpha_shares(config: AnalysisConfig) -> tuple[float, float]:
    """The false-alarm budget of the error test and of each latency test (they sum to alpha)."""
    s = config.sequential
    k = len(s.latency_quantiles)
    if not s.errors:
        return 0.0, config.alpha / max(k, 1)
    if not k:
        return config.alpha, 0.0
    return config.alpha / 2.0, config.alpha / (2.0 * k)


def log_levels(config: AnalysisConfig) -> tuple[float, float]:
    """The log e-values the error test and each latency test must reach: ``log(1 / share)``."""
    e, lat = alpha_shares(config)
    return (math.log(1.0 / e) if e else math.inf), (math.log(1.0 / lat) if lat else math.inf)


def _qname(q: float) -> str:
    return f"p{q * 100:g}".replace(".", "_")


def judge(
    config: AnalysisConfig,
    canary: Sequence[Interval],
    baseline: Sequence[Interval],
    *,
    step_elapsed_s: float,
    step_duration_s: float,
) -> Verdict:
    """Fail as soon as any test's evidence crosses the level; pass at the step's end otherwise."""
    s = config.sequential
    al: Aligned = align(canary, baseline)
    err_level, lat_level = log_levels(config)
    m = tests_count(config)
    n_c = int(al.canary_requests.sum())
    n_b = int(al.baseline_requests.sum())
    rate_c = float(al.canary_errors.sum() / n_c) if n_c else None
    rate_b = float(al.baseline_errors.sum() / n_b) if n_b else None
    numbers: dict[str, float | int | None] = {
        "alpha": config.alpha,
        "tests": m,
        "error_e_value_level": round(math.exp(err_level), 3) if math.isfinite(err_level) else None,
        "latency_e_value_level": round(math.exp(lat_level), 3) if math.isfinite(lat_level) else None,
        "canary_requests": n_c,
        "baseline_requests": n_b,
        "canary_error_rate": rate_c,
        "baseline_error_rate": rate_b,
    }
    # (index of the first crossing, what crossed, the sentence that says why)
    crossings: list[tuple[int, str, str]] = []
    largest = -math.inf

    def first_cross(path: np.ndarray, level: float) -> int | None:
        hits = np.flatnonzero(path >= level)
        return int(hits[0]) if hits.size else None

    if s.errors and al.length:
        path = error_evidence(al.canary_requests, al.canary_errors, al.baseline_requests, al.baseline_errors, s.error_tolerance)
        peak = float(path.max())
        largest = max(largest, peak)
        numbers["error_e_value"] = _e(peak)
        k = first_cross(path, err_level)
        if k is not None:
            c_r, c_e = int(al.canary_requests[: k + 1].sum()), int(al.canary_errors[: k + 1].sum())
            b_r, b_e = int(al.baseline_requests[: k + 1].sum()), int(al.baseline_errors[: k + 1].sum())
            crossings.append(
                (
                    k,
                    "error rate",
                    f"canary error rate {pct(c_e / c_r if c_r else None)} ({c_e}/{c_r}) vs baseline "
                    f"{pct(b_e / b_r if b_r else None)} ({b_e}/{b_r}) exceeds the allowed "
                    f"x{1 + s.error_tolerance:g} with e-value {_e(float(path[k])):g} >= {math.exp(err_level):g}",
                )
            )

    shift = tolerance_buckets(s.latency_tolerance)
    c_all = al.canary_hist.sum(axis=0)
    b_all = al.baseline_hist.sum(axis=0)
    for q in s.latency_quantiles:
        name = _qname(q)
        c_q = float(column_value(quantile_column(c_all, q), al.offset)) if al.length else math.nan
        b_q = float(column_value(quantile_column(b_all, q), al.offset)) if al.length else math.nan
        numbers[f"canary_{name}_ms"] = ms(c_q)
        numbers[f"baseline_{name}_ms"] = ms(b_q)
        if not al.length:
            continue
        counts = latency_counts(al.canary_hist, al.baseline_hist, q, shift)
        path = latency_evidence(counts)
        peak = float(path.max())
        largest = max(largest, peak)
        numbers[f"{name}_e_value"] = _e(peak)
        k = first_cross(path, lat_level)
        if k is not None:
            tau = float(column_value(counts.threshold_col[k], al.offset))
            cs, ct = int(counts.canary_slow[: k + 1].sum()), int(counts.canary_total[: k + 1].sum())
            bs, bt = int(counts.baseline_slow[: k + 1].sum()), int(counts.baseline_total[: k + 1].sum())
            crossings.append(
                (
                    k,
                    f"{name} latency",
                    f"{pct(cs / ct if ct else None)} of canary requests were slower than "
                    f"{fmt_ms(tau * GAMMA**shift)} vs {pct(bs / bt if bt else None)} of baseline requests slower "
                    f"than the baseline {name} {fmt_ms(tau)} (canary {name} {fmt_ms(c_q)} vs {fmt_ms(b_q)}), "
                    f"e-value {_e(float(path[k])):g} >= {math.exp(lat_level):g}",
                )
            )

    numbers["largest_e_value"] = _e(largest) if math.isfinite(largest) else None
    if crossings:
        crossings.sort(key=lambda c: c[0])
        k, what, text = crossings[0]
        at = float(al.t[k] - al.t[0] + 1.0)
        numbers["detected_after_s"] = at
        numbers["detected_after_canary_requests"] = int(al.canary_requests[: k + 1].sum())
        others = [c[1] for c in crossings[1:]]
        more = f" (also {', '.join(others)})" if others else ""
        return Verdict(
            judge=NAME,
            outcome=Outcome.FAIL,
            reason=f"Regression in {what} after {at:g} s and "
            f"{numbers['detected_after_canary_requests']} canary requests: {text}{more}.",
            numbers=numbers,
        )
    biggest = numbers["largest_e_value"]
    summary = (
        f"error rate {pct(rate_c)} vs {pct(rate_b)}"
        + "".join(
            f", {_qname(q)} {fmt_ms(_s(numbers[f'canary_{_qname(q)}_ms']))} vs "
            f"{fmt_ms(_s(numbers[f'baseline_{_qname(q)}_ms']))}"
            for q in s.latency_quantiles
        )
        + f"; largest e-value {biggest if biggest is not None else 'n/a'}"
        + f" (a regression needs {numbers['error_e_value_level'] or numbers['latency_e_value_level']})"
    )
    if step_elapsed_s < step_duration_s:
        return Verdict(
            judge=NAME,
            outcome=Outcome.CONTINUE,
            reason=f"No evidence of regression yet after {round(step_elapsed_s, 1):g} of {step_duration_s:g} s: {summary}.",
            numbers=numbers,
        )
    if n_c < config.min_requests or n_b < config.min_requests:
        return Verdict(
            judge=NAME,
            outcome=Outcome.INCONCLUSIVE,
            reason=f"Not enough traffic to judge: {n_c} canary and {n_b} baseline requests in "
            f"{round(step_elapsed_s, 1):g} s, at least {config.min_requests} each are required.",
            numbers=numbers,
        )
    return Verdict(
        judge=NAME,
        outcome=Outcome.PASS,
        reason=f"No evidence of regression after {round(step_elapsed_s, 1):g} s and {n_c} canary requests: {summary}.",
        numbers=numbers,
    )


def _e(log_value: float) -> float:
    """An e-value for display: exp of the log, 4 significant digits, capped to stay finite."""
    v = math.exp(min(log_value, 700.0))
    return float(f"{v:.4g}")


def _s(milliseconds: float | int | None) -> float | None:
    return None if milliseconds is None else float(milliseconds) / 1000.0
