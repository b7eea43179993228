"""``conveyor dora`` and ``conveyor ui``: delivery performance in the terminal, and the web UI in a browser.

Both are thin over the HTTP API: ``dora`` prints ``GET /api/v1/dora``;
``ui`` asks ``POST /api/v1/ui/login-link`` for a one-time sign-in link (valid
60 s, usable once) and opens it, so the browser is signed in without the token
ever appearing in its address bar or history.
"""

from __future__ import annotations

import webbrowser
from typing import Annotated, Any

import typer

from conveyor.cli import output as o
from conveyor.cli.client import Api, CliError, ExitCode
from conveyor.domain.dora import parse_period

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of tables.")]


def _run(fn: Any) -> Any:
    try:
        return fn()
    except CliError as exc:
        o.err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(int(exc.code)) from None


_BAND_STYLE = {"elite": "bold green", "high": "green", "medium": "yellow", "low": "red"}
_ARROWS = {"improving": "↗ improving", "worsening": "↘ worsening", "steady": "→ steady", "unknown": "· no earlier data"}


def print_report(rep: dict[str, Any]) -> None:
    scope = rep.get("app") or "all apps"
    o.out.print(f"[bold]DORA keys[/bold] for {scope}, production, last {rep.get('period', '')} "
                f"({rep['days']:.1f} days)")
    rows = []
    for key in rep["keys"].values():
        band = key.get("band")
        band_txt = f"[{_BAND_STYLE[band]}]{band}[/]" if band else "—"
        prev = key.get("previous_text", "") if key.get("previous") is not None else ""
        rows.append([key["title"], key["text"], band_txt, _ARROWS.get(key["direction"], ""), prev, key["samples"]])
    o.table(None, ["KEY", "VALUE", "BAND", "TREND", "PREVIOUS PERIOD", "SAMPLES"], rows)
    fails = rep.get("failures") or []
    if fails:
        o.out.print(f"{len(fails)} failed change(s):")
        for f in fails:
            restored = f"{f['restore_seconds']:.0f}s" if f.get("restore_seconds") is not None else "not yet"
            o.out.print(f"  deployment #{f['deployment']} {f['app']} r{f['release']}: {f['how']}; restored after {restored}")


def register(app: typer.Typer) -> None:
    @app.command()
    def dora(
        app_name: Annotated[str | None, typer.Argument(metavar="[APP]", help="One app (default: every app).")] = None,
        since: Annotated[str, typer.Option("--since", help="The period: e.g. 24h, 7d, 30d, 12w.")] = "30d",
        team: Annotated[str | None, typer.Option("--team", help="Only the apps of this team.")] = None,
        json: JsonOpt = False,
    ) -> None:
        """The four DORA keys: deployment frequency, lead time, change failure rate, time to restore."""

        def body() -> None:
            try:  # checked here, so a person gets a sentence (the API's document refuses it by pattern)
                parse_period(since)
            except ValueError as exc:
                raise CliError(str(exc), ExitCode.USAGE) from None
            params = {"since": since}
            if app_name:
                params["app"] = app_name
            if team:
                params["team"] = team
            with Api() as api:
                rep = api.get("/dora", params=params)
            if json:
                o.emit_json(rep)
            else:
                print_report(rep)

        _run(body)

    @app.command()
    def ui(
        path: Annotated[str, typer.Argument(help="Page to open, e.g. /apps/hello.")] = "/",
        no_open: Annotated[bool, typer.Option("--print", help="Print the sign-in link instead of opening a browser.")] = False,
    ) -> None:
        """Open the web UI in your browser, already signed in (a one-time link, valid for 60 seconds)."""

        def body() -> None:
            if not path.startswith("/"):
                raise CliError(f"page {path!r} must start with '/', e.g. /apps/hello", ExitCode.USAGE)
            with Api() as api:
                link = api.post("/ui/login-link", params={"next": path})
                url = api.config.url + link["path"]
            if no_open or not webbrowser.open(url):
                print(url, flush=True)  # plain print: a link must not be wrapped or styled
                if not no_open:
                    o.err.print("could not start a browser: open the link above (valid for 60 s, once)")
            else:
                o.err.print(f"Opened the web UI at {api.config.url}{path} (signed in).")

        _run(body)
