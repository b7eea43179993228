"""The audit trail page: every mutating call (who, what, app, from where, outcome). JSON twin: ``/api/v1/audit``.

Beside the events page (``/audit``: what the platform did), this one shows what callers
*asked* for, refused calls included, from the append-only audit trail; page and twin
call the same ``services.audit.calls``.
"""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from conveyor.services import audit
from conveyor.web.render import render
from conveyor.web.session import PageError, PageUser

router = APIRouter(include_in_schema=False)


@router.get("/audit/calls", response_class=HTMLResponse)
def calls_page(request: Request, user: PageUser, app: str | None = None, since: str | None = None,
               limit: int = Query(200, ge=1, le=audit.MAX_CALLS)) -> HTMLResponse:
    try:
        rows = audit.calls(request.app.state.cp, app=app or None, since=since, limit=limit)
    except ValueError as exc:
        raise PageError(422, str(exc)) from None
    return render(request, "calls.html", rows=[r.model_dump() for r in rows], limit=limit,
                  q={"app": app, "since": since})
