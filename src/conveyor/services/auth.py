"""Who is asking, for both doors: the principal, the web session cookie and its CSRF token.

Why here and not in ``api``: the API (bearer tokens, and the web UI's JavaScript
with its session cookie) and the pages (the session cookie) must agree on the
cookie's name, on how a CSRF token is derived and on what a principal may do;
neither door may import the other, so they share this.

Roles: ``admin`` may change things, ``viewer`` may only read (the web UI's viewers).
Tokens are compared in constant time (``ControlPlane.role_of``): the API is reachable
from the network and the admin token is the only secret of an embedded install.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass, field

from conveyor.services.state import ControlPlane
from conveyor.store.web_sessions import SESSION_MAX_AGE

__all__ = [
    "CSRF_HEADER", "LOGIN_CODE_TTL", "SAFE_METHODS", "SESSION_COOKIE", "SESSION_MAX_AGE", "Principal", "WebState",
    "constant_time_equal", "csrf_token_for", "issue_login_code", "principal_for", "redeem_login_code", "web_state",
]

SESSION_COOKIE = "conveyor_session"
CSRF_HEADER = "x-csrf-token"
#: Methods that change nothing: a cookie-authenticated request with another method needs the CSRF token.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Principal:
    name: str
    role: str  # admin | viewer
    origin: str

    @property
    def can_write(self) -> bool:
        return self.role == "admin"


def principal_for(cp: ControlPlane, token: str, origin: str) -> Principal | None:
    """The principal a token signs in as, or None for a token the control plane does not accept."""
    role = cp.role_of(token)
    if role is None:
        return None
    return Principal(name="admin" if role == "admin" else "viewer", role=role, origin=origin)


def csrf_token_for(cp: ControlPlane, session_id: str) -> str:
    """The CSRF token of a web session: an HMAC of its id, so nothing more is stored per session."""
    return hmac.new(cp.settings.admin_token.encode(), b"csrf:" + session_id.encode(), "sha256").hexdigest()


def constant_time_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


#: How long a one-time sign-in link (``conveyor ui``) stays valid.
LOGIN_CODE_TTL = 60.0


@dataclass
class WebState:
    """The UI's in-memory state, hung on the control plane: one-time sign-in codes (60 s; sessions
    themselves live in SQL, see conveyor.store.web_sessions)."""

    login_codes: dict[str, tuple[str, float]] = field(default_factory=dict)  # code -> (token, expires)


def web_state(cp: ControlPlane) -> WebState:
    st = getattr(cp, "_web_state", None)
    if st is None:
        st = WebState()
        cp._web_state = st  # type: ignore[attr-defined]
    return st


def issue_login_code(cp: ControlPlane, token: str) -> str:
    """A one-time code that signs a browser in as the holder of ``token`` (used by ``conveyor ui``)."""
    code = secrets.token_urlsafe(24)
    web_state(cp).login_codes[code] = (token, cp.clock() + LOGIN_CODE_TTL)
    return code


def redeem_login_code(cp: ControlPlane, code: str) -> str | None:
    """The token behind a one-time code, once (None when it expired or was used); forgets expired codes."""
    st = web_state(cp)
    now = cp.clock()
    for c, (_, exp) in list(st.login_codes.items()):
        if exp < now:
            del st.login_codes[c]
    entry = st.login_codes.pop(code, None)
    return entry[0] if entry is not None else None
