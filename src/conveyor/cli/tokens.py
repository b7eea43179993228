"""``conveyor tokens create|list|revoke`` and ``conveyor hosts join-token``: thin over /tokens and /hosts/{host}/join-tokens.

A new token is printed once, here, and never again by anyone: the control plane
keeps its hash only.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from conveyor.cli import output as o
from conveyor.cli.main import JsonOpt, run  # registered from main, after it is loaded
from conveyor.cli.client import Api, CliError, ExitCode

tokens_app = typer.Typer(help="Scoped API tokens: create (shown once), list, revoke.", no_args_is_help=True)



def _scope(t: dict[str, Any]) -> str:
    if t.get("host"):
        return f"host {t['host']}"
    if t.get("scope_app"):
        return f"app {t['scope_app']}"
    if t.get("scope_team"):
        return f"team {t['scope_team']}"
    return "all apps"


def _shown_once(t: dict[str, Any], json: bool) -> None:
    if json:
        o.emit_json(t)
        return
    o.out.print(f"Token [bold]{t['name']}[/bold] ({t['role']}, {_scope(t)}, id {t['id']}"
                + (f", expires {o.ago(t['expires_at'])}" if t.get("expires_at") else "") + "):")
    o.out.print(t["token"], soft_wrap=True, markup=False, highlight=False)
    o.err.print("[yellow]This is the only time it is shown: store it now.[/yellow]")


@tokens_app.command("create")
def tokens_create(
    role: Annotated[str, typer.Option("--role", help="admin, deployer or viewer")],
    name: Annotated[str, typer.Option("--name", help="Who or what holds it (shown in the audit log).")],
    app: Annotated[str | None, typer.Option("--app", help="Only this app.")] = None,
    team: Annotated[str | None, typer.Option("--team", help="Only this team's apps.")] = None,
    expires: Annotated[str | None, typer.Option("--expires", help="Lifetime, e.g. 12h, 30d, 2w (default: never).")] = None,
    json: JsonOpt = False,
) -> None:
    """Create a token; it is printed once."""

    def body() -> None:
        with Api() as api:
            t = api.post("/tokens", json={"role": role, "name": name, "app": app, "team": team, "expires": expires})
        _shown_once(t, json)

    run(body)


@tokens_app.command("list")
def tokens_list(revoked: Annotated[bool, typer.Option("--revoked", help="Include revoked tokens.")] = False,
                json: JsonOpt = False) -> None:
    """Tokens (never their secrets)."""

    def body() -> None:
        with Api() as api:
            rows = api.get("/tokens", params={"revoked": revoked})
        if json:
            o.emit_json(rows)
            return
        o.table("Tokens", ["ID", "NAME", "ROLE", "SCOPE", "CREATED", "BY", "EXPIRES", "REVOKED"],
                [[t["id"], t["name"], t["role"], _scope(t), o.ago(t["created_at"]), t["created_by"],
                  o.ago(t["expires_at"]) if t.get("expires_at") else "never",
                  o.ago(t["revoked_at"]) if t.get("revoked_at") else ""] for t in rows])

    run(body)


@tokens_app.command("revoke")
def tokens_revoke(ref: Annotated[str, typer.Argument(metavar="ID_OR_NAME")], json: JsonOpt = False) -> None:
    """Revoke a token (by id, or every live token of that name): it stops working at once."""

    def body() -> None:
        with Api() as api:
            rows = api.request("DELETE", f"/tokens/{ref}")
        names = ", ".join(f"{t['name']} ({t['id']})" for t in rows)
        o.emit_json(rows) if json else o.out.print(f"Revoked {names}.")

    run(body)


def join_token(
    host: Annotated[str | None, typer.Argument(metavar="[HOST]", help=(
        "Make a long-lived credential for this host (its agent's --host, its router's --router-id). "
        "Without HOST: a one-time join token any new host uses once (`conveyor agent --join`)."))] = None,
    router: Annotated[bool, typer.Option("--router", help="A router's token (default: an agent's); needs HOST.")] = False,
    expires: Annotated[str | None, typer.Option("--expires", help="Lifetime, e.g. 1h (default: 1h for a one-time "
                                                                  "token, never for a host's own).")] = None,
    json: JsonOpt = False,
) -> None:
    """A token to add a host: a one-time join token (no HOST), or a host's own credential.

    One-time (the usual way): run `conveyor hosts join-token`, then on the new machine
    `conveyor agent --join URL TOKEN --host NAME [--label role=web] [--capacity 8]`: the agent
    trades it, once, for its own credential, which it keeps in its data dir. A used or
    expired join token is refused with a message.

    With HOST: that host's own credential, for an agent's (or router's) --token-file. Either
    reaches only that host's data-plane endpoints: the admin token is needed on no other host.
    """

    def body() -> None:
        with Api() as api:
            if host is None:
                if router:
                    raise CliError("--router needs the router's name: conveyor hosts join-token ROUTER --router",
                                   ExitCode.USAGE)
                t = api.post("/join-tokens", json={"expires": expires})
            else:
                t = api.post(f"/hosts/{host}/join-tokens", json={"role": "router" if router else "agent", "expires": expires})
            url = api.config.url
        _shown_once(t, json)
        if json:
            return
        if host is None:
            o.err.print(f"On the new host, run: conveyor agent --join {url} TOKEN --host NAME "
                        "[--label KEY=VALUE] [--capacity N]  (once; it keeps its own credential)")
        else:
            kind = "router --router-id " + host if router else "agent --host " + host
            o.err.print(f"Save it to a 0600 file on {host} and run: conveyor {kind} --token-file FILE ...")

    run(body)
