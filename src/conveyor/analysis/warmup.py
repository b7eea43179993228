"""Warm-up: the first seconds of a canary step are left out of the comparison, but not out of sight.

Why: a new instance is colder than the release it is compared with (a new
interpreter, empty caches, fresh upstream connections). Its first requests are
slower for reasons that vanish within seconds, and at sub-millisecond latencies
that alone reads as "+66 %" and rolls healthy releases back. Kayenta's
``warmup`` and Argo Rollouts' ``initialDelay`` skip that period; so do we, on
both sides alike (the baseline's same seconds go too, so the comparison stays
like for like in time).

Why a guard during the warm-up: skipping the first seconds must not give a
broken release free rein. A canary failing most of its requests (at least
``warmup_max_error_rate``, over at least :data:`GUARD_MIN_REQUESTS` requests,
and more than twice the baseline's rate over the same seconds, so an incident
that hits both is not blamed on the canary) fails at once. Crash loops are
caught before any of this, by readiness and liveness in the orchestrator.

Everything here is pure: the caller (``deploy/analysis_source.py``) reads the
stored intervals and passes them in.
"""

from __future__ import annotations

from collections.abc import Sequence

from conveyor.analysis.evaluate import evaluate
from conveyor.analysis.model import AnalysisConfig, Interval, Outcome, Verdict
from conveyor.analysis.series import pct

NAME = "warmup"
#: Canary requests the guard needs before a high error rate counts (20 at >= 50 % errors is
#: ten failures: no healthy service does that by chance).
GUARD_MIN_REQUESTS = 20


def warmup_end(config: AnalysisConfig, canary: Sequence[Interval], *, since: float, step_duration_s: float) -> float:
    """When the warm-up of a window that started at ``since`` ends (an interval time, same epoch).

    ``warmup`` seconds (or the default: 10 s, at most a quarter of the step),
    and, with ``warmup_requests``, not before the canary has served that many
    requests since ``since``. Never later than the window's end: a step that
    ends still warming up is judged on nothing and says so (inconclusive).
    """
    end = since + config.warmup_for(step_duration_s)
    if config.warmup_requests > 0:
        served = 0
        reached = None
        for i in sorted(canary, key=lambda i: i.t):
            served += i.requests
            if served >= config.warmup_requests:
                reached = i.t + 1.0  # the interval covers [t, t + 1)
                break
        end = max(end, reached if reached is not None else since + step_duration_s)
    return min(end, since + step_duration_s)


def split(intervals: Sequence[Interval], end: float) -> tuple[list[Interval], list[Interval]]:
    """(intervals during the warm-up, intervals after it): an interval at ``t < end`` is warm-up."""
    during = [i for i in intervals if i.t < end - 1e-6]
    after = [i for i in intervals if i.t >= end - 1e-6]
    return during, after


def guard(config: AnalysisConfig, canary: Sequence[Interval], baseline: Sequence[Interval]) -> Verdict:
    """Fail a canary that fails hard during its warm-up; ``continue`` otherwise (it decides nothing else)."""
    requests = sum(i.requests for i in canary)
    errors = sum(i.errors for i in canary)
    b_requests = sum(i.requests for i in baseline)
    b_errors = sum(i.errors for i in baseline)
    rate = errors / requests if requests else None
    b_rate = b_errors / b_requests if b_requests else None
    limit = config.warmup_max_error_rate
    numbers: dict[str, float | int | None] = {
        "canary_requests": requests,
        "canary_errors": errors,
        "canary_error_rate": rate,
        "baseline_error_rate": b_rate,
        "max_error_rate": limit,
        "min_requests": GUARD_MIN_REQUESTS,
    }
    if rate is not None and requests >= GUARD_MIN_REQUESTS and rate >= limit and rate > 2.0 * (b_rate or 0.0):
        return Verdict(
            judge=NAME,
            outcome=Outcome.FAIL,
            reason=f"Failing hard during the warm-up: error rate {pct(rate)} ({errors}/{requests}) >= "
            f"{pct(limit)} (baseline {pct(b_rate)}).",
            numbers=numbers,
        )
    return Verdict(
        judge=NAME,
        outcome=Outcome.CONTINUE,
        reason=f"Warming up: {requests} canary requests left out of the comparison (error rate {pct(rate)}).",
        numbers=numbers,
    )


def evaluate_with_warmup(
    config: AnalysisConfig,
    canary: Sequence[Interval],
    baseline: Sequence[Interval],
    *,
    since: float,
    step_elapsed_s: float,
    step_duration_s: float,
) -> Verdict:
    """:func:`evaluate` on the intervals after the warm-up, with the warm-up guard in front.

    During the warm-up: the guard's ``fail``, or ``continue``. After it: the
    judges on what follows the warm-up; the verdict's numbers say how long the
    warm-up was and how many canary requests it left out.
    """
    end = warmup_end(config, canary, since=since, step_duration_s=step_duration_s)
    if end <= since:  # no warm-up: every interval read for the window counts
        c_warm, c_rest, b_warm, b_rest = [], list(canary), [], list(baseline)
    else:
        c_warm, c_rest = split(canary, end)
        b_warm, b_rest = split(baseline, end)
    g = guard(config, c_warm, b_warm)
    warm_numbers: dict[str, float | int | None] = {
        "warmup_s": round(end - since, 3),
        "warmup_canary_requests": sum(i.requests for i in c_warm),
    }
    if g.outcome == Outcome.FAIL:
        return Verdict(
            judge="combined", outcome=Outcome.FAIL, reason=f"Failed by {NAME}: {g.reason}",
            numbers={**warm_numbers, **{f"{NAME}.{k}": v for k, v in g.numbers.items()}}, parts=[g],
        )
    if since + step_elapsed_s < end and step_elapsed_s < step_duration_s:
        return Verdict(
            judge="combined", outcome=Outcome.CONTINUE,
            reason=f"Warming up for {end - since:g} s: {step_elapsed_s:g} s in, "
            f"{warm_numbers['warmup_canary_requests']} canary requests not compared yet.",
            numbers={**warm_numbers, "step_elapsed_s": step_elapsed_s, "step_duration_s": step_duration_s},
            parts=[g],
        )
    v = evaluate(config, c_rest, b_rest, step_elapsed_s=step_elapsed_s, step_duration_s=step_duration_s)
    return v.model_copy(update={"numbers": {**v.numbers, **warm_numbers}})
