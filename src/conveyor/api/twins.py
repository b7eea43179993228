"""JSON twins of the pages that the core API does not already serve, and the login-link endpoint.

Mounted under ``/api/v1`` with the other API routers (bearer or session auth),
so every page of the UI has a JSON answer with the same content (both call
``conveyor.services.views``):

* ``GET /overview``        — the overview page
* ``GET /hosts``           — hosts, their instances, and routers
* ``GET /apps/{app}/summary`` — the app page (environments, images, releases, deployments, builds)
* ``GET /apps/{app}/builds``  — an app's builds, newest first
* ``GET /deployments/{id}/view`` — the live deployment page (deployment, progress, instances, events)
* ``POST /ui/login-link``  — a one-time sign-in link for the browser (``conveyor ui``)
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from conveyor.api.deps import CP, Reader, token_from
from conveyor.services import builds, hosts, views
from conveyor.services.auth import LOGIN_CODE_TTL, issue_login_code
from conveyor.services.schemas import RowId

router = APIRouter(tags=["web UI twins"])


@router.get("/overview", summary="Every app and environment, and the deployments in flight")
async def get_overview(cp: CP, _p: Reader) -> dict[str, Any]:
    return await run_in_threadpool(views.overview, cp)


@router.get("/hosts", summary="Hosts with their instances, and the routers")
async def get_hosts(cp: CP, _p: Reader) -> dict[str, Any]:
    return await run_in_threadpool(hosts.hosts_view, cp)


@router.get("/apps/{app}/summary", summary="Everything the app page shows")
async def get_app_summary(app: str, cp: CP, p: Reader) -> dict[str, Any]:
    return await run_in_threadpool(views.app_page, cp, app, p.can_write)


@router.get("/apps/{app}/builds", summary="An app's builds, newest first")
def get_builds(app: str, cp: CP, _p: Reader, limit: int = Query(20, ge=1, le=500)) -> list[dict[str, Any]]:
    return builds.recent_builds(cp, app, limit)


@router.post("/ui/login-link", summary="A one-time link that signs a browser in as the caller (valid 60 s)")
def login_link(request: Request, cp: CP, _p: Reader, next: str = "/") -> dict[str, Any]:
    token = token_from(request)
    assert token is not None  # Reader already checked it
    code = issue_login_code(cp, token)
    from urllib.parse import urlencode

    return {"path": "/login?" + urlencode({"code": code, "next": next}), "expires_in": LOGIN_CODE_TTL}


@router.get("/deployments/{dep_id}/view", summary="Everything the live deployment page shows")
async def deployment_view(dep_id: RowId, cp: CP, _p: Reader) -> dict[str, Any]:
    return await run_in_threadpool(views.deployment_snapshot, cp, dep_id)
