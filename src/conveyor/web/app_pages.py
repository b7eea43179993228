"""The app page and its three buttons: Deploy, Promote, Rollback.

The buttons are plain HTML forms (CSRF token, admin only) whose handlers call
the same service functions as the JSON API (``POST /apps/{app}/deployments``
and ``/rollback``), then redirect to the live deployment page. A refused
request re-renders the app page with the API's own sentence about what to fix.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from conveyor.services import deployments, processes, views
from conveyor.services.auth import Principal
from conveyor.services.errors import Conflict, IllegalTransition, ManifestError, NotFound
from conveyor.web.render import render
from conveyor.web.session import FormWriter, PageUser

router = APIRouter(include_in_schema=False)


def not_found(request: Request, message: str) -> HTMLResponse:
    return render(request, "error.html", status_code=404, heading="Not found", message=message)


async def _app_page(request: Request, app: str, error: str = "", status_code: int = 200,
                    reveal: bool = False) -> HTMLResponse:
    try:
        data = await run_in_threadpool(views.app_page, request.app.state.cp, app, reveal)
    except NotFound as exc:
        return not_found(request, str(exc))
    return render(request, "app.html", status_code=status_code, d=data, error=error)


@router.get("/apps/{app}", response_class=HTMLResponse)
async def app_page(request: Request, app: str, user: PageUser) -> HTMLResponse:
    return await _app_page(request, app, reveal=user.can_write)


async def _act(request: Request, app: str, user: Principal, fn: Callable[[], int]) -> Response:
    """Run one command (it returns the deployment's id); on success go to its deployment page, else
    show why on the app page."""
    try:
        dep_id = await run_in_threadpool(fn)
    except NotFound as exc:
        return await _app_page(request, app, str(exc), 404)
    except (Conflict, IllegalTransition) as exc:
        return await _app_page(request, app, str(exc), 409)
    except (ValueError, ManifestError) as exc:
        return await _app_page(request, app, str(exc), 422)
    return RedirectResponse(f"/deployments/{dep_id}", status_code=303)


@router.post("/apps/{app}/deploy")
async def deploy(
    request: Request, app: str, user: FormWriter,
    image: Annotated[str, Form()] = "", env: Annotated[str, Form()] = "production",
    strategy: Annotated[str, Form()] = "", force: Annotated[str, Form()] = "",
) -> Response:
    if not image:
        return await _app_page(request, app, "choose an image to deploy", 422)
    cp = request.app.state.cp
    return await _act(request, app, user, lambda: deployments.deploy(
        cp, app, env.strip(), image, strategy=strategy or None, actor=user.name, origin=user.origin,
        force=bool(force)))


@router.post("/apps/{app}/promote")
async def promote(
    request: Request, app: str, user: FormWriter,
    from_env: Annotated[str, Form()] = "staging", env: Annotated[str, Form()] = "production",
) -> Response:
    if from_env == env:
        return await _app_page(request, app, f"promote from {from_env!r} to a different environment", 422)
    cp = request.app.state.cp
    return await _act(request, app, user, lambda: deployments.deploy(
        cp, app, env, None, from_env=from_env, actor=user.name, origin=user.origin))


@router.post("/apps/{app}/rollback")
async def rollback(
    request: Request, app: str, user: FormWriter, env: Annotated[str, Form()] = "production",
    release: Annotated[str, Form()] = "",
) -> Response:
    target = int(release) if release.strip().isdigit() else None
    cp = request.app.state.cp
    return await _act(request, app, user, lambda: deployments.rollback(
        cp, app, env, to_release=target, actor=user.name, origin=user.origin))


@router.post("/apps/{app}/scale")
async def scale(request: Request, app: str, user: FormWriter) -> Response:
    """The scale control: one number per process type (``count_<type>``); the same rule as `conveyor scale`."""
    form = await request.form()
    env = str(form.get("env", "production"))
    pairs = [f"{k.removeprefix('count_')}={str(v).strip()}" for k, v in form.items() if k.startswith("count_")]
    cp = request.app.state.cp
    try:
        await run_in_threadpool(lambda: processes.scale(cp, app, env, pairs, actor=user.name, origin=user.origin))
    except NotFound as exc:
        return await _app_page(request, app, str(exc), 404, reveal=True)
    except Conflict as exc:
        return await _app_page(request, app, str(exc), 409, reveal=True)
    except ValueError as exc:
        return await _app_page(request, app, str(exc), 422, reveal=True)
    return RedirectResponse(f"/apps/{app}", status_code=303)
