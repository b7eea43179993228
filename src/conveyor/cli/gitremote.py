"""``conveyor git-remote`` and ``conveyor git-credential``: `git push conveyor main` from a checkout.

Thin over the API (``GET``/``PUT /apps/{app}/git``). ``git-remote APP --add`` adds the
app's remote to the current repository as ``conveyor`` and tells git to ask this CLI for
the token (``git-credential``, a git credential helper that answers with the token the CLI
uses): the token never lands in ``.git/config`` or a remote URL.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from typing import Annotated, Any

import typer
from rich.markup import escape

from conveyor.cli import output as o
from conveyor.cli.client import Api, CliError, ExitCode
from conveyor.cli.main import JsonOpt, run  # registered from main, after it is loaded


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], capture_output=True, text=True, timeout=30)


def add_remote(name: str, url: str) -> str:
    """Add (or point) remote ``name`` at ``url`` in the current repository, with this CLI as its
    credential helper; what was done, in words."""
    inside = _git("rev-parse", "--is-inside-work-tree")
    if inside.returncode != 0 or inside.stdout.strip() != "true":
        raise CliError("--add: the current directory is not inside a git checkout (run `git init` first, "
                       "or run this where your app's repository is)", ExitCode.USAGE)
    existing = _git("remote", "get-url", name)
    if existing.returncode == 0:
        if existing.stdout.strip() == url:
            done = f"remote {name!r} already points at {url}"
        else:
            _git("remote", "set-url", name, url)
            done = f"remote {name!r} now points at {url} (was {existing.stdout.strip()})"
    else:
        res = _git("remote", "add", name, url)
        if res.returncode != 0:
            raise CliError(f"git remote add {name} failed: {res.stderr.strip()}", ExitCode.USAGE)
        done = f"added remote {name!r}: {url}"
    helper = "!" + shlex.join([sys.executable, "-m", "conveyor", "git-credential"])
    _git("config", "--local", "--replace-all", f"credential.{url}.helper", helper)
    return done


def register(app: typer.Typer) -> None:
    @app.command("git-remote")
    def git_remote(
        app_name: Annotated[str, typer.Argument(metavar="APP")],
        remote_name: Annotated[str, typer.Argument(metavar="[NAME]", help="The remote's name with --add.")] = "conveyor",
        add: Annotated[bool, typer.Option("--add", help="Add it to the git repository here as remote NAME "
                                                        "(default: conveyor), with this CLI's token for it.")] = False,
        branch: Annotated[str | None, typer.Option("--branch", help="Make pushes to this branch deploy "
                                                                    "(default: main).")] = None,
        json: JsonOpt = False,
    ) -> None:
        """Print the app's git remote URL: a push to its deploy branch builds, tests and ships.

        Pushes to other branches are stored, not deployed.

        `git push -o detach` returns once the build is queued; it ships when the build succeeds.

        Git authenticates with a token as the password (any user name). --add makes git ask this CLI for
        its token, so none is written into .git/config.

        \b
        Examples:
          conveyor git-remote hello --add             then: git push conveyor main
          conveyor git-remote hello --branch release  pushes to release deploy
        """

        def body() -> None:
            with Api() as api:
                if branch is not None:
                    remote: dict[str, Any] = api.request("PUT", f"/apps/{app_name}/git", json={"deploy_branch": branch})
                else:
                    remote = api.get(f"/apps/{app_name}/git")
            done = add_remote(remote_name, remote["url"]) if add else None
            if json:
                o.emit_json(remote | ({"added": done} if done else {}))
                return
            o.out.print(remote["url"], soft_wrap=True, markup=False, highlight=False)
            if done:
                o.err.print(f"{escape(done)}; `git push {escape(remote_name)} {escape(remote['deploy_branch'])}` "
                            "builds, tests and ships")
            elif branch is not None:
                o.err.print(f"pushes to {escape(remote['deploy_branch'])} now deploy {escape(app_name)}")

        run(body)

    @app.command("git-credential", hidden=True)
    def git_credential(operation: Annotated[str, typer.Argument()] = "get") -> None:
        """Git's credential helper protocol: answers `get` with the token this CLI uses (as the password)."""
        from conveyor.config import load_client_config

        sys.stdin.read()  # the request's attributes: whichever Conveyor remote asks, the answer is the same
        if operation != "get":
            return  # store / erase: nothing is kept
        config = load_client_config()
        if config.token:
            sys.stdout.write(f"username=conveyor\npassword={config.token}\n")
