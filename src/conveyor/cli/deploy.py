"""``conveyor build``, ``deploy``, ``rollback`` and ``images``: shipping commands.

``deploy --source DIR`` validates the manifest locally first (a typo is
reported before anything is uploaded), packs the directory, uploads it, streams
the build log, then queues the deployment and, with ``--wait``, follows it live.
"""

from __future__ import annotations

import json as jsonlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from typer.core import TyperGroup

from conveyor.cli import output as o
from conveyor.cli.client import Api, CliError, ExitCode
from conveyor.cli.main import EnvOpt, JsonOpt, run

if TYPE_CHECKING:
    from conveyor.domain.manifest import AppManifest

FINAL_OK = {"succeeded"}


#: The numbers shown beside each verdict (the web UI's headline numbers).
HEADLINE = ("canary_requests", "baseline_requests", "canary_error_rate", "baseline_error_rate", "canary_p99_ms", "baseline_p99_ms")


def step_label(step: int | None) -> str:
    """A verdict's step as people count it: steps from 1, the bake by name (the machine's -1)."""
    if step is None:
        return "-"
    return "bake" if step < 0 else f"step {step + 1}"


def figure(x: Any) -> str:
    """A number rounded for reading: 0.0717616 → 0.0718, 1234.5678 → 1235, rates as given."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return str(x)
    if isinstance(x, int) or float(x).is_integer():
        return str(int(x))
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:.0f}"


def seconds(s: float | None) -> str:
    if s is None:
        return "-"
    if s < 60:
        return f"{s:.0f} s" if s >= 10 else f"{s:.1f} s"
    return f"{s / 60:.0f} min" if s < 3600 else f"{s / 3600:.1f} h"


def deployment_lines(d: dict[str, Any]) -> list[str]:
    """A deployment as the UI shows it, in plain lines (Rich markup): steps from 1 with their
    weights and durations, the bake by name, each verdict's reason and headline numbers."""
    lines = [
        f"Deployment [bold]#{d['id']}[/bold] {d['app']}/{d['env']}: {d['kind']} "
        f"release {d['from_release'] or '-'} → [bold]{d['release']}[/bold] ({d['strategy']}) {o.styled(d['state'])}"
    ]
    if d.get("reason"):
        lines.append(f"  reason: {escape(d['reason'])}")
    lines += pipeline_lines(d)
    started, finished = d.get("started_at"), d.get("finished_at")
    if started and finished:
        lines.append(f"  took {seconds(finished - started)}")
    prog = d.get("progress") or {}
    if prog.get("weights"):
        lines.append("  traffic: " + ", ".join(f"release {k} {v}%" for k, v in prog["weights"].items()))
    params = d.get("params") or {}
    steps = params.get("steps") or []
    if d.get("strategy") == "canary" and steps:
        current = prog.get("step")
        lines.append("  steps:")
        for n, st in enumerate(steps, start=1):
            dur = float(st.get("for", st.get("duration", 0)) or 0)
            done = d["state"] == "succeeded" or (current is not None and current >= n)
            mark = "✓" if done else ("▶" if current is not None and current + 1 == n and d["state"] not in ("rolled_back", "failed") else " ")
            lines.append(f"    {mark} step {n}: {st['weight']}% of traffic for {seconds(dur)}")
        bake = params.get("bake")
        lines.append(f"      then 100%" + (f", bake {seconds(float(bake))}" if bake else ""))
    verdicts = d.get("verdicts", [])
    if verdicts:
        lines.append("  verdicts:")
    for v in verdicts:
        nums = v.get("numbers") or {}
        head = []
        for name in HEADLINE:
            hit = next((x for k, x in nums.items() if (k == name or k.endswith("." + name)) and x is not None), None)
            if hit is not None:
                head.append(f"{name.replace('_', ' ')} {figure(hit)}")
        lines.append(f"    {step_label(v.get('step'))} {v['judge']}: {o.styled(v['outcome'])} — {escape(v['reason'])}"
                     + (f" [dim]({', '.join(head)})[/dim]" if head else ""))
    train = d.get("train")
    if train:  # a deploy train's try of one commit (`conveyor trains APP`)
        c = train.get("culprit")
        without = f" with {c['sha'][:12]} reverted" if train.get("reverted") and c else ""
        lines.append(f"  train {train['id']} ({train['state']}): commit #{train['position'] + 1} "
                     f"{train['sha'][:12]}{without}: {o.styled(train['outcome'] or 'running')}")
        if c:
            lines.append(f"    culprit: {c['sha'][:12]} {escape(c.get('message') or '')} — {c['outcome']}: "
                         f"{escape(c['verdict'])}")
    return lines


