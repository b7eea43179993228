"""``conveyor``: the command line. Thin over the HTTP API; every command has --json.

Exit codes: 0 success · 1 the operation failed (deployment failed or rolled
back, build or tests failed) · 2 bad usage or input · 3 not found ·
4 conflicts with the current state · 5 control plane unreachable or
credentials refused.
"""

from __future__ import annotations

import json as jsonlib
import sys
from typing import Annotated, Any

import typer
from rich.markup import escape

from conveyor.cli import output as o
from conveyor.cli.client import Api, CliError, ExitCode

HELP = """Conveyor: build, deploy, canary and roll back your apps on your own servers.

Start the platform on this machine with `conveyor up`, then:

  conveyor apps create hello
  conveyor deploy hello --source examples/hello --wait
  conveyor status hello
  conveyor rollback hello --wait

Exit codes: 0 ok, 1 operation failed, 2 bad input, 3 not found, 4 conflict,
5 control plane unreachable. Which control plane: CONVEYOR_URL and
CONVEYOR_TOKEN, else the client config that `conveyor up` saves (another one
with CONVEYOR_CONFIG, e.g. CONVEYOR_CONFIG=.demo/client.json after `make
demo`). `conveyor context` shows which one this CLI uses.
"""

app = typer.Typer(help=HELP, no_args_is_help=True, rich_markup_mode="rich", pretty_exceptions_enable=False)
apps_app = typer.Typer(help="Create and list apps.", no_args_is_help=True)
deployments_app = typer.Typer(help="List, inspect and cancel deployments.", no_args_is_help=True)
app.add_typer(apps_app, name="apps")
app.add_typer(deployments_app, name="deployments")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of tables.")]
EnvOpt = Annotated[str, typer.Option("--env", "-e", help="Environment (production, staging, ...).")]


def run(fn: Any) -> Any:
    """Run a command body, turning CliError into its message and exit code."""
    try:
        return fn()
    except CliError as exc:
        o.err.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(int(exc.code)) from None


# --- apps --------------------------------------------------------------------


@apps_app.command("create")
def apps_create(
    name: Annotated[str, typer.Argument(help="lower-case letters, digits and '-'")],
    team: Annotated[str | None, typer.Option("--team", help="The owning team (DORA keys per team).")] = None,
    json: JsonOpt = False,
) -> None:
    """Create an app. Environments are created on their first deploy."""

    def body() -> None:
        with Api() as api:
            created = api.post("/apps", json={"name": name, "team": team})
        if json:
            o.emit_json(created)
        else:
            o.out.print(f"Created app [bold]{name}[/bold]. Deploy it with `conveyor deploy {name} --source DIR --wait`.")

    run(body)


@apps_app.command("list")
def apps_list(json: JsonOpt = False) -> None:
    """List apps and their environments."""

    def body() -> None:
        with Api() as api:
            apps = api.get("/apps")
        if json:
            o.emit_json(apps)
            return
        if not apps:
            o.out.print("No apps yet. Create one with `conveyor apps create NAME`.")
            return
        o.table(None, ["APP", "TEAM", "ENVIRONMENTS", "CREATED", "LOCKED"],
                [[a["name"], a.get("team") or "-", ", ".join(a["environments"]) or "-", o.ago(a["created_at"]),
                  "; ".join(escape(lock_text(lk)) for lk in a.get("locks") or []) or "-"] for a in apps])

    run(body)


@apps_app.command("set-team")
def apps_set_team(
    name: Annotated[str, typer.Argument(metavar="APP")],
    team: Annotated[str | None, typer.Argument(help="The team; omit to clear it.")] = None,
    json: JsonOpt = False,
) -> None:
    """Give an app to a team (or clear its team)."""

    def body() -> None:
        with Api() as api:
            updated = api.request("PATCH", f"/apps/{name}", json={"team": team})
        o.emit_json(updated) if json else o.out.print(f"{name} now belongs to team {team or '(none)'}.")

    run(body)


# --- which control plane ----------------------------------------------------


