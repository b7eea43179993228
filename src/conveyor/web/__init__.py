"""The web UI: server-rendered pages at ``/`` of the control plane.

``router`` holds every page (mounted without a prefix). Each page's JSON twin is
an API route (``conveyor.api.twins`` or the core API); both call the same
service (``conveyor.services.views`` and the others), and this package imports
nothing from ``conveyor.api``. Page families:
``session`` (sign-in), ``overview`` (overview, hosts, audit), ``calls_page`` (the audit trail), ``app_pages``
(an app and its buttons), ``deploy_pages`` (the live deployment), ``build_pages``
(builds, images, logs), ``insights`` (metrics, DORA), ``train_pages`` (deploy trains).
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from conveyor.web import app_pages, build_pages, calls_page, deploy_pages, insights, overview, session, train_pages
from conveyor.web.render import static_router

router = APIRouter(include_in_schema=False)
for _module in (session, overview, calls_page, app_pages, deploy_pages, build_pages, insights, train_pages):
    router.include_router(_module.router)
router.include_router(static_router)


def install(app: FastAPI) -> None:
    """Mount the pages at ``/`` and show page errors (sign-in needed, CSRF, viewer) as HTML, not JSON."""
    app.include_router(router)
    app.add_exception_handler(session.PageError, session.page_error_handler)


__all__ = ["router", "install"]
