"""Apps, their environments' status, releases and the audit log."""

from __future__ import annotations

from fastapi import APIRouter, Query
from sqlalchemy import select

from conveyor.api.deps import CP, Reader, Writer
from conveyor.api.schemas import App, AppCreate, AppStatus, AppUpdate, EnvironmentStatus, EventView, InstanceView, Release
from conveyor.deploy import service
from conveyor.domain import deploy_machine as dm
from conveyor.domain.manifest import APP_NAME_RE
from conveyor.domain.routing import hostnames
from conveyor.store import repo
from conveyor.store.tables import apps, deployments, environments, events, images, instances, releases

router = APIRouter(tags=["apps"])


@router.post("/apps", status_code=201, response_model=App, summary="Create an app")
def create_app(body: AppCreate, cp: CP, p: Writer) -> App:
    with cp.engine.begin() as conn:
        row = service.create_app(conn, body.name, actor=p.name, origin=p.origin, team=body.team)
    return App(name=row["name"], team=row["team"], created_at=row["created_at"], created_by=row["created_by"])


@router.patch("/apps/{app}", response_model=App, summary="Change an app's team")
def update_app(app: str, body: AppUpdate, cp: CP, p: Writer) -> App:
    from sqlalchemy import update

    if body.team is not None and not APP_NAME_RE.match(body.team):
        raise ValueError(f"team name {body.team!r} is invalid: use lower-case letters, digits and '-'")
    with cp.engine.begin() as conn:
        row = repo.get_app(conn, app)
        conn.execute(update(apps).where(apps.c.id == row["id"]).values(team=body.team))
        repo.record_event(conn, "app_updated", f"app {app} now belongs to team {body.team or '(none)'}", app=app,
                          actor=p.name, origin=p.origin)
        row = repo.get_app(conn, app)
    return App(name=row["name"], team=row["team"], created_at=row["created_at"], created_by=row["created_by"])


@router.get("/apps", response_model=list[App], summary="List apps")
def list_apps(cp: CP, _p: Reader) -> list[App]:
    with cp.engine.connect() as conn:
        envs: dict[int, list[str]] = {}
        for e in conn.execute(select(environments.c.app_id, environments.c.name).order_by(environments.c.name)):
            envs.setdefault(e.app_id, []).append(e.name)
        return [
            App(name=r.name, team=r.team, created_at=r.created_at, created_by=r.created_by,
                environments=envs.get(r.id, []))
            for r in conn.execute(select(apps).order_by(apps.c.name))
        ]


@router.get("/apps/{app}", response_model=AppStatus, summary="Each environment's release, image and instances")
def app_status(app: str, cp: CP, _p: Reader) -> AppStatus:
    return status_of(cp, app)


def status_of(cp: CP, app: str) -> AppStatus:  # type: ignore[valid-type]
    router_url = cp.settings.router_url
    with cp.engine.connect() as conn:
        app_row = repo.get_app(conn, app)
        status = repo.instance_status_map(conn)
        out = []
        for env in conn.execute(
            select(environments).where(environments.c.app_id == app_row["id"]).order_by(environments.c.name)
        ).mappings():
            rel = None
            if env["current_release"] is not None:
                rel = repo.get_release(conn, env["id"], env["current_release"])
            commit = None
            if rel is not None:
                img = conn.execute(
                    select(images.c.commit).where(
                        images.c.digest == rel["image_digest"], images.c.app_id == app_row["id"]
                    )
                ).first()
                commit = img.commit if img else None
            inst_views = []
            for i in conn.execute(select(instances).where(instances.c.env_id == env["id"]).order_by(instances.c.id)):
                addr, st = status.get(i.id, (None, {}))
                inst_views.append(
                    InstanceView(
                        id=i.id,
                        release=i.release,
                        role=i.role,
                        host=i.host,
                        state="draining" if i.draining_since is not None else st.get("state", "pending"),
                        port=st.get("port"),
                        address=addr,
                        restarts=st.get("restarts", 0),
                        message=st.get("message", ""),
                    )
                )
            active = conn.execute(
                select(deployments.c.id).where(
                    deployments.c.env_id == env["id"], deployments.c.state.in_(list(dm.ACTIVE))
                )
            ).first()
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
                    deploying=service.get_deployment(conn, active.id) if active else None,
                )
            )
    return AppStatus(app=app, environments=out)


@router.get("/apps/{app}/releases", response_model=list[Release], summary="Release history, newest first")
def list_releases(app: str, cp: CP, _p: Reader, env: str | None = None, limit: int = Query(50, ge=1, le=500)) -> list[Release]:
    with cp.engine.connect() as conn:
        app_row = repo.get_app(conn, app)
        q = (
            select(releases, environments.c.name.label("env_name"), images.c.commit)
            .select_from(
                releases.join(environments, environments.c.id == releases.c.env_id).outerjoin(
                    images,
                    (images.c.digest == releases.c.image_digest) & (images.c.app_id == environments.c.app_id),
                )
            )
            .where(environments.c.app_id == app_row["id"])
            .order_by(releases.c.created_at.desc(), releases.c.id.desc())
            .limit(limit)
        )
        if env:
            repo.get_env(conn, app_row["id"], env)
            q = q.where(environments.c.name == env)
        return [
            Release(
                env=r.env_name,
                number=r.number,
                image=r.image_digest,
                status=r.status,
                created_by=r.created_by,
                created_at=r.created_at,
                live_at=r.live_at,
                retired_at=r.retired_at,
                commit=r.commit,
                config=r.config,
            )
            for r in conn.execute(q)
        ]


@router.get("/events", response_model=list[EventView], summary="The audit log, newest first")
def list_events(
    cp: CP,
    _p: Reader,
    app: str | None = None,
    env: str | None = None,
    kind: str | None = None,
    since: float | None = None,
    limit: int = Query(100, ge=1, le=5000),
) -> list[EventView]:
    q = select(events).order_by(events.c.id.desc()).limit(limit)
    if app:
        q = q.where(events.c.app == app)
    if env:
        q = q.where(events.c.env == env)
    if kind:
        q = q.where(events.c.kind == kind)
    if since is not None:
        q = q.where(events.c.at >= since)
    with cp.engine.connect() as conn:
        return [EventView(**dict(r)) for r in conn.execute(q).mappings()]
