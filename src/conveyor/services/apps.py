"""Apps: creating them, their team, each environment's status and the release history.

The API routes (``api/apps.py``) and the pages (``web/``) call these functions
and nothing below them; the rules (valid names, one app per name) and the
transactions are here, the queries in ``store/``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from conveyor.domain.manifest import APP_NAME_RE
from conveyor.domain.routing import hostnames
from conveyor.services import config, deployments, locks
from conveyor.services.schemas import App, AppStatus, EnvironmentStatus, InstanceView, Release
from conveyor.services.state import ControlPlane
from conveyor.store import hosts, instances, repo
from conveyor.store import deployments as deployment_rows
from conveyor.store.repo import Conflict


def _check_team(team: str | None) -> None:
    if team is not None and not APP_NAME_RE.match(team):
        raise ValueError(f"team name {team!r} is invalid: use lower-case letters, digits and '-', starting with a letter")


def create_app(conn: Connection, name: str, actor: str = "", origin: str = "", team: str | None = None) -> dict[str, Any]:
    """Create app ``name`` (in the caller's transaction) and record the event; the app's row."""
    if not APP_NAME_RE.match(name):
        raise ValueError(
            f"app name {name!r} is invalid: use 1-40 lower-case letters, digits and '-', starting with a letter"
        )
    _check_team(team)
    # one statement decides between concurrent creators of one name: the others get a 409
    if not repo.create_app(conn, name, team, actor, repo.now()):
        raise Conflict(f"app {name!r} already exists")
    repo.record_event(conn, "app_created", f"app {name} created", app=name, actor=actor, origin=origin)
    return dict(repo.get_app(conn, name))


def _view(row: Any, environments: list[str] | None = None) -> App:
    return App(name=row["name"], team=row["team"], created_at=row["created_at"], created_by=row["created_by"],
               environments=environments or [])


def create(cp: ControlPlane, name: str, team: str | None, actor: str = "", origin: str = "") -> App:
    with cp.engine.begin() as conn:
        return _view(create_app(conn, name, actor=actor, origin=origin, team=team))


def set_team(cp: ControlPlane, app: str, team: str | None, actor: str = "", origin: str = "") -> App:
    """Give an app to a team (``None``: to none)."""
    if team is not None and not APP_NAME_RE.match(team):
        raise ValueError(f"team name {team!r} is invalid: use lower-case letters, digits and '-'")
    with cp.engine.begin() as conn:
        row = repo.get_app(conn, app)
        repo.set_team(conn, row["id"], team)
        repo.record_event(conn, "app_updated", f"app {app} now belongs to team {team or '(none)'}", app=app,
                          actor=actor, origin=origin)
        return _view(repo.get_app(conn, app))


def list_apps(cp: ControlPlane) -> list[App]:
    with cp.engine.connect() as conn:
        envs = repo.env_names_by_app(conn)
        out = []
        for r in repo.list_apps(conn):
            view = _view(r, envs.get(r["id"], []))
            view.locks = locks.locks_in(conn, r["name"])
            out.append(view)
        return out


def names(cp: ControlPlane) -> list[str]:
    with cp.engine.connect() as conn:
        return repo.app_names(conn)


def teams(cp: ControlPlane) -> list[str]:
    with cp.engine.connect() as conn:
        return repo.teams(conn)


def env_names(cp: ControlPlane, app: str) -> list[str]:
    """An app's environments, by name (``NotFound`` for an unknown app)."""
    with cp.engine.connect() as conn:
        return [e["name"] for e in repo.envs_of_app(conn, repo.get_app(conn, app)["id"])]


def status_of(cp: ControlPlane, app: str) -> AppStatus:
    """Each environment's release, image, commit, routes, URL, instances and running deployment."""
    router_url = cp.settings.router_url
    with cp.engine.connect() as conn:
        app_row = repo.get_app(conn, app)
        envs = repo.envs_of_app(conn, app_row["id"])
        placed = {e["id"]: instances.of_env(conn, e["id"]) for e in envs}
        status = hosts.instance_status_map(conn, cp.clock(), cp.started_at,
                                           on={i["host"] for rows in placed.values() for i in rows})
        all_locks = locks.locks_in(conn, app)
        in_force = [f for f in locks.freezes_in(conn, app, cp.clock()) if f.active]
        out = []
        for env in envs:
            rel = None
            if env["current_release"] is not None:
                rel = repo.get_release(conn, env["id"], env["current_release"])
            commit = repo.image_commit(conn, app_row["id"], rel["image_digest"]) if rel is not None else None
            inst_views = []
            for i in placed[env["id"]]:
                addr, st = status.get(i["id"], (None, {}))
                inst_views.append(
                    InstanceView(
                        id=i["id"],
                        release=i["release"],
                        role=i["role"],
                        host=i["host"],
                        state="draining" if i["draining_since"] is not None else st.get("state", "pending"),
                        port=st.get("port"),
                        address=addr,
                        restarts=st.get("restarts", 0),
                        message=st.get("message", ""),
                    )
                )
            active = deployment_rows.active_id(conn, env["id"])
            url = None
            if router_url:
                port = router_url.rsplit(":", 1)[-1].rstrip("/")
                url = f"http://{hostnames(app, env['name'], cp.settings.domain)[0]}:{port}"
            out.append(
                EnvironmentStatus(
                    name=env["name"],
                    release=env["current_release"],
                    image=rel["image_digest"] if rel is not None else None,
                    commit=commit,
                    routes={str(k): v for k, v in (env["routes"] or {}).items()},
                    url=url,
                    instances=inst_views,
                    deploying=deployments.get_deployment(conn, active) if active is not None else None,
                    locks=[lk for lk in all_locks if lk.env in (None, env["name"])],
                    frozen=[f for f in in_force if f.env in (None, env["name"])],
                    awaiting_approval=deployment_rows.awaiting_ids(conn, env["id"]),
                )
            )
    return AppStatus(app=app, environments=out, locks=all_locks)


def releases(cp: ControlPlane, app: str, env: str | None = None, limit: int = 50) -> list[Release]:
    """Release history (of one environment, or all), newest first."""
    with cp.engine.connect() as conn:
        app_row = repo.get_app(conn, app)
        if env:
            repo.get_env(conn, app_row["id"], env)
        return [
            Release(
                env=r["env_name"],
                number=r["number"],
                image=r["image_digest"],
                status=r["status"],
                created_by=r["created_by"],
                created_at=r["created_at"],
                live_at=r["live_at"],
                retired_at=r["retired_at"],
                commit=r["commit"],
                config=config.public_config(r["config"] or {}),
            )
            for r in repo.release_history(conn, app_row["id"], env, limit)
        ]


def live_release(cp: ControlPlane, app: str, env: str, number: int) -> dict[str, Any]:
    """Who made release ``number`` of an environment live, and when."""
    with cp.engine.connect() as conn:
        row = repo.get_release(conn, repo.get_env(conn, repo.get_app(conn, app)["id"], env)["id"], number)
        return {"created_by": row["created_by"], "live_at": row["live_at"], "number": row["number"]}


def rollback_target(cp: ControlPlane, app: str, env: str, current: int | None) -> dict[str, Any] | None:
    """The release a rollback of the environment would go to, or None."""
    with cp.engine.connect() as conn:
        env_row = repo.get_env(conn, repo.get_app(conn, app)["id"], env)
        target = repo.rollback_target(conn, env_row["id"], current)
        if target is None:
            return None
        rel = repo.get_release(conn, env_row["id"], target)
        return {"number": target, "image": rel["image_digest"], "created_by": rel["created_by"]}
