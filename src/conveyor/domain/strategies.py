"""Progressive strategies as states of the deployment machine: canary, rolling,
bake, and a paused state, plus the users' commands (promote, pause, resume,
abort). Pure like the rest of the machine: the orchestrator supplies the
analysis verdict in ``World.verdict`` (computed for the window that
:func:`analysis_request` names) and applies the returned actions.

Canary:  starting (canary instances ready) → canary step 0..n-1, each with its
weight and analysis (an autoscaled canary first grows to the next step's share:
phase ``sizing``, the weight moves once those instances are ready) → promoting (full size, then all traffic) → baking
(monitoring continues, previous release warm) → succeeded. A failed verdict,
a crash loop or an abort at any point rolls back: traffic first, then drain.
That includes a pause: a paused canary keeps its share of traffic, so its
analysis goes on (only a failure acts) until someone resumes, promotes or aborts.

Rolling: batches of ``max_surge`` new instances; when a batch is ready, the
weights follow the instance counts and as many old instances drain.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from conveyor.domain.deploy_machine import (
    Action,
    Deployment,
    EnsureInstances,
    Event,
    MakeCurrent,
    SetRoutes,
    Step,
    World,
    _baseline_removal,
    _fail,
    _instances,
    canary_size,
    roll_back,
)
from conveyor.domain.shares import share
from conveyor.domain.wire import InstanceState, baseline_route

DEFAULT_STEPS = [{"weight": 10, "for": 30.0}, {"weight": 50, "for": 30.0}]
#: The analysis window of a paused canary, in seconds: longer than any pause, so that its
#: verdict stays "continue" (or "fail") and never becomes a pass or an inconclusive by the clock.
PAUSED_WATCH = 7 * 86400.0


def steps_of(dep: Deployment) -> list[dict[str, Any]]:
    steps = dep.params.get("steps") or DEFAULT_STEPS
    return [{"weight": int(s["weight"]), "for": float(s.get("for", s.get("duration", 30.0)))} for s in steps]


@dataclass(frozen=True)
class AnalysisRequest:
    """What the orchestrator should analyse for this deployment right now."""

    phase: str  # "step" (canary vs stable) or "bake" (new release alone, absolute limits)
    since: float
    duration: float
    step: int


def analysis_request(dep: Deployment) -> AnalysisRequest | None:
    p = dep.progress
    if dep.state == "canary" and p.get("phase") == "step":
        return AnalysisRequest("step", float(p["step_started"]), float(steps_of(dep)[p["step"]]["for"]), int(p["step"]))
    if dep.state == "canary" and p.get("phase") == "sizing":
        # Growing for the next step, the canary still serves the last step's share: watched, but
        # only a failure acts (the clock never ends this window; ready instances do).
        return AnalysisRequest("step", float(p["sizing_started"]), PAUSED_WATCH, int(p["step"]))
    if dep.state == "baking":
        return AnalysisRequest("bake", float(p["bake_started"]), float(dep.params.get("bake", 0.0)), -1)
    from conveyor.domain import preview

    window = preview.analysis_window(dep)
    if window is not None:  # blue/green pre-promotion analysis on pinned traffic
        return AnalysisRequest("step", window[0], window[1], 0)
    if dep.state == "paused" and "step" in p:
        # A paused canary still serves its share of traffic, so it stays watched: only a failure
        # acts (roll back); the clock never ends this window, a human does.
        since = float(p.get("paused_at", p.get("step_started", 0.0)))
        return AnalysisRequest("step", since, PAUSED_WATCH, int(p["step"]))
    return None


# --- canary --------------------------------------------------------------------


def enter_canary_step(dep: Deployment, progress: dict[str, Any], index: int, now: float) -> Step:
    assert dep.from_release is not None
    weight = steps_of(dep)[index]["weight"]
    weights = {dep.from_release: 100 - weight, dep.to_release: weight}
    if dep.params.get("baseline"):
        # Kayenta's practice: fresh instances of the stable release take as much traffic as the canary.
        weight = min(weight, 50)
        weights = {dep.from_release: 100 - 2 * weight, baseline_route(dep.from_release): weight, dep.to_release: weight}
    progress = {
        **progress, "phase": "step", "step": index, "step_started": now, "steps": len(steps_of(dep)),
        "weights": {str(k): v for k, v in weights.items()},
    }
    return Step(
        "canary",
        progress,
        [SetRoutes(weights), Event("canary_step", f"canary step {index + 1}: {weight}% of traffic to release {dep.to_release}",
                                   {"release": dep.to_release, "step": index, "weight": weight})],
    )


def step_size(dep: Deployment, index: int) -> int | None:
    """The instances the canary needs before step ``index``'s weight moves to it, when it grows step
    by step (an autoscaled environment's canary without a baseline: ``domain/shares.py``); None when
    it started at the size of its largest step (``canary_size``)."""
    if not dep.params.get("autoscaled") or dep.params.get("baseline"):
        return None
    return share(_instances(dep), steps_of(dep)[index]["weight"])


def next_canary_step(dep: Deployment, progress: dict[str, Any], index: int, world: World) -> Step:
    """Go to canary step ``index``, growing the canary first when it is short of that step's share.

    Why: moving the weight first sends the step's traffic (50 % of it, say) to instances sized for
    the last step's 10 % until the new ones are ready; overloaded, the canary looks slow and its
    analysis blames the release. Argo Rollouts likewise waits for the canary's pods to be available
    before it sets a step's weight."""
    need = step_size(dep, index)
    if need is None or world.ready(dep.to_release) >= need:
        return enter_canary_step(dep, progress, index, world.now)
    weight = steps_of(dep)[index]["weight"]
    progress = {**progress, "phase": "sizing", "sizing_step": index, "sizing_started": world.now}
    return Step("canary", progress, [
        EnsureInstances(dep.to_release, need),
        Event("canary_sizing", f"release {dep.to_release} grows to {need} instances before step {index + 1} "
              f"sends it {weight}% of traffic", {"release": dep.to_release, "step": index, "instances": need}),
    ])


def _sizing(dep: Deployment, world: World, progress: dict[str, Any]) -> Step:
    """Wait for the canary's instances for the next step (see :func:`next_canary_step`): then move the
    weight; a failed analysis meanwhile rolls back; short of them past the ready timeout, roll back."""
    index = int(progress["sizing_step"])
    verdict = world.verdict or {}
    if verdict.get("outcome") == "fail":
        return roll_back(dep, progress, f"analysis failed at step {int(progress['step']) + 1}: {verdict.get('reason')}",
                         was_current=False)
    need = step_size(dep, index)
    waiting = None if need is None else _grow(dep, world, progress, need, float(progress["sizing_started"]),
                                              f"grow to {need} ready instances for step {index + 1}")
    return waiting if waiting is not None else enter_canary_step(dep, progress, index, world.now)


def _grow(dep: Deployment, world: World, progress: dict[str, Any], want: int, since: float, what: str) -> Step | None:
    """None once the new release has ``want`` ready instances; until then, ask for them, or roll back
    when they cannot be placed or are not ready within the ready timeout (``what`` says what it did not do)."""
    if world.ready(dep.to_release) >= want:
        return None
    timeout = float(dep.params.get("ready_timeout", 60.0))
    unplaceable = world.unplaceable(dep.to_release, timeout)
    if unplaceable:
        return roll_back(dep, progress, unplaceable, was_current=False)
    if world.now - since > timeout:
        return roll_back(dep, progress, f"release {dep.to_release} did not {what} within {timeout:g}s", was_current=False)
    return Step("canary", progress, [EnsureInstances(dep.to_release, want)])


def _enter_promoting(dep: Deployment, progress: dict[str, Any], now: float, why: str) -> Step:
    progress = {**progress, "phase": "promoting", "promote_started": now}
    return Step("canary", progress, [EnsureInstances(dep.to_release, _instances(dep)),
                                     Event("canary_promoting", f"promoting release {dep.to_release}: {why}")])





def _canary(dep: Deployment, world: World) -> Step:
    progress = dict(dep.progress)
    cmd = dep.command or {}
    action = cmd.get("action")
    if action == "abort":
        step = roll_back(dep, progress, f"aborted by {cmd.get('by') or 'someone'}", was_current=False)
        step.consumed_command = True
        return step
    broken = [i for i in world.of(dep.to_release) if i.state == InstanceState.CRASHLOOP]
    if broken:
        return roll_back(dep, progress, f"instance {broken[0].id} is in a crash loop: {broken[0].message or 'no output'}",
                         was_current=False)
    if progress.get("phase") == "promoting":
        return _promoting(dep, world, progress)
    if action == "pause":
        return _pause(dep, progress, world.now, f"paused by {cmd.get('by') or 'someone'}")
    if action == "promote":
        if cmd.get("full") or progress["step"] + 1 >= len(steps_of(dep)):
            step = _enter_promoting(dep, progress, world.now, f"promoted by {cmd.get('by') or 'someone'}")
        else:
            step = next_canary_step(dep, progress, progress["step"] + 1, world)
        step.consumed_command = True
        return step
    if progress.get("phase") == "sizing":
        return _sizing(dep, world, progress)
    verdict = world.verdict
    if verdict is None:
        return Step("canary", progress)
    progress["last_verdict"] = {k: verdict.get(k) for k in ("outcome", "reason")}
    outcome = verdict.get("outcome")
    if outcome == "fail":
        return roll_back(dep, progress, f"analysis failed at step {progress['step'] + 1}: {verdict.get('reason')}",
                         was_current=False)
    if outcome == "inconclusive":
        return _pause(dep, progress, world.now, f"analysis inconclusive at step {progress['step'] + 1}: {verdict.get('reason')}")
    if outcome == "pass":
        if progress["step"] + 1 < len(steps_of(dep)):
            return next_canary_step(dep, progress, progress["step"] + 1, world)
        return _enter_promoting(dep, progress, world.now, "every canary step passed its analysis")
    return Step("canary", progress)


def _promoting(dep: Deployment, world: World, progress: dict[str, Any]) -> Step:
    want = _instances(dep)
    waiting = _grow(dep, world, progress, want, float(progress.get("promote_started", world.now)),
                    f"scale to {want} ready instances")
    return waiting if waiting is not None else _go_live(dep, progress, world.now)


def _go_live(dep: Deployment, progress: dict[str, Any], now: float) -> Step:
    """All traffic to the new release; it becomes current; the bake begins (canary only: a rolling
    deployment has no warm previous release to return to)."""
    bake = float(dep.params.get("bake", 0.0)) if dep.strategy == "canary" else 0.0
    progress = {**progress, "phase": "baking", "weights": {str(dep.to_release): 100}, "bake_started": now}
    actions: list[Action] = [
        SetRoutes({dep.to_release: 100}),
        MakeCurrent(dep.to_release, dep.from_release),
        Event("deployed", f"release {dep.to_release} takes all traffic ({strategy_label(dep)})",
              {"release": dep.to_release}),
    ]
    actions += _baseline_removal(dep)  # the canary is over: its baseline drains and stops
    if bake <= 0:
        return Step("succeeded", progress, actions)
    return Step("baking", progress, actions)


def strategy_label(dep: Deployment) -> str:
    return "canary promoted" if dep.strategy == "canary" else dep.strategy


# --- bake ----------------------------------------------------------------------


def _baking(dep: Deployment, world: World) -> Step:
    progress = dict(dep.progress)
    cmd = dep.command or {}
    if cmd.get("action") == "abort":
        step = roll_back(dep, progress, f"aborted during the bake by {cmd.get('by') or 'someone'}", was_current=True)
        step.consumed_command = True
        return step
    broken = [i for i in world.of(dep.to_release) if i.state == InstanceState.CRASHLOOP]
    if broken:
        return roll_back(dep, progress, f"instance {broken[0].id} is in a crash loop during the bake", was_current=True)
    verdict = world.verdict or {}
    if verdict.get("outcome") == "fail":
        return roll_back(dep, progress, f"regression during the bake: {verdict.get('reason')}", was_current=True)
    if verdict:
        progress["last_verdict"] = {k: verdict.get(k) for k in ("outcome", "reason")}
    step = Step("baking", progress)
    if cmd.get("action") in ("promote", "pause", "resume"):
        step.consumed_command = True  # nothing to promote or pause once all traffic has moved
    if world.now - float(progress["bake_started"]) >= float(dep.params.get("bake", 0.0)):
        step.state = "succeeded"
        step.actions.append(Event("baked", f"release {dep.to_release} baked without regression", {"release": dep.to_release}))
    return step


# --- pause ---------------------------------------------------------------------


def _pause(dep: Deployment, progress: dict[str, Any], now: float, reason: str) -> Step:
    progress = {**progress, "paused_from": "canary", "paused_at": now, "pause_reason": reason}
    step = Step("paused", progress, [Event("deploy_paused", reason, {"release": dep.to_release})], reason)
    step.consumed_command = bool(dep.command)
    return step


def _paused(dep: Deployment, world: World) -> Step:
    progress = dict(dep.progress)
    cmd = dep.command or {}
    action = cmd.get("action")
    by = cmd.get("by") or "someone"
    step: Step
    broken = [i for i in world.of(dep.to_release) if i.state == InstanceState.CRASHLOOP]
    verdict = world.verdict or {}
    if action == "abort":
        step = roll_back(dep, progress, f"aborted by {by} while paused", was_current=False)
    elif broken:  # paused is no shelter: the canary still serves its share of traffic
        step = roll_back(dep, progress, f"instance {broken[0].id} is in a crash loop while paused: "
                         f"{broken[0].message or 'no output'}", was_current=False)
    elif verdict.get("outcome") == "fail":
        step = roll_back(dep, progress, f"analysis failed while paused at step {int(progress.get('step', 0)) + 1}: "
                         f"{verdict.get('reason')}", was_current=False)
    elif action == "resume":
        # The step's analysis window starts afresh: evidence from before the pause is not reused.
        step = enter_canary_step(dep, progress, int(progress.get("step", 0)), world.now)
        step.actions.append(Event("deploy_resumed", f"resumed by {by}", {"release": dep.to_release}))
    elif action == "promote":
        if cmd.get("full") or int(progress.get("step", 0)) + 1 >= len(steps_of(dep)):
            step = _enter_promoting(dep, progress, world.now, f"promoted by {by}")
        else:
            step = next_canary_step(dep, progress, int(progress.get("step", 0)) + 1, world)
    else:
        return Step("paused", progress, consumed_command=action == "pause")
    step.consumed_command = True
    return step


# --- rolling -------------------------------------------------------------------


def _rolling(dep: Deployment, world: World) -> Step:
    assert dep.from_release is not None
    progress = dict(dep.progress)
    n = _instances(dep)
    unavailable = max(0, int(dep.params.get("max_unavailable", 0) or 0))
    # A batch: max_surge extra instances plus max_unavailable old ones let go early (at least one).
    surge = max(1, int(dep.params.get("max_surge", 1) or 0) + unavailable)
    done = int(progress.get("new", 0))
    cmd = dep.command or {}
    if cmd.get("action") == "abort":
        step = roll_back(dep, progress, f"aborted by {cmd.get('by') or 'someone'}", was_current=False)
        step.consumed_command = True
        return step
    broken = [i for i in world.of(dep.to_release) if i.state == InstanceState.CRASHLOOP]
    if broken:
        reason = f"instance {broken[0].id} is in a crash loop: {broken[0].message or 'no output'}"
        return roll_back(dep, progress, reason, was_current=False) if done else _fail(dep, progress, reason)
    target = min(n, done + surge)
    ready = world.ready(dep.to_release)
    if ready < target:
        waited = world.now - float(progress.get("batch_started", world.now))
        timeout = float(dep.params.get("ready_timeout", 60.0))
        unplaceable = world.unplaceable(dep.to_release, timeout)
        if unplaceable or waited > timeout:
            reason = unplaceable or f"batch of release {dep.to_release} not ready within {timeout:g}s ({ready}/{target} ready)"
            return roll_back(dep, progress, reason, was_current=False) if done else _fail(dep, progress, reason)
        # While the batch starts, up to max_unavailable old instances may already drain.
        return Step("rolling", progress, [EnsureInstances(dep.to_release, target),
                                          EnsureInstances(dep.from_release, max(0, n - done - unavailable))])
    done = target
    old = n - done
    progress.update(new=done, batch_started=world.now)
    if old == 0:
        step = _go_live(dep, {**progress, "phase": "done"}, world.now)
        # The last old instances drain too: a rolling deploy keeps no warm copy of the old release.
        step.actions.append(EnsureInstances(dep.from_release, 0))
        return step
    weights = {dep.from_release: old, dep.to_release: done}
    progress["weights"] = {str(k): v for k, v in weights.items()}
    return Step(
        "rolling",
        progress,
        [
            EnsureInstances(dep.to_release, min(n, done + surge)),
            SetRoutes(weights),
            EnsureInstances(dep.from_release, old),  # the extra old instances drain, then stop
            Event("rolling_batch", f"{done}/{n} instances of release {dep.to_release} serving", {"release": dep.to_release}),
        ],
    )


HANDLERS = {"canary": _canary, "baking": _baking, "paused": _paused, "rolling": _rolling}

__all__ = ["AnalysisRequest", "HANDLERS", "analysis_request", "canary_size", "enter_canary_step", "steps_of"]
