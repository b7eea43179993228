"""The bake's judge: the new release's error rate against what the previous release did before it.

Why: during the bake the new release serves all traffic, so no release runs
beside it to compare with, and absolute thresholds (the other bake judge) let
a doubling of a 1 % error rate through. What is still known is how the
previous release behaved while it served traffic *before* the bake (the
deployment's canary steps and the minutes before the deployment): its error
count ``y`` over ``b`` requests.

The test: the previous release's rate is at most ``p_ref``, the Clopper-Pearson
upper bound of ``y / b`` at confidence ``1 - alpha/2``. The null hypothesis is
"the new release's rate ``p <= p0 = (1 + error_tolerance) * p_ref``". Each
second of the bake gives ``x`` errors of ``n`` requests; the e-process is a
mixture (the sequential judge's grid of ratios ``r`` above 1) of binomial
likelihood ratios ``(r p0 / p0)^x ((1 - r p0)/(1 - p0))^(n - x)``. Under the
null each factor has expectation at most 1 (the binomial family has monotone
likelihood ratios), so by Ville's inequality the e-process ever reaches
``2/alpha`` with probability at most ``alpha/2``, however often it is read;
with the bound's own ``alpha/2`` the false-rollback rate stays within
``alpha``. Unlike the canary steps' test this one does not condition on
concurrent baseline traffic, so an incident that hits every release during the
bake counts against the new one: the price of having nothing to compare with.

A failure also needs the bake's error rate so far to exceed the previous
release's by both error floors (``effects.error_rate``: +25 % and +0.2 points
by default): practical significance, as in the sequential judge. Adding that
condition only removes alarms, so the bound above still holds.

Without enough reference traffic (``min_requests``) the judge says so and
passes: the thresholds still apply.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.special import logsumexp
from scipy.stats import beta

from conveyor.analysis.model import AnalysisConfig, EffectFloor, Interval, Outcome, Verdict
from conveyor.analysis.sequential import GRID
from conveyor.analysis.series import pct

NAME = "history"


def reference_rate_bound(errors: int, requests: int, confidence: float) -> float:
    """One-sided Clopper-Pearson upper bound of an error rate."""
    if requests <= 0:
        return 1.0
    if errors >= requests:
        return 1.0
    return float(beta.ppf(confidence, errors + 1, requests - errors))


def log_e_process(errors: np.ndarray, requests: np.ndarray, p0: float) -> np.ndarray:
    """Log of the mixture e-process for "rate > p0" after each second, shape (..., T) like the inputs."""
    x = np.asarray(errors, dtype=float)
    n = np.asarray(requests, dtype=float)
    if x.size == 0:
        return np.zeros(x.shape)
    p1 = np.minimum(p0 * GRID, 1.0 - 1e-9)  # alternatives; capped below 1
    with np.errstate(divide="ignore", invalid="ignore"):
        step = x[..., None] * np.log(p1 / p0) + (n - x)[..., None] * (np.log1p(-p1) - math.log1p(-p0))
    cum = np.cumsum(step, axis=-2)
    return logsumexp(cum, axis=-1) - math.log(GRID.size)  # type: ignore[no-any-return]


def judge(
    config: AnalysisConfig,
    canary: Sequence[Interval],
    baseline: Sequence[Interval],
    *,
    step_elapsed_s: float,
    step_duration_s: float,
) -> Verdict:
    """``canary``: the new release during the bake; ``baseline``: the previous release *before* it."""
    ref_requests = sum(i.requests for i in baseline)
    ref_errors = sum(i.errors for i in baseline)
    requests = sum(i.requests for i in canary)
    errors = sum(i.errors for i in canary)
    numbers: dict[str, float | int | None] = {
        "reference_requests": ref_requests,
        "reference_errors": ref_errors,
        "requests": requests,
        "errors": errors,
    }
    if ref_requests < max(1, config.min_requests):
        return Verdict(
            judge=NAME,
            outcome=Outcome.PASS,
            reason=f"No comparison: the previous release served {ref_requests} requests before the bake "
            f"(at least {config.min_requests} needed); thresholds only.",
            numbers=numbers,
        )
    alpha = config.alpha
    level = log_level(alpha)
    p_ref = reference_rate_bound(ref_errors, ref_requests, 1.0 - alpha / 2)
    p0 = min(p_ref * (1.0 + config.sequential.error_tolerance), 1.0 - 1e-6)
    ordered = sorted(canary, key=lambda i: i.t)
    x = np.array([i.errors for i in ordered])
    n = np.array([i.requests for i in ordered])
    path = log_e_process(x, n, p0)
    k = first_alarm(path, level, x, n, ref_errors / ref_requests, config.effects.error_rate)
    e = float(path[-1]) if path.size else 0.0
    floor = config.effects.error_rate
    numbers |= {
        "reference_rate_bound": p_ref, "null_rate": p0, "log_e": round(e, 3), "log_level": round(level, 3),
        "floor_relative": floor.relative, "floor_absolute": floor.absolute,
    }
    rate = errors / requests if requests else None
    ref_rate = ref_errors / ref_requests
    effect = _effect(rate, ref_rate, floor)
    if k >= 0:
        c_e, c_n = int(x[: k + 1].sum()), int(n[: k + 1].sum())
        return Verdict(
            judge=NAME,
            outcome=Outcome.FAIL,
            reason=f"Error rate {pct(c_e / c_n)} ({c_e}/{c_n}) during the bake is above the previous release's "
            f"{pct(ref_rate)} ({ref_errors}/{ref_requests}) by more than "
            f"{config.sequential.error_tolerance:.0%}, {_effect(c_e / c_n, ref_rate, floor)}, with evidence "
            f"e = {math.exp(min(float(path[k]), 700)):.3g} >= {math.exp(level):g}.",
            numbers=numbers,
        )
    done = step_elapsed_s >= step_duration_s
    return Verdict(
        judge=NAME,
        outcome=Outcome.PASS if done else Outcome.CONTINUE,
        reason=f"Error rate {pct(rate)} ({errors}/{requests}) in line with the previous release's "
        f"{pct(ref_rate)} ({ref_errors}/{ref_requests}): {effect}.",
        numbers=numbers,
    )


def log_level(alpha: float) -> float:
    """The log e-value the bake's test must reach: ``log(2 / alpha)`` (half of alpha, the bound takes the rest)."""
    return math.log(2.0 / alpha)


