"""Deployments: queue, roll back, watch, cancel.

``GET /deployments/{id}?wait=S&after=STATE`` is a long-poll: it answers when the
deployment's state or progress differs from what the caller last saw, so the
CLI's ``--wait`` follows a deployment live without hammering the API.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, HTTPException, Query
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from conveyor.api.deps import CP, Reader, Writer
from conveyor.api.schemas import CommandRequest, DeployRequest, Deployment, RollbackRequest, RowId
from conveyor.deploy import service
from conveyor.domain.wire import deployment_fingerprint
from conveyor.store import repo
from conveyor.store.tables import deployments, environments, verdicts

router = APIRouter(tags=["deployments"])


def _with_verdicts(conn, dep: dict) -> Deployment:  # type: ignore[no-untyped-def,type-arg]
    rows = conn.execute(
        select(verdicts).where(verdicts.c.deployment_id == dep["id"]).order_by(verdicts.c.id)
    ).mappings()
    return Deployment(**dep, verdicts=[dict(r) for r in rows])


def read_deployment(cp: CP, dep_id: int) -> Deployment:  # type: ignore[valid-type]
    with cp.engine.connect() as conn:
        return _with_verdicts(conn, service.get_deployment(conn, dep_id))


@router.post("/apps/{app}/deployments", status_code=201, response_model=Deployment, summary="Deploy an image")
def create_deployment(app: str, body: DeployRequest, cp: CP, p: Writer) -> Deployment:
    with cp.engine.begin() as conn:
        image = body.image
        if body.from_env:
            app_row = repo.get_app(conn, app)
            source = repo.get_env(conn, app_row["id"], body.from_env)
            if source["current_release"] is None:
                raise HTTPException(409, f"environment {body.from_env!r} has no live release to promote")
            image = repo.get_release(conn, source["id"], source["current_release"])["image_digest"]
        if not image:
            raise HTTPException(422, "give the image to deploy: 'image' (a digest) or 'from_env' (promote)")
        dep = service.queue_deploy(conn, app, body.env, image, strategy=body.strategy, actor=p.name, origin=p.origin)
    cp.notifier.poke("orchestrator", "deployments")
    return read_deployment(cp, dep["id"])


@router.post("/apps/{app}/rollback", status_code=201, response_model=Deployment, summary="Roll back to the previous release")
def create_rollback(app: str, body: RollbackRequest, cp: CP, p: Writer) -> Deployment:
    with cp.engine.begin() as conn:
        dep = service.queue_rollback(conn, app, body.env, to_release=body.release, actor=p.name, origin=p.origin)
    cp.notifier.poke("orchestrator", "deployments")
    return read_deployment(cp, dep["id"])


@router.get("/apps/{app}/deployments", response_model=list[Deployment], summary="Deployments of an app, newest first")
def list_deployments(
    app: str, cp: CP, _p: Reader, env: str | None = None, limit: int = Query(50, ge=1, le=500)
) -> list[Deployment]:
    with cp.engine.connect() as conn:
        app_row = repo.get_app(conn, app)
        q = (
            select(deployments.c.id)
            .select_from(deployments.join(environments, environments.c.id == deployments.c.env_id))
            .where(environments.c.app_id == app_row["id"])
            .order_by(deployments.c.id.desc())
            .limit(limit)
        )
        if env:
            q = q.where(environments.c.name == env)
        return [_with_verdicts(conn, service.get_deployment(conn, r.id)) for r in conn.execute(q)]


@router.get("/deployments/{dep_id}", response_model=Deployment, summary="A deployment (long-poll with wait)")
async def get_deployment(
    dep_id: RowId,
    cp: CP,
    _p: Reader,
    wait: float = Query(0.0, ge=0, le=60, description="seconds to wait for a change"),
    seen: str | None = Query(None, description="the 'state:progress' fingerprint the caller holds"),
) -> Deployment:
    deadline = time.monotonic() + wait
    while True:
        dep = await run_in_threadpool(read_deployment, cp, dep_id)
        remaining = deadline - time.monotonic()
        if seen is None or fingerprint(dep) != seen or remaining <= 0:
            return dep
        await cp.notifier.wait("deployments", min(remaining, 0.5))


def fingerprint(dep: Deployment) -> str:
    return deployment_fingerprint(dep.state, len(dep.verdicts), dep.progress)


@router.post("/deployments/{dep_id}/cancel", response_model=Deployment, summary="Cancel a queued deployment")
def cancel_deployment(dep_id: RowId, cp: CP, p: Writer) -> Deployment:
    with cp.engine.begin() as conn:
        service.cancel(conn, dep_id, actor=p.name)
    cp.notifier.poke("orchestrator", "deployments")
    return read_deployment(cp, dep_id)


def _command(action: str):  # type: ignore[no-untyped-def]
    def handler(dep_id: RowId, cp: CP, p: Writer, body: CommandRequest | None = None) -> Deployment:
        with cp.engine.begin() as conn:
            service.command(conn, dep_id, action, full=bool(body and body.full), actor=p.name)
        cp.notifier.poke("orchestrator", "deployments")
        return read_deployment(cp, dep_id)

    handler.__name__ = f"{action}_deployment"
    return handler


for _action, _summary in (
    ("promote", "Promote a canary to its next step (full: to 100%)"),
    ("pause", "Pause a canary at its current step"),
    ("resume", "Resume a paused canary (its step's analysis starts afresh)"),
    ("abort", "Abort: roll back an active deployment, or cancel a queued one"),
):
    router.add_api_route(f"/deployments/{{dep_id}}/{_action}", _command(_action), methods=["POST"],
                         response_model=Deployment, summary=_summary)
