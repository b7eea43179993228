"""Shared API plumbing: the control-plane state, authentication, request origin.

Who may do what is decided in ``conveyor.services.auth`` (shared with the web
pages; the pure rules are ``conveyor.domain.access``): roles admin, deployer,
viewer for people, agent and router join tokens for hosts. The dependencies here
turn a request into a principal and apply those rules to each endpoint:

* ``AnyCaller`` — any valid credential (the routing table: people and routers);
* ``Reader`` — people (admin, deployer, viewer); join tokens are refused;
* ``Writer`` — admin, or a deployer whose scope covers the app in the path
  (``{app}``, or the app of ``{dep_id}``);
* ``Admin`` — admin only (tokens, join tokens);
* ``AgentCaller`` — the agent join token of the ``{host}`` in the path, or admin;
* ``ImageReader`` — people and agents (image manifests);
* ``BlobReader`` — agents and people who may deploy (layer archives: they hold ``conveyor.toml``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from conveyor.domain.wire import INT64_MAX
from conveyor.services import auth
from conveyor.services.auth import (
    CSRF_HEADER,
    SAFE_METHODS,
    SESSION_COOKIE,
    Forbidden,
    Principal,
    SignInRefused,
    constant_time_equal,
    csrf_token_for,
)
from conveyor.services.state import ControlPlane

__all__ = ["CP", "Admin", "AgentCaller", "AnyCaller", "BlobReader", "ImageReader", "Principal", "Reader", "Writer", "forbidden"]


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


def forbidden(exc: Forbidden) -> HTTPException:
    return HTTPException(403, str(exc))


def any_caller(request: Request, cp: Annotated[ControlPlane, Depends(get_cp)]) -> Principal:
    """Whoever the credential says (any role); 401 with the reason, 429 after repeated failures."""
    token = token_from(request)
    origin = request.client.host if request.client else ""
    if not token:
        raise HTTPException(
            401,
            "missing credentials: send 'Authorization: Bearer <token>' "
            "(the CLI reads CONVEYOR_TOKEN or the config `conveyor up` saved)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    try:
        p = auth.authenticate(cp, token, origin)
    except SignInRefused as exc:
        headers = ({"Retry-After": str(int(exc.retry_after) + 1)} if exc.status == 429
                   else {"WWW-Authenticate": "Bearer"})
        raise HTTPException(exc.status, exc.message, headers=headers) from None
    request.state.principal = p  # for the audit trail
    return p


def _rule(check: Callable[[Principal], Principal], base: Callable[..., Principal] = any_caller,
          doc: str = "") -> Callable[[Principal], Principal]:
    """A dependency applying one of :mod:`services.auth`'s role rules to the caller (403 with its reason)."""

    def dependency(p: Annotated[Principal, Depends(base)]) -> Principal:
        try:
            return check(p)
        except Forbidden as exc:
            raise forbidden(exc) from None

    # real objects, not the strings `from __future__ import annotations` leaves: FastAPI resolves
    # string annotations in the module's globals, where ``base`` is not
    dependency.__annotations__ = {"p": Annotated[Principal, Depends(base)], "return": Principal}
    dependency.__doc__ = doc or check.__doc__
    return dependency


#: People only: a host's join token reaches its data-plane endpoints and nothing else.
principal = _rule(auth.person)


def writer(request: Request, p: Annotated[Principal, Depends(principal)],
           cp: Annotated[ControlPlane, Depends(get_cp)]) -> Principal:
    params = request.path_params
    raw = str(params.get("dep_id", ""))
    # The path's id as the route will validate it (RowId); an invalid one gets its 422 from the route.
    dep_id = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 19 and 1 <= int(raw) <= INT64_MAX else None
    try:
        request.state.audit_app = auth.write_check(cp, p, app=params.get("app"), dep_id=dep_id)
    except Forbidden as exc:
        raise forbidden(exc) from None
    return p


admin_only = _rule(auth.admin_only, principal)


def agent_caller(request: Request, p: Annotated[Principal, Depends(any_caller)]) -> Principal:
    try:
        return auth.agent_of(p, str(request.path_params.get("host", "")))
    except Forbidden as exc:
        raise forbidden(exc) from None


image_reader = _rule(auth.image_reader)


blob_reader = _rule(auth.blob_reader)


AnyCaller = Annotated[Principal, Depends(any_caller)]
Reader = Annotated[Principal, Depends(principal)]
Writer = Annotated[Principal, Depends(writer)]
Admin = Annotated[Principal, Depends(admin_only)]
AgentCaller = Annotated[Principal, Depends(agent_caller)]
ImageReader = Annotated[Principal, Depends(image_reader)]
BlobReader = Annotated[Principal, Depends(blob_reader)]
CP = Annotated[ControlPlane, Depends(get_cp)]
