"""Signing in to the web UI: token → session cookie, CSRF, one-time login links.

Why a server-side session and not the token in a cookie: the cookie holds only
a random id (HttpOnly, SameSite=Lax), so a leaked cookie is revoked by signing
out and the token never sits in the browser. Every form carries the session's
CSRF token (an HMAC of the session id, see ``conveyor.services.auth``), and the
JavaScript sends it as ``X-CSRF-Token`` when it calls the JSON API.

``conveyor ui`` asks the API for a one-time login code (valid 60 s, used once)
and opens ``/login?code=...``; the code becomes a session and the browser is
redirected, so the admin token never appears in a URL or the browser history.
"""

from __future__ import annotations

import secrets
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from conveyor.services import auth
from conveyor.services.auth import (
    SESSION_COOKIE,
    SESSION_MAX_AGE,
    Forbidden,
    Principal,
    SignInRefused,
    constant_time_equal,
    csrf_token_for,
    principal_for,
    redeem_login_code,
)
from conveyor.services.state import ControlPlane
from conveyor.web.render import render

router = APIRouter(include_in_schema=False)


class PageError(Exception):
    """A page request that cannot be served: shown as an HTML page (or a redirect), never as JSON."""

    def __init__(self, status: int, message: str, location: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.location = location


async def page_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PageError)
    if exc.location is not None:
        return RedirectResponse(exc.location, status_code=303)
    heading = {401: "Sign in first", 403: "Not allowed", 404: "Not found"}.get(exc.status, "Cannot do that")
    return render(request, "error.html", status_code=exc.status, heading=heading, message=exc.message)

PRELOGIN_COOKIE = "conveyor_prelogin"


def _cp(request: Request) -> ControlPlane:
    return request.app.state.cp  # type: ignore[no-any-return]


def current_user(request: Request) -> Principal | None:
    """The signed-in principal of this browser, or None. Also sets ``request.state.web_csrf``."""
    cp = _cp(request)
    sid = request.cookies.get(SESSION_COOKIE)
    token = cp.sessions.get(sid)
    user = principal_for(cp, token, request.client.host if request.client else "") if token else None
    if sid is None or user is None or not user.is_person:
        return None
    request.state.web_user = user
    request.state.web_csrf = csrf_token_for(cp, sid)
    return user


def page_user(request: Request) -> Principal:
    """Dependency of every page: the user, or a redirect to the sign-in page."""
    user = current_user(request)
    if user is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise PageError(303, "sign in first", location=f"/login?next={quote(target, safe='')}")
    return user


def form_writer(request: Request, user: Annotated[Principal, Depends(page_user)], csrf: Annotated[str, Form()] = "") -> Principal:
    """Dependency of every form POST: a signed-in admin whose form carries the session's CSRF token."""
    if not constant_time_equal(csrf, getattr(request.state, "web_csrf", "")):
        raise PageError(403, "the form's CSRF token is missing or stale: reload the page and submit again")
    if not user.can_write:
        raise PageError(403, "you are signed in as a viewer: viewers can look but not deploy")
    try:
        request.state.audit_app = auth.write_check(_cp(request), user, app=request.path_params.get("app"))
    except Forbidden as exc:
        raise PageError(403, str(exc)) from None
    return user


PageUser = Annotated[Principal, Depends(page_user)]
FormWriter = Annotated[Principal, Depends(form_writer)]


def _safe_next(target: str | None) -> str:
    """Only same-site paths: never redirect a sign-in to another host."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _start_session(request: Request, token: str, target: str) -> Response:
    sid = _cp(request).sessions.start(token)
    resp = RedirectResponse(_safe_next(target), status_code=303)
    resp.set_cookie(SESSION_COOKIE, sid, httponly=True, samesite="lax", path="/",
                    max_age=int(SESSION_MAX_AGE), secure=request.url.scheme == "https")
    resp.delete_cookie(PRELOGIN_COOKIE, path="/")
    return resp


def _login_form(request: Request, target: str, error: str = "", status_code: int = 200) -> Response:
    pre = request.cookies.get(PRELOGIN_COOKIE) or secrets.token_urlsafe(16)
    resp = render(request, "login.html", status_code=status_code, next=_safe_next(target), error=error,
                  csrf=csrf_token_for(_cp(request), "pre:" + pre), user=None)
    resp.set_cookie(PRELOGIN_COOKIE, pre, httponly=True, samesite="lax", path="/", max_age=3600)
    return resp


@router.get("/login")
def login_page(request: Request, next: str = "/", code: str | None = None) -> Response:
    if code is not None:
        token = redeem_login_code(_cp(request), code)
        if token is None:
            return _login_form(request, next, "that sign-in link has expired or was already used: "
                               "run `conveyor ui` again, or paste a token below", 400)
        return _start_session(request, token, next)
    if current_user(request) is not None:
        return RedirectResponse(_safe_next(next), status_code=303)
    return _login_form(request, next)


@router.post("/login")
def login_submit(request: Request, token: Annotated[str, Form()] = "", csrf: Annotated[str, Form()] = "",
                 next: Annotated[str, Form()] = "/") -> Response:
    cp = _cp(request)
    pre = request.cookies.get(PRELOGIN_COOKIE, "")
    if not pre or not constant_time_equal(csrf, csrf_token_for(cp, "pre:" + pre)):
        return _login_form(request, next, "the sign-in form expired: try again", 400)
    token = token.strip()
    if not token:
        return _login_form(request, next, "paste a token: the admin token `conveyor up` printed, or a viewer token", 422)
    try:  # rate-limited and logged per address, like the API's bearer tokens
        who = auth.authenticate(cp, token, request.client.host if request.client else "")
    except SignInRefused as exc:
        if exc.status == 429:
            return _login_form(request, next, exc.message, 429)
        return _login_form(request, next, f"that token is not valid here ({exc.message}): check for a typo, or ask an admin", 401)
    if not who.is_person:
        return _login_form(request, next, "that is a host's join token: sign in with a person's token", 401)
    return _start_session(request, token, next)


@router.post("/logout")
def logout(request: Request, user: PageUser, csrf: Annotated[str, Form()] = "") -> Response:
    if not constant_time_equal(csrf, getattr(request.state, "web_csrf", "")):
        raise PageError(403, "the form's CSRF token is missing or stale: reload the page and sign out again")
    end_session(_cp(request), request.cookies.get(SESSION_COOKIE, ""))
    resp = RedirectResponse("/login", status_code=303)
    resp.delete_cookie(SESSION_COOKIE, path="/")
    return resp


def end_session(cp: ControlPlane, sid: str) -> None:
    """Forget a session: its cookie stops working for pages and for the API at once."""
    cp.sessions.end(sid)
