"""Deployments: the commands users issue (deploy, promote, roll back, cancel, promote/pause/
resume/abort) and the deployments as the API and the pages show them.

Commands only *record intent* (rows in SQL, in one transaction with their event);
the orchestrator does the work. That is what makes a deploy survive a control
plane killed mid-way: the intent is durable before the API answers. The
functions that take a ``Connection`` run inside the caller's transaction; the
ones that take the ``ControlPlane`` own theirs and poke the orchestrator.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Connection

from conveyor import logfile
from conveyor.analysis import AnalysisConfigError, parse_analysis_config
from conveyor.domain import deploy_machine as dm
from conveyor.domain.manifest import ENV_NAME_RE, MANIFEST_NAME, AppManifest, parse_manifest
from conveyor.services import locks
from conveyor.services.autoscale import store_policy
from conveyor.services.schemas import Deployment, ReleaseOutput
from conveyor.services.state import ControlPlane
from conveyor.services.trains import ref_of_deployment
from conveyor.store import autoscalers, config_vars, deployments, repo
from conveyor.store.repo import Conflict


def process_counts(manifest: AppManifest, env: str, scaled: dict[str, int]) -> tuple[int, dict[str, int]]:
    """(web instances, {worker process type: instances}): `conveyor scale` counts win over the manifest's
    ``instances`` (web) and 1 (every other process type)."""
    web = scaled.get("web", manifest.environment(env).instances)
    workers = {name: scaled.get(name, 1) for name in sorted(manifest.processes) if name != "web"}
    return web, workers


def deploy_params(manifest: AppManifest, env: str, strategy: str | None,
                  scaled: dict[str, int] | None = None) -> dict[str, Any]:
    """The strategy settings of a deployment, frozen when it is queued."""
    settings = manifest.environment(env)
    params = settings.model_dump(by_alias=True, exclude={"vars", "after", "approval", "autoscale"})
    params["instances"], params["workers"] = process_counts(manifest, env, scaled or {})
    if manifest.release.command:
        params["release_command"] = manifest.release.command
        params["release_timeout"] = manifest.release.timeout
    if strategy:
        params["strategy"] = strategy
    return params


def release_config(manifest: AppManifest, env: str, app: str, number: int,
                   set_vars: list[dict[str, Any]] | None = None, changes: dict[str, Any] | None = None,
                   scaled: dict[str, int] | None = None) -> dict[str, Any]:
    """How the release's instances run. ``set_vars`` (``config_vars.snapshot``) win over the manifest's
    ``vars``; secrets stay sealed here (``secrets``) and are opened only for a host's desired state."""
    settings = manifest.environment(env)
    environment = dict(settings.vars)
    secrets: dict[str, str] = {}
    for var in set_vars or []:
        if var["secret"]:
            environment.pop(var["key"], None)
            secrets[var["key"]] = var["sealed"]
        else:
            environment[var["key"]] = var["value"]
    environment.update({"CONVEYOR_APP": app, "CONVEYOR_ENV": env, "CONVEYOR_RELEASE": str(number)})
    return {
        "secrets": secrets,
        "vars": list(set_vars or []),
        "processes": manifest.processes,
        "release_command": manifest.release.command,
        "workers": process_counts(manifest, env, scaled or {})[1],
        "changes": changes or {},
        "command": manifest.processes["web"],
        "environment": environment,
        "health": {
            "path": manifest.health.path,
            "timeout_s": manifest.health.timeout,
            "interval_s": manifest.health.interval,
        },
        "limits": manifest.limits_for("web").to_json(),
        # each process type's own limits ([limits.<type>]); documents.desired_state picks by process
        "process_limits": {p: manifest.limits_for(p).to_json() for p in manifest.processes},
        "instances": process_counts(manifest, env, scaled or {})[0],
        "bake": settings.bake,
        "drain": settings.drain_timeout,
        "hosts": settings.hosts or "",  # a label selector (domain/placement.py)
    }


