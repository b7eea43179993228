"""``conveyor scale APP web=3 worker=2`` and ``conveyor ps APP``: thin over /apps/{app}/scale and /ps."""

from __future__ import annotations

from typing import Annotated

import typer

from conveyor.cli import output as o
from conveyor.cli.client import Api
from conveyor.cli.main import EnvOpt, JsonOpt, run


def register(app: typer.Typer) -> None:
    @app.command()
    def scale(
        app_name: Annotated[str, typer.Argument(metavar="APP")],
        counts: Annotated[list[str], typer.Argument(metavar="TYPE=COUNT…")],
        env: EnvOpt = "production",
        json: JsonOpt = False,
    ) -> None:
        """Change instance counts per process type (no build, no release); removed instances drain first."""

        def body() -> None:
            with Api() as api:
                out = api.post(f"/apps/{app_name}/scale", json={"env": env, "counts": counts})
            if json:
                o.emit_json(out)
            else:
                o.err.print(f"{app_name}/{env} scaled to " + " ".join(f"{k}={v}" for k, v in sorted(out["counts"].items())))

        run(body)

    @app.command()
    def ps(
        app_name: Annotated[str, typer.Argument(metavar="APP")],
        env: Annotated[str | None, typer.Option("--env", "-e", help="Only this environment.")] = None,
        json: JsonOpt = False,
    ) -> None:
        """Every instance of every process type: host, state, restarts, uptime."""

        def body() -> None:
            with Api() as api:
                rows = api.get(f"/apps/{app_name}/ps", params={"env": env} if env else {})
            if json:
                o.emit_json(rows)
                return
            o.table(f"{app_name} processes", ["ENV", "TYPE", "RELEASE", "INSTANCE", "HOST", "STATE", "RESTARTS", "UPTIME"], [
                [r["env"], r["process"], r["release"], r["id"], r["host"], o.styled(r["state"]), r["restarts"],
                 f"{r['uptime']:.0f}s" if r["uptime"] is not None else "-"] for r in rows])

        run(body)