def pipeline_lines(d: dict[str, Any]) -> list[str]:
    """The approval, a forced deploy and the image's pipeline (stages, where the image is, who waits for what)."""
    lines = []
    params = d.get("params") or {}
    if params.get("forced"):
        lines.append(f"  [yellow]forced[/yellow] by {escape(params['forced']['by'])} past: {escape(params['forced']['past'])}")
    if params.get("pipeline"):
        p = params["pipeline"]
        lines.append(f"  promoted by the pipeline from {p['from_env']} (deployment #{p['from_deployment']})")
    a = d.get("approval")
    if a:
        if a.get("state") == "pending":
            lines.append(f"  [yellow]awaiting approval[/yellow]: `conveyor approve {d['app']} {d['id']}` "
                         f"or `conveyor reject {d['app']} {d['id']} --reason …`")
        else:
            lines.append(f"  {a['state']} by {escape(str(a.get('by')))} {o.ago(a.get('at'))}"
                         + (f": {escape(a['reason'])}" if a.get("reason") else ""))
    stages = d.get("pipeline") or []
    if stages:
        lines.append("  pipeline:")
        for st in stages:
            arrow = f" (after {st['after']}{', approval' if st['approval'] else ''})" if st.get("after") else ""
            where = f"#{st['deployment']} {o.styled(st['state'])}" if st.get("deployment") else "-"
            lines.append(f"    {st['env']}{arrow}: {where}" + (f" — {escape(st['waiting'])}" if st.get("waiting") else ""))
    return lines


def print_deployment(d: dict[str, Any]) -> None:
    for line in deployment_lines(d):
        o.out.print(line, soft_wrap=True)


def check_local(app_name: str, source: Path | None, env: str | None = None, strategy: str | None = None) -> AppManifest | None:
    """Every check that needs no control plane, before anything is uploaded or built.

    Errors say what to write instead; a manifest error names ``conveyor.toml``
    and the key (the manifest's own validator, never a copy of it). Returns the
    source's manifest (None without a source).
    """
    from typing import get_args

    from conveyor.domain.manifest import APP_NAME_RE, ENV_NAME_RE, MANIFEST_NAME, ManifestError, Strategy, load_manifest

    if not APP_NAME_RE.match(app_name):
        raise CliError(f"app name {app_name!r} is invalid: use 1-40 lower-case letters, digits and '-', "
                       "starting with a letter", ExitCode.USAGE)
    if env is not None and not ENV_NAME_RE.match(env):
        raise CliError(f"--env {env!r} is not an environment name: use 1-40 lower-case letters, digits and '-', "
                       "starting with a letter (e.g. production, staging)", ExitCode.USAGE)
    strategies = get_args(Strategy)
    if strategy is not None and strategy not in strategies:
        raise CliError(f"--strategy {strategy!r} is not a strategy: use one of {', '.join(strategies)}", ExitCode.USAGE)
    if source is None:
        return None
    if not source.is_dir():
        raise CliError(f"--source {source}: not a directory", ExitCode.USAGE)
    if not (source / MANIFEST_NAME).exists() and not (source / "Procfile").exists():
        raise CliError(f"{source} has no {MANIFEST_NAME} (nor a Procfile): run `conveyor init` in it to write one, "
                       "then check what it guessed", ExitCode.USAGE)
    try:
        manifest = load_manifest(source)
    except ManifestError as exc:
        raise CliError(f"{source}/{exc}", ExitCode.USAGE) from None
    return manifest