def apply_manifest_autoscale(conn: Connection, env_id: int, manifest: AppManifest, app: str, env: str,
                             actor: str, origin: str) -> list[str]:
    """Store the manifest's ``[env.ENV.autoscale.PROCESS]`` policies, as `conveyor autoscale` would,
    when a deployment of it is queued; a policy equal to the stored one is left alone (no event).
    Process types the manifest does not name keep what `conveyor autoscale` set. Returns the
    process types changed."""
    stored = {r["process"]: r["policy"] for r in autoscalers.of_env(conn, env_id)}
    changed = []
    for process, section in sorted(manifest.environment(env).autoscale.items()):
        policy = section.policy()
        if stored.get(process) == policy.to_json():
            continue
        store_policy(conn, env_id, app, env, process, policy, actor, origin, repo.now(), source=MANIFEST_NAME)
        changed.append(process)
    return changed


def queue_deploy(
    conn: Connection,
    app_name: str,
    env_name: str,
    image_ref: str,
    *,
    strategy: str | None = None,
    actor: str = "",
    origin: str = "",
    changes: dict[str, Any] | None = None,
    skip_release_phase: bool = False,
    approval: dict[str, Any] | None = None,
    pipeline: dict[str, Any] | None = None,
    forced: str | None = None,
) -> dict[str, Any]:
    """Queue a deployment of an image to an environment, as a new release with the environment's
    config vars; returns the deployment row. ``changes`` (a config change's keys) goes into the
    release's history. ``approval`` (a pipeline stage's pending approval) makes it wait outside the
    queue; ``pipeline`` (where it was promoted from) and ``forced`` (the lock or freeze a ``--force``
    went past) are kept in its params."""
    if not ENV_NAME_RE.match(env_name):
        raise ValueError(f"environment name {env_name!r} is invalid: use lower-case letters, digits and '-'")
    if strategy is not None and strategy not in ("bluegreen", "rolling", "canary"):
        raise ValueError(f"strategy {strategy!r} is unknown: use bluegreen, rolling or canary")
    app = repo.get_app(conn, app_name)
    image = repo.get_image(conn, app["id"], image_ref)
    if image["test_status"] == "failed":
        raise Conflict(
            f"image {image['digest'][:19]} failed its tests and cannot be deployed; "
            f"see `conveyor images show {image['digest'][7:19]} --logs`"
        )
    manifest = parse_manifest(image["app_manifest"])
    env = repo.get_env(conn, app["id"], env_name, create=True)
    repo.lock_env(conn, env["id"])
    env = repo.env_by_id(conn, env["id"])  # as of the lock: current_release may have moved
    number = repo.next_release_number(conn, env["id"])
    apply_manifest_autoscale(conn, env["id"], manifest, app_name, env_name, actor, origin)
    scaled = config_vars.counts_of(conn, env["id"])
    now = repo.now()
    repo.add_release(conn, env["id"], number, image["digest"], release_config(manifest, env_name, app_name, number,
                                                                       config_vars.snapshot(conn, env["id"]), changes,
                                                                       scaled),
                     actor, now)
    params = deploy_params(manifest, env_name, strategy, scaled)
    if skip_release_phase:
        params["skip_release_phase"] = True
        params["skip_release_phase_by"] = actor or "someone"
    if pipeline:
        params["pipeline"] = pipeline
    if forced:
        params["forced"] = {"by": actor or "someone", "past": forced}
    if env["current_release"] is not None:
        params["previous_workers"] = bool(repo.get_release(conn, env["id"], env["current_release"])["config"].get("workers"))
    try:
        parse_analysis_config(params.get("analysis") or {}, source=f"[env.{env_name}] analysis")
    except AnalysisConfigError as exc:
        raise ValueError(str(exc)) from None
    dep_id = deployments.insert_queued(conn, env["id"], "deploy", params["strategy"], env["current_release"], number, image["digest"],
                    params, actor, now, approval=approval)
    repo.record_event(
        conn,
        "deploy_queued",
        f"deployment {dep_id} of image {image['digest'][7:19]} as release {number} queued by {actor or 'someone'}"
        + (" (release command skipped)" if skip_release_phase and params.get("release_command") else ""),
        app=app_name,
        env=env_name,
        actor=actor,
        origin=origin,
        data={"deployment": dep_id, "release": number, "image": image["digest"], "commit": image["commit"],
              **({"skip_release_phase": True} if skip_release_phase else {})},
    )
    if forced:
        repo.record_event(conn, "deploy_forced", f"deployment {dep_id} forced by {actor or 'someone'} past: {forced}",
                          app=app_name, env=env_name, actor=actor, origin=origin,
                          data={"deployment": dep_id, "past": forced})
    return get_deployment(conn, dep_id)


