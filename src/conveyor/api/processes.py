"""`conveyor scale` and `conveyor ps`: thin over ``services/processes.py``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from conveyor.api.deps import CP, Reader, Writer
from conveyor.services import processes
from conveyor.services.schemas import RestartRequest, ScaleRequest

router = APIRouter(tags=["processes"])


@router.post("/apps/{app}/scale", summary="Instances per process type, without a new release")
def scale(app: str, body: ScaleRequest, cp: CP, p: Writer) -> dict[str, Any]:
    return processes.scale(cp, app, body.env, body.counts, actor=p.name, origin=p.origin)


@router.get("/apps/{app}/ps", summary="Every instance of every process type: host, state, restarts, uptime")
def ps(app: str, cp: CP, _p: Reader, env: str | None = None) -> list[dict[str, Any]]:
    return processes.ps(cp, app, env)


@router.post("/apps/{app}/restart", summary="Rolling restart of the current release (no new release)")
def restart(app: str, body: RestartRequest, cp: CP, p: Writer) -> dict[str, Any]:
    return processes.restart(cp, app, body.env, body.process, actor=p.name, origin=p.origin)


@router.get("/apps/{app}/restart", summary="The process types whose rolling restart is in progress")
def restart_pending(app: str, cp: CP, _p: Reader, env: str = "production") -> dict[str, Any]:
    return {"pending": processes.restarts_pending(cp, app, env)}
