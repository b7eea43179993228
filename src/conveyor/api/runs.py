"""`conveyor run`: thin over ``services/runs.py``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from conveyor.api.deps import CP, Writer
from conveyor.services import runs
from conveyor.services.schemas import RunRequest

router = APIRouter(tags=["runs"])


@router.post("/apps/{app}/runs", status_code=201, summary="Run a one-off command in the current release")
def start_run(app: str, body: RunRequest, cp: CP, p: Writer) -> dict[str, Any]:
    return runs.start(cp, app, body.env, body.command, actor=p.name, origin=p.origin)


# Writer, not Reader: a one-off command's output (a management command's) is not for read-only tokens.
@router.get("/runs/{run_id}", summary="A run's state, exit code and output from a byte offset")
def run_output(run_id: str, cp: CP, _p: Writer, offset: int = Query(0, ge=0)) -> dict[str, Any]:
    return runs.output(cp, run_id, offset)


@router.post("/runs/{run_id}/interrupt", summary="Forward a Ctrl-C: the command gets SIGINT and goes on until it exits")
def interrupt_run(run_id: str, cp: CP, p: Writer) -> dict[str, Any]:
    return runs.interrupt(cp, run_id, actor=p.name, origin=p.origin)


@router.delete("/runs/{run_id}", summary="Stop a run (its process gets SIGTERM)")
def stop_run(run_id: str, cp: CP, p: Writer, reason: str = "stopped") -> dict[str, bool]:
    runs.stop(cp, run_id, reason[:100], actor=p.name, origin=p.origin)
    return {"ok": True}
