"""The audit trail: a middleware that records every mutating call, and ``GET /audit``.

Why a middleware: every door (API, web forms, sign-in) passes through it, so a new
endpoint is audited without remembering to. It records after the response: who
(the principal the auth dependency, or the web session, stored on the request,
else ``anonymous``), what (method and path), the app when the path names one,
where from, and the outcome (status). Agents' own heartbeats and log batches are
not recorded when they succeed (one every few seconds per host would drown the
rest); refused ones are. The row is written by ``services.audit.record_call``.

Rows are append-only for the API: there is no endpoint that changes or deletes one.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from conveyor.api.deps import CP, Reader
from conveyor.services import audit
from conveyor.services.schemas import NAME, SINCE_PATTERN, AuditEntry

log = logging.getLogger("conveyor.audit")
router = APIRouter(tags=["audit"])

_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
_APP_IN_PATH = re.compile(r"^(?:/api/v1)?/apps/([a-z][a-z0-9-]{0,39})(?:/|$)")
_QUIET = re.compile(r"^/api/v1/agents/[^/]+/(?:status|logs)$")


class AuditMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in _SAFE:
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            path: str = scope.get("path", "")
            if not (_QUIET.match(path) and status < 400):
                await run_in_threadpool(self._record, scope, path, status)

    @staticmethod
    def _record(scope: Scope, path: str, status: int) -> None:
        state: dict[str, Any] = scope.get("state") or {}
        p = state.get("principal") or state.get("web_user")
        app = state.get("audit_app")
        if app is None:
            m = _APP_IN_PATH.match(path)
            app = m.group(1) if m else None
        client = scope.get("client")
        try:
            audit.record_call(scope["app"].state.cp, actor=p.name if p else "anonymous", role=p.role if p else "-",
                              method=scope["method"], path=path, app=app, origin=client[0] if client else "",
                              status=status)
        except Exception:  # noqa: BLE001 - the call happened; losing its audit row must be loud, not fatal
            log.exception("could not write the audit row for %s %s", scope["method"], path)


@router.get("/audit", response_model=list[AuditEntry], summary="The audit trail of calls, newest first")
def get_audit(cp: CP, _p: Reader, app: str | None = Query(None, pattern=NAME),
              since: str | None = Query(None, description="e.g. 1h, 7d, or epoch seconds",
                                        json_schema_extra={"pattern": SINCE_PATTERN}),
              limit: int = Query(200, ge=1, le=audit.MAX_CALLS)) -> list[AuditEntry]:
    return audit.calls(cp, app=app, since=since, limit=limit)
