"""Feeds the canary analysis: per-second series from SQL in, a stored verdict out.

The orchestrator calls :func:`verdict_for` on every tick of a deployment that
is in an analysed phase (a canary step, a paused canary, or the bake). Each
canary step (and the blue/green preview) starts with a warm-up whose seconds
are left out of the comparison on both sides (``analysis/warmup.py``). The judges are pure and
recompute from the whole window each time, so a restarted control plane
reaches the same verdict from the same stored points. Decisive verdicts are
always stored; "continue" ones at most every few seconds, to show progress.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from conveyor.analysis import Interval, evaluate, evaluate_with_warmup, parse_analysis_config
from conveyor.domain import deploy_machine as dm
from conveyor.domain.strategies import analysis_request
from conveyor.domain.wire import baseline_route
from conveyor.store import deployments, series

PROGRESS_EVERY = 5.0
#: The bake's reference: the previous release's traffic from this long before the deployment
#: started until the bake began (its canary steps included).
BAKE_REFERENCE_BEFORE = 600.0
#: A stored point at second ``t`` holds what the scrape at ``t + frac`` found since the scrape
#: before, so it may cover requests up to a second later than ``t``. A window starting at
#: ``since`` must include the point at ``floor(since)``: a point is read when ``t > since - 1``
#: (:func:`window_start`), or the canary's first second of traffic would be dropped about half
#: the time, delaying the verdict by a scrape. The extra data is the same releases' traffic
#: from just before the step; the judges condition on each second's counts, so it adds no
#: false evidence (a second without canary requests contributes nothing to the e-process).
SCRAPE_SLACK = 1.0


def window_start(since: float) -> float:
    """The lowest point time to read for an analysis window that starts at ``since``."""
    return since - SCRAPE_SLACK + 1e-6


def _intervals(conn: Connection, env_id: int, release: int, since: float) -> list[Interval]:
    return [Interval(p.t, p.requests, min(p.errors, p.requests), p.latency) for p in series.points(conn, env_id, release, since)]


def verdict_for(conn: Connection, env_id: int, dep: dm.Deployment, now: float) -> dict[str, Any] | None:
    req = analysis_request(dep)
    if req is None or dep.from_release is None:
        return None
    config = parse_analysis_config(dep.params.get("analysis") or {})
    if req.phase == "bake":
        # The previous release serves nothing now: absolute limits, and its error rate from before
        # the bake as the reference (analysis/history.py). (model_copy: "history" is internal.)
        config = config.model_copy(update={"judges": ["threshold", "history"]})
    since = window_start(req.since)
    canary = _intervals(conn, env_id, dep.to_release, since)
    # Like for like: the dedicated baseline (fresh instances of the stable release at the canary's
    # size and weight) when the deployment has one, else the stable release itself.
    compare_with = baseline_route(dep.from_release) if dep.params.get("baseline") and dep.state != "preview" \
        else dep.from_release
    if req.phase == "step":
        baseline = _intervals(conn, env_id, compare_with, since)
    else:
        start = (dep.started_at or dep.created_at) - BAKE_REFERENCE_BEFORE
        baseline = [i for i in _intervals(conn, env_id, dep.from_release, window_start(start)) if i.t < req.since]
    elapsed = max(0.0, now - req.since)
    if req.phase == "step" and dep.state != "paused":
        # A canary step (or the blue/green preview) begins with fresh instances or a new share of
        # traffic: its first seconds are left out of the comparison on both sides, watched only
        # for a hard failure (analysis/warmup.py). A paused canary and the bake are warm already.
        v = evaluate_with_warmup(config, canary, baseline, since=req.since, step_elapsed_s=elapsed,
                                 step_duration_s=req.duration)
    else:
        v = evaluate(config, canary, baseline, step_elapsed_s=elapsed, step_duration_s=req.duration)
    outcome = v.outcome.value if hasattr(v.outcome, "value") else str(v.outcome)
    last = deployments.last_verdict(conn, dep.id, req.step)
    if outcome != "continue" or last is None or now - last["at"] >= PROGRESS_EVERY:
        deployments.add_verdict(
            conn, dep.id, at=now, step=req.step, judge=v.judge if req.phase == "step" else "bake",
            outcome=outcome, reason=v.reason,
            numbers={**v.numbers, **{f"{p.judge}.outcome": str(getattr(p.outcome, "value", p.outcome)) for p in v.parts}},
        )
    return {"outcome": outcome, "reason": v.reason, "numbers": v.numbers}
