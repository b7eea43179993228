"""Instance output, as shipped by the agents: tail and follow.

Lines are prefixed with the instance id (``hello-production-r3-ab12| ...``) like
``heroku logs``; ``follow`` streams new lines as the agents ship them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse, StreamingResponse
from sqlalchemy import select

from conveyor.api.deps import CP, Reader
from conveyor.store import repo
from conveyor.store.tables import environments, instances

router = APIRouter(tags=["logs"])


def _instance_ids(cp: CP, app: str, env: str | None, release: int | None) -> list[str]:  # type: ignore[valid-type]
    """Instances of the app (current and past), from the log files present."""
    with cp.engine.connect() as conn:
        app_row = repo.get_app(conn, app)
        if env:
            repo.get_env(conn, app_row["id"], env)
        q = (
            select(instances.c.id)
            .select_from(instances.join(environments, environments.c.id == instances.c.env_id))
            .where(environments.c.app_id == app_row["id"])
        )
        live = {r.id for r in conn.execute(q)}
    prefix = f"{app}-{env}-" if env else f"{app}-"
    found = {p.stem for p in cp.settings.logs_dir.glob(f"{prefix}*.log")} if cp.settings.logs_dir.exists() else set()
    ids = (found | live) if env is None else {i for i in (found | live) if i.startswith(prefix)}
    if release is not None:
        ids = {i for i in ids if f"-r{release}-" in i}
    return sorted(ids)


def _tail(path: Path, lines: int) -> tuple[list[str], int]:
    if not path.exists():
        return [], 0
    data = path.read_bytes()
    text = data.decode(errors="replace").splitlines()
    return text[-lines:] if lines else [], len(data)


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
    ids = _instance_ids(cp, app, env, release)
    logs_dir = cp.settings.logs_dir
    offsets: dict[str, int] = {}
    history: list[str] = []
    for iid in ids:
        tail, size = _tail(logs_dir / f"{iid}.log", lines)
        offsets[iid] = size
        history += [f"{iid}| {line}" for line in tail if not grep or grep in line]
    if not follow:
        return PlainTextResponse("\n".join(history) + ("\n" if history else ""))

    async def stream() -> AsyncIterator[bytes]:
        if history:
            yield ("\n".join(history) + "\n").encode()
        while True:
            await cp.notifier.wait("logs", 1.0)
            for iid in _instance_ids(cp, app, env, release):
                path = logs_dir / f"{iid}.log"
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
