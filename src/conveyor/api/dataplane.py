"""Endpoints the agents and routers call: desired state, status, logs, routing.

Long-polls: the handler returns at once when the caller's version is stale,
else waits (up to ``wait`` seconds) for a poke on the topic and re-reads. Waits
are capped at one second between re-reads so that changes made by another
control-plane replica on the same database are seen too.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, HTTPException, Query, Response
from starlette.concurrency import run_in_threadpool
from starlette.responses import FileResponse

from conveyor.api.deps import CP, Reader, Writer
from conveyor.build.digest import is_digest
from conveyor.domain.wire import AgentStatus, DesiredState, LogBatch, RoutingTable
from conveyor.services import hosts, logs
from conveyor.services.schemas import RoutersView

router = APIRouter(tags=["data plane"])
MAX_WAIT = 60.0


async def _long_poll(cp, topic: str, after: int | None, wait: float, read):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + min(max(wait, 0.0), MAX_WAIT)
    while True:
        doc = await run_in_threadpool(read)
        remaining = deadline - time.monotonic()
        if after is None or doc.version != after or remaining <= 0:
            return doc
        await cp.notifier.wait(topic, min(remaining, 1.0))


@router.get("/routing", response_model=RoutingTable, summary="The routing table (long-poll)")
async def get_routing(
    cp: CP,
    _p: Reader,
    after: int | None = Query(None, description="version the caller holds; wait for a newer one"),
    wait: float = Query(0.0, ge=0, le=MAX_WAIT, description="seconds to wait for a change"),
    router_id: str | None = Query(None, alias="router"),
    admin: str | None = Query(None, description="the router's admin URL, for metrics scraping"),
) -> RoutingTable:
    if router_id:
        cp.saw_router(router_id, admin, after or 0)
    table = await _long_poll(cp, "routing", after, wait, lambda: hosts.routing(cp))
    if router_id:
        cp.saw_router(router_id, admin, after or 0)
    return table


@router.get("/routers", response_model=RoutersView, summary="Live routers and the table version each holds (long-poll)")
async def get_routers(
    cp: CP,
    _p: Reader,
    wait: float = Query(0.0, ge=0, le=MAX_WAIT, description="seconds to wait until every live router holds the current table"),
) -> RoutersView:
    """A deployment ends when its routing change is committed; the routers apply it a few
    milliseconds later. ``deploy --wait`` calls this with ``wait`` so that it returns only once
    requests sent next reach the new release."""
    deadline = time.monotonic() + wait
    while True:
        view = await run_in_threadpool(hosts.routers, cp)
        remaining = deadline - time.monotonic()
        if view.synced or remaining <= 0:
            return view
        await cp.notifier.wait("routers", min(remaining, 0.5))


@router.get("/agents/{host}/desired", response_model=DesiredState, summary="A host's desired state (long-poll)")
async def get_desired(
    host: str,
    cp: CP,
    _p: Writer,
    after: int | None = Query(None),
    wait: float = Query(0.0, ge=0, le=MAX_WAIT),
) -> DesiredState:
    return await _long_poll(cp, "desired", after, wait, lambda: hosts.desired(cp, host))


@router.put("/agents/{host}/status", summary="An agent's report of what runs on its host")
def put_status(host: str, report: AgentStatus, cp: CP, _p: Writer) -> dict[str, bool]:
    hosts.record_report(cp, host, report)
    return {"ok": True}


@router.post("/agents/{host}/logs", summary="New output of instances on a host")
def post_logs(host: str, batch: LogBatch, cp: CP, _p: Writer) -> dict[str, int]:
    return {"written": logs.store_batch(cp, batch)}


def _checked(cp, digest: str, *, manifest: bool) -> None:  # type: ignore[no-untyped-def]
    if not is_digest(digest):
        raise HTTPException(400, f"{digest!r} is not a digest: expected sha256:<64 hex digits>")
    present = cp.artifacts.has_manifest(digest) if manifest else cp.artifacts.has(digest)
    if not present:
        raise HTTPException(404, f"{'image' if manifest else 'blob'} {digest} is not in the artifact store")


@router.get("/images/{digest}/manifest", summary="An image manifest (canonical JSON bytes, verifiable by digest)")
def get_image_manifest(digest: str, cp: CP, _p: Reader) -> Response:
    _checked(cp, digest, manifest=True)
    return Response(cp.artifacts.manifest_bytes(digest), media_type="application/json")


@router.get("/blobs/{digest}", summary="A layer archive by digest")
def get_blob(digest: str, cp: CP, _p: Writer) -> Response:
    # Writer (the agents' token), not Reader: the app layer holds conveyor.toml, [env.X] vars included.
    _checked(cp, digest, manifest=False)
    return FileResponse(cp.artifacts.blob_path(digest), media_type="application/octet-stream")