@app.command()
def context(json: JsonOpt = False) -> None:
    """Which control plane this CLI talks to, where that came from, and whether it answers and accepts the token.

    The URL and token come from CONVEYOR_URL / CONVEYOR_TOKEN, else the client
    config (CONVEYOR_CONFIG, or the one `conveyor up` saves), else the default.
    """
    import httpx

    from conveyor.config import client_config_path, load_client_config

    cfg = load_client_config()
    doc: dict[str, Any] = {
        "url": cfg.url, "url_from": cfg.url_source, "token_from": cfg.token_source,
        "token": (cfg.token[:8] + "…") if cfg.token else None, "client_config": str(client_config_path()),
        "client_config_exists": bool(cfg.source), "router_url": cfg.router_url, "reachable": False, "signed_in": False,
    }
    try:
        health = httpx.get(cfg.url + "/healthz", timeout=5)
        doc["reachable"] = health.status_code == 200
        if cfg.token:
            r = httpx.get(cfg.url + "/api/v1/apps", headers={"Authorization": f"Bearer {cfg.token}"}, timeout=5)
            doc["signed_in"] = r.status_code == 200
    except httpx.HTTPError as exc:
        doc["error"] = f"{exc.__class__.__name__}: {exc}"
    if json:
        o.emit_json(doc)
    else:
        o.out.print(f"control plane  {cfg.url}   (from {cfg.url_source})", soft_wrap=True)
        o.out.print(f"token          {doc['token'] or '(none)'}   (from {cfg.token_source})", soft_wrap=True)
        o.out.print(f"client config  {doc['client_config']}{'' if cfg.source else '   (does not exist)'}", soft_wrap=True)
        if cfg.router_url:
            o.out.print(f"router         {cfg.router_url}")
        state = ("[green]reachable, token accepted[/green]" if doc["signed_in"]
                 else "[yellow]reachable, token refused or missing[/yellow]" if doc["reachable"]
                 else "[red]not reachable[/red]")
        o.out.print(f"status         {state}")
        if not doc["signed_in"]:
            from conveyor.cli.client import credentials_hint

            o.err.print(credentials_hint(cfg) if doc["reachable"] else
                        "Start it with `conveyor up`, or point CONVEYOR_URL (or CONVEYOR_CONFIG) at a running one.")
    if not doc["signed_in"]:
        raise typer.Exit(int(ExitCode.UNAVAILABLE))


def lock_text(lk: dict[str, Any]) -> str:
    """A lock in one line: where, who, since when, why."""
    where = lk.get("env") or "every env"
    kind = " (automatic deploys only)" if lk.get("kind") == "rollback" else ""
    return f"{where}{kind} by {lk['by'] or 'someone'} {o.ago(lk['since'])}: {lk['reason']}"


# --- status and history ---------------------------------------------------


@app.command()
def status(app_name: Annotated[str, typer.Argument(metavar="APP")], json: JsonOpt = False) -> None:
    """Each environment's release, image, URL and instances with their health."""

    def body() -> None:
        with Api() as api:
            st = api.get(f"/apps/{app_name}")
        if json:
            o.emit_json(st)
            return
        if not st["environments"]:
            o.out.print(f"{app_name} has no environments yet: deploy it with `conveyor deploy {app_name} --source DIR`.")
        for env in st["environments"]:
            routes = ", ".join(f"r{k}: {v}%" for k, v in env["routes"].items()) or "none"
            commit = ((env.get("commit") or {}).get("sha") or "")[:10]
            o.out.print(
                f"[bold]{env['name']}[/bold]  release [bold]{env['release'] or '-'}[/bold]  "
                f"image {o.short(env['image'])}  {('commit ' + commit) if commit else ''}  traffic: {routes}"
                + (f"  {env['url']}" if env.get("url") else "")
            )
            for lk in env.get("locks") or []:
                o.out.print(f"  [red]locked[/red] {escape(lock_text(lk))}")
            for fr in env.get("frozen") or []:
                o.out.print(f"  [red]frozen[/red] #{fr['id']} {escape(fr['window'])} {fr['tz']}"
                            + (f": {escape(fr['reason'])}" if fr.get("reason") else ""))
            for dep_id in env.get("awaiting_approval") or []:
                o.out.print(f"  [yellow]awaiting approval[/yellow]: deployment #{dep_id} "
                            f"(`conveyor approve {app_name} {dep_id}` or `conveyor reject {app_name} {dep_id}`)")
            if env.get("deploying"):
                d = env["deploying"]
                o.out.print(f"  deploying: #{d['id']} release {d['release']} ({d['strategy']}) {o.styled(d['state'])}")
            rows = [
                [i["id"], i["release"], i["role"], o.styled(i["state"]), f"{i['address']}:{i['port']}" if i["port"] else "",
                 i["restarts"], i["host"]]
                for i in env["instances"]
            ]
            if rows:
                o.table(None, ["INSTANCE", "RELEASE", "ROLE", "STATE", "ADDRESS", "RESTARTS", "HOST"], rows)

    run(body)


