"""Shared API plumbing: the control-plane state, authentication, request origin.

Why bearer tokens compared in constant time: the API is reachable from the
network. Who may do what is decided in ``conveyor.domain.access`` (roles admin,
deployer, viewer for people; agent and router join tokens for hosts); the
dependencies here apply it to each endpoint:

* ``Reader`` — people (admin, deployer, viewer); join tokens are refused;
* ``Writer`` — admin, or a deployer whose scope covers the app in the path
  (``{app}``, or the app of ``{dep_id}``);
* ``Admin`` — admin only (tokens, join tokens);
* ``AgentCaller`` — the agent join token of the ``{host}`` in the path, or admin;
* ``ImageReader`` — people and agents (images and blobs);
* ``AnyCaller`` — any valid credential (the routing table: people and routers).
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from conveyor.api.state import ControlPlane
from conveyor.domain.access import Principal, write_refusal
from conveyor.store import tokens as token_store

__all__ = ["Principal", "Reader", "Writer", "Admin", "AgentCaller", "ImageReader", "AnyCaller", "CP"]


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


def any_caller(request: Request, cp: Annotated[ControlPlane, Depends(get_cp)]) -> Principal:
    """Whoever the credential says (any role); 401 with the reason, 429 after repeated failures."""
    token = _token_from(request)
    origin = request.client.host if request.client else ""
    if not token:
        raise HTTPException(
            401,
            "missing credentials: send 'Authorization: Bearer <token>' "
            "(the CLI reads CONVEYOR_TOKEN or the config `conveyor up` saved)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    p = cp.auth.authenticate(token, origin)
    request.state.principal = p  # for the audit log
    return p


def principal(p: Annotated[Principal, Depends(any_caller)]) -> Principal:
    """People only: a host's join token reaches its data-plane endpoints and nothing else."""
    if not p.is_person:
        raise HTTPException(403, f"a {p.role} join token may only call its host's data-plane endpoints")
    return p


def _path_app(request: Request, cp: ControlPlane) -> str | None:
    params = request.path_params
    if "app" in params:
        return str(params["app"])
    if "dep_id" in params:
        try:
            return token_store.app_of_deployment(cp.engine, int(params["dep_id"]))
        except ValueError:
            return None
    return None


def writer(request: Request, p: Annotated[Principal, Depends(principal)], cp: Annotated[ControlPlane, Depends(get_cp)]) -> Principal:
    app = _path_app(request, cp)
    request.state.audit_app = app
    team = token_store.app_team(cp.engine, app) if app and p.scope_team is not None else None
    refusal = write_refusal(p, app, team)
    if refusal:
        raise HTTPException(403, refusal)
    return p


def admin_only(p: Annotated[Principal, Depends(principal)]) -> Principal:
    if p.role != "admin":
        raise HTTPException(403, "only an admin token may do this")
    return p


def agent_caller(request: Request, p: Annotated[Principal, Depends(any_caller)]) -> Principal:
    host = request.path_params.get("host")
    if p.role == "admin" or (p.role == "agent" and p.host == host):
        return p
    if p.role == "agent":
        raise HTTPException(403, f"this agent join token belongs to host {p.host!r}, not {host!r}")
    raise HTTPException(403, "only the host's agent (its join token: `conveyor hosts join-token`) or an admin may call this")


def image_reader(p: Annotated[Principal, Depends(any_caller)]) -> Principal:
    if p.is_person or p.role == "agent":
        return p
    raise HTTPException(403, f"a {p.role} join token may not fetch images")


def constant_time_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


Reader = Annotated[Principal, Depends(principal)]
Writer = Annotated[Principal, Depends(writer)]
Admin = Annotated[Principal, Depends(admin_only)]
AgentCaller = Annotated[Principal, Depends(agent_caller)]
ImageReader = Annotated[Principal, Depends(image_reader)]
AnyCaller = Annotated[Principal, Depends(any_caller)]
CP = Annotated[ControlPlane, Depends(get_cp)]
