"""`conveyor scale` and `conveyor ps`: thin over ``services/processes.py``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from conveyor.api.deps import CP, Reader, Writer
from conveyor.domain.autoscale import Policy
from conveyor.services import autoscale, processes
from conveyor.services.schemas import AutoscaleRequest, RestartRequest, ScaleRequest

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


@router.put("/apps/{app}/autoscale", summary="Autoscale a process type (HPA's algorithm, its parameters given)")
def set_autoscale(app: str, body: AutoscaleRequest, cp: CP, p: Writer) -> dict[str, Any]:
    policy = Policy(**body.model_dump(exclude={"env", "process"}))
    return autoscale.set_policy(cp, app, body.env, body.process, policy, actor=p.name, origin=p.origin)


@router.get("/apps/{app}/autoscale", summary="Autoscaled process types: policy, count, last decision and why")
def get_autoscale(app: str, cp: CP, _p: Reader, env: str = "production") -> dict[str, Any]:
    return autoscale.show(cp, app, env)


@router.delete("/apps/{app}/autoscale", summary="Turn autoscaling off (the count stays where it is)")
def delete_autoscale(app: str, cp: CP, p: Writer, env: str = "production", process: str = "web") -> dict[str, Any]:
    return autoscale.remove(cp, app, env, process, actor=p.name, origin=p.origin)
