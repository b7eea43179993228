"""Build, image and logs pages: the build log and instance output, live.

Both logs are plain-text streams in the API (``GET /api/v1/builds/{id}/log?follow=true``
and ``GET /api/v1/apps/{app}/logs?follow=true``); the page's JavaScript reads them
with ``fetch`` (the session cookie authenticates it) and appends lines as they arrive.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from conveyor.services import apps, builds
from conveyor.services.errors import NotFound
from conveyor.web.app_pages import not_found
from conveyor.web.render import render
from conveyor.web.session import PageUser

router = APIRouter(include_in_schema=False)


@router.get("/builds/{build_id}", response_class=HTMLResponse)
async def build_page(request: Request, build_id: int, user: PageUser) -> HTMLResponse:
    cp = request.app.state.cp
    try:
        b = await run_in_threadpool(builds.read, cp, build_id)
    except NotFound as exc:
        return not_found(request, str(exc))
    image = b.get("image")
    used = await run_in_threadpool(builds.used_by, cp, image["digest"]) if image else []
    return render(request, "build.html", b=b, image=image, used=used, app=builds.app_name(cp, b["app_id"]))


@router.get("/images/{digest}", response_class=HTMLResponse)
async def image_page(request: Request, digest: str, user: PageUser) -> HTMLResponse:
    cp = request.app.state.cp
    try:
        image = await run_in_threadpool(builds.image, cp, digest)
    except NotFound as exc:
        return not_found(request, str(exc))
    b = None
    if image.get("build_id"):
        try:
            b = await run_in_threadpool(builds.read, cp, image["build_id"])
        except NotFound:
            b = None
    used = await run_in_threadpool(builds.used_by, cp, image["digest"])
    return render(request, "build.html", b=b, image=image, used=used, app=builds.app_name(cp, image["app_id"]))


@router.get("/apps/{app}/logs", response_class=HTMLResponse)
async def logs_page(request: Request, app: str, user: PageUser, env: str | None = None,
                    grep: str | None = None, release: int | None = None) -> HTMLResponse:
    cp = request.app.state.cp
    try:
        envs = apps.env_names(cp, app)
    except NotFound as exc:
        return not_found(request, str(exc))
    query = {"lines": "200", "follow": "true"} | {
        k: str(v) for k, v in (("env", env), ("grep", grep), ("release", release)) if v not in (None, "")}
    log_src = f"/api/v1/apps/{quote(app)}/logs?{urlencode(query)}"
    return render(request, "logs.html", app=app, envs=envs, log_src=log_src,
                  q={"env": env or "", "grep": grep or "", "release": release})
