"""Pipelines: promotion from stage to stage (run by the orchestrator every tick), approvals, and the
pipeline as the CLI and the pages show it.

:func:`reconcile` is level-triggered and idempotent. For each environment it reads "the deployment that
made the current release, and its image's pipeline" and, for each stage that follows it, asks
``domain.pipeline.next_step``: a stage with no deployment of that image gets one (queued, or
``awaiting_approval``) once the upstream deployment succeeded and baked, and the deploy gate
(``services/locks.py``, ``automatic=True``) lets it through. Everything happens in the orchestrator's
transaction, so a kill at any line leaves either no promotion or a whole one, and the next tick
re-derives the same answer; a stage that has any deployment of the image (even a rejected or failed
one) is never promoted again, which is also what stops the pipeline after a failure or a rollback:
the upstream's current release is then the previous one, whose image went down the pipeline already.

The orchestrator (``deploy/``) cannot import services, so ``server.py`` hands it :func:`reconcile` as
a hook, like the analysis's verdict source.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import Connection

from conveyor.domain import pipeline
from conveyor.domain.manifest import DEFAULT_BAKE, ManifestError, parse_manifest
from conveyor.services import deployments as deploy_service
from conveyor.services.locks import Locked, check_in
from conveyor.services.schemas import PipelineStage
from conveyor.services.state import ControlPlane
from conveyor.store import deployments, repo
from conveyor.store.repo import Conflict, NotFound

log = logging.getLogger("conveyor.pipelines")

#: The actor of promotions the pipeline makes by itself.
ACTOR = "pipeline"

#: {image digest: (the pipeline {env: after}, {env: approval})}. Images never change, so neither does this.
_PIPELINES: dict[str, tuple[dict[str, str | None], dict[str, bool]]] = {}


def pipeline_of(conn: Connection, app_id: int, digest: str) -> tuple[dict[str, str | None], dict[str, bool]]:
    """The pipeline an image carries in its ``conveyor.toml`` ({} when none, or unreadable)."""
    if digest not in _PIPELINES:
        try:
            manifest = parse_manifest(repo.get_image(conn, app_id, digest)["app_manifest"] or {})
            after = manifest.pipeline()
            approval = {name: env.approval for name, env in manifest.env.items()}
        except (ManifestError, NotFound):
            after, approval = {}, {}
        if not any(up is not None for up in after.values()):
            after, approval = {}, {}
        _PIPELINES[digest] = (after, approval)
    return _PIPELINES[digest]


def reconcile(conn: Connection, now: float) -> set[str]:
    """Create the promotions that are due (see the module's docstring); the topics to poke.

    One query for every environment's current release and the deployment that made it (environments
    without a pipeline cost nothing more), then per following stage: does it have the image, is the
    bake over, does the gate let it through."""
    touched: set[str] = set()
    for made_by in deployments.current_makers(conn):
        if made_by["kind"] != "deploy" or made_by["image_digest"] is None:
            continue
        after, approval = pipeline_of(conn, made_by["app_id"], made_by["image_digest"])
        for stage in pipeline.downstream(after, made_by["env_name"]):
            touched |= _promote(conn, made_by, stage, approval.get(stage, False), now)
    return touched


def _promote(conn: Connection, made_by: dict[str, Any], stage: str, approval: bool, now: float) -> set[str]:
    app_id, env_name, digest = made_by["app_id"], made_by["env_name"], made_by["image_digest"]
    if deployments.has_image(conn, app_id, stage, digest):
        return set()  # the common case, answered before reading anything else
    release = repo.get_release(conn, made_by["env_id"], made_by["to_release"])
    upstream = pipeline.Upstream(env_name, made_by["id"], digest, made_by["state"], made_by["finished_at"],
                                 float((release["config"] or {}).get("bake", DEFAULT_BAKE)))
    step = pipeline.next_step(stage, approval, upstream, False, now)
    if not isinstance(step, pipeline.Promote):
        return set()
    app = repo.app_name_of(conn, app_id)
    try:
        with conn.begin_nested():
            check_in(conn, app, stage, now, automatic=True, force=False)
            pending = {"state": "pending", "from_env": env_name, "from_deployment": made_by["id"]} if approval else None
            dep = deploy_service.queue_deploy(conn, app, stage, digest, actor=ACTOR, approval=pending,
                                              pipeline={"from_env": env_name, "from_deployment": made_by["id"]})
            repo.record_event(
                conn, "approval_needed" if approval else "pipeline_promoted",
                f"deployment {made_by['id']} of {app}/{env_name} succeeded and baked: image {digest[7:19]} "
                + (f"waits for approval to go to {stage} (deployment {dep['id']}: `conveyor approve {app} {dep['id']}`)"
                   if approval else f"promoted to {stage} (deployment {dep['id']})"),
                app=app, env=stage, actor=ACTOR,
                data={"deployment": dep["id"], "from_env": env_name, "from_deployment": made_by["id"], "image": digest},
            )
    except Locked:
        return set()  # held: the next tick after an unlock (or the freeze's end) promotes it
    except Exception:
        log.exception("pipeline: promoting %s/%s to %s failed; retrying next tick", app, env_name, stage)
        return set()
    return {"deployments", "orchestrator"}


# --- approvals -----------------------------------------------------------------


def decide(cp: ControlPlane, dep_id: int, approve: bool, *, reason: str = "", actor: str = "", origin: str = "") -> None:
    """Approve (queue) or reject (cancel) a deployment awaiting approval; who, when and why go on the
    deployment (``approval``) and into the audit log."""
    now = cp.clock()
    with cp.engine.begin() as conn:
        row = deployments.row(conn, dep_id)
        app, env = repo.app_env_names(conn, row["env_id"])
        if row["state"] != deployments.AWAITING:
            raise Conflict(f"deployment {dep_id} waits for no approval (it is {row['state']}); only a pipeline "
                           f"stage with approval = true waits, as 'awaiting_approval'")
        if approve:
            check_in(conn, app, env, now, automatic=False, force=False)
        verb = "approved" if approve else "rejected"
        decision = {**(row["approval"] or {}), "state": verb, "by": actor or "someone", "at": now, "reason": reason}
        current = repo.env_by_id(conn, row["env_id"])["current_release"]
        text = f"deployment {dep_id} ({app}/{env}, release {row['to_release']}) {verb} by {actor or 'someone'}" + (
            f": {reason}" if reason else "")
        if not deployments.decide_approval(conn, dep_id, "queued" if approve else "cancelled", decision, now,
                                           reason=text, from_release=current):
            raise Conflict(f"deployment {dep_id} was decided by someone else just now; see `conveyor deployments show {dep_id}`")
        if not approve:
            repo.set_release_status(conn, row["env_id"], row["to_release"], "cancelled", only_if="pending")
        repo.record_event(conn, f"deploy_{verb}", text, app=app, env=env, actor=actor, origin=origin,
                          data={"deployment": dep_id, "reason": reason})
    cp.notifier.poke("orchestrator", "deployments")


# --- the pipeline as shown ---------------------------------------------------------


def stages_for(conn: Connection, app_id: int, digest: str | None, now: float) -> list[PipelineStage]:
    """Each stage of the image's pipeline: its newest deployment of the image, and what it waits for."""
    if digest is None:
        return []
    after, approval = pipeline_of(conn, app_id, digest)
    if not after:
        return []
    latest = deployments.latest_of_image(conn, app_id, digest)
    app = repo.app_name_of(conn, app_id)
    out = []
    for env in pipeline.order(after):
        dep = latest.get(env)
        out.append(PipelineStage(env=env, after=after[env], approval=approval.get(env, False),
                                 deployment=dep["id"] if dep else None, state=dep["state"] if dep else None,
                                 waiting=_waiting(conn, app, env, after[env], dep, latest, approval.get(env, False),
                                                  now)))
    return out


