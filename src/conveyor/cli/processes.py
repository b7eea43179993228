"""``conveyor scale APP web=3 worker=2`` and ``conveyor ps APP``: thin over /apps/{app}/scale and /ps."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from conveyor.cli import output as o
from conveyor.cli.audit import usage_cells
from conveyor.cli.client import Api, CliError, ExitCode
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
    def restart(
        app_name: Annotated[str, typer.Argument(metavar="APP")],
        env: EnvOpt = "production",
        process: Annotated[str | None, typer.Option("--process", "-p", help="Only this process type (default: all).")] = None,
        wait: Annotated[bool, typer.Option("--wait", "-w", help="Return once every instance has been replaced.")] = False,
        json: JsonOpt = False,
    ) -> None:
        """Rolling restart of the current release: one new instance ready, then one old one drains; no new release."""

        def body() -> None:
            with Api() as api:
                out = api.post(f"/apps/{app_name}/restart", json={"env": env, "process": process})
                if not json:
                    o.err.print(f"Restarting {', '.join(out['processes'])} of {app_name}/{env} (release {out['release']})…")
                if wait:
                    deadline = time.monotonic() + 600
                    while api.get(f"/apps/{app_name}/restart", params={"env": env})["pending"]:
                        if time.monotonic() > deadline:
                            raise CliError("the restart did not finish within 10 minutes; see `conveyor ps`", ExitCode.FAILED)
                        time.sleep(0.3)
                    out["done"] = True
            if json:
                o.emit_json(out)
            elif wait:
                o.err.print("Restarted.")

        run(body)

    @app.command()
    def ps(
        app_name: Annotated[str, typer.Argument(metavar="APP")],
        env: Annotated[str | None, typer.Option("--env", "-e", help="Only this environment.")] = None,
        wide: Annotated[bool, typer.Option("--wide", "-w", help="Also memory/CPU/pids against the limits, and the isolation.")] = False,
        json: JsonOpt = False,
    ) -> None:
        """Every instance of every process type: host, state, restarts, uptime; with --wide, resource use
        against its limits and how it is isolated (a host without the sandbox is named in a warning)."""

        def body() -> None:
            with Api() as api:
                rows = api.get(f"/apps/{app_name}/ps", params={"env": env} if env else {})
            if json:
                o.emit_json(rows)
                return
            extra = ["MEMORY", "CPU", "PIDS", "ISOLATION"] if wide else []
            o.table(f"{app_name} processes", ["ENV", "TYPE", "RELEASE", "INSTANCE", "HOST", "STATE", "RESTARTS", "UPTIME",
                                              *extra], [
                [r["env"], r["process"], r["release"], r["id"], r["host"], o.styled(r["state"]), r["restarts"],
                 f"{r['uptime']:.0f}s" if r["uptime"] is not None else "-",
                 *([*usage_cells(r), r.get("sandbox") or "-"] if wide else [])]
                for r in rows])
            for r in rows:
                if (r.get("sandbox") or "").startswith("UNSANDBOXED"):
                    o.err.print(f"[bold red]WARNING:[/bold red] {r['id']} on {r['host']}: {r['sandbox']}")

        run(body)
