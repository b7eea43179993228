"""Deployments: the commands users issue (deploy, promote, roll back, cancel, promote/pause/
resume/abort) and the deployments as the API and the pages show them.

Commands only *record intent* (rows in SQL, in one transaction with their event);
the orchestrator does the work. That is what makes a deploy survive a control
plane killed mid-way: the intent is durable before the API answers. The
functions that take a ``Connection`` run inside the caller's transaction; the
ones that take the ``ControlPlane`` own theirs and poke the orchestrator.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from conveyor.analysis import AnalysisConfigError, parse_analysis_config
from conveyor.domain import deploy_machine as dm
from conveyor.domain.manifest import ENV_NAME_RE, AppManifest, parse_manifest
from conveyor.services.schemas import Deployment
from conveyor.services.state import ControlPlane
from conveyor.store import deployments, repo
from conveyor.store.repo import Conflict


def deploy_params(manifest: AppManifest, env: str, strategy: str | None) -> dict[str, Any]:
    """The strategy settings of a deployment, frozen when it is queued."""
    settings = manifest.environment(env)
    params = settings.model_dump(by_alias=True, exclude={"vars"})
    if strategy:
        params["strategy"] = strategy
    return params


def release_config(manifest: AppManifest, env: str, app: str, number: int) -> dict[str, Any]:
    settings = manifest.environment(env)
    environment = dict(settings.vars)
    environment.update({"CONVEYOR_APP": app, "CONVEYOR_ENV": env, "CONVEYOR_RELEASE": str(number)})
    return {
        "command": manifest.processes["web"],
        "environment": environment,
        "health": {
            "path": manifest.health.path,
            "timeout_s": manifest.health.timeout,
            "interval_s": manifest.health.interval,
        },
        "limits": manifest.limits_for("web").to_json(),
        "instances": settings.instances,
        "bake": settings.bake,
        "drain": settings.drain_timeout,
    }


def queue_deploy(
    conn: Connection,
    app_name: str,
    env_name: str,
    image_ref: str,
    *,
    strategy: str | None = None,
    actor: str = "",
    origin: str = "",
) -> dict[str, Any]:
    """Queue a deployment of an image to an environment; returns the deployment row."""
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
    now = repo.now()
    repo.add_release(conn, env["id"], number, image["digest"], release_config(manifest, env_name, app_name, number),
                     actor, now)
    params = deploy_params(manifest, env_name, strategy)
    try:
        parse_analysis_config(params.get("analysis") or {}, source=f"[env.{env_name}] analysis")
    except AnalysisConfigError as exc:
        raise ValueError(str(exc)) from None
    dep_id = deployments.insert_queued(conn, env["id"], "deploy", params["strategy"], env["current_release"], number, image["digest"],
                    params, actor, now)
    repo.record_event(
        conn,
        "deploy_queued",
        f"deployment {dep_id} of image {image['digest'][7:19]} as release {number} queued by {actor or 'someone'}",
        app=app_name,
        env=env_name,
        actor=actor,
        origin=origin,
        data={"deployment": dep_id, "release": number, "image": image["digest"], "commit": image["commit"]},
    )
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
    params = {"instances": rel["config"].get("instances", 1), "ready_timeout": 60.0, "strategy": "bluegreen"}
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
    "abort": {"starting", "canary", "paused", "baking", "rolling", "preview"},
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
        "queue_position": position,
        "created_by": row["created_by"],
        "created_at": row["created_at"],
        "started_at": row["started_at"],
        "finished_at": row["finished_at"],
    }


def with_verdicts(conn: Connection, dep_id: int) -> Deployment:
    """A deployment with its analysis verdicts: what ``GET /deployments/{id}`` and the pages show."""
    return Deployment(**get_deployment(conn, dep_id), verdicts=deployments.verdicts_of(conn, dep_id))


def read(cp: ControlPlane, dep_id: int) -> Deployment:
    with cp.engine.connect() as conn:
        return with_verdicts(conn, dep_id)


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
           strategy: str | None = None, actor: str = "", origin: str = "") -> int:
    """Queue a deployment of ``image``, or of what ``from_env`` runs (promote); its id.

    Raises ``ValueError`` when neither is given."""
    with cp.engine.begin() as conn:
        if from_env:
            image = promoted_image(conn, app, from_env)
        if not image:
            raise ValueError("give the image to deploy: 'image' (a digest) or 'from_env' (promote)")
        dep = queue_deploy(conn, app, env, image, strategy=strategy, actor=actor, origin=origin)
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
