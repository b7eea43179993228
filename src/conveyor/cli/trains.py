"""``conveyor trains``: deploy trains — batches of commits, bisected when a batch fails its canary.

Thin over the API (``/apps/{app}/trains``, ``/trains/{id}``). ``conveyor trains APP`` lists an
app's trains with their commits and state; ``conveyor trains APP --id N`` shows one with every
try; ``conveyor trains APP --git REPO SHA...`` queues commits (what a push hook does).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape

from conveyor.cli import output as o
from conveyor.cli.client import Api, CliError, ExitCode
from conveyor.cli.main import JsonOpt, run  # registered from main, after it is loaded

_STATUS = {"shipped": "[green]shipped[/green]", "culprit": "[red]culprit[/red]", "blocked": "[yellow]blocked[/yellow]",
           "waiting": "[dim]waiting[/dim]", "in train": "in train", "not shipped": "[dim]not shipped[/dim]"}


def train_lines(t: dict[str, Any], steps: bool = False) -> list[str]:
    """A train as `conveyor trains` prints it: head line, each commit with its status, the culprit."""
    lines = [f"[bold]train {t['id']}[/bold] {t['app']}/{t['env']} {o.styled(t['state'])} — "
             f"{len(t['commits'])} commit(s), {t['canaries']} canar{'y' if t['canaries'] == 1 else 'ies'}, "
             f"{o.ago(t['created_at'])} ({escape(t['trigger'])} by {escape(t['created_by'] or 'someone')})"]
    for c in t["commits"]:
        lines.append(f"  {c['position'] + 1:>2}. {c['sha'][:12]} {_STATUS.get(c['status'], c['status']):<24} "
                     f"{escape((c.get('message') or '')[:60])} [dim]{escape(c.get('author') or '')}[/dim]")
    if t.get("culprit"):
        c = t["culprit"]
        lines.append(f"  [red]culprit[/red] {c['sha'][:12]}: {c['outcome']} — {escape(c['verdict'])}"
                     + (f" (deployment {c['deployment_id']}: `conveyor deployments show {c['deployment_id']}`)"
                        if c.get("deployment_id") else ""))
        if c.get("revert") == "pass":
            lines.append("  the commits after it shipped with it reverted (the newest commit built without it); "
                         "the culprit is not live: push a fix")
        elif c.get("revert") is None and t["state"] == "running":
            lines.append("  trying the newest commit with the culprit reverted, to ship the commits after it")
        else:
            lines.append("  the commits after it contain it: they ship with a fix (a new commit, e.g. its revert)")
    if t.get("reason"):
        lines.append(f"  [yellow]{escape(t['reason'])}[/yellow]")
    if steps:
        for s in t["steps"]:
            without = f" with {t['culprit']['sha'][:12]} reverted" if s.get("reverted") and t.get("culprit") else ""
            lines.append(f"    try #{s['position'] + 1} {s['sha'][:12]}{without}: build {s['build_id'] or '-'}, "
                         f"deployment {s['deployment_id'] or '-'}: {o.styled(s['outcome'] or 'running')} "
                         f"{escape(s['reason'])}")
    return lines


def trains(
    app_name: Annotated[str, typer.Argument(metavar="APP")],
    env: Annotated[str | None, typer.Option("--env", "-e", help="Only this environment's trains (and where --git sends commits; default production).")] = None,
    train_id: Annotated[int | None, typer.Option("--id", help="Show this train with every try (build, canary, outcome).")] = None,
    git: Annotated[str | None, typer.Option("--git", help="Queue commits of this repository (a path or URL the control plane can fetch).")] = None,
    shas: Annotated[list[str] | None, typer.Argument(metavar="[SHA...]", help="With --git: the new commits, oldest first.")] = None,
    limit: Annotated[int, typer.Option("--limit", help="How many trains to list.")] = 20,
    json: JsonOpt = False,
) -> None:
    """APP's deploy trains: commits batched into one canary deployment (\\[deploy] max_commits per train).

    When a batch fails its canary, Conveyor canaries the midpoint commit, and so on, until the first bad
    commit (the culprit) is found; the commits before it ship, then the newest commit is built with the
    culprit reverted and canaried, so the ones after it ship without it (a conflicting revert: they wait
    for a fix).

    \b
      conveyor trains hello                          # list trains, their commits and state
      conveyor trains hello --id 3                   # one train with every try
      conveyor trains hello --git /srv/hello.git 1a2b3c4 5d6e7f8   # queue two commits (oldest first)
    """

    def body() -> None:
        with Api() as api:
            if git is not None:
                if not shas:
                    raise CliError("--git needs the commits to queue: `conveyor trains APP --git REPO SHA...`",
                                   ExitCode.USAGE)
                out = api.post(f"/apps/{app_name}/trains", json={
                    "repo": git, "commits": [{"sha": s} for s in shas], "env": env or "production", "trigger": "cli"})
                if json:
                    o.emit_json(out)
                    return
                o.out.print(f"{len(shas)} commit(s) queued in train(s) {', '.join(str(t['id']) for t in out) or '(none: already queued)'}.")
                return
            if shas:
                raise CliError("commits are queued with --git REPO SHA...", ExitCode.USAGE)
            if train_id is not None:
                t = api.get(f"/trains/{train_id}")
                if t["app"] != app_name:
                    raise CliError(f"train {train_id} belongs to {t['app']}, not {app_name}", ExitCode.NOT_FOUND)
                found = [t]
            else:
                found = api.get(f"/apps/{app_name}/trains", params={"limit": limit, **({"env": env} if env else {})})
        if json:
            o.emit_json(found[0] if train_id is not None else found)
            return
        if not found:
            o.out.print(f"{app_name} has no deploy trains yet (queue commits with `conveyor trains {app_name} --git REPO SHA...`).")
        for t in found:
            for line in train_lines(t, steps=train_id is not None):
                o.out.print(line, soft_wrap=True)

    run(body)


def register(app: typer.Typer) -> None:
    app.command("trains")(trains)


