"""Shared API plumbing: the control-plane state, authentication, request origin.

Why bearer tokens compared in constant time: the API is reachable from the
network and the admin token is the only secret of an embedded install. Roles:
``admin`` may change things, ``viewer`` may only read (the web UI's viewers).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from conveyor.api.state import ControlPlane


@dataclass(frozen=True)
class Principal:
    name: str
    role: str  # admin | viewer
    origin: str

    @property
    def can_write(self) -> bool:
        return self.role == "admin"


def get_cp(request: Request) -> ControlPlane:
    return request.app.state.cp  # type: ignore[no-any-return]


SESSION_COOKIE = "conveyor_session"
CSRF_HEADER = "x-csrf-token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def csrf_token_for(cp: ControlPlane, session_id: str) -> str:
    """The CSRF token of a web session: an HMAC of its id, so nothing more is stored per session."""
    return hmac.new(cp.settings.admin_token.encode(), b"csrf:" + session_id.encode(), "sha256").hexdigest()


def _token_from(request: Request) -> str | None:
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
    token: str | None = request.app.state.cp.sessions.get(sid)
    if token and request.method not in _SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "")
        if not constant_time_equal(sent, csrf_token_for(request.app.state.cp, sid)):
            raise HTTPException(403, "missing or wrong X-CSRF-Token header: reload the page and try again")
    return token


def principal(request: Request, cp: Annotated[ControlPlane, Depends(get_cp)]) -> Principal:
    token = _token_from(request)
    origin = request.client.host if request.client else ""
    if not token:
        raise HTTPException(
            401,
            "missing credentials: send 'Authorization: Bearer <token>' "
            "(the CLI reads CONVEYOR_TOKEN or the config `conveyor up` saved)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    role = cp.role_of(token)
    if role is None:
        raise HTTPException(401, "invalid token", headers={"WWW-Authenticate": "Bearer"})
    return Principal(name="admin" if role == "admin" else "viewer", role=role, origin=origin)


def writer(p: Annotated[Principal, Depends(principal)]) -> Principal:
    if not p.can_write:
        raise HTTPException(403, "this token may only read; ask an admin for a token that may deploy")
    return p


def constant_time_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


Reader = Annotated[Principal, Depends(principal)]
Writer = Annotated[Principal, Depends(writer)]
CP = Annotated[ControlPlane, Depends(get_cp)]