def _config_change(release: dict[str, Any]) -> str:
    """What a config release changed (keys only: the API never returns values)."""
    ch = (release.get("config") or {}).get("changes") or {}
    parts = [*(f"{k} set" for k in ch.get("set", [])), *(f"{k} unset" for k in ch.get("unset", []))]
    return escape(", ".join(parts)) + (" (secret)" if ch.get("secret") else "")


@app.command()
def releases(
    app_name: Annotated[str, typer.Argument(metavar="APP")],
    env: Annotated[str | None, typer.Option("--env", "-e", help="Only this environment.")] = None,
    json: JsonOpt = False,
) -> None:
    """The release history, newest first."""

    def body() -> None:
        with Api() as api:
            rels = api.get(f"/apps/{app_name}/releases", params={"env": env} if env else {})
        if json:
            o.emit_json(rels)
            return
        o.table(
            f"Releases of {app_name}",
            ["ENV", "RELEASE", "STATUS", "IMAGE", "COMMIT", "CONFIG CHANGE", "BY", "CREATED"],
            [[r["env"], r["number"], o.styled(r["status"]), o.short(r["image"]), ((r.get("commit") or {}).get("sha") or "")[:10],
              _config_change(r), r["created_by"], o.ago(r["created_at"])] for r in rels],
        )

    run(body)


@app.command()
def logs(
    app_name: Annotated[str, typer.Argument(metavar="APP")],
    env: Annotated[str | None, typer.Option("--env", "-e", help="Only this environment.")] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep streaming new output (Ctrl-C stops).")] = False,
    lines: Annotated[int, typer.Option("--lines", "-n", help="Lines of history, all instances together.")] = 100,
    since: Annotated[str | None, typer.Option("--since", help="Only output since: 10m, 1h, or a UTC time 2026-12-02T07:30.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Also instances that no longer exist (history).")] = False,
    health: Annotated[bool, typer.Option("--health", help="Keep the health checks' requests (hidden by default).")] = False,
    grep: Annotated[str | None, typer.Option("--grep", help="Only lines containing this text.")] = None,
    json: JsonOpt = False,
) -> None:
    """Instance output (stdout and stderr) merged by time, with timestamps (UTC) and instance names.

    Only the instances that exist now, unless --all; the platform's health
    checks are left out unless --health.
    """

    def body() -> None:
        params: dict[str, Any] = {"lines": lines, "follow": follow}
        for key, value in (("env", env), ("grep", grep), ("since", since)):
            if value:
                params[key] = value
        if all_:
            params["all"] = True
        if health:
            params["health"] = True
        printed = 0
        with Api() as api:
            for line in api.stream_lines(f"/apps/{app_name}/logs", **params):
                stamp, _, rest = line.partition(" ")
                inst, _, text = rest.partition("| ")
                if json:  # one JSON object per line, for jq and log shippers
                    sys.stdout.write(jsonlib.dumps({"time": stamp if stamp != "-" else None, "instance": inst, "line": text}) + "\n")
                else:
                    when = stamp.replace("T", " ").rstrip("Z") if stamp != "-" else ""
                    short = inst[len(app_name) + 1 :] if inst.startswith(app_name + "-") else inst
                    o.out.print(f"[dim]{when}[/dim] [cyan]{escape(short)}[/cyan] {escape(text)}", highlight=False, soft_wrap=True)
                printed += 1
                sys.stdout.flush()
        if not printed and not json and not follow:
            o.err.print(f"No output{' since ' + since if since else ''} from the instances of {app_name}"
                        f"{'' if all_ else ' that exist now (add --all for earlier ones)'}.")

    try:
        run(body)
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


