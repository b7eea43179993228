"""Pages that look across apps: the overview, hosts and instances, the audit log.

Each page renders the same data its JSON twin returns (``conveyor.services.views``),
and the overview and hosts pages refresh themselves every few seconds.
"""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from conveyor.services import audit, hosts, views
from conveyor.web.render import render
from conveyor.web.session import PageUser

router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
async def overview_page(request: Request, user: PageUser) -> HTMLResponse:
    data = await run_in_threadpool(views.overview, request.app.state.cp)
    return render(request, "overview.html", data=data)


@router.get("/hosts", response_class=HTMLResponse)
async def hosts_page(request: Request, user: PageUser) -> HTMLResponse:
    data = await run_in_threadpool(hosts.hosts_view, request.app.state.cp)
    return render(request, "hosts.html", data=data)


@router.get("/audit", response_class=HTMLResponse)
def audit_page(
    request: Request,
    user: PageUser,
    app: str | None = None,
    env: str | None = None,
    kind: str | None = None,
    limit: int = Query(200, ge=1, le=5000),
) -> HTMLResponse:
    cp = request.app.state.cp
    rows = audit.events(cp, app=app or None, env=env or None, kind=kind or None, since=None, limit=limit)
    kinds = audit.kinds(cp)
    return render(request, "audit.html", events=[e.model_dump() for e in rows], kinds=kinds, limit=limit,
                  q={"app": app, "env": env, "kind": kind})
