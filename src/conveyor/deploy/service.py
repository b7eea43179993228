"""Commands that users issue: create apps, queue deployments and rollbacks, cancel.

These only *record intent* (rows in SQL, in one transaction with their event);
the orchestrator does the work. That is what makes a deploy survive a control
plane killed mid-way: the intent is durable before the API answers.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert, select, update

from conveyor.analysis import AnalysisConfigError, parse_analysis_config
from conveyor.domain import deploy_machine as dm
from conveyor.domain.manifest import APP_NAME_RE, ENV_NAME_RE, AppManifest, parse_manifest
from conveyor.store import repo
from conveyor.store.repo import Conflict, NotFound
from conveyor.store.tables import apps, deployments, releases


def create_app(conn: Connection, name: str, actor: str = "", origin: str = "", team: str | None = None) -> dict[str, Any]:
    if not APP_NAME_RE.match(name):
        raise ValueError(
            f"app name {name!r} is invalid: use 1-40 lower-case letters, digits and '-', starting with a letter"
        )
    if conn.execute(select(apps.c.id).where(apps.c.name == name)).first():
        raise Conflict(f"app {name!r} already exists")
    if team is not None and not APP_NAME_RE.match(team):
        raise ValueError(f"team name {team!r} is invalid: use lower-case letters, digits and '-', starting with a letter")
    conn.execute(insert(apps).values(name=name, team=team, created_at=repo.now(), created_by=actor))
    repo.record_event(conn, "app_created", f"app {name} created", app=name, actor=actor, origin=origin)
    return dict(repo.get_app(conn, name))


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
    number = repo.next_release_number(conn, env["id"])
    now = repo.now()
    conn.execute(
        insert(releases).values(
            env_id=env["id"],
            number=number,
            image_digest=image["digest"],
            config=release_config(manifest, env_name, app_name, number),
            status="pending",
            created_by=actor,
            created_at=now,
        )
    )
    params = deploy_params(manifest, env_name, strategy)
    try:
        parse_analysis_config(params.get("analysis") or {}, source=f"[env.{env_name}] analysis")
    except AnalysisConfigError as exc:
        raise ValueError(str(exc)) from None
    dep_id = _queue(conn, env["id"], "deploy", params["strategy"], env["current_release"], number, image["digest"],
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
    dep_id = _queue(conn, env["id"], "rollback", "bluegreen", current, target, rel["image_digest"], params, actor, now)
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


def _queue(
    conn: Connection, env_id: int, kind: str, strategy: str, from_release: int | None, to_release: int,
    image: str, params: dict[str, Any], actor: str, now: float,
) -> int:
    """Insert a queued deployment; the orchestrator starts it when the environment's queue reaches it."""
    result = conn.execute(
        insert(deployments).values(
            env_id=env_id, kind=kind, strategy=strategy, state="queued", from_release=from_release,
            to_release=to_release, image_digest=image, params=params, progress={}, reason="",
            created_by=actor, created_at=now,
        )
    )
    return int(result.inserted_primary_key[0])  # type: ignore[index]


def cancel(conn: Connection, dep_id: int, actor: str = "") -> dict[str, Any]:
    row = _deployment_row(conn, dep_id)
    result = dm.cancel(_as_machine(row))
    conn.execute(
        update(deployments)
        .where(deployments.c.id == dep_id, deployments.c.state == "queued")
        .values(state=result.state, finished_at=repo.now(), reason=f"cancelled by {actor or 'someone'}")
    )
    app, env = repo.app_env_names(conn, row["env_id"])
    if row["kind"] == "deploy":
        conn.execute(
            update(releases)
            .where(
                releases.c.env_id == row["env_id"],
                releases.c.number == row["to_release"],
                releases.c.status == "pending",
            )
            .values(status="cancelled")
        )
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
    row = _deployment_row(conn, dep_id)
    if row["state"] == "queued" and action == "abort":
        return cancel(conn, dep_id, actor)
    if row["state"] not in COMMANDS[action]:
        allowed = ", ".join(sorted(COMMANDS[action]))
        raise Conflict(f"deployment {dep_id} is {row['state']}: {action} applies only while it is {allowed}")
    conn.execute(
        update(deployments).where(deployments.c.id == dep_id)
        .values(command={"action": action, "full": full, "by": actor or "someone"})
    )
    app, env = repo.app_env_names(conn, row["env_id"])
    repo.record_event(conn, f"deploy_{action}_requested", f"{action}{' (full)' if full else ''} of deployment {dep_id} "
                      f"requested by {actor or 'someone'}", app=app, env=env, actor=actor, data={"deployment": dep_id})
    return get_deployment(conn, dep_id)


def _deployment_row(conn: Connection, dep_id: int) -> dict[str, Any]:
    row = conn.execute(select(deployments).where(deployments.c.id == dep_id)).mappings().first()
    if row is None:
        raise NotFound(f"deployment {dep_id} not found; list them with `conveyor deployments APP`")
    return dict(row)


def _as_machine(row: dict[str, Any]) -> dm.Deployment:
    return dm.Deployment(
        id=row["id"],
        kind=row["kind"],
        strategy=row["strategy"],
        state=row["state"],
        from_release=row["from_release"],
        to_release=row["to_release"],
        params=row["params"] or {},
        progress=row["progress"] or {},
        created_at=row["created_at"],
        started_at=row["started_at"],
        created_by=row["created_by"],
        command=row.get("command"),
    )


def get_deployment(conn: Connection, dep_id: int) -> dict[str, Any]:
    """A deployment as the API shows it: its row, app/env names, image and queue position."""
    row = _deployment_row(conn, dep_id)
    app, env = repo.app_env_names(conn, row["env_id"])
    position = None
    if row["state"] == "queued":
        ahead = conn.execute(
            select(deployments.c.id).where(
                deployments.c.env_id == row["env_id"],
                deployments.c.state.in_(["queued", *dm.ACTIVE]),
                deployments.c.id < dep_id,
            )
        ).all()
        position = len(ahead)
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
