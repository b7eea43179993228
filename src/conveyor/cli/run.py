"""``conveyor run APP [--env ENV] [--timeout 1h] -- CMD…``: a one-off command in the current release.

Thin over /apps/{app}/runs: start it, print its output as it arrives, and exit with the command's
own exit code. Ctrl-C is forwarded (the command gets SIGINT, as in a terminal, and may clean up);
a second Ctrl-C stops it (SIGTERM, exit 130), and so does the timeout (exit 124, like timeout(1)).
"""

from __future__ import annotations

import shlex
import sys
import time
from typing import Annotated

import typer

from conveyor.cli import output as o
from conveyor.cli.client import Api, CliError, ExitCode
from conveyor.cli.main import EnvOpt, run as run_body
from conveyor.domain.manifest import parse_duration

#: The agent's own lines (start banner, exit note) are not the command's output.
AGENT_PREFIX = "--- conveyor agent: "
POLL_S = 0.3


def _print_output(text: str) -> None:
    for line in text.splitlines(keepends=True):
        if not line.startswith(AGENT_PREFIX):
            sys.stdout.write(line)
    sys.stdout.flush()


def exit_status(code: int | None) -> int:
    """The command's exit code as a shell reports it: killed by signal N (the agent says -N) → 128+N."""
    if code is None:
        return 1
    return 128 - code if code < 0 else code


def register(app: typer.Typer) -> None:
    @app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def run(
        app_name: Annotated[str, typer.Argument(metavar="APP")],
        command: Annotated[list[str], typer.Argument(metavar="-- CMD…", help="The command and its arguments.")],
        env: EnvOpt = "production",
        timeout: Annotated[str, typer.Option("--timeout", help="Stop it after this long (e.g. 30s, 10m, 1h).")] = "1h",
    ) -> None:
        """Run a one-off command in the current release's image and config on a live host; its exit code is ours."""

        def body() -> None:
            try:
                limit = parse_duration(timeout)
            except ValueError as exc:
                raise CliError(f"--timeout: {exc}", ExitCode.USAGE) from None
            line = shlex.join(command)
            with Api() as api:
                started = api.post(f"/apps/{app_name}/runs", json={"env": env, "command": line})
                run_id = started["id"]
                o.err.print(f"Running {line!r} in release {started['release']} of {app_name}/{env} on {started['host']} ({run_id})")
                deadline = time.monotonic() + limit
                offset = 0
                interrupted = False
                while True:
                    try:
                        out = api.get(f"/runs/{run_id}", params={"offset": offset})
                        _print_output(out["data"])
                        offset = out["next"]
                        if out["done"]:
                            api.request("DELETE", f"/runs/{run_id}", params={"reason": "done"})
                            raise typer.Exit(exit_status(out["exit_code"]))
                        if out["state"] == "failed":
                            api.request("DELETE", f"/runs/{run_id}", params={"reason": "could not start"})
                            raise CliError(f"the command could not start: {out['message']}", ExitCode.FAILED)
                        if time.monotonic() > deadline:
                            api.request("DELETE", f"/runs/{run_id}", params={"reason": f"timed out after {timeout}"})
                            o.err.print(f"[red]error:[/] timed out after {timeout}: stopped")
                            raise typer.Exit(124)
                        if not out["data"]:
                            time.sleep(POLL_S)
                    except KeyboardInterrupt:
                        if not interrupted:  # forwarded, as a terminal would: the command decides
                            interrupted = True
                            api.post(f"/runs/{run_id}/interrupt")
                            o.err.print("interrupt sent to the command (SIGINT); Ctrl-C again to stop it")
                            continue
                        api.request("DELETE", f"/runs/{run_id}", params={"reason": "stopped (Ctrl-C twice)"})
                        o.err.print("stopped")
                        raise typer.Exit(130) from None

        run_body(body)
