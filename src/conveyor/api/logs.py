"""Instance output, as shipped by the agents: tail and follow.

Lines are prefixed with the instance id (``hello-production-r3-ab12| ...``) like
``heroku logs``; ``follow`` streams new lines as the agents ship them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse, StreamingResponse

from conveyor.api.deps import CP, Reader
from conveyor.services import logs

router = APIRouter(tags=["logs"])


@router.get("/apps/{app}/logs", summary="Instance output (tail, or follow as a stream)")
async def get_logs(
    app: str,
    cp: CP,
    _p: Reader,
    env: str | None = Query(None, description="only this environment"),
    release: int | None = Query(None),
    lines: int = Query(100, ge=0, le=10000, description="lines of history per instance"),
    follow: bool = Query(False, description="keep streaming new output"),
    grep: str | None = Query(None, description="only lines containing this text"),
):  # type: ignore[no-untyped-def]
    ids = logs.instance_ids(cp, app, env, release)
    offsets: dict[str, int] = {}
    history: list[str] = []
    for iid in ids:
        tail, size = logs.tail(logs.path_of(cp, iid), lines)
        offsets[iid] = size
        history += [f"{iid}| {line}" for line in tail if not grep or grep in line]
    if not follow:
        return PlainTextResponse("\n".join(history) + ("\n" if history else ""))

    async def stream() -> AsyncIterator[bytes]:
        if history:
            yield ("\n".join(history) + "\n").encode()
        while True:
            await cp.notifier.wait("logs", 1.0)
            for iid in logs.instance_ids(cp, app, env, release):
                path = logs.path_of(cp, iid)
                if not path.exists():
                    continue
                size = path.stat().st_size
                start = offsets.get(iid, 0)
                if size <= start:
                    continue
                with path.open("rb") as f:
                    f.seek(start)
                    chunk = f.read(size - start)
                cut = chunk.rfind(b"\n") + 1
                if cut == 0:
                    continue
                offsets[iid] = start + cut
                out = [f"{iid}| {ln}" for ln in chunk[:cut].decode(errors="replace").splitlines()]
                out = [ln for ln in out if not grep or grep in ln]
                if out:
                    yield ("\n".join(out) + "\n").encode()
            await asyncio.sleep(0)

    return StreamingResponse(stream(), media_type="text/plain; charset=utf-8")
