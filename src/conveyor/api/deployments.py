"""Deployments: queue, roll back, watch, cancel.

``GET /deployments/{id}?wait=S&after=STATE`` is a long-poll: it answers when the
deployment's state or progress differs from what the caller last saw, so the
CLI's ``--wait`` follows a deployment live without hammering the API.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from conveyor.api.deps import CP, Reader, Writer
from conveyor.domain.wire import INT64_MAX, deployment_fingerprint
from conveyor.services import deployments, pipelines
from conveyor.services.schemas import ApprovalRequest, CommandRequest, DeployRequest, Deployment, ReleaseOutput, RollbackRequest, RowId

router = APIRouter(tags=["deployments"])


@router.post("/apps/{app}/deployments", status_code=201, response_model=Deployment, summary="Deploy an image")
def create_deployment(app: str, body: DeployRequest, cp: CP, p: Writer) -> Deployment:
    dep_id = deployments.deploy(cp, app, body.env, body.image, from_env=body.from_env, strategy=body.strategy,
                                actor=p.name, origin=p.origin, skip_release_phase=body.skip_release_phase,
                                force=body.force)
    return deployments.read(cp, dep_id)


@router.post("/apps/{app}/rollback", status_code=201, response_model=Deployment, summary="Roll back to the previous release")
def create_rollback(app: str, body: RollbackRequest, cp: CP, p: Writer) -> Deployment:
    dep_id = deployments.rollback(cp, app, body.env, to_release=body.release, actor=p.name, origin=p.origin)
    return deployments.read(cp, dep_id)


@router.get("/apps/{app}/deployments", response_model=list[Deployment], summary="Deployments of an app, newest first")
def list_deployments(
    app: str, cp: CP, _p: Reader, env: str | None = None, limit: int = Query(50, ge=1, le=500)
) -> list[Deployment]:
    return deployments.list_for_app(cp, app, env, limit)


@router.get("/deployments/{dep_id}/release-output", response_model=ReleaseOutput,
            summary="The release command's output from a byte offset, to follow it while it runs")
def release_output(dep_id: RowId, cp: CP, _p: Reader,
                   offset: int = Query(0, ge=0, le=INT64_MAX, description="where the last answer's 'next' said")) -> ReleaseOutput:
    return deployments.release_output_from(cp, dep_id, offset)


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
        poked = cp.notifier.generation("deployments")
        dep = await run_in_threadpool(deployments.read, cp, dep_id)
        remaining = deadline - time.monotonic()
        if seen is None or fingerprint(dep) != seen or remaining <= 0:
            return dep
        await cp.notifier.wait("deployments", min(remaining, 0.5), since=poked)


def fingerprint(dep: Deployment) -> str:
    return deployment_fingerprint(dep.state, len(dep.verdicts), dep.progress)


@router.post("/deployments/{dep_id}/cancel", response_model=Deployment, summary="Cancel a queued deployment")
def cancel_deployment(dep_id: RowId, cp: CP, p: Writer) -> Deployment:
    deployments.cancel_queued(cp, dep_id, actor=p.name)
    return deployments.read(cp, dep_id)


def _command(action: str):  # type: ignore[no-untyped-def]
    def handler(dep_id: RowId, cp: CP, p: Writer, body: CommandRequest | None = None) -> Deployment:
        deployments.request(cp, dep_id, action, full=bool(body and body.full), actor=p.name)
        return deployments.read(cp, dep_id)

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


@router.post("/deployments/{dep_id}/approve", response_model=Deployment,
             summary="Approve a pipeline promotion awaiting approval: it joins its environment's queue "
                     "(409 if it waits for no approval, or the environment is locked or frozen)")
def approve_deployment(dep_id: RowId, cp: CP, p: Writer, body: ApprovalRequest | None = None) -> Deployment:
    pipelines.decide(cp, dep_id, True, reason=body.reason if body else "", actor=p.name, origin=p.origin)
    return deployments.read(cp, dep_id)


@router.post("/deployments/{dep_id}/reject", response_model=Deployment,
             summary="Reject a pipeline promotion awaiting approval: it is cancelled, nothing is deployed")
def reject_deployment(dep_id: RowId, cp: CP, p: Writer, body: ApprovalRequest | None = None) -> Deployment:
    pipelines.decide(cp, dep_id, False, reason=body.reason if body else "", actor=p.name, origin=p.origin)
    return deployments.read(cp, dep_id)
