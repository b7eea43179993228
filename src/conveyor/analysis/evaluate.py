"""Combining the configured judges into one verdict for a canary step.

The rules, in order (the orchestrator acts on the result; nothing here waits):

1. any judge fails → ``fail``, naming every failing judge and its reason;
2. the step is still running → ``continue``;
3. the step is over but the canary served fewer than ``min_requests`` →
   ``inconclusive`` (pause and say so: a quiet canary is never a silent pass);
4. any judge inconclusive, or undecided at the end → ``inconclusive``;
5. every judge passed → ``pass``.

Why failing wins even mid-step: the sequential judge is built to be read
every second, and the threshold judge only fires past its minimum traffic, so
a failure seen early is a failure. Why evaluate from the whole step's
intervals each time rather than keep state: the orchestrator is a
level-triggered loop that may be killed at any line; recomputing from the
stored intervals gives the same verdict after a restart.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

from conveyor.analysis import history, mannwhitney, sequential, threshold
from conveyor.analysis.model import AnalysisConfig, Interval, Outcome, Verdict

Judge = Callable[..., Verdict]

#: Every judge by name; each has the signature of :func:`evaluate`.
JUDGE_FUNCTIONS: Mapping[str, Judge] = {
    threshold.NAME: threshold.judge,
    mannwhitney.NAME: mannwhitney.judge,
    sequential.NAME: sequential.judge,
    # The bake's judge (the previous release's earlier traffic as the reference); the
    # orchestrator picks it for the bake, users do not name it (see analysis_source).
    history.NAME: history.judge,
}


def evaluate(
    config: AnalysisConfig,
    canary: Sequence[Interval],
    baseline: Sequence[Interval],
    *,
    step_elapsed_s: float,
    step_duration_s: float,
) -> Verdict:
    """Run the configured judges on the step's intervals so far and combine them.

    ``canary`` and ``baseline`` are the per-second intervals since the step
    began (the baseline may be the stable release); ``step_elapsed_s`` is how
    long the step has run and ``step_duration_s`` how long it must run.
    """
    for label, value in (("step_elapsed_s", step_elapsed_s), ("step_duration_s", step_duration_s)):
        if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
            raise ValueError(f"{label} must be a finite number of seconds >= 0, got {value!r}")
    parts = [
        JUDGE_FUNCTIONS[name](config, canary, baseline, step_elapsed_s=step_elapsed_s, step_duration_s=step_duration_s)
        for name in config.judges
    ]
    numbers: dict[str, float | int | None] = {}
    for p in parts:
        numbers.update({f"{p.judge}.{k}": v for k, v in p.numbers.items()})
    requests = sum(i.requests for i in canary)
    numbers["canary_requests"] = requests
    numbers["step_elapsed_s"] = step_elapsed_s
    numbers["step_duration_s"] = step_duration_s

    def verdict(outcome: Outcome, reason: str) -> Verdict:
        return Verdict(judge="combined", outcome=outcome, reason=reason, numbers=numbers, parts=parts)

    failed = [p for p in parts if p.outcome == Outcome.FAIL]
    if failed:
        names = ", ".join(p.judge for p in failed)
        return verdict(Outcome.FAIL, f"Failed by {names}: " + " ".join(p.reason for p in failed))
    if step_elapsed_s < step_duration_s:
        return verdict(
            Outcome.CONTINUE,
            f"Analysing: {round(step_elapsed_s, 1):g} of {step_duration_s:g} s, {requests} canary requests, no judge has failed.",
        )
    if requests < config.min_requests:
        return verdict(
            Outcome.INCONCLUSIVE,
            f"Not enough traffic: the canary served {requests} requests in {round(step_elapsed_s, 1):g} s, "
            f"at least {config.min_requests} are required; pausing.",
        )
    unsure = [p for p in parts if p.outcome != Outcome.PASS]
    if unsure:
        names = ", ".join(p.judge for p in unsure)
        return verdict(Outcome.INCONCLUSIVE, f"Inconclusive ({names}): " + " ".join(p.reason for p in unsure))
    return verdict(Outcome.PASS, "Passed: " + " ".join(p.reason for p in parts))