# --- deployments -----------------------------------------------------------


@deployments_app.command("list")
def deployments_list(
    app_name: Annotated[str, typer.Argument(metavar="APP")],
    env: Annotated[str | None, typer.Option("--env", "-e")] = None,
    json: JsonOpt = False,
) -> None:
    """Deployments of an app, newest first."""

    def body() -> None:
        with Api() as api:
            deps = api.get(f"/apps/{app_name}/deployments", params={"env": env} if env else {})
        if json:
            o.emit_json(deps)
            return
        o.table(
            f"Deployments of {app_name}",
            ["ID", "ENV", "KIND", "STRATEGY", "RELEASE", "STATE", "BY", "CREATED", "REASON"],
            [[d["id"], d["env"], d["kind"], d["strategy"], f"{d['from_release'] or '-'} → {d['release']}", o.styled(d["state"]),
              d["created_by"], o.ago(d["created_at"]), d["reason"][:60]] for d in deps],
        )

    run(body)


@deployments_app.command("show")
def deployments_show(
    dep: Annotated[str, typer.Argument(metavar="ID|APP", help="A deployment id, or an app: its latest deployment.")],
    env: Annotated[str | None, typer.Option("--env", "-e", help="With APP: the latest of this environment.")] = None,
    json: JsonOpt = False,
) -> None:
    """One deployment: state, steps with weights and durations, and every analysis verdict with its numbers and reason."""
    from conveyor.cli.deploy import print_deployment

    def body() -> None:
        with Api() as api:
            if dep.isdigit():
                d = api.get(f"/deployments/{dep}")
            else:
                latest = api.get(f"/apps/{dep}/deployments", params={"limit": 1, **({"env": env} if env else {})})
                if not latest:
                    raise CliError(f"{dep} has no deployments yet: `conveyor deploy {dep} --source DIR --wait`",
                                   ExitCode.NOT_FOUND)
                d = api.get(f"/deployments/{latest[0]['id']}")
        if json:
            o.emit_json(d)
        else:
            print_deployment(d)

    run(body)


@deployments_app.command("cancel")
def deployments_cancel(dep_id: Annotated[int, typer.Argument(metavar="ID")], json: JsonOpt = False) -> None:
    """Cancel a queued deployment (one in progress is aborted with `conveyor abort`)."""

    def body() -> None:
        with Api() as api:
            d = api.post(f"/deployments/{dep_id}/cancel")
        o.emit_json(d) if json else o.out.print(f"Deployment {dep_id} {o.styled(d['state'])}.")

    run(body)


def _register() -> None:
    from conveyor.cli import deploy, init, up

    deploy.register(app)
    init.register(app)
    up.register(app)
    app.add_typer(__import__("conveyor.cli.tokens", fromlist=["x"]).tokens_app, name="tokens")  # issue 15
    __import__("conveyor.cli.hosts", fromlist=["register"]).register(app)  # conveyor hosts (drain, join-token)
    __import__("conveyor.cli.autoscale", fromlist=["register"]).register(app)  # conveyor autoscale
    app.command()(__import__("conveyor.cli.audit", fromlist=["x"]).audit)  # issue 15
    __import__("conveyor.cli.web_cmds", fromlist=["register"]).register(app)  # conveyor dora, conveyor ui
    __import__("conveyor.cli.domains", fromlist=["register"]).register(app)  # conveyor domains, conveyor certs
    __import__("conveyor.cli.config", fromlist=["register"]).register(app)  # conveyor config, conveyor secrets
    __import__("conveyor.cli.processes", fromlist=["register"]).register(app)  # conveyor scale, conveyor ps
    __import__("conveyor.cli.run", fromlist=["register"]).register(app)  # conveyor run
    __import__("conveyor.cli.pipelines", fromlist=["register"]).register(app)  # approve, reject, lock, unlock, freeze
    __import__("conveyor.cli.trains", fromlist=["register"]).register(app)  # conveyor trains (issue 14)
    __import__("conveyor.cli.hooks", fromlist=["register"]).register(app)  # conveyor repo, notify, notifications
    __import__("conveyor.cli.gitremote", fromlist=["register"]).register(app)  # conveyor git-remote (issue 14)


_register()


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()


__all__ = ["app", "main", "ExitCode"]
