"""Endpoints the agents and routers call: desired state, status, logs, routing.

Long-polls: the handler returns at once when the caller's version is stale,
else waits (up to ``wait`` seconds) for a poke on the topic and re-reads. Waits
are capped at one second between re-reads so that changes made by another
control-plane replica on the same database are seen too.

The routing table's re-reads are shared by the waiting routers (``services.hosts.routing``,
``deploy.notify.Shared``): a poke or a second passing costs one computation of the table for
all of them. Waiting agents are not woken every second: ``services.hosts.watch_desired`` reads
the desired-state counter once a second for all of them and pokes when another replica moved it.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, HTTPException, Query, Request, Response
from starlette.concurrency import run_in_threadpool
from starlette.responses import FileResponse

from conveyor.api.deps import CP, AgentCaller, AnyCaller, BlobReader, ImageReader, Reader
from conveyor.build.digest import is_digest
from conveyor.domain.wire import AgentStatus, DesiredState, LogBatch, RoutingTable
from conveyor.services import auth, hosts, logs
from conveyor.services.schemas import RoutersView

router = APIRouter(tags=["data plane"])
MAX_WAIT = 60.0


async def _long_poll(cp, topic: str, after: int | None, wait: float, read, reread=None, recheck: float | None = 1.0,  # type: ignore[no-untyped-def]
                     unchanged=None):
    """``read`` the document; while its version is ``after``, wait for a poke of ``topic`` (at most
    ``recheck`` seconds at a time: None when something else pokes for changes this process did not
    make) and read it again with ``reread`` (default ``read``), unless ``unchanged()`` (a cheaper
    check) says it is still ``after``."""
    deadline = time.monotonic() + min(max(wait, 0.0), MAX_WAIT)
    seen = cp.notifier.generation(topic)
    doc = await run_in_threadpool(read)
    while True:
        remaining = deadline - time.monotonic()
        if after is None or doc.version != after or remaining <= 0:
            return doc
        if await cp.notifier.wait(topic, remaining if recheck is None else min(remaining, recheck), since=seen) \
                or recheck is not None:
            seen = cp.notifier.generation(topic)  # before reading: a poke during the read is not lost
            if unchanged is None or not await run_in_threadpool(unchanged):
                doc = await run_in_threadpool(reread or read)


@router.get("/routing", response_model=RoutingTable, summary="The routing table (long-poll)")
async def get_routing(
    request: Request,
    cp: CP,
    p: AnyCaller,
    after: int | None = Query(None, description="version the caller holds; wait for a newer one"),
    wait: float = Query(0.0, ge=0, le=MAX_WAIT, description="seconds to wait for a change"),
    router_id: str | None = Query(None, alias="router", description="a router registering itself (its join token only)"),
    admin: str | None = Query(None, description="the registering router's admin URL, on its own host, for metrics scraping"),
) -> RoutingTable:
    """People and routers read the table; only a router, with its own join token, registers
    (``router``, ``admin``: scraped twice a second and stored as real traffic). Certificates' private
    keys go to routers and admins only: never to viewers or deployers (who may be scoped to one app)."""
    server = request.scope.get("server") or ("", 0)
    auth.register_router(cp, p, router_id, admin, request.client.host if request.client else "", server[0] or "",
                         after or 0)
    with_keys = p.role in ("router", "admin")
    # A router's first read may be the shared one too: if a change committed but not yet poked is
    # missing from it, the poke that follows wakes the router. A person's read (no ``after``) is fresh.
    shared = lambda: hosts.routing(cp, with_keys=with_keys, shared=True)  # noqa: E731
    first = shared if after is not None else (lambda: hosts.routing(cp, with_keys=with_keys))
    table = await _long_poll(cp, "routing", after, wait, first, shared)
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
        seen = cp.notifier.generation("routers")
        view = await run_in_threadpool(hosts.routers, cp)
        remaining = deadline - time.monotonic()
        if view.synced or remaining <= 0:
            return view
        await cp.notifier.wait("routers", min(remaining, 0.5), since=seen)


@router.get("/agents/{host}/desired", response_model=DesiredState, summary="A host's desired state (long-poll)")
async def get_desired(
    host: str,
    cp: CP,
    _p: AgentCaller,
    after: int | None = Query(None),
    wait: float = Query(0.0, ge=0, le=MAX_WAIT),
) -> DesiredState:
    # no re-read a second: ``hosts.watch_desired`` pokes for changes made by another replica
    return await _long_poll(cp, "desired", after, wait, lambda: hosts.desired(cp, host), recheck=None,
                            unchanged=lambda: after is not None and hosts.desired_unchanged(cp, host, after))


@router.put("/agents/{host}/status", summary="An agent's report of what runs on its host")
def put_status(host: str, report: AgentStatus, cp: CP, _p: AgentCaller) -> dict[str, bool]:
    hosts.record_report(cp, host, report)
    return {"ok": True}


@router.post("/agents/{host}/logs", summary="New output of instances on a host")
def post_logs(host: str, batch: LogBatch, cp: CP, p: AgentCaller) -> dict[str, int]:
    return {"written": logs.store_batch(cp, batch, host if p.role == "agent" else None)}


def _checked(cp, digest: str, *, manifest: bool) -> None:  # type: ignore[no-untyped-def]
    if not is_digest(digest):
        raise HTTPException(400, f"{digest!r} is not a digest: expected sha256:<64 hex digits>")
    present = cp.artifacts.has_manifest(digest) if manifest else cp.artifacts.has(digest)
    if not present:
        raise HTTPException(404, f"{'image' if manifest else 'blob'} {digest} is not in the artifact store")


@router.get("/images/{digest}/manifest", summary="An image manifest (canonical JSON bytes, verifiable by digest)")
def get_image_manifest(digest: str, cp: CP, _p: ImageReader) -> Response:
    _checked(cp, digest, manifest=True)
    return Response(cp.artifacts.manifest_bytes(digest), media_type="application/json")


@router.get("/blobs/{digest}", summary="A layer archive by digest")
def get_blob(digest: str, cp: CP, _p: BlobReader) -> Response:
    _checked(cp, digest, manifest=False)
    return FileResponse(cp.artifacts.blob_path(digest), media_type="application/octet-stream")
