"""``conveyor approve/reject``, ``conveyor lock/unlock`` and ``conveyor freeze``: pipelines' manual
approvals, deploy locks and freeze windows.

Thin over the API (``/deployments/{id}/approve|reject``, ``/apps/{app}/locks``, ``/apps/{app}/freezes``).
A pipeline is declared in ``conveyor.toml`` (``[env.production] after = "staging"``, ``approval = true``);
a freeze window is added here (not in the manifest: a freeze is an operational decision about a date,
not a property of the code being shipped). Exit codes: 0 done, 2 bad input, 3 unknown app/env/
deployment, 4 conflict (a deployment that waits for no approval, an environment already locked).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape

from conveyor.cli import output as o
from conveyor.cli.client import Api, CliError, ExitCode
from conveyor.cli.main import JsonOpt, lock_text, run  # registered from main, after it is loaded

freeze_app = typer.Typer(help="Freeze windows: no deploys on a schedule (weekly or once, in a time zone).",
                         no_args_is_help=True)

EnvAll = Annotated[str | None, typer.Option("--env", "-e", help="One environment (default: every environment of the app).")]


def _decide(verb: str, app_name: str, dep_id: int, reason: str, json: bool) -> None:
    def body() -> None:
        with Api() as api:
            d = api.get(f"/deployments/{dep_id}")
            if d["app"] != app_name:
                raise CliError(f"deployment {dep_id} belongs to {d['app']}, not {app_name}", ExitCode.NOT_FOUND)
            d = api.post(f"/deployments/{dep_id}/{verb}", json={"reason": reason})
        if json:
            o.emit_json(d)
        elif verb == "approve":
            o.out.print(f"Deployment #{dep_id} to {d['env']} approved: {o.styled(d['state'])} "
                        f"(follow it: `conveyor deployments show {dep_id}`).")
        else:
            o.out.print(f"Deployment #{dep_id} to {d['env']} rejected: nothing is deployed.")

    run(body)


def approve(
    app_name: Annotated[str, typer.Argument(metavar="APP")],
    dep_id: Annotated[int, typer.Argument(metavar="DEPLOYMENT", help="The deployment awaiting approval (see `conveyor status APP`).")],
    reason: Annotated[str, typer.Option("--reason", help="Why (kept with the approval and in the audit log).")] = "",
    json: JsonOpt = False,
) -> None:
    """Approve a pipeline promotion that waits for a person: it joins its environment's queue.

    Refused (exit 4) if the deployment waits for no approval, or its environment is locked or frozen."""
    _decide("approve", app_name, dep_id, reason, json)


def reject(
    app_name: Annotated[str, typer.Argument(metavar="APP")],
    dep_id: Annotated[int, typer.Argument(metavar="DEPLOYMENT")],
    reason: Annotated[str, typer.Option("--reason", help="Why (kept with the rejection and in the audit log).")] = "",
    json: JsonOpt = False,
) -> None:
    """Reject a pipeline promotion that waits for a person: it is cancelled and nothing is deployed."""
    _decide("reject", app_name, dep_id, reason, json)


def lock(
    app_name: Annotated[str, typer.Argument(metavar="APP")],
    reason: Annotated[str, typer.Option("--reason", "-r", help="Why: shown wherever the lock stops a deploy.")],
    env: EnvAll = None,
    json: JsonOpt = False,
) -> None:
    """Lock APP (or one --env): automatic deploys (pipelines, pushes, webhooks) stop, and manual
    deploys are refused unless `conveyor deploy --force` (recorded). Rollbacks always work."""

    def body() -> None:
        with Api() as api:
            lk = api.post(f"/apps/{app_name}/locks", json={"env": env, "reason": reason})
        o.emit_json(lk) if json else o.out.print(f"{app_name} locked: {escape(lock_text(lk))}. "
                                                 f"Unlock with `conveyor unlock {app_name}{' --env ' + env if env else ''}`.")

    run(body)


def unlock(
    app_name: Annotated[str, typer.Argument(metavar="APP")],
    env: EnvAll = None,
    json: JsonOpt = False,
) -> None:
    """Remove the locks of APP's --env (or the app-wide lock), an automatic rollback's lock included."""

    def body() -> None:
        with Api() as api:
            gone = api.request("DELETE", f"/apps/{app_name}/locks", params={"env": env} if env else {})
        if json:
            o.emit_json(gone)
        else:
            for lk in gone:
                o.out.print(f"unlocked {escape(lock_text(lk))}")

    run(body)


def _freeze_row(f: dict[str, Any]) -> list[Any]:
    return [f["id"], f.get("env") or "every env", f["window"], f["tz"],
            "[red]now[/red]" if f["active"] else "no", escape(f.get("reason") or ""), f["by"]]


@freeze_app.command("add")
def freeze_add(
    app_name: Annotated[str, typer.Argument(metavar="APP")],
    window: Annotated[str, typer.Option("--window", "-w", help="'Fri 16:00 -> Mon 08:00' (every week) or "
                                        "'2026-12-24T00:00 -> 2027-01-02T08:00' (once), local times in --tz.")],
    tz: Annotated[str, typer.Option("--tz", help="IANA time zone, e.g. Europe/Paris (daylight saving is followed).")] = "UTC",
    env: EnvAll = None,
    reason: Annotated[str, typer.Option("--reason", "-r")] = "",
    json: JsonOpt = False,
) -> None:
    """Freeze APP (or one --env) during a window: deploys are refused as under a lock (--force overrides)."""

    def body() -> None:
        with Api() as api:
            f = api.post(f"/apps/{app_name}/freezes", json={"env": env, "window": window, "tz": tz, "reason": reason})
        o.emit_json(f) if json else o.out.print(
            f"freeze #{f['id']} added: {escape(f['window'])} {f['tz']}" + (" (in force now)" if f["active"] else ""))

    run(body)


@freeze_app.command("list")
def freeze_list(app_name: Annotated[str, typer.Argument(metavar="APP")], json: JsonOpt = False) -> None:
    """APP's freeze windows and whether each is in force now."""

    def body() -> None:
        with Api() as api:
            fs = api.get(f"/apps/{app_name}/freezes")
        if json:
            o.emit_json(fs)
        elif not fs:
            o.out.print(f"{app_name} has no freeze windows. Add one with `conveyor freeze add {app_name} --window …`.")
        else:
            o.table(None, ["ID", "ENV", "WINDOW", "TZ", "IN FORCE", "REASON", "BY"], [_freeze_row(f) for f in fs])

    run(body)


@freeze_app.command("remove")
def freeze_remove(app_name: Annotated[str, typer.Argument(metavar="APP")],
                  freeze_id: Annotated[int, typer.Argument(metavar="ID")], json: JsonOpt = False) -> None:
    """Remove freeze window ID of APP."""

    def body() -> None:
        with Api() as api:
            api.request("DELETE", f"/apps/{app_name}/freezes/{freeze_id}")
        o.emit_json({"removed": freeze_id}) if json else o.out.print(f"freeze #{freeze_id} removed.")

    run(body)


def register(app: typer.Typer) -> None:
    for fn in (approve, reject, lock, unlock):
        app.command()(fn)
    app.add_typer(freeze_app, name="freeze")