def _waiting(conn: Connection, app: str, env: str, upstream_env: str | None, dep: dict[str, Any] | None,
             latest: dict[str, dict[str, Any]], approval: bool, now: float) -> str:
    if dep is not None:
        if dep["state"] == deployments.AWAITING:
            return f"waits for approval: `conveyor approve {app} {dep['id']}` or `conveyor reject {app} {dep['id']}`"
        return ""
    if upstream_env is None:
        return "not deployed (the pipeline starts here)"
    up = latest.get(upstream_env)
    if up is None:
        return f"waits for {upstream_env}"
    if up["state"] in ("failed", "rolled_back", "cancelled"):
        return f"stopped: deployment #{up['id']} in {upstream_env} {up['state'].replace('_', ' ')}"
    bake = float((repo.get_release(conn, up["env_id"], up["to_release"])["config"] or {}).get("bake", DEFAULT_BAKE))
    step = pipeline.next_step(env, approval, pipeline.Upstream(upstream_env, up["id"], up["image_digest"], up["state"],
                                                               up["finished_at"], bake), False, now)
    if isinstance(step, pipeline.Hold):
        return step.reason
    try:
        check_in(conn, app, env, now, automatic=True, force=False)
    except Locked as exc:
        return f"held: {exc}"
    return "promotion due (the orchestrator creates it on its next tick)"
