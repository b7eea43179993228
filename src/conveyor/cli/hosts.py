"""``conveyor hosts``: the hosts (agents) with their labels, capacity and instances; the routers;
``drain`` / ``undrain`` and ``join-token``.

Thin over the API (``GET /hosts``, ``GET /routers``, ``POST|DELETE /hosts/{host}/drain``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.markup import escape

from conveyor.cli import output as o
from conveyor.cli.client import Api
from conveyor.cli.main import JsonOpt, run  # registered from main, after it is loaded

hosts_app = typer.Typer(help="Hosts (agents) and routers: labels, capacity, drain; their join tokens.",
                        invoke_without_command=True)


def _state(h: dict[str, Any]) -> str:
    if not h["online"]:
        return o.styled("lost")
    return "[yellow]drained[/yellow]" if h.get("drained") else o.styled("online")


def _capacity(h: dict[str, Any]) -> str:
    used = len(h["instances"])
    parts = [f"{used}/{h['capacity']}" if h.get("capacity") is not None else f"{used}/-"]
    if h.get("memory"):
        parts.append(f"{h['memory'] // (1024 * 1024)} MiB")
    return " ".join(parts)


@hosts_app.callback()
def hosts(ctx: typer.Context,
          wide: Annotated[bool, typer.Option("--wide", help="Also list each host's instances.")] = False,
          json: JsonOpt = False) -> None:
    """The hosts (agents) with their labels, capacity and instances, and the routers with the routing
    table each holds.

    A host that has not reported for the lost-host deadline (15 s unless `conveyor up
    --host-lost-after`) is lost: its instances are out of the routing table and, between
    deployments, started again on live hosts. Environments pick hosts by label
    ([env.NAME] hosts = "role=web"); `conveyor agent --label k=v --capacity N` sets them.
    """
    if ctx.invoked_subcommand is not None:
        return

    def body() -> None:
        with Api() as api:
            view = api.get("/hosts")
            routers = api.get("/routers")
        if json:
            o.emit_json({"hosts": view["hosts"], "routers": routers})
            return
        o.table(
            "Hosts",
            ["HOST", "ADDRESS", "STATE", "LABELS", "USED/CAP", "LAST REPORT"]
            + (["INSTANCES"] if wide else []),
            [[h["name"], h["address"], _state(h),
              escape(",".join(f"{k}={v}" for k, v in sorted((h.get("labels") or {}).items()))) or "-",
              _capacity(h), o.ago(h["last_seen"])]
             + ([", ".join(f"{i.get('app') or '?'}/{i.get('env') or '?'} r{i.get('release')} {i.get('state')}"
                           for i in h["instances"]) or "-"] if wide else [])
             for h in view["hosts"]],
        )
        o.table(
            f"Routers (current routing table v{routers['table_version']})",
            ["ROUTER", "TABLE", "LAST POLL"],
            [[r["id"], f"v{r['table_version']}" + ("" if r["synced"] else " (behind)"), f"{r['seconds_since_poll']:.1f}s ago"]
             for r in routers["routers"]],
        )
        for h in view["hosts"]:  # issue 15: an unsandboxed host is said loudly
            if (h.get("sandbox") or "").startswith("UNSANDBOXED"):
                o.err.print(f"[bold red]WARNING:[/bold red] host {h['name']}: {h['sandbox']}")

    run(body)


HostArg = Annotated[str, typer.Argument(metavar="HOST", help="The host's name, as `conveyor hosts` lists it.")]


@hosts_app.command("drain")
def drain(host: HostArg, json: JsonOpt = False) -> None:
    """Move every instance off HOST and place nothing new on it (until `conveyor hosts undrain`).

    Each instance is replaced first, on another host that fits (labels, capacity), and
    drained only once its replacement is ready: no request fails. An instance with nowhere
    else to go stays where it is (the event log says why).
    """

    _set_drain(host, "POST", json, lambda h: f"host {host} drained: its {len(h['instances'])} instance(s) move to "
               "other hosts (`conveyor hosts` to watch; `conveyor hosts undrain` to take it back)")


@hosts_app.command("undrain")
def undrain(host: HostArg, json: JsonOpt = False) -> None:
    """Let HOST take new instances again (instances moved away stay where they are)."""
    _set_drain(host, "DELETE", json, lambda h: f"host {host} takes new instances again")


def _set_drain(host: str, method: str, json: bool, said: Callable[[dict[str, Any]], str]) -> None:
    def body() -> None:
        with Api() as api:
            h = api.request(method, f"/hosts/{host}/drain")
        o.emit_json(h) if json else o.out.print(said(h))

    run(body)


@hosts_app.command("remove")
def remove(host: HostArg, json: JsonOpt = False) -> None:
    """Forget HOST: its agent's credential is revoked (it is refused from now on) and its
    instances count as lost, so they start again on the other hosts.

    Drain it first (`conveyor hosts drain HOST`) to move its instances with no failed request.
    """

    def body() -> None:
        with Api() as api:
            r = api.request("DELETE", f"/hosts/{host}")
        if json:
            o.emit_json(r)
            return
        o.out.print(f"host {host} removed; {len(r['revoked_tokens'])} credential(s) revoked")

    run(body)


def register(app: typer.Typer) -> None:
    from conveyor.cli.tokens import join_token

    hosts_app.command("join-token")(join_token)  # issue 15
    app.add_typer(hosts_app, name="hosts")
