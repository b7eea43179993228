"""``conveyor build``, ``deploy``, ``rollback`` and ``images``: shipping commands.

``deploy --source DIR`` validates the manifest locally first (a typo is
reported before anything is uploaded), packs the directory, uploads it, streams
the build log, then queues the deployment and, with ``--wait``, follows it live.
"""

from __future__ import annotations

import json as jsonlib
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from conveyor.cli import output as o
from conveyor.cli.client import Api, CliError, ExitCode
from conveyor.cli.main import EnvOpt, JsonOpt, run

FINAL_OK = {"succeeded"}


def print_deployment(d: dict[str, Any]) -> None:
    o.out.print(
        f"Deployment [bold]#{d['id']}[/bold] {d['app']}/{d['env']}: {d['kind']} "
        f"release {d['from_release'] or '-'} → [bold]{d['release']}[/bold] ({d['strategy']}) {o.styled(d['state'])}"
    )
    if d.get("reason"):
        o.out.print(f"  reason: {escape(d['reason'])}")
    prog = d.get("progress") or {}
    if "weights" in prog:
        o.out.print("  traffic: " + ", ".join(f"r{k} {v}%" for k, v in prog["weights"].items()))
    for v in d.get("verdicts", []):
        o.out.print(f"  step {v['step']} {v['judge']}: {o.styled(v['outcome'])} — {escape(v['reason'])}")


def _upload_and_build(api: Api, app_name: str, source: Path, json_out: bool) -> dict[str, Any]:
    from conveyor.build.archive import pack_directory
    from conveyor.domain.manifest import ManifestError, load_manifest

    if not source.is_dir():
        raise CliError(f"--source {source}: not a directory", ExitCode.USAGE)
    api.get(f"/apps/{app_name}")  # an unknown app is reported before anything is uploaded
    try:
        load_manifest(source)
    except ManifestError as exc:
        raise CliError(f"{source}/{exc}", ExitCode.USAGE) from None
    from conveyor.build.sources import describe_directory

    commit = describe_directory(source)
    data = pack_directory(source)
    if not json_out:
        o.err.print(f"Uploading {source} ({len(data) / 1024:.0f} KiB) and building…")
    build = api.post(
        f"/apps/{app_name}/builds", content=data, headers={"Content-Type": "application/gzip"},
        params={"commit": jsonlib.dumps(commit.to_dict())},
    )
    for line in api.stream_lines(f"/builds/{build['id']}/log", follow=True):
        if not json_out:
            sys.stderr.write(f"  build> {line}\n")
    build = api.get(f"/builds/{build['id']}")
    if build["state"] != "succeeded":
        raise CliError(f"build {build['id']} failed: {build.get('error') or 'see the log above'}", ExitCode.FAILED)
    image = build["image"]
    if image and image.get("test_status") == "failed":
        raise CliError(
            f"image {o.short(image['digest'])} failed its tests; it is kept but cannot be deployed "
            f"(`conveyor images show {o.short(image['digest'])} --logs`)",
            ExitCode.FAILED,
        )
    if not json_out:
        o.err.print(f"Built image [bold]{o.short(image['digest'])}[/bold] (tests: {image.get('test_status')})")
    return build


def _follow(api: Api, dep: dict[str, Any], json_out: bool) -> dict[str, Any]:
    if json_out:
        return api.wait_deployment(dep["id"])
    seen_verdicts = 0

    def show(d: dict[str, Any]) -> None:
        nonlocal seen_verdicts
        for v in d.get("verdicts", [])[seen_verdicts:]:
            o.err.print(f"  analysis step {v['step']} {v['judge']}: {o.styled(v['outcome'])} — {escape(v['reason'])}")
        seen_verdicts = len(d.get("verdicts", []))
        weights = (d.get("progress") or {}).get("weights")
        extra = (" traffic " + ", ".join(f"r{k} {w}%" for k, w in weights.items())) if weights else ""
        o.err.print(f"  #{d['id']} {o.styled(d['state'])}{extra}")

    with o.err.status(f"Deployment #{dep['id']} in progress…"):
        return api.wait_deployment(dep["id"], on_change=show)


def _finish(d: dict[str, Any], json_out: bool) -> None:
    if json_out:
        o.emit_json(d)
    else:
        print_deployment(d)
    if d["state"] == "paused" and not json_out:
        o.err.print(f"Deployment #{d['id']} is paused: `conveyor resume {d['app']} --env {d['env']}`, "
                    f"`conveyor promote {d['app']} --env {d['env']}` or `conveyor abort {d['app']} --env {d['env']}`.")
    if d["state"] not in FINAL_OK:
        raise typer.Exit(int(ExitCode.FAILED))


