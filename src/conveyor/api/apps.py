"""Apps, their environments' status, releases and the audit log."""

from __future__ import annotations

from fastapi import APIRouter, Query

from conveyor.api.deps import CP, Reader, Writer
from conveyor.services import apps, audit
from conveyor.services.schemas import App, AppCreate, AppStatus, AppUpdate, EventView, Release

router = APIRouter(tags=["apps"])


@router.post("/apps", status_code=201, response_model=App, summary="Create an app")
def create_app(body: AppCreate, cp: CP, p: Writer) -> App:
    return apps.create(cp, body.name, body.team, actor=p.name, origin=p.origin)


@router.patch("/apps/{app}", response_model=App, summary="Change an app's team")
def update_app(app: str, body: AppUpdate, cp: CP, p: Writer) -> App:
    return apps.set_team(cp, app, body.team, actor=p.name, origin=p.origin)


@router.get("/apps", response_model=list[App], summary="List apps")
def list_apps(cp: CP, _p: Reader) -> list[App]:
    return apps.list_apps(cp)


@router.get("/apps/{app}", response_model=AppStatus, summary="Each environment's release, image and instances")
def app_status(app: str, cp: CP, _p: Reader) -> AppStatus:
    return apps.status_of(cp, app)


@router.get("/apps/{app}/releases", response_model=list[Release], summary="Release history, newest first")
def list_releases(app: str, cp: CP, _p: Reader, env: str | None = None, limit: int = Query(50, ge=1, le=500)) -> list[Release]:
    return apps.releases(cp, app, env, limit)


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
    return audit.events(cp, app=app, env=env, kind=kind, since=since, limit=limit)
