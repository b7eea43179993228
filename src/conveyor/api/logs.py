"""Instance output, as shipped by the agents: history merged by time, and follow. The door only:
what a line looks like, which instances are read and why reads cannot stall the event loop are
in :mod:`conveyor.services.logs`."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import PlainTextResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from conveyor.api.deps import CP, Reader, token_from
from conveyor.services import logs

router = APIRouter(tags=["logs"])


@router.get(
    "/apps/{app}/logs",
    summary="Instance output merged by time (history, or follow as a stream)",
    responses={429: {"description": "this token already follows as many log streams as allowed"}},
)
async def get_logs(
    request: Request,
    app: str,
    cp: CP,
    _p: Reader,
    env: str | None = Query(None, description="only this environment"),
    release: int | None = Query(None, ge=0, le=2**31, description="only this release"),
    lines: int = Query(100, ge=0, le=10000, description="lines of history, all instances together"),
    since: str | None = Query(None, description="only lines since this: a duration ago (10m, 1h) or a UTC time",
                              pattern=logs.SINCE_PATTERN),
    all_: bool = Query(False, alias="all", description="also instances that no longer exist"),
    health: bool = Query(False, description="keep the health checks' requests"),
    follow: bool = Query(False, description="keep streaming new output"),
    grep: str | None = Query(None, description="only lines containing this text"),
):  # type: ignore[no-untyped-def]
    try:
        since_stamp = logs.parse_since(since, time.time()) if since else ""
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    src = await run_in_threadpool(logs.sources, cp, app, env, release, all_)
    pattern = None if health else logs.health_pattern(src.health_paths)
    if follow:  # take a follower slot before reading anything
        token = token_from(request) or ""
        key = hashlib.sha256(token.encode()).hexdigest()[:16]
        limit = logs.follower_limit(request.app.state, cp.settings.log_followers_per_token)
        if not limit.acquire(key):
            raise HTTPException(
                429, f"this token already follows {limit.per_token} log streams: stop one (or use a token of your own) and retry",
            )
    try:
        history, ends = await run_in_threadpool(logs.history, cp, src.ids, lines, since_stamp, pattern, grep)
    except BaseException:
        if follow:
            limit.release(key)
        raise
    if not follow:
        return PlainTextResponse(logs.render(history))

    async def stream() -> AsyncIterator[bytes]:
        try:
            if history:
                yield logs.render(history).encode()
            offsets = dict(ends)
            ids = src.ids
            rounds = 0
            while True:
                await cp.notifier.wait("logs", 1.0)
                rounds += 1
                if rounds % 5 == 0 and not all_:  # new instances appear, gone ones stop being read
                    ids = (await run_in_threadpool(logs.sources, cp, app, env, release, False)).ids
                new = await run_in_threadpool(logs.new_lines, cp, ids, offsets, pattern, grep)
                if new:
                    yield logs.render(new).encode()
                await asyncio.sleep(0.2)  # at most ~5 reads a second per follower, however busy the logs
        finally:
            limit.release(key)

    return StreamingResponse(stream(), media_type="text/plain; charset=utf-8")
