"""``conveyor repo``, ``conveyor notify`` and ``conveyor notifications``: deploy on push, and tell people.

Thin over the API (``/apps/{app}/repo``, ``/apps/{app}/notifications``). ``repo set`` prints the
webhook URL and its secret once (the control plane keeps it sealed and never shows it again); ``notify
add`` checks the URL and ``--events`` here first, so a typo changes nothing. ``--json`` for scripts.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.markup import escape

from conveyor.cli import output as o
from conveyor.cli.client import Api, CliError, ExitCode
from conveyor.cli.main import JsonOpt, run  # registered from main, after it is loaded
from conveyor.domain import notifications as rules

repo_app = typer.Typer(help="Build and deploy on git push: the app's repository and its webhook.", no_args_is_help=True)
notify_app = typer.Typer(help="Send an app's build, deploy, verdict, rollback and approval events to a URL "
                              "(signed JSON or Slack).", no_args_is_help=True)
log_app = typer.Typer(help="What was sent where: the notifications' delivery log.", no_args_is_help=True)

AppArg = Annotated[str, typer.Argument(metavar="APP")]


def _when(t: float | None) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t)) if t else "-"


@repo_app.command("set")
def repo_set(
    app_name: AppArg,
    url: Annotated[str, typer.Argument(metavar="URL", help="The repository: https://…, ssh://…, git@host:path or a local path.")],
    branch: Annotated[str, typer.Option("--branch", "-b", help="Pushes to this branch are deployed.")] = "main",
    env: Annotated[str, typer.Option("--env", "-e", help="The environment pushes deploy to.")] = "production",
    json: JsonOpt = False,
) -> None:
    """Deploy APP on every push to BRANCH of URL. Prints the webhook URL and secret to give GitHub
    (Settings → Webhooks: content type application/json, the secret) or GitLab (the secret token).
    Setting it again makes a new secret."""

    def body() -> None:
        with Api() as api:
            r = api.request("PUT", f"/apps/{app_name}/repo", json={"url": url, "branch": branch, "env": env})
        if json:
            o.emit_json(r)
            return
        o.out.print(f"Pushes to [bold]{escape(r['branch'])}[/bold] of {escape(r['url'])} now build and deploy "
                    f"{escape(app_name)}/{escape(r['env'])}.")
        o.out.print(f"  Webhook URL  {escape(r['webhook_url'])}")
        o.out.print(f"  Secret       {escape(r['secret'])}")
        o.out.print("[dim]The secret is shown only now: GitHub → Settings → Webhooks (application/json, 'push' "
                    "events), or GitLab → Settings → Webhooks (Secret token).[/dim]")

    run(body)


@repo_app.command("show")
def repo_show(app_name: AppArg, json: JsonOpt = False) -> None:
    """The repository APP deploys from, its webhook URL and the latest deliveries (never the secret)."""

    def body() -> None:
        with Api() as api:
            r = api.get(f"/apps/{app_name}/repo")
        if json:
            o.emit_json(r)
            return
        o.out.print(f"{escape(app_name)}: pushes to {escape(r['branch'])} of {escape(r['url'])} deploy {escape(r['env'])}")
        o.out.print(f"  Webhook URL  {escape(r['webhook_url'])}")
        if not r["deliveries"]:
            o.out.print("No deliveries yet.")
            return
        o.table("Deliveries", ["AT", "FROM", "EVENT", "COMMIT", "OUTCOME", "BUILD", "DEPLOYMENT", "REASON"],
                [[_when(d["at"]), d["provider"], d["event"], d["sha"][:12], d["outcome"], d["build_id"] or "-",
                  d["deployment_id"] or "-", d["reason"]] for d in r["deliveries"]])

    run(body)


@repo_app.command("remove")
def repo_remove(app_name: AppArg, json: JsonOpt = False) -> None:
    """Stop deploying APP on push (its webhook's deliveries are refused from now on)."""

    def body() -> None:
        with Api() as api:
            api.request("DELETE", f"/apps/{app_name}/repo")
        o.emit_json({"removed": app_name}) if json else o.out.print(f"{app_name} no longer deploys on push.")

    run(body)


@notify_app.command("add")
def notify_add(
    app_name: AppArg,
    url: Annotated[str, typer.Argument(metavar="URL", help="http:// or https:// (redirects are not followed).")],
    kind: Annotated[str, typer.Option("--kind", "-k", help="json (signed with X-Conveyor-Signature-256) or slack "
                                                          "(an incoming-webhook URL).")] = "json",
    events: Annotated[list[str] | None, typer.Option("--events", help=f"Comma-separated: {', '.join(rules.EVENT_GROUPS)} "
                                                                     "(default: all).")] = None,
    json: JsonOpt = False,
) -> None:
    """Send APP's events to URL, retried with backoff if it fails. A json target's signing secret is
    printed once: check X-Conveyor-Signature-256 = sha256=HMAC(secret, "<X-Conveyor-Timestamp>.<body>")."""

    def body() -> None:
        if kind not in ("json", "slack"):
            raise CliError(f"--kind {kind!r} is unknown: use json or slack", ExitCode.USAGE)
        try:
            rules.check_url(url)
            groups = rules.parse_events(events or [])
        except ValueError as exc:
            raise CliError(str(exc), ExitCode.USAGE) from None
        with Api() as api:
            t = api.post(f"/apps/{app_name}/notifications/targets", json={"url": url, "kind": kind, "events": groups})
        if json:
            o.emit_json(t)
            return
        o.out.print(f"Target {t['id']}: {t['kind']} notifications of {escape(app_name)} "
                    f"({', '.join(t['events']) or 'all events'}) to {escape(t['url'])}.")
        if t.get("secret"):
            o.out.print(f"  Signing secret  {escape(t['secret'])}   [dim](shown only now)[/dim]")
        o.out.print(f"Try it: conveyor notify test {app_name} {t['id']}")

    run(body)


@notify_app.command("list")
def notify_list(app_name: AppArg, json: JsonOpt = False) -> None:
    """Where APP's events go."""

    def body() -> None:
        with Api() as api:
            ts = api.get(f"/apps/{app_name}/notifications/targets")
        if json:
            o.emit_json(ts)
            return
        if not ts:
            o.out.print(f"No notification targets. Add one with `conveyor notify add {app_name} URL`.")
            return
        o.table(None, ["ID", "KIND", "URL", "EVENTS", "BY"],
                [[t["id"], t["kind"], t["url"], ", ".join(t["events"]) or "all", t["created_by"]] for t in ts])

    run(body)


@notify_app.command("remove")
def notify_remove(app_name: AppArg, target_id: Annotated[int, typer.Argument(metavar="ID")], json: JsonOpt = False) -> None:
    """Stop sending to target ID (see `conveyor notify list`)."""

    def body() -> None:
        with Api() as api:
            api.request("DELETE", f"/apps/{app_name}/notifications/targets/{target_id}")
        o.emit_json({"removed": target_id}) if json else o.out.print(f"Target {target_id} of {app_name} removed.")

    run(body)


@notify_app.command("test")
def notify_test(app_name: AppArg, target_id: Annotated[int, typer.Argument(metavar="ID")], json: JsonOpt = False) -> None:
    """Send a test notification to target ID now and say what the receiver answered (exit 1 if it failed)."""

    def body() -> None:
        with Api() as api:
            n = api.post(f"/apps/{app_name}/notifications/targets/{target_id}/test")
        if json:
            o.emit_json(n)
        elif n["status"] == "delivered":
            o.out.print(f"Delivered to {escape(n['target'])} (HTTP {n['status_code']}).")
        else:
            o.out.print(f"Not delivered to {escape(n['target'])}: {escape(n['error'] or n['status'])}"
                        + (f"; retrying at {_when(n['next_at'])}" if n.get("next_at") else ""))
        if n["status"] != "delivered":
            raise typer.Exit(int(ExitCode.FAILED))

    run(body)


def _status(n: dict[str, Any]) -> str:
    """The status and the receiver's last HTTP status, e.g. "retrying 500"."""
    color = {"delivered": "green", "failed": "red", "retrying": "yellow"}.get(n["status"], "dim")
    return f"[{color}]{n['status']}[/{color}]" + (f" {n['status_code']}" if n.get("status_code") else "")


@log_app.command("log")
def notifications_log(app_name: AppArg, limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=500)] = 30,
                      json: JsonOpt = False) -> None:
    """APP's notifications, newest first: status code, attempts, next retry and the last error."""

    def body() -> None:
        with Api() as api:
            ns = api.get(f"/apps/{app_name}/notifications", params={"limit": limit})
        if json:
            o.emit_json(ns)
            return
        if not ns:
            o.out.print("Nothing sent yet.")
            return
        o.table(None, ["ID", "AT", "EVENT", "TO", "STATUS", "TRIES", "NEXT", "ERROR"],
                [[n["id"], _when(n["created_at"]), n["kind"], f"#{n['target_id']}", _status(n), n["attempts"],
                  _when(n["next_at"]), escape(n["error"])] for n in ns])

    run(body)


def register(app: typer.Typer) -> None:
    app.add_typer(repo_app, name="repo")
    app.add_typer(notify_app, name="notify")
    app.add_typer(log_app, name="notifications")
