"""The live deployment page, streamed over Server-Sent Events.

Why SSE carrying server-rendered HTML: one template renders the deployment both
for the first page load and for every update, so there is a single place that
decides what a deployment looks like, and the browser only swaps a fragment.
The stream sends a new fragment whenever the deployment, its instances or the
routing change (the notifier's ``deployments``/``instances``/``routing``
topics, re-checked every second for changes made by another replica), and ends
with ``event: end`` when the deployment reaches a final state.

Approve / Reject (a pipeline promotion awaiting approval), Promote / Pause / Resume / Abort call ``POST /api/v1/deployments/{id}/{action}``.
They are rendered only when the API has that route, and the page's JavaScript
hides a button whose endpoint answers 404.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from conveyor.services import views
from conveyor.services.errors import NotFound
from conveyor.web.app_pages import not_found
from conveyor.web.render import ENV, render
from conveyor.web.session import PageUser

router = APIRouter(include_in_schema=False)

ACTIONS = ("promote", "pause", "resume", "abort", "cancel", "approve", "reject")
KEEPALIVE_S = 15.0


def available_actions(request: Request) -> set[str]:
    """Which ``POST /api/v1/deployments/{id}/<action>`` routes this control plane has (from its OpenAPI)."""
    try:
        paths = request.app.openapi().get("paths", {})
    except Exception:  # noqa: BLE001 - an OpenAPI bug must not break the page; the JS hides 404s
        return set(ACTIONS)
    found = set()
    for path, ops in paths.items():
        if "post" in ops and path.startswith("/api/v1/deployments/{"):
            tail = path.rsplit("/", 1)[-1]
            if tail in ACTIONS:
                found.add(tail)
    return found


def buttons_for(state: str, available: set[str]) -> list[str]:
    """The controls that make sense in this state (and that the API offers).

    ``promote`` moves a canary to its next step; ``promote-full`` is the same
    endpoint with ``{"full": true}``: straight to 100 %.
    """
    wanted: list[str] = []
    if state == "queued":
        wanted = ["cancel"]
    elif state == "awaiting_approval":  # a pipeline stage's manual judgment
        wanted = ["approve", "reject"]
    elif state == "paused":
        wanted = ["resume", "promote", "promote-full", "abort"]
    elif state == "canary":
        wanted = ["promote", "promote-full", "pause", "abort"]
    elif state in ("baking", "rolling", "starting", "releasing"):
        wanted = ["abort"]
    return [b for b in wanted if b.removesuffix("-full") in available]


def snapshot(cp: Any, dep_id: int) -> dict[str, Any]:
    """Everything the live page shows (``conveyor.services.views.deployment_snapshot``, also its JSON twin)."""
    return views.deployment_snapshot(cp, dep_id)


def fragment(snap: dict[str, Any], available: set[str], can_write: bool) -> str:
    return ENV.get_template("_deployment_live.html").render(
        s=snap, d=snap["deployment"], buttons=buttons_for(snap["deployment"]["state"], available),
        can_write=can_write, now=time.time())


def _fingerprint(snap: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in snap.items() if k != "time"}, sort_keys=True, default=str)


@router.get("/deployments/{dep_id}", response_class=HTMLResponse)
async def deployment_page(request: Request, dep_id: int, user: PageUser) -> HTMLResponse:
    cp = request.app.state.cp
    try:
        snap = await run_in_threadpool(snapshot, cp, dep_id)
    except NotFound as exc:
        return not_found(request, str(exc))
    html = fragment(snap, available_actions(request), user.can_write)
    return render(request, "deployment.html", s=snap, d=snap["deployment"], live_html=html)


@router.get("/deployments/{dep_id}/stream")
async def deployment_stream(request: Request, dep_id: int, user: PageUser) -> StreamingResponse:
    """``text/event-stream``: ``event: update`` with ``{"html", "state", "terminal"}``; ``event: end`` at the end."""
    cp = request.app.state.cp
    await run_in_threadpool(snapshot, cp, dep_id)  # 404 before the stream starts
    available = available_actions(request)

    async def stream() -> AsyncIterator[bytes]:
        last = ""
        idle_since = time.monotonic()
        yield b"retry: 2000\n\n"
        while True:
            snap = await run_in_threadpool(snapshot, cp, dep_id)
            fp = _fingerprint(snap)
            if fp != last:
                last = fp
                idle_since = time.monotonic()
                payload = {"html": fragment(snap, available, user.can_write),
                           "state": snap["deployment"]["state"], "terminal": snap["terminal"]}
                yield f"event: update\ndata: {json.dumps(payload)}\n\n".encode()
            if snap["terminal"]:
                yield b"event: end\ndata: {}\n\n"
                return
            if time.monotonic() - idle_since > KEEPALIVE_S:
                idle_since = time.monotonic()
                yield b": keep-alive\n\n"
            if await request.is_disconnected():
                return
            waits = [asyncio.ensure_future(cp.notifier.wait(t, 1.0)) for t in ("deployments", "instances", "routing")]
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for w in waits:
                w.cancel()

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