def first_alarm(
    path: np.ndarray, level: float, errors: np.ndarray, requests: np.ndarray, ref_rate: float, floor: EffectFloor
) -> int:
    """First second at which the evidence reaches ``level`` and the rate so far exceeds both floors; -1 if none.

    Shapes (..., T) in, (...) out (an int for one bake): the benchmark and the tests run many bakes at once.
    """
    if path.shape[-1] == 0:
        return -1 if path.ndim == 1 else np.full(path.shape[:-1], -1)  # type: ignore[return-value]
    cum_n = np.cumsum(requests, axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(cum_n > 0, np.cumsum(errors, axis=-1) / np.maximum(cum_n, 1), np.nan)
        rel = rate / ref_rate - 1.0 if ref_rate > 0 else np.where(rate > 0, np.inf, 0.0)
        hit = (path >= level) & (rel >= floor.relative - 1e-9) & (rate - ref_rate >= floor.absolute - 1e-9)
    out = np.where(hit.any(axis=-1), np.argmax(hit, axis=-1), -1)
    return int(out) if out.ndim == 0 else out  # type: ignore[return-value]


def _effect(rate: float | None, ref: float, floor: EffectFloor) -> str:
    if rate is None:
        return f"no requests yet (floors +{floor.relative * 100:g}% and +{floor.absolute * 100:g} points)"
    rel = "from zero" if ref == 0 and rate > 0 else f"{(rate / ref - 1.0) * 100 if ref else 0.0:+.1f}%"
    return f"effect {rel} / {(rate - ref) * 100:+.2f} points (floors +{floor.relative * 100:g}% and +{floor.absolute * 100:g} points)"
