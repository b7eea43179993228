"""Pipelines as code: environments chained in ``conveyor.toml`` and the next step of each stage.

A stage is an environment whose ``[env.NAME]`` section says ``after = "OTHER"``: when OTHER's
deployment of an image has succeeded and its bake is over, the *same image* (never a rebuild) is
deployed to NAME, by itself or, with ``approval = true``, once someone approves (Spinnaker's manual
judgment). The chain lives in the manifest of the image being promoted, so each image carries the
pipeline it was built with.

Pure: :func:`check` validates the chain (an unknown environment, a cycle), :func:`order` lists the
stages from the roots down, :func:`next_step` decides one stage from what its upstream did. The
caller (``services/pipelines.py``) loads the rows, asks the deploy gate, and writes. Level-triggered:
the decision depends only on the rows ("the upstream's current release came from a succeeded
deployment of image X whose bake is over; this stage has no deployment of X"), so re-running it after
a crash at any line gives the same answer, and a stage that already has a deployment of the image
(queued, awaiting approval, rejected, running, failed or done) is never promoted again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


def check(after: Mapping[str, str | None], *, source: str = "conveyor.toml") -> list[str]:
    """Problems of a pipeline given as {environment: the environment it follows, or None}."""
    problems = []
    for env, upstream in sorted(after.items()):
        if upstream is None:
            continue
        if upstream == env:
            problems.append(f"{source}: [env.{env}] after: an environment cannot follow itself")
        elif upstream not in after:
            known = ", ".join(sorted(after)) or "none"
            problems.append(f"{source}: [env.{env}] after: no environment {upstream!r} in this manifest "
                            f"(declare [env.{upstream}], or use one of: {known})")
    if problems:
        return problems
    for env in sorted(after):
        seen = [env]
        cur = after[env]
        while cur is not None:
            if cur in seen:
                loop = " -> ".join([*seen[seen.index(cur):], cur])
                return [f"{source}: [env.{env}] after: the pipeline has a cycle ({loop}); one stage must come first"]
            seen.append(cur)
            cur = after.get(cur)
    return []


def order(after: Mapping[str, str | None]) -> list[str]:
    """The environments of a valid pipeline, each after the one it follows (roots by name first)."""
    out: list[str] = []
    frontier = sorted(e for e, up in after.items() if up is None)
    while frontier:
        env = frontier.pop(0)
        out.append(env)
        frontier = sorted(e for e, up in after.items() if up == env) + frontier
    return out


def entry(after: Mapping[str, str | None], target: str) -> str:
    """Where a new image enters the pipeline that leads to ``target``: follow ``after`` back from it
    (production after staging after nothing: staging). No pipeline: ``target`` itself."""
    env, seen = target, {target}
    while after.get(env) and after[env] not in seen:  # (cycles are refused by the manifest; bounded anyway)
        env = str(after[env])
        seen.add(env)
    return env


def downstream(after: Mapping[str, str | None], env: str) -> list[str]:
    """The stages that follow ``env`` directly."""
    return sorted(e for e, up in after.items() if up == env)


@dataclass(frozen=True)
class Upstream:
    """The deployment that put the upstream environment's current release there."""

    env: str
    deployment: int
    image: str
    state: str  # the deployment's state; only "succeeded" promotes
    finished_at: float | None
    bake: float  # seconds the release bakes after its deployment (the release's ``bake``)


@dataclass(frozen=True)
class Promote:
    env: str
    image: str
    from_env: str
    from_deployment: int
    approval: bool


@dataclass(frozen=True)
class Hold:
    """Nothing to do yet; ``reason`` says what the stage waits for (shown by the CLI and the UI)."""

    env: str
    reason: str


def next_step(env: str, approval: bool, upstream: Upstream | None, has_image: bool, now: float) -> Promote | Hold | None:
    """What stage ``env`` should do now. None: nothing, ever, for this upstream release (it has the image)."""
    if upstream is None:
        return Hold(env, "waits for the stage before it to run a release")
    if has_image:
        return None
    if upstream.state != "succeeded" or upstream.finished_at is None:
        return Hold(env, f"waits for deployment #{upstream.deployment} in {upstream.env} ({upstream.state})")
    baked_at = upstream.finished_at + upstream.bake
    if now < baked_at:
        return Hold(env, f"waits for deployment #{upstream.deployment} in {upstream.env} to bake "
                         f"({baked_at - now:.0f} s left)")
    return Promote(env, upstream.image, upstream.env, upstream.deployment, approval)