def queue_rollback(
    conn: Connection, app_name: str, env_name: str, *, to_release: int | None = None, actor: str = "", origin: str = ""
) -> dict[str, Any]:
    app = repo.get_app(conn, app_name)
    env = repo.get_env(conn, app["id"], env_name)
    current = env["current_release"]
    target = to_release if to_release is not None else repo.rollback_target(conn, env["id"], current)
    if target is None:
        raise Conflict(
            f"{app_name}/{env_name} has no previous release to roll back to "
            f"(current release: {current if current is not None else 'none'})"
        )
    rel = repo.get_release(conn, env["id"], target)
    if rel["live_at"] is None:
        raise Conflict(f"release {target} was never live; roll back only to a release that served traffic")
    if target == current:
        raise Conflict(f"release {target} is already the current release of {app_name}/{env_name}")
    now = repo.now()
    if "vars" in rel["config"]:  # the config vars come back with the release: the next deploy ships them
        config_vars.replace_all(conn, env["id"], list(rel["config"]["vars"]), actor, now)
    params = {"instances": rel["config"].get("instances", 1), "ready_timeout": 60.0, "strategy": "bluegreen",
              "workers": dict(rel["config"].get("workers") or {}),
              "previous_workers": bool(repo.get_release(conn, env["id"], current)["config"].get("workers"))
              if current is not None else False}
    dep_id = deployments.insert_queued(conn, env["id"], "rollback", "bluegreen", current, target, rel["image_digest"], params, actor, now)
    repo.record_event(
        conn,
        "rollback_queued",
        f"rollback of {app_name}/{env_name} from release {current} to {target} requested by {actor or 'someone'}",
        app=app_name,
        env=env_name,
        actor=actor,
        origin=origin,
        data={"deployment": dep_id, "release": target},
    )
    return get_deployment(conn, dep_id)


def cancel(conn: Connection, dep_id: int, actor: str = "") -> dict[str, Any]:
    row = deployments.row(conn, dep_id)
    result = dm.cancel(deployments.machine(row))
    deployments.cancel_queued(conn, dep_id, result.state, repo.now(), f"cancelled by {actor or 'someone'}")
    app, env = repo.app_env_names(conn, row["env_id"])
    if row["kind"] == "deploy":
        repo.set_release_status(conn, row["env_id"], row["to_release"], "cancelled", only_if="pending")
    repo.record_event(conn, "deploy_cancelled", f"deployment {dep_id} cancelled", app=app, env=env, actor=actor)
    return get_deployment(conn, dep_id)


COMMANDS = {
    # action: states in which it means something
    "promote": {"canary", "paused", "preview"},
    "pause": {"canary"},
    "resume": {"paused"},
    "abort": {"releasing", "starting", "canary", "paused", "baking", "rolling", "preview"},
}