def _upload_and_build(api: Api, app_name: str, source: Path, json_out: bool) -> dict[str, Any]:
    from conveyor.build.archive import pack_directory
    from conveyor.domain.manifest import secret_var_warnings

    manifest = check_local(app_name, source)
    api.get(f"/apps/{app_name}")  # an unknown app is reported before anything is uploaded
    assert manifest is not None  # a source always has one (check_local raises otherwise)
    for warning in secret_var_warnings(manifest):
        o.err.print(f"[yellow]warning:[/] {escape(warning)}")
    from conveyor.build.sources import describe_directory

    commit = describe_directory(source)
    data = pack_directory(source)
    if not json_out:
        o.err.print(f"Uploading {source} ({len(data) / 1024:.0f} KiB) and building…")
    build = api.post(
        f"/apps/{app_name}/builds", content=data, headers={"Content-Type": "application/gzip"},
        params={"commit": jsonlib.dumps(commit.to_dict())},
    )
    build = _follow_build(api, build, json_out)
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


def _follow_build(api: Api, build: dict[str, Any], json_out: bool) -> dict[str, Any]:
    """Stream a build's log to stderr (unless --json) and return the finished build."""
    if json_out:
        for _ in api.stream_lines(f"/builds/{build['id']}/log", follow=True):
            pass
    else:
        with o.err.status(f"Building #{build['id']}…") as status:
            for line in api.stream_lines(f"/builds/{build['id']}/log", follow=True):
                o.err.print(f"  [dim]build>[/dim] {escape(line)}")
                if line.startswith("==> "):
                    status.update(f"Building #{build['id']}: {escape(line[4:64])}")
    build = api.get(f"/builds/{build['id']}")
    if build["state"] != "succeeded":
        raise CliError(f"build {build['id']} failed: {build.get('error') or 'see the log above'}", ExitCode.FAILED)
    return build


class _AppOrCommand(TyperGroup):
    """`conveyor images APP` means `conveyor images list APP` (the common case stays short)."""

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["list", *args]
        return super().resolve_command(ctx, args)


#: How long `deploy --wait` keeps reading a release command's output after the phase ended without the
#: agent's exit note (a command stopped at its timeout has none).
RELEASE_TAIL_S = 3.0


def stream_release_output(api: Api, dep_id: int, poll_s: float = 0.3) -> bool:
    """Print the release command's output (``release>`` lines on stderr) while it runs, until the release
    phase is over and its output is all in. Whether there was any: then ``_finish`` does not repeat it."""
    import time

    offset, printed, over_since = 0, False, None
    while True:
        out = api.get(f"/deployments/{dep_id}/release-output", params={"offset": offset})
        offset = out["next"]
        for line in out["data"].splitlines():
            if line.startswith("--- conveyor agent: "):
                continue
            if not printed:
                o.err.print("[bold]release command[/] output:")
                printed = True
            o.err.print(f"  [dim]release>[/dim] {escape(line)}", highlight=False)
        if out["done"]:
            return printed
        if out["over"]:
            over_since = over_since if over_since is not None else time.monotonic()
            if time.monotonic() - over_since > RELEASE_TAIL_S:
                return printed
        if not out["data"]:
            time.sleep(poll_s)


