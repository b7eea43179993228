"""``conveyor config set/unset/list/get`` and ``conveyor secrets rotate-key``: thin over /apps/{app}/config.

A secret can come from a file (``--from-file KEY=PATH``) or stdin (``--stdin KEY``), so its value
stays out of shell history; once set it is never printed (the API does not return it).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from conveyor.cli import output as o
from conveyor.cli.client import Api, CliError, ExitCode
from conveyor.cli.deploy import _finish, _follow
from conveyor.cli.main import EnvOpt, JsonOpt, run

config_app = typer.Typer(help="Config vars and secrets of an app's environments (a change ships as a new release).",
                         no_args_is_help=True)
secrets_app = typer.Typer(help="The key that seals secrets at rest.", no_args_is_help=True)

NoDeployOpt = Annotated[bool, typer.Option("--no-deploy", help="Stage the change for the next deploy instead of shipping it now.")]
WaitOpt = Annotated[bool, typer.Option("--wait", "-w", help="Follow the release that ships the change; exit 1 unless it succeeded.")]


def _pairs(pairs: list[str], files: list[str], stdin_key: str | None) -> dict[str, str]:
    """KEY=VALUE arguments, KEY=PATH files and one KEY from stdin → values (a usage error names the culprit)."""
    values: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CliError(f"{key[:40]!r} is not KEY=VALUE: give each variable as KEY=VALUE", ExitCode.USAGE)
        values[key] = value
    for spec in files:
        key, sep, path = spec.partition("=")
        if not sep or not key or not path:
            raise CliError(f"--from-file {spec[:60]!r}: expected KEY=PATH", ExitCode.USAGE)
        try:
            values[key] = Path(path).read_text().removesuffix("\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise CliError(f"--from-file {key}: cannot read {path}: {exc.__class__.__name__}", ExitCode.USAGE) from None
    if stdin_key:
        values[stdin_key] = sys.stdin.read().removesuffix("\n")
    if not values:
        raise CliError("give at least one KEY=VALUE (or --from-file KEY=PATH, --stdin KEY)", ExitCode.USAGE)
    return values


def _after_change(api: Api, change: dict[str, Any], wait: bool, json_out: bool) -> None:
    if not json_out:
        what = ", ".join([*(f"{k} set" for k in change["set"]), *(f"{k} unset" for k in change["unset"])])
        if change["staged"]:
            o.err.print(f"{escape(what)} in {change['app']}/{change['env']}: staged, applies at the next deploy")
        else:
            o.err.print(f"{escape(what)}: release {change['release']} ships it as deployment "
                        f"[bold]#{change['deployment']}[/bold]")
    if wait and change["deployment"] is not None:
        dep = _follow(api, api.get(f"/deployments/{change['deployment']}"), json_out)
        _finish(dep, json_out)
    elif json_out:
        o.emit_json(change)


@config_app.command("set")
def config_set(
    app_name: Annotated[str, typer.Argument(metavar="APP")],
    pairs: Annotated[list[str] | None, typer.Argument(metavar="KEY=VALUE…")] = None,
    env: EnvOpt = "production",
    secret: Annotated[bool, typer.Option("--secret", help="Seal the values: they can be replaced, never read back.")] = False,
    from_file: Annotated[list[str] | None, typer.Option("--from-file", help="KEY=PATH: the value is the file's content.")] = None,
    stdin: Annotated[str | None, typer.Option("--stdin", metavar="KEY", help="Read KEY's value from stdin.")] = None,
    no_deploy: NoDeployOpt = False,
    wait: WaitOpt = False,
    json: JsonOpt = False,
) -> None:
    """Set config vars (or secrets); ships a new release of the running image with them."""

    def body() -> None:
        values = _pairs(pairs or [], from_file or [], stdin)
        with Api() as api:
            change = api.request("PUT", f"/apps/{app_name}/config",
                                 json={"env": env, "values": values, "secret": secret, "deploy": not no_deploy})
            _after_change(api, change, wait, json)

    run(body)


@config_app.command("unset")
def config_unset(
    app_name: Annotated[str, typer.Argument(metavar="APP")],
    keys: Annotated[list[str], typer.Argument(metavar="KEY…")],
    env: EnvOpt = "production",
    no_deploy: NoDeployOpt = False,
    wait: WaitOpt = False,
    json: JsonOpt = False,
) -> None:
    """Remove config vars (a manifest default of the same name applies again)."""

    def body() -> None:
        with Api() as api:
            change = api.post(f"/apps/{app_name}/config/unset", json={"env": env, "keys": keys, "deploy": not no_deploy})
            _after_change(api, change, wait, json)

    run(body)


@config_app.command("list")
def config_list(app_name: Annotated[str, typer.Argument(metavar="APP")], env: EnvOpt = "production",
                json: JsonOpt = False) -> None:
    """An environment's config vars: set ones and the manifest's defaults; secrets masked."""

    def body() -> None:
        with Api() as api:
            rows = api.get(f"/apps/{app_name}/config", params={"env": env})
        if json:
            o.emit_json(rows)
            return
        o.table(f"{app_name}/{env} config", ["KEY", "VALUE", "SOURCE", "SET"], [
            [r["key"], "•••••• (secret)" if r["secret"] else (escape(r["value"]) if r["value"] is not None else "(hidden)"),
             r["source"], f"{o.ago(r['updated_at'])} by {r['updated_by'] or 'someone'}" if r["updated_at"] else ""]
            for r in rows])

    run(body)


@config_app.command("get")
def config_get(app_name: Annotated[str, typer.Argument(metavar="APP")], key: Annotated[str, typer.Argument(metavar="KEY")],
               env: EnvOpt = "production", json: JsonOpt = False) -> None:
    """Print one var's value (a secret's value cannot be read back)."""

    def body() -> None:
        with Api() as api:
            row = api.get(f"/apps/{app_name}/config/{key}", params={"env": env})
        if json:
            o.emit_json(row)
        elif row["value"] is None:
            raise CliError(f"{key}: this token may only read names, not values", ExitCode.CONFLICT)
        else:
            print(row["value"])

    run(body)


@secrets_app.command("rotate-key")
def rotate_key(json: JsonOpt = False) -> None:
    """Seal every secret with a new key (the old one opens them until all are re-sealed)."""

    def body() -> None:
        with Api() as api:
            out = api.post("/secrets/rotate-key")
        if json:
            o.emit_json(out)
        else:
            o.err.print(f"Secrets key rotated: {out['resealed']} sealed values re-sealed.")

    run(body)


def register(app: typer.Typer) -> None:
    app.add_typer(config_app, name="config")
    app.add_typer(secrets_app, name="secrets")
