"""Build, image and logs pages: the build log and instance output, live.

Both logs are plain-text streams in the API (``GET /api/v1/builds/{id}/log?follow=true``
and ``GET /api/v1/apps/{app}/logs?follow=true``); the page's JavaScript reads them
with ``fetch`` (the session cookie authenticates it) and appends lines as they arrive.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from conveyor.api.builds import get_image, read_build
from conveyor.store import repo
from conveyor.store.repo import NotFound
from conveyor.store.tables import apps, environments, releases
from conveyor.web.app_pages import not_found
from conveyor.web.render import render
from conveyor.web.session import PageUser

router = APIRouter(include_in_schema=False)


def _used_by(cp: Any, digest: str) -> list[dict[str, Any]]:
    """Releases made from this image: where it ran and when."""
    with cp.engine.connect() as conn:
        rows = conn.execute(
            select(releases.c.number, releases.c.status, releases.c.live_at, releases.c.created_by,
                   environments.c.name.label("env"), apps.c.name.label("app"))
            .select_from(releases.join(environments, environments.c.id == releases.c.env_id)
                         .join(apps, apps.c.id == environments.c.app_id))
            .where(releases.c.image_digest == digest).order_by(releases.c.created_at.desc()).limit(50)
        ).mappings()
        return [dict(r) for r in rows]


def _app_name(cp: Any, app_id: int) -> str:
    with cp.engine.connect() as conn:
        return str(conn.execute(select(apps.c.name).where(apps.c.id == app_id)).scalar_one())


@router.get("/builds/{build_id}", response_class=HTMLResponse)
async def build_page(request: Request, build_id: int, user: PageUser) -> HTMLResponse:
    cp = request.app.state.cp
    try:
        b = await run_in_threadpool(read_build, cp, build_id)
    except HTTPException as exc:
        return not_found(request, str(exc.detail))
    image = b.get("image")
    used = await run_in_threadpool(_used_by, cp, image["digest"]) if image else []
    return render(request, "build.html", b=b, image=image, used=used, app=_app_name(cp, b["app_id"]))


@router.get("/images/{digest}", response_class=HTMLResponse)
async def image_page(request: Request, digest: str, user: PageUser) -> HTMLResponse:
    cp = request.app.state.cp
    try:
        image = await run_in_threadpool(lambda: get_image(digest, cp, user, logs=False))
    except HTTPException as exc:
        return not_found(request, str(exc.detail))
    b = None
    if image.get("build_id"):
        try:
            b = await run_in_threadpool(read_build, cp, image["build_id"])
        except HTTPException:
            b = None
    used = await run_in_threadpool(_used_by, cp, image["digest"])
    return render(request, "build.html", b=b, image=image, used=used, app=_app_name(cp, image["app_id"]))


@router.get("/apps/{app}/logs", response_class=HTMLResponse)
async def logs_page(request: Request, app: str, user: PageUser, env: str | None = None,
                    grep: str | None = None, release: int | None = None) -> HTMLResponse:
    cp = request.app.state.cp
    try:
        with cp.engine.connect() as conn:
            app_row = repo.get_app(conn, app)
            envs = [r.name for r in conn.execute(
                select(environments.c.name).where(environments.c.app_id == app_row["id"]).order_by(environments.c.name))]
    except NotFound as exc:
        return not_found(request, str(exc))
    query = {"lines": "200", "follow": "true"} | {
        k: str(v) for k, v in (("env", env), ("grep", grep), ("release", release)) if v not in (None, "")}
    log_src = f"/api/v1/apps/{quote(app)}/logs?{urlencode(query)}"
    return render(request, "logs.html", app=app, envs=envs, log_src=log_src,
                  q={"env": env or "", "grep": grep or "", "release": release})
