"""The threshold judge: absolute limits on the canary alone.

Why it exists beside the comparative judges: a release can be bad in a way
the baseline shares (both slow because a dependency is slow), or the operator
simply has a service-level objective. Why it waits for ``min_requests``: an
error rate over the first ten requests is noise, and a limit checked every
second on noise would roll good releases back. The limits apply to the
canary's totals over the step so far, so each new second only sharpens them.
They are point estimates checked every second: set each limit well above the
service's normal level (the defaults assume errors around 1 %), or noise near
the limit will roll good releases back; the sequential judge handles subtle
differences with a bounded false-alarm rate.
"""

from __future__ import annotations

from collections.abc import Sequence

from conveyor.analysis.model import AnalysisConfig, Interval, Outcome, Verdict
from conveyor.analysis.series import fmt_ms, merged, ms, pct

NAME = "threshold"


def judge(
    config: AnalysisConfig,
    canary: Sequence[Interval],
    baseline: Sequence[Interval],  # noqa: ARG001 - same signature as the other judges
    *,
    step_elapsed_s: float,
    step_duration_s: float,
) -> Verdict:
    """Fail when a limit is exceeded over at least ``threshold.min_requests`` canary requests."""
    th = config.threshold
    requests = sum(i.requests for i in canary)
    errors = sum(i.errors for i in canary)
    hist = merged(canary)
    rate = errors / requests if requests else None
    quantiles = {name: hist.quantile(q) for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))}
    numbers: dict[str, float | int | None] = {
        "canary_requests": requests,
        "canary_errors": errors,
        "canary_error_rate": rate,
        **{f"canary_{n}_ms": ms(v) for n, v in quantiles.items()},
        "max_error_rate": th.max_error_rate,
        **{f"max_{n}_ms": ms(getattr(th, f"max_{n}")) for n in quantiles},
        "min_requests": th.min_requests,
    }
    if requests >= th.min_requests:
        broken: list[str] = []
        if th.max_error_rate is not None and rate is not None and rate > th.max_error_rate:
            broken.append(f"error rate {pct(rate)} ({errors}/{requests}) > {pct(th.max_error_rate)}")
        for n, v in quantiles.items():
            limit = getattr(th, f"max_{n}")
            if limit is not None and v is not None and v > limit:
                broken.append(f"{n} latency {fmt_ms(v)} > {fmt_ms(limit)}")
        if broken:
            return Verdict(
                judge=NAME,
                outcome=Outcome.FAIL,
                reason=f"Canary over its limits after {requests} requests: {'; '.join(broken)}.",
                numbers=numbers,
            )
    summary = f"error rate {pct(rate)}, p50 {fmt_ms(quantiles['p50'])}, p99 {fmt_ms(quantiles['p99'])}"
    if step_elapsed_s < step_duration_s:
        return Verdict(
            judge=NAME,
            outcome=Outcome.CONTINUE,
            reason=f"Within limits so far ({requests} canary requests, {summary}).",
            numbers=numbers,
        )
    needed = max(th.min_requests, config.min_requests)
    if requests < needed:
        return Verdict(
            judge=NAME,
            outcome=Outcome.INCONCLUSIVE,
            reason=f"Not enough traffic to check the limits: {requests} canary requests in "
            f"{round(step_elapsed_s, 1):g} s, at least {needed} are required.",
            numbers=numbers,
        )
    return Verdict(
        judge=NAME,
        outcome=Outcome.PASS,
        reason=f"Canary within its limits over {requests} requests: {summary}.",
        numbers=numbers,
    )