def command(conn: Connection, dep_id: int, action: str, *, full: bool = False, actor: str = "") -> dict[str, Any]:
    """Ask the orchestrator to promote, pause, resume or abort an active deployment.

    Recorded in the deployment's ``command`` column (not acted on here), so the
    orchestrator stays the only writer of the deployment's progress.
    """
    if action not in COMMANDS:
        raise ValueError(f"unknown action {action!r}: use one of {', '.join(COMMANDS)}")
    row = deployments.row(conn, dep_id)
    if row["state"] == "queued" and action == "abort":
        return cancel(conn, dep_id, actor)
    if row["state"] not in COMMANDS[action]:
        allowed = ", ".join(sorted(COMMANDS[action]))
        raise Conflict(f"deployment {dep_id} is {row['state']}: {action} applies only while it is {allowed}")
    deployments.set_command(conn, dep_id, {"action": action, "full": full, "by": actor or "someone"})
    app, env = repo.app_env_names(conn, row["env_id"])
    repo.record_event(conn, f"deploy_{action}_requested", f"{action}{' (full)' if full else ''} of deployment {dep_id} "
                      f"requested by {actor or 'someone'}", app=app, env=env, actor=actor, data={"deployment": dep_id})
    return get_deployment(conn, dep_id)


def get_deployment(conn: Connection, dep_id: int) -> dict[str, Any]:
    """A deployment as the API shows it: its row, app/env names, image and queue position."""
    row = deployments.row(conn, dep_id)
    app, env = repo.app_env_names(conn, row["env_id"])
    position = None
    if row["state"] == "queued":
        position = deployments.queue_position(conn, row["env_id"], dep_id)
    return {
        "id": row["id"],
        "app": app,
        "env": env,
        "kind": row["kind"],
        "strategy": row["strategy"],
        "state": row["state"],
        "from_release": row["from_release"],
        "release": row["to_release"],
        "image": row["image_digest"],
        "reason": row["reason"],
        "command": row["command"],
        "progress": row["progress"],
        "params": row["params"],
        "approval": row["approval"],
        "queue_position": position,
        "created_by": row["created_by"],
        "created_at": row["created_at"],
        "started_at": row["started_at"],
        "finished_at": row["finished_at"],
    }


def with_verdicts(conn: Connection, dep_id: int, logs_dir: Path | None = None) -> Deployment:
    """A deployment with its analysis verdicts (and, given the logs directory, its release command's
    output): what ``GET /deployments/{id}`` and the pages show."""
    dep = get_deployment(conn, dep_id)
    output = None
    if logs_dir is not None and dep["kind"] == "deploy" and (dep["params"] or {}).get("release_command"):
        output = release_output(logs_dir, dep["app"], dep["env"], dep["release"])
    return Deployment(**dep, verdicts=deployments.verdicts_of(conn, dep_id), release_output=output,
                      train=ref_of_deployment(conn, dep_id))


def release_output(logs_dir: Path, app: str, env: str, release: int, limit: int = 64 * 1024) -> str | None:
    """The release command's log (its instance is ``{app}-{env}-r{release}-release-{hex}``): its last lines
    (at most ``limit`` bytes read), as the command printed them, without the stored time stamps."""
    found = sorted(logs_dir.glob(f"{app}-{env}-r{release}-release-*.log"))
    if not found:
        return None
    lines = logfile.SegmentedLog(found[-1]).tail(2000, max_bytes=limit)
    return "".join(logfile.split_stamp(line)[1] + "\n" for line in lines)


def release_output_from(cp: ControlPlane, dep_id: int, offset: int) -> ReleaseOutput:
    """The release command's output from byte ``offset``, while it runs: what `deploy --wait` streams.

    ``over``: the deployment left ``queued``/``releasing``. ``done``: over and every line is in (the
    agent's exit note, which it writes after the command's output, has arrived). A command stopped
    at its timeout gets no exit note: a follower stops a few seconds after ``over`` then."""
    from conveyor.services import logs
    from conveyor.services.runs import AGENT_PREFIX

    with cp.engine.connect() as conn:
        dep = get_deployment(conn, dep_id)
    over = dep["state"] not in ("queued", "releasing")
    found = sorted(cp.settings.logs_dir.glob(f"{dep['app']}-{dep['env']}-r{dep['release']}-release-*.log"))
    if dep["kind"] != "deploy" or not (dep["params"] or {}).get("release_command") or not found:
        return ReleaseOutput(data="", next=offset, over=over, done=over)
    path = found[-1]
    note = AGENT_PREFIX + path.name.removesuffix(".log") + " "
    complete = any(logfile.split_stamp(line)[1].startswith(note)
                   for line in logfile.SegmentedLog(path, cp.settings.log_max_bytes).tail(3))
    text, nxt = logs.output_from(path, offset, 64 * 1024, final=complete, log_max_bytes=cp.settings.log_max_bytes)
    return ReleaseOutput(data=text, next=nxt, over=over, done=over and complete and not text)


