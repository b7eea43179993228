"""Blue/green with a preview: the new release is up and reachable only by pinning
(``X-Conveyor-Release: N`` or the ``conveyor-release`` cookie) before the switch.

Like Argo Rollouts' blue/green ``prePromotionAnalysis`` and
``autoPromotionSeconds``: when the manifest asks for it, a blue/green
deployment whose new instances are all ready enters ``preview`` instead of
switching at once:

* ``pre_promotion_analysis``: the judges compare the new release's pinned
  traffic with the stable release over ``preview_for``; a failure fails the
  deployment (nothing was switched, so nothing to roll back), not enough
  pinned traffic pauses it for a human (``promote`` or ``abort``).
* then ``auto_promote_after`` seconds of waiting (0 = at once), or, with
  ``auto_promote = false``, until someone runs ``conveyor promote``.

Pure, like the rest of the machine: the orchestrator supplies the verdict.
"""

from __future__ import annotations

from typing import Any

from conveyor.domain.deploy_machine import (
    Deployment,
    Event,
    SetRoutes,
    Step,
    World,
    _fail,
    _switch,
)
from conveyor.domain.wire import InstanceState


def wanted(dep: Deployment) -> bool:
    """Does this blue/green deployment preview before it switches?"""
    p = dep.params
    return dep.kind == "deploy" and dep.from_release is not None and (
        bool(p.get("pre_promotion_analysis")) or not p.get("auto_promote", True) or float(p.get("auto_promote_after") or 0) > 0
    )


def enter(dep: Deployment, progress: dict[str, Any], now: float) -> Step:
    """All new instances ready: make the new release routable by pinning only (weight 0)."""
    assert dep.from_release is not None
    analysing = bool(dep.params.get("pre_promotion_analysis"))
    progress = {
        **progress, "phase": "analysis" if analysing else "waiting", "preview_started": now,
        "waiting_since": None if analysing else now,
        "weights": {str(dep.from_release): 100, str(dep.to_release): 0},
    }
    how = "pre-promotion analysis on pinned traffic" if analysing else "waiting to promote"
    return Step(
        "preview",
        progress,
        [
            SetRoutes({dep.from_release: 100, dep.to_release: 0}),
            Event("preview", f"release {dep.to_release} is ready and reachable with X-Conveyor-Release: "
                  f"{dep.to_release} ({how})", {"release": dep.to_release}),
        ],
    )


def analysis_window(dep: Deployment) -> tuple[float, float] | None:
    """(since, duration) of the pre-promotion analysis, while it runs."""
    if dep.state == "preview" and dep.progress.get("phase") == "analysis":
        return float(dep.progress["preview_started"]), float(dep.params.get("preview_for", 60.0))
    return None


def handle(dep: Deployment, world: World) -> Step:
    progress = dict(dep.progress)
    cmd = dep.command or {}
    by = cmd.get("by") or "someone"
    if cmd.get("action") == "abort":
        step = _fail(dep, progress, f"aborted by {by} during the preview (no traffic had moved)")
        step.actions.insert(0, SetRoutes({dep.from_release: 100}))  # type: ignore[dict-item]
        step.consumed_command = True
        return step
    broken = [i for i in world.of(dep.to_release) if i.state == InstanceState.CRASHLOOP]
    if broken:
        step = _fail(dep, progress, f"instance {broken[0].id} is in a crash loop during the preview: "
                     f"{broken[0].message or 'no output'}")
        step.actions.insert(0, SetRoutes({dep.from_release: 100}))  # type: ignore[dict-item]
        return step
    if cmd.get("action") == "promote":
        step = _switch(dep, progress, instant=False)
        step.consumed_command = True
        return step
    if progress.get("phase") == "analysis":
        verdict = world.verdict or {}
        outcome = verdict.get("outcome")
        if outcome:
            progress["last_verdict"] = {k: verdict.get(k) for k in ("outcome", "reason")}
        if outcome == "fail":
            step = _fail(dep, progress, f"pre-promotion analysis failed: {verdict.get('reason')}")
            step.actions.insert(0, SetRoutes({dep.from_release: 100}))  # type: ignore[dict-item]
            return step
        if outcome == "inconclusive":
            reason = f"pre-promotion analysis inconclusive: {verdict.get('reason')}; promote or abort"
            progress.update(phase="held", hold_reason=reason)
            return Step("preview", progress, [Event("deploy_paused", reason, {"release": dep.to_release})], reason)
        if outcome != "pass":
            return Step("preview", progress)
        progress.update(phase="waiting", waiting_since=world.now)
    if progress.get("phase") == "held" or not dep.params.get("auto_promote", True):
        return Step("preview", progress)
    waited = world.now - float(progress.get("waiting_since") or world.now)
    if waited >= float(dep.params.get("auto_promote_after") or 0):
        return _switch(dep, progress, instant=False)
    return Step("preview", progress)


__all__ = ["analysis_window", "enter", "handle", "wanted"]
