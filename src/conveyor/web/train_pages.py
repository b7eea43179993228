"""The deploy train pages: an app's trains (``/apps/{app}/trains``) and one train (``/trains/{id}``),
with each commit's status, every try (build, canary deployment, outcome) and the culprit.

JSON twins: ``GET /api/v1/apps/{app}/trains`` and ``GET /api/v1/trains/{id}`` (``api/trains.py``);
both doors call ``conveyor.services.trains``.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from conveyor.services import trains
from conveyor.services.errors import NotFound
from conveyor.web.app_pages import not_found
from conveyor.web.render import render
from conveyor.web.session import PageUser

router = APIRouter(include_in_schema=False)


@router.get("/apps/{app}/trains", response_class=HTMLResponse)
async def trains_page(request: Request, app: str, user: PageUser) -> HTMLResponse:
    cp = request.app.state.cp
    try:
        found = await run_in_threadpool(trains.list_for_app, cp, app)
    except NotFound as exc:
        return not_found(request, str(exc))
    return render(request, "trains.html", app=app, trains=[t.model_dump() for t in found], one=False)


@router.get("/trains/{train_id}", response_class=HTMLResponse)
async def train_page(request: Request, train_id: int, user: PageUser) -> HTMLResponse:
    cp = request.app.state.cp
    try:
        t = await run_in_threadpool(trains.read, cp, train_id)
    except NotFound as exc:
        return not_found(request, str(exc))
    return render(request, "trains.html", app=t.app, trains=[t.model_dump()], one=True)