def read(cp: ControlPlane, dep_id: int) -> Deployment:
    """One deployment as ``GET /deployments/{id}`` and its page show it: verdicts, release output, and
    its image's pipeline (each stage, where the image is, what waits for what)."""
    from conveyor.services import pipelines  # it queues deployments through this module

    with cp.engine.connect() as conn:
        dep = with_verdicts(conn, dep_id, cp.settings.logs_dir)
        app_id = repo.get_app(conn, dep.app)["id"]
        dep.pipeline = pipelines.stages_for(conn, app_id, dep.image, cp.clock())
        return dep


def list_for_app(cp: ControlPlane, app: str, env: str | None = None, limit: int = 50) -> list[Deployment]:
    """An app's deployments (of one environment, or all), newest first."""
    with cp.engine.connect() as conn:
        app_row = repo.get_app(conn, app)
        return [with_verdicts(conn, i) for i in deployments.ids_of_app(conn, app_row["id"], env, limit)]


def promoted_image(conn: Connection, app: str, from_env: str) -> str:
    """The image an environment runs now, to deploy it elsewhere unchanged (promote)."""
    app_row = repo.get_app(conn, app)
    source = repo.get_env(conn, app_row["id"], from_env)
    if source["current_release"] is None:
        raise Conflict(f"environment {from_env!r} has no live release to promote")
    return str(repo.get_release(conn, source["id"], source["current_release"])["image_digest"])


def deploy(cp: ControlPlane, app: str, env: str, image: str | None, *, from_env: str | None = None,
           strategy: str | None = None, actor: str = "", origin: str = "", skip_release_phase: bool = False,
           force: bool = False, automatic: bool = False) -> int:
    """Queue a deployment of ``image``, or of what ``from_env`` runs (promote); its id.

    A manual deploy: refused (``locks.Locked``, 409) while the environment is locked or frozen, unless
    ``force`` (then recorded on the deployment and in the audit log). ``automatic`` (a git push, a
    webhook): refused by a rollback's lock too, and never forced. Raises ``ValueError`` when neither
    image nor from_env is given."""
    with cp.engine.begin() as conn:
        if from_env:
            image = promoted_image(conn, app, from_env)
        if not image:
            raise ValueError("give the image to deploy: 'image' (a digest) or 'from_env' (promote)")
        decision = locks.check_in(conn, app, env, cp.clock(), automatic=automatic, force=force and not automatic)
        dep = queue_deploy(conn, app, env, image, strategy=strategy, actor=actor, origin=origin,
                           skip_release_phase=skip_release_phase, forced=decision.reason if decision.forced else None)
    cp.notifier.poke("orchestrator", "deployments")
    return int(dep["id"])


def rollback(cp: ControlPlane, app: str, env: str, *, to_release: int | None = None, actor: str = "",
             origin: str = "") -> int:
    """Queue a rollback (to ``to_release``, or the previous live release); its id."""
    with cp.engine.begin() as conn:
        dep = queue_rollback(conn, app, env, to_release=to_release, actor=actor, origin=origin)
    cp.notifier.poke("orchestrator", "deployments")
    return int(dep["id"])


def cancel_queued(cp: ControlPlane, dep_id: int, actor: str = "") -> None:
    with cp.engine.begin() as conn:
        cancel(conn, dep_id, actor=actor)
    cp.notifier.poke("orchestrator", "deployments")


def request(cp: ControlPlane, dep_id: int, action: str, *, full: bool = False, actor: str = "") -> None:
    """Ask the orchestrator to promote, pause, resume or abort (see :func:`command`)."""
    with cp.engine.begin() as conn:
        command(conn, dep_id, action, full=full, actor=actor)
    cp.notifier.poke("orchestrator", "deployments")