def _follow(api: Api, dep: dict[str, Any], json_out: bool) -> dict[str, Any]:
    if json_out:
        return api.wait_deployment(dep["id"])
    params = dep.get("params") or {}
    streamed = False
    if dep.get("kind") == "deploy" and params.get("release_command") and not params.get("skip_release_phase"):
        streamed = stream_release_output(api, dep["id"])
    seen_verdicts = 0

    def show(d: dict[str, Any]) -> None:
        nonlocal seen_verdicts
        for v in d.get("verdicts", [])[seen_verdicts:]:
            o.err.print(f"  analysis {step_label(v['step'])} {v['judge']}: {o.styled(v['outcome'])} — {escape(v['reason'])}")
        seen_verdicts = len(d.get("verdicts", []))
        weights = (d.get("progress") or {}).get("weights")
        extra = (" traffic " + ", ".join(f"r{k} {w}%" for k, w in weights.items())) if weights else ""
        o.err.print(f"  #{d['id']} {o.styled(d['state'])}{extra}")

    with o.err.status(f"Deployment #{dep['id']} in progress…"):
        done = api.wait_deployment(dep["id"], on_change=show)
    if streamed:
        done["_release_streamed"] = True  # shown live above: _finish does not print it again
    return done


def _finish(d: dict[str, Any], json_out: bool) -> None:
    if json_out:
        o.emit_json(d)
    else:
        if d.get("release_output") and not d.get("_release_streamed"):
            o.err.print(f"[bold]release command[/] ({escape(str(d['params'].get('release_command')))}):")
            o.err.print(escape(d["release_output"].rstrip()), highlight=False)
        print_deployment(d)
    routers = d.get("routers")
    if routers and not routers["synced"] and not json_out:
        behind = ", ".join(f"{r['id']} (v{r['table_version']})" for r in routers["routers"] if not r["synced"])
        o.err.print(f"[yellow]warning:[/] routers {behind} do not hold routing table v{routers['table_version']} yet: "
                    "for a moment some requests may still reach the previous release.")
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
        wait: Annotated[bool, typer.Option("--wait", "-w", help="Follow the deployment until it ends and every live router holds its routing table; exit 1 unless it succeeded.")] = False,
        skip_release_phase: Annotated[bool, typer.Option("--skip-release-phase", help="Do not run the manifest's [release] command this time (recorded in the audit log).")] = False,
        force: Annotated[bool, typer.Option("--force", help="Deploy although the environment is locked or frozen (recorded on the deployment and in the audit log).")] = False,
        json: JsonOpt = False,
    ) -> None:
        """Build (from --source) or pick (--image/--from) an image and deploy it to an environment.

        Deployments of one environment run one at a time; more wait in a queue. A locked or frozen
        environment refuses it (exit 4, saying who locked it, why and since when) unless --force.
        """
        if sum(x is not None for x in (source, image, from_env)) != 1:
            o.err.print("[red]error:[/red] give exactly one of --source DIR, --image ID or --from ENV")
            raise typer.Exit(int(ExitCode.USAGE))

        def body() -> None:
            check_local(app_name, source, env, strategy)  # before anything is uploaded or built
            with Api() as api:
                body: dict[str, Any] = {"env": env, "strategy": strategy, "skip_release_phase": skip_release_phase,
                                        "force": force}
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
                    forced = (dep.get("params") or {}).get("forced")
                    if forced:
                        o.err.print(f"[yellow]forced[/yellow] past: {escape(forced['past'])}")
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
        source: Annotated[Path | None, typer.Argument(help="App directory (with conveyor.toml).")] = None,
        app_name: Annotated[str, typer.Option("--app", "-a", help="The app the image belongs to.")] = ...,  # type: ignore[assignment]
        git: Annotated[str | None, typer.Option("--git", help="Build a git repository (path or URL) instead.")] = None,
        ref: Annotated[str, typer.Option("--ref", help="Branch, tag or commit with --git.")] = "HEAD",
        json: JsonOpt = False,
    ) -> None:
        """Build an image from a directory or a git ref and run its tests, without deploying it.

        With --json, prints one object with the image `id` (its digest), its `layers` and its test `status`.
        """
        if (source is None) == (git is None):
            o.err.print("[red]error:[/red] give a source directory or --git URL (with --ref), not both")
            raise typer.Exit(int(ExitCode.USAGE))

        def body() -> None:
            with Api() as api:
                if source is not None:
                    b = _upload_and_build(api, app_name, source, json)
                else:
                    api.get(f"/apps/{app_name}")
                    b = api.post(f"/apps/{app_name}/builds", json={"git": git, "ref": ref})
                    b = _follow_build(api, b, json)
            img = b["image"]
            if json:
                o.emit_json({"id": img["digest"], "build": b["id"], "status": img["test_status"], "layers": img["layers"],
                             "size": img["size"], "commit": img["commit"]})
            else:
                o.out.print(f"Image {img['digest']}")
            if img["test_status"] == "failed":
                raise typer.Exit(int(ExitCode.FAILED))

        run(body)

    images_app = typer.Typer(cls=_AppOrCommand, no_args_is_help=True,
                             help="Images: `conveyor images APP` lists them; `show ID`; `gc`.")
    app.add_typer(images_app, name="images")

    @images_app.command("list")
    def images_list(app_name: Annotated[str, typer.Argument(metavar="APP")], json: JsonOpt = False) -> None:
        """List an app's images with size, commit and test result (also: `conveyor images APP`)."""

        def body() -> None:
            with Api() as api:
                imgs = api.get(f"/apps/{app_name}/images")
            if json:
                o.emit_json(imgs)
                return
            o.table(
                f"Images of {app_name}",
                ["IMAGE", "TESTS", "SIZE", "LAYERS", "COMMIT", "CREATED"],
                [[o.short(i["digest"]), o.styled(i["test_status"]), f"{i['size'] / 1e6:.2f} MB", len(i["layers"]),
                  ((i.get("commit") or {}).get("sha") or "")[:10] + (" (dirty)" if (i.get("commit") or {}).get("dirty") else ""),
                  o.ago(i["created_at"])] for i in imgs],
            )

        run(body)

    @images_app.command("show")
    def images_show(
        image: Annotated[str, typer.Argument(metavar="ID", help="Digest or a unique prefix (≥ 7 hex digits).")],
        logs: Annotated[bool, typer.Option("--logs", help="Also print the build and test log.")] = False,
        json: JsonOpt = False,
    ) -> None:
        """One image: layers, sizes, commit, test result (and its build log)."""

        def body() -> None:
            with Api() as api:
                img = api.get(f"/images/{image}", params={"logs": logs})
            if json:
                o.emit_json(img)
                return
            commit = img.get("commit") or {}
            o.out.print(f"Image [bold]{img['digest']}[/bold]  tests: {o.styled(img['test_status'])}  "
                        f"size {img['size']} bytes  commit {commit.get('sha') or '-'}{' (dirty)' if commit.get('dirty') else ''}")
            if commit.get("message"):
                o.out.print(f"  {escape(commit['message'].splitlines()[0])} — {escape(commit.get('author') or '')}")
            o.table(None, ["LAYER", "ROLE", "SIZE"], [[layer["digest"], layer["role"], layer["size"]] for layer in img["layers"]])
            if logs:
                sys.stdout.write(img.get("log") or "(no log kept)\n")

        run(body)

    @images_app.command("gc")
    def images_gc(
        keep: Annotated[int | None, typer.Option("--keep", help="Images to keep per app (default: the server's).")] = None,
        json: JsonOpt = False,
    ) -> None:
        """Delete old images: keeps the last N per app and every image a live or recent release uses."""

        def body() -> None:
            with Api() as api:
                rep = api.post("/images/gc", params={"keep_last": keep} if keep is not None else {})
            if json:
                o.emit_json(rep)
            else:
                o.out.print(f"Removed {rep['deleted_image_rows']} image(s), {len(rep.get('removed_blobs', []))} layer(s), "
                            f"freed {rep.get('freed_bytes', 0) / 1e6:.1f} MB; {rep['kept_images']} image(s) kept.")

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
