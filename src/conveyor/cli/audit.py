"""``conveyor audit [--app] [--since]`` and ``conveyor ps [APP]``: thin over /audit and /hosts."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from conveyor.cli import output as o
from conveyor.cli.client import Api

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of tables.")]


def _run(fn: Any) -> Any:
    from conveyor.cli.main import run

    return run(fn)


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

    _run(body)


def _size(n: float | None) -> str:
    if n is None:
        return "-"
    for unit, scale in (("G", 2**30), ("M", 2**20), ("K", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f}{unit}"
    return f"{int(n)}B"


def ps(app: Annotated[str | None, typer.Argument(metavar="[APP]", help="Only this app's instances.")] = None,
       json: JsonOpt = False) -> None:
    """Instances with their state, resource use against their limits, and isolation."""

    def body() -> None:
        with Api() as api:
            view = api.get("/hosts")
        rows = [{**i, "host": h["name"]} for h in view["hosts"] for i in h["instances"] if app is None or i.get("app") == app]
        if json:
            o.emit_json(rows)
            return
        out = []
        for i in rows:
            u, lim = i.get("usage") or {}, i.get("limits") or {}
            out.append([i["id"], i["host"], o.styled(i["state"]),
                        f"{_size(u.get('memory_bytes'))} / {_size(lim.get('memory'))}",
                        f"{u['cpu_seconds']:.1f}s" if u.get("cpu_seconds") is not None else "-",
                        f"{u.get('pids', '-')} / {lim.get('pids', '-')}",
                        i.get("sandbox") or "-", (i.get("message") or "").split("\n", 1)[0][:60]])
        o.table("Instances", ["INSTANCE", "HOST", "STATE", "MEMORY", "CPU", "PIDS", "ISOLATION", "MESSAGE"], out)
        for h in view["hosts"]:
            if (h.get("sandbox") or "").startswith("UNSANDBOXED"):
                o.err.print(f"[bold red]WARNING:[/bold red] host {h['name']}: {h['sandbox']}")

    _run(body)
