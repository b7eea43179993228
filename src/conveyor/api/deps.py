"""Shared API plumbing: the control-plane state, authentication, request origin.

The rules of who may do what live in ``conveyor.services.auth`` (shared with the
web pages); this module turns a request into a principal for FastAPI's
dependency injection.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request

from conveyor.services.auth import (
    CSRF_HEADER,
    SAFE_METHODS,
    SESSION_COOKIE,
    Principal,
    constant_time_equal,
    csrf_token_for,
    principal_for,
)
from conveyor.services.state import ControlPlane


def get_cp(request: Request) -> ControlPlane:
    return request.app.state.cp  # type: ignore[no-any-return]


def token_from(request: Request) -> str | None:
    """The bearer token, else the token behind the web session cookie.

    A cookie is sent by the browser on its own, so a cookie-authenticated request
    that changes something must also carry the session's CSRF token in the
    ``X-CSRF-Token`` header (the web UI's JavaScript sends it; other sites cannot read it).
    """
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    sid = request.cookies.get(SESSION_COOKIE)
    if not sid:
        return None
    cp = get_cp(request)
    token: str | None = cp.sessions.get(sid)
    if token and request.method not in SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "")
        if not constant_time_equal(sent, csrf_token_for(cp, sid)):
            raise HTTPException(403, "missing or wrong X-CSRF-Token header: reload the page and try again")
    return token


def principal(request: Request, cp: Annotated[ControlPlane, Depends(get_cp)]) -> Principal:
    token = token_from(request)
    origin = request.client.host if request.client else ""
    if not token:
        raise HTTPException(
            401,
            "missing credentials: send 'Authorization: Bearer <token>' "
            "(the CLI reads CONVEYOR_TOKEN or the config `conveyor up` saved)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    found = principal_for(cp, token, origin)
    if found is None:
        raise HTTPException(401, "invalid token", headers={"WWW-Authenticate": "Bearer"})
    return found


def writer(p: Annotated[Principal, Depends(principal)]) -> Principal:
    if not p.can_write:
        raise HTTPException(403, "this token may only read; ask an admin for a token that may deploy")
    return p


Reader = Annotated[Principal, Depends(principal)]
Writer = Annotated[Principal, Depends(writer)]
CP = Annotated[ControlPlane, Depends(get_cp)]
