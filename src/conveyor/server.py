"""The control plane's ASGI app: the API under /api/v1, the web UI at /.

This module is where the two doors meet: it mounts the API's routers
(``conveyor.api``) and the pages (``conveyor.web``) on one app, and starts the
background loops; the doors themselves only call ``conveyor.services``.

Errors are mapped in one place so every endpoint answers the same way:
``{"detail": "<what is wrong and what to do>"}`` with 404 for unknown things,
409 for requests that contradict the current state, 422 for bad input.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from conveyor import __version__, web
from conveyor.api.httpserver import HeadTimeoutProtocol
from conveyor.api import (
    apps, audit, builds, config, dataplane, deployments, domains, dora, git, hooks, locks, logs, metrics,
    notifications, processes, prometheus, runs, tokens, trains, twins,
)
from conveyor.api import hosts as hosts_api
from conveyor.build.store import ArtifactStore
from conveyor.config import ServerSettings
from conveyor.deploy.orchestrator import Orchestrator
from conveyor.domain.deploy_machine import IllegalTransition
from conveyor.domain import healing
from conveyor.domain.manifest import ManifestError
from conveyor.domain.wire import API_PREFIX
from conveyor.services import acme, train_runner
from conveyor.services import hooks as hook_service
from conveyor.services import notifications as notify_service
from conveyor.services import builds as build_service
from conveyor.services import hosts as hosts_service
from conveyor.services import metrics as metrics_service
from conveyor.services import pipelines
from conveyor.services.errors import Forbidden, RegistryFull, SignInRefused
from conveyor.services.state import ControlPlane
from conveyor.store.db import make_engine, migrate
from conveyor.store.repo import Conflict, NotFound

log = logging.getLogger("conveyor.server")


def serve(app: FastAPI, host: str, port: int) -> None:
    """Run the control plane's app: uvicorn over httptools, with the router's head timeout (a slow
    request head gets 408 after 10 s instead of holding a connection)."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="warning", loop="uvloop", http=HeadTimeoutProtocol,
                timeout_graceful_shutdown=1)  # long-polls end; clients re-poll


def create_app(settings: ServerSettings) -> FastAPI:
    for d in (settings.data_dir, settings.logs_dir, settings.uploads_dir, settings.cache_dir):
        d.mkdir(parents=True, exist_ok=True)
    healing.set_lost_after(settings.host_lost_after)
    engine = make_engine(settings.db_url)
    migrate(engine)
    cp = ControlPlane(settings=settings, engine=engine, viewer_tokens=set(settings.viewer_tokens))
    cp.artifacts = ArtifactStore(settings.images_dir)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        cp.notifier.bind(asyncio.get_running_loop())
        cp.orchestrator = Orchestrator(
            engine, cp.notifier, identity=f"{socket.gethostname()}:{settings.host}:{settings.port}",
            clock=cp.clock, started_at=cp.started_at, promotions=pipelines.reconcile,
        )
        cp.tasks.append(asyncio.create_task(cp.orchestrator.run(), name="orchestrator"))
        for starter in (build_service.start, metrics_service.start, acme.start,  # acme: only with a directory
                        hosts_service.start,
                        train_runner.start, hook_service.start, notify_service.start):
            await starter(cp)
        log.info("control plane ready (database %s)", engine.url.render_as_string(hide_password=True))
        try:
            yield
        finally:
            for task in cp.tasks:
                task.cancel()
            await asyncio.gather(*cp.tasks, return_exceptions=True)
            engine.dispose()

    app = FastAPI(
        title="Conveyor",
        version=__version__,
        description="Self-service continuous delivery: build images, deploy progressively, roll back automatically.",
        lifespan=lifespan,
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
    )
    app.state.cp = cp
    for module in (apps, deployments, dataplane, logs, builds, dora, twins, metrics, domains, tokens, audit, config,
                   processes, runs, hosts_api, locks, trains, hooks, notifications, git):
        app.include_router(module.router, prefix=API_PREFIX)
    app.include_router(prometheus.router)
    app.include_router(git.smart_http)  # /git/APP.git: git's smart HTTP protocol (git push conveyor main)
    web.install(app)  # the web UI's pages, at /
    app.add_middleware(audit.AuditMiddleware)  # every mutating call through either door

    for exc_type, status in ERROR_STATUS.items():
        app.add_exception_handler(exc_type, _json_error(status))
    app.add_exception_handler(SignInRefused, _sign_in_refused)
    from conveyor.api import contract

    contract.install(app)  # the OpenAPI document names every status, body and content type we answer

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        orch = cp.orchestrator
        return {"status": "ok", "version": __version__,
                "orchestrator": "leading" if orch is not None and orch.leader else "standing by"}

    return app


#: Our exceptions → HTTP status; the message is the body's ``detail`` (it says what to fix).
ERROR_STATUS: dict[type[Exception], int] = {
    NotFound: 404,
    Conflict: 409,
    IllegalTransition: 409,
    Forbidden: 403,
    RegistryFull: 503,
    ManifestError: 422,
    ValueError: 422,
}


def _json_error(status: int):  # type: ignore[no-untyped-def]
    async def handler(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=status)

    return handler


async def _sign_in_refused(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, SignInRefused)
    headers = {"Retry-After": str(int(exc.retry_after) + 1)} if exc.status == 429 else {"WWW-Authenticate": "Bearer"}
    return JSONResponse({"detail": exc.message}, status_code=exc.status, headers=headers)
