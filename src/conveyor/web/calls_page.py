"""The audit trail page: every mutating call (who, what, app, from where, outcome). JSON twin: ``/api/v1/audit``.

Beside the events page (``/audit``: what the platform did), this one shows what callers
*asked* for, refused calls included, from the append-only ``audit_log`` table.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from conveyor.api.audit import parse_since
from conveyor.store import audit as audit_store
from conveyor.web.render import render
from conveyor.web.session import PageError, PageUser

router = APIRouter(include_in_schema=False)


@router.get("/audit/calls", response_class=HTMLResponse)
def calls_page(request: Request, user: PageUser, app: str | None = None, since: str | None = None,
               limit: int = Query(200, ge=1, le=audit_store.MAX_ROWS)) -> HTMLResponse:
    try:
        start = parse_since(since, time.time())
    except ValueError as exc:
        raise PageError(422, str(exc)) from None
    rows = audit_store.read(request.app.state.cp.engine, app=app or None, since=start, limit=limit)
    return render(request, "calls.html", rows=rows, limit=limit, q={"app": app, "since": since})