def register(app: typer.Typer) -> None:
    @app.command()
    def deploy(
        app_name: Annotated[str, typer.Argument(metavar="APP")],
        source: Annotated[Path | None, typer.Option("--source", "-s", help="App directory to build and deploy.")] = None,
        image: Annotated[str | None, typer.Option("--image", "-i", help="Deploy an existing image (digest or prefix).")] = None,
        from_env: Annotated[str | None, typer.Option("--from", help="Promote the image another environment runs.")] = None,
        env: EnvOpt = "production",
        strategy: Annotated[str | None, typer.Option("--strategy", help="bluegreen, rolling or canary (default: the manifest's).")] = None,
        wait: Annotated[bool, typer.Option("--wait", "-w", help="Follow the deployment until it ends; exit 1 unless it succeeded.")] = False,
        json: JsonOpt = False,
    ) -> None:
        """Build (from --source) or pick (--image/--from) an image and deploy it to an environment.

        Deployments of one environment run one at a time; more wait in a queue.
        """
        if sum(x is not None for x in (source, image, from_env)) != 1:
            o.err.print("[red]error:[/red] give exactly one of --source DIR, --image ID or --from ENV")
            raise typer.Exit(int(ExitCode.USAGE))

        def body() -> None:
            with Api() as api:
                body: dict[str, Any] = {"env": env, "strategy": strategy}
                if source is not None:
                    body["image"] = _upload_and_build(api, app_name, source, json)["image"]["digest"]
                elif image:
                    body["image"] = image
                else:
                    body["from_env"] = from_env
                dep = api.post(f"/apps/{app_name}/deployments", json=body)
                if not json:
                    pos = dep.get("queue_position") or 0
                    queued = f" (queued: {pos} ahead)" if pos else ""
                    o.err.print(f"Deployment [bold]#{dep['id']}[/bold] of release {dep['release']} to {env}{queued}")
                if wait:
                    dep = _follow(api, dep, json)
                    _finish(dep, json)
                elif json:
                    o.emit_json(dep)

        run(body)

    @app.command()
    def rollback(
        app_name: Annotated[str, typer.Argument(metavar="APP")],
        env: EnvOpt = "production",
        release: Annotated[int | None, typer.Option("--release", "-r", help="Target release (default: the previous one).")] = None,
        wait: Annotated[bool, typer.Option("--wait", "-w", help="Follow until done; exit 1 unless it succeeded.")] = False,
        json: JsonOpt = False,
    ) -> None:
        """Move traffic back to the previous release (instant while it is still warm)."""

        def body() -> None:
            with Api() as api:
                dep = api.post(f"/apps/{app_name}/rollback", json={"env": env, "release": release})
                if not json:
                    o.err.print(f"Rollback [bold]#{dep['id']}[/bold]: release {dep['from_release']} → {dep['release']}")
                if wait:
                    _finish(_follow(api, dep, json), json)
                elif json:
                    o.emit_json(dep)

        run(body)

    @app.command()
    def build(
        source: Annotated[Path, typer.Argument(help="App directory (with conveyor.toml).")],
        app_name: Annotated[str, typer.Option("--app", "-a", help="The app the image belongs to.")],
        json: JsonOpt = False,
    ) -> None:
        """Build an image from a directory and run its tests, without deploying it."""

        def body() -> None:
            with Api() as api:
                b = _upload_and_build(api, app_name, source, json)
            if json:
                o.emit_json({"build": b["id"], **b["image"], "id": b["image"]["digest"]})
            else:
                o.out.print(f"Image {b['image']['digest']}")

        run(body)

    @app.command()
    def images(app_name: Annotated[str, typer.Argument(metavar="APP")], json: JsonOpt = False) -> None:
        """List an app's images with size, commit and test result."""

        def body() -> None:
            with Api() as api:
                imgs = api.get(f"/apps/{app_name}/images")
            if json:
                o.emit_json(imgs)
                return
            o.table(
                f"Images of {app_name}",
                ["IMAGE", "TESTS", "SIZE", "COMMIT", "CREATED"],
                [[o.short(i["digest"]), o.styled(i["test_status"]), f"{i['size'] / 1e6:.1f} MB",
                  ((i.get("commit") or {}).get("sha") or "")[:10], o.ago(i["created_at"])] for i in imgs],
            )

        run(body)

    def _control(action: str, doc: str) -> None:
        def command(
            app_name: Annotated[str, typer.Argument(metavar="APP")],
            env: EnvOpt = "production",
            full: Annotated[bool, typer.Option("--full", help="Promote straight to 100% (skip remaining steps).")] = False,
            json: JsonOpt = False,
        ) -> None:
            def body() -> None:
                with Api() as api:
                    st = api.get(f"/apps/{app_name}")
                    env_st = next((e for e in st["environments"] if e["name"] == env), None)
                    if env_st is None or not env_st.get("deploying"):
                        raise CliError(f"{app_name}/{env} has no deployment in progress", ExitCode.CONFLICT)
                    dep_id = env_st["deploying"]["id"]
                    d = api.post(f"/deployments/{dep_id}/{action}", json={"full": full})
                if json:
                    o.emit_json(d)
                else:
                    o.out.print(f"Asked deployment #{dep_id} to {action}; it is {o.styled(d['state'])}. "
                                f"Follow it with `conveyor deployments show {dep_id}`.")

            run(body)

        command.__doc__ = doc
        app.command(action)(command)

    _control("promote", "Promote the canary in progress to its next step (--full: straight to 100%).")
    _control("pause", "Pause the canary in progress at its current step.")
    _control("resume", "Resume a paused canary; its step's analysis starts afresh.")
    _control("abort", "Abort the deployment in progress: traffic returns to the previous release.")
