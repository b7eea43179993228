"""``conveyor audit [--app] [--since]`` and ``conveyor ps [APP]``: thin over /audit and /hosts."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from conveyor.cli import output as o
from conveyor.cli.main import JsonOpt, run  # registered from main, after it is loaded
from conveyor.cli.client import Api




def audit(
    app: Annotated[str | None, typer.Option("--app", help="Only calls about this app.")] = None,
    since: Annotated[str | None, typer.Option("--since", help="How far back, e.g. 1h, 7d.")] = None,
    limit: Annotated[int, typer.Option("--limit", help="At most this many rows.")] = 100,
    json: JsonOpt = False,
) -> None:
    """Every mutating call: who, what, on which app, from where, with what outcome (newest first)."""

    def body() -> None:
        with Api() as api:
            rows = api.get("/audit", params={k: v for k, v in {"app": app, "since": since, "limit": limit}.items() if v})
        if json:
            o.emit_json(rows)
            return
        o.table("Audit", ["WHEN", "WHO", "ROLE", "ACTION", "APP", "FROM", "OUTCOME"],
                [[o.ago(r["at"]), r["actor"], r["role"], r["action"], r["app"] or "", r["origin"],
                  f"{r['outcome']} ({r['status']})"] for r in rows])

    run(body)


def _size(n: float | None) -> str:
    if n is None:
        return "-"
    for unit, scale in (("G", 2**30), ("M", 2**20), ("K", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f}{unit}"
    return f"{int(n)}B"


def usage_cells(i: dict[str, Any]) -> list[str]:
    """MEMORY, CPU and PIDS cells of an instance (``conveyor ps``): its use against its limits, as its agent reported."""
    u, lim = i.get("usage") or {}, i.get("limits") or {}
    return [f"{_size(u.get('memory_bytes'))} / {_size(lim.get('memory'))}",
            f"{u['cpu_seconds']:.1f}s" if u.get("cpu_seconds") is not None else "-",
            f"{u.get('pids', '-')} / {lim.get('pids', '-')}"]
