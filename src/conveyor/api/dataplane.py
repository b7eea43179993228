"""Endpoints the agents and routers call: desired state, status, logs, routing.

Long-polls: the handler returns at once when the caller's version is stale,
else waits (up to ``wait`` seconds) for a poke on the topic and re-reads. Waits
are capped at one second between re-reads so that changes made by another
control-plane replica on the same database are seen too.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Query, Response
from sqlalchemy import insert, select, update
from starlette.concurrency import run_in_threadpool

from conveyor.api.deps import CP, Reader, Writer
from conveyor.api.schemas import RoutersView, RouterView
from conveyor.api.state import router_sync
from conveyor.services.domains import redact_keys, secret_box
from conveyor.deploy.documents import desired_state, routing_table
from conveyor.domain.wire import AgentStatus, DesiredState, LogBatch, RoutingTable
from conveyor.store.tables import hosts

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
    table = await _long_poll(cp, "routing", after, wait, lambda: routing_table(cp.engine, cp.settings.domain, secret_box(cp.settings.data_dir)))
    if router_id:
        cp.saw_router(router_id, admin, after or 0)
    if not _p.can_write:  # private keys go to routers (admin token) only, never to viewers
        table = redact_keys(table)
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
        table = await run_in_threadpool(routing_table, cp.engine, cp.settings.domain, secret_box(cp.settings.data_dir))
        sync = router_sync(cp.routers, table.version, time.time())
        remaining = deadline - time.monotonic()
        if sync.synced or remaining <= 0:
            return RoutersView(
                table_version=sync.table_version,
                synced=sync.synced,
                routers=[RouterView(id=rid, table_version=v, seconds_since_poll=age, synced=v >= sync.table_version) for rid, v, age in sync.routers],
            )
        await cp.notifier.wait("routers", min(remaining, 0.5))


@router.get("/agents/{host}/desired", response_model=DesiredState, summary="A host's desired state (long-poll)")
async def get_desired(
    host: str,
    cp: CP,
    _p: Writer,
    after: int | None = Query(None),
    wait: float = Query(0.0, ge=0, le=MAX_WAIT),
) -> DesiredState:
    return await _long_poll(cp, "desired", after, wait, lambda: desired_state(cp.engine, host))


@router.put("/agents/{host}/status", summary="An agent's report of what runs on its host")
def put_status(host: str, report: AgentStatus, cp: CP, _p: Writer) -> dict[str, bool]:
    if report.host != host:
        from fastapi import HTTPException

        raise HTTPException(422, f"report is for host {report.host!r} but was sent to /agents/{host}/status")
    doc = report.model_dump(mode="json")
    now = time.time()
    with cp.engine.begin() as conn:
        old = conn.execute(select(hosts.c.status).where(hosts.c.name == host)).first()
        values = dict(address=report.address, last_seen=now, desired_version=report.desired_version, status=doc)
        if old is None:
            conn.execute(insert(hosts).values(name=host, **values))
        else:
            conn.execute(update(hosts).where(hosts.c.name == host).values(**values))
    if old is None or _routing_view(old.status) != _routing_view(doc):
        cp.notifier.poke("routing", "orchestrator", "instances")
    return {"ok": True}


def _routing_view(status: dict | None) -> list[tuple[str, str, int | None, int]]:  # type: ignore[type-arg]
    return sorted(
        (i["id"], i["state"], i.get("port"), i.get("restarts", 0)) for i in (status or {}).get("instances", [])
    )


@router.post("/agents/{host}/logs", summary="New output of instances on a host")
def post_logs(host: str, batch: LogBatch, cp: CP, _p: Writer) -> dict[str, int]:
    written = 0
    logs = cp.settings.logs_dir
    logs.mkdir(parents=True, exist_ok=True)
    for chunk in batch.chunks:
        if not _safe_name(chunk.instance):
            continue
        path = logs / f"{chunk.instance}.log"
        size = path.stat().st_size if path.exists() else 0
        data = chunk.data.encode()
        end = chunk.offset + len(data)
        if end <= size:
            continue  # already have it (at-least-once delivery)
        if chunk.offset > size:  # a gap (control plane lost data): keep what we got, mark the gap
            data = f"[conveyor: {chunk.offset - size} bytes of output missing]\n".encode() + data
        else:
            data = data[size - chunk.offset :]
        with path.open("ab") as f:
            f.write(data)
        written += len(data)
    if written:
        cp.notifier.poke("logs")
    return {"written": written}


def _safe_name(name: str) -> bool:
    return bool(name) and "/" not in name and "\\" not in name and not name.startswith(".") and len(name) < 200


def _checked(cp, digest: str, *, manifest: bool) -> None:  # type: ignore[no-untyped-def]
    from fastapi import HTTPException

    from conveyor.build.digest import is_digest

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
def get_blob(digest: str, cp: CP, _p: Reader) -> Response:
    from starlette.responses import FileResponse

    _checked(cp, digest, manifest=False)
    return FileResponse(cp.artifacts.blob_path(digest), media_type="application/octet-stream")
