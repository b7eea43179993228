"""Who is asking, for both doors: credentials → a principal, what it may do, the web session's CSRF token.

Why here and not in ``api``: the API (bearer tokens, and the web UI's JavaScript
with its session cookie) and the pages (the session cookie) must agree on how a
token is checked, on the cookie's name, on how a CSRF token is derived and on
what a principal may do; neither door may import the other, so they share this.
The rules themselves (roles, scopes, token shapes, router registration) are pure,
in ``conveyor.domain.access``; the token rows are ``store/tokens.py``'s.

Three kinds of credential are accepted, checked in this order:

* the bootstrap admin token (``--admin-token`` / ``admin-token`` in the data dir);
* ``--viewer-token`` tokens (read-only, given on the server's command line or env);
* scoped tokens from ``conveyor tokens create`` and ``conveyor hosts join-token``
  (``cvt_<id>_<secret>``, kept as hashes in SQL).

Every comparison is constant-time. Failed attempts are logged with the caller's
address (never the token) and counted per address (``domain.ratelimit``): past 10
in a minute, an address gets 429 for tokens it has not already proven. A token
that authenticated recently (from anywhere) is still checked, so a guesser on the
same address as the agent, the router or the CLI — loopback in ``conveyor up`` —
cannot lock them out; and it gains nothing, since its guesses are refused unchecked.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any

from conveyor.domain.access import (
    ENROL_ROLE,
    HOST_ROLES,
    NAME_PATTERN,
    PEOPLE_ROLES,
    TOKEN_PREFIX,
    Principal,
    admin_url_problem,
    expiry_problem,
    new_token_problem,
    parse_duration,
    split_token,
    token_shape_problem,
    write_refusal,
)
from conveyor.domain.ratelimit import FailureLimiter
from conveyor.services.errors import Forbidden, RegistryFull, SignInRefused
from conveyor.services.state import ControlPlane
from conveyor.store import deployments as deployment_store
from conveyor.store import hosts as host_store
from conveyor.store import repo
from conveyor.store import tokens as token_store
from conveyor.store.repo import Conflict, NotFound
from conveyor.store.web_sessions import SESSION_MAX_AGE

__all__ = [
    "CSRF_HEADER", "LOGIN_CODE_TTL", "SAFE_METHODS", "SESSION_COOKIE", "SESSION_MAX_AGE", "Authenticator",
    "Forbidden", "Principal", "RegistryFull", "SignInRefused", "WebState", "admin_only", "agent_of", "authenticate",
    "authenticator", "constant_time_equal", "create_enrol_token", "create_join_token", "create_token", "csrf_token_for", "image_reader",
    "issue_login_code", "join_host", "list_tokens", "may_read_routing", "person", "principal_for", "redeem_login_code",
    "register_router", "remove_host", "revoke_token", "role_of", "web_state", "write_check",
]

SESSION_COOKIE = "conveyor_session"
CSRF_HEADER = "x-csrf-token"
#: Methods that change nothing: a cookie-authenticated request with another method needs the CSRF token.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: A token that authenticated within this many seconds bypasses an address's failure block.
KNOWN_GOOD_FOR = 600.0
#: Resolved scoped tokens are cached this long (a revocation in another replica takes effect within it).
CACHE_FOR = 1.0

log = logging.getLogger("conveyor.auth")


# -- credentials → principals ---------------------------------------------------


class Authenticator:
    """Per control-plane process: the failure limiter and a small cache of resolved scoped tokens."""

    def __init__(self, cp: ControlPlane, limiter: FailureLimiter | None = None) -> None:
        self.cp = cp
        self.limiter = limiter or FailureLimiter()
        self._known: dict[str, float] = {}  # sha256(token) -> last success
        self._cache: dict[str, tuple[Principal, float, float | None]] = {}  # sha -> (principal, at, expires_at)
        self._lock = threading.Lock()

    def authenticate(self, token: str, origin: str) -> Principal:
        """The principal of ``token``; else :class:`SignInRefused` (401 with the reason, or 429)."""
        now = self.cp.clock()
        digest = hashlib.sha256(token.encode()).hexdigest()
        with self._lock:
            wait = self.limiter.retry_after(origin, now)
            known = self._known.get(digest, 0.0) > now - KNOWN_GOOD_FOR
        if wait > 0 and not known:
            log.warning("sign-in refused: %s is blocked for %.0f s after repeated failures", origin, wait)
            raise SignInRefused(429, f"too many failed sign-ins from {origin}: try again in {wait:.0f} s", wait)
        result = self.resolve(token, digest)
        if isinstance(result, str):
            with self._lock:
                count = self.limiter.failed(origin, now)
            log.warning("failed sign-in from %s: %s (%d in the last minute)", origin or "?", result, count)
            raise SignInRefused(401, result)
        with self._lock:
            self._known[digest] = now
            if len(self._known) > 10_000:
                self._known = {k: t for k, t in self._known.items() if t > now - KNOWN_GOOD_FOR}
        return replace(result, origin=origin)

    def resolve(self, token: str, digest: str | None = None) -> Principal | str:
        """The principal of ``token`` or the reason it is refused (no rate limiting, no logging)."""
        problem = token_shape_problem(token)
        if problem:
            return problem
        if hmac.compare_digest(token.encode(), self.cp.settings.admin_token.encode()):
            return Principal(name="admin", role="admin")
        if any(hmac.compare_digest(token.encode(), t.encode()) for t in self.cp.viewer_tokens):
            return Principal(name="viewer", role="viewer")
        parts = split_token(token)
        if parts is None:
            return "invalid token"
        now = self.cp.clock()
        digest = digest or hashlib.sha256(token.encode()).hexdigest()
        cached = self._cache.get(digest)
        if cached is not None and cached[1] > now - CACHE_FOR and (cached[2] is None or cached[2] > now):
            return cached[0]
        with self.cp.engine.connect() as conn:
            row = token_store.check(conn, *parts)
        if row is None:
            return "invalid token"
        problem = expiry_problem(row["expires_at"], row["revoked_at"], now)
        if problem:
            self._cache.pop(digest, None)
            return problem
        p = Principal(name=row["name"], role=row["role"], scope_app=row["scope_app"], scope_team=row["scope_team"],
                      host=row["host"], token_id=row["id"])
        if len(self._cache) > 4096:
            self._cache.clear()
        self._cache[digest] = (p, now, row["expires_at"])
        return p

    def refuse_if_limited(self, origin: str, now: float) -> None:
        """429 for an address with too many failed sign-ins (a credential checked outside authenticate)."""
        with self._lock:
            wait = self.limiter.retry_after(origin, now)
        if wait > 0:
            raise SignInRefused(429, "too many failed sign-ins from this address", retry_after=wait)

    def note_failure(self, origin: str, now: float) -> None:
        with self._lock:
            self.limiter.failed(origin, now)

    def forget(self) -> None:
        """Drop cached resolutions (after a revocation in this process: effective at once here)."""
        self._cache.clear()


def authenticator(cp: ControlPlane) -> Authenticator:
    """The control plane's one :class:`Authenticator` (made on first use)."""
    if cp.auth is None:
        cp.auth = Authenticator(cp)
    auth: Authenticator = cp.auth
    return auth


def authenticate(cp: ControlPlane, token: str, origin: str) -> Principal:
    """Rate-limited and logged: the API's bearer tokens and the web sign-in form."""
    return authenticator(cp).authenticate(token, origin)


def principal_for(cp: ControlPlane, token: str, origin: str) -> Principal | None:
    """The principal a token signs in as, or None for a token the control plane does not accept
    (not rate-limited: for a token already held by a session)."""
    found = authenticator(cp).resolve(token)
    return None if isinstance(found, str) else replace(found, origin=origin)


def role_of(cp: ControlPlane, token: str) -> str | None:
    """The role of a token, or None."""
    found = authenticator(cp).resolve(token)
    return None if isinstance(found, str) else found.role


# -- what a principal may do ------------------------------------------------------


def person(p: Principal) -> Principal:
    """People only: a host's join token reaches its data-plane endpoints and nothing else."""
    if not p.is_person:
        raise Forbidden(f"a {p.role} join token may only call its host's data-plane endpoints")
    return p


def write_check(cp: ControlPlane, p: Principal, *, app: str | None = None, dep_id: int | None = None) -> str | None:
    """May ``p`` change ``app`` (or the app of deployment ``dep_id``)? Raises :class:`Forbidden`;
    returns the app the call is about (for the audit trail)."""
    person(p)
    if app is None and dep_id is not None:
        with cp.engine.connect() as conn:
            app = deployment_store.app_of(conn, dep_id)
    team = None
    if app is not None and p.scope_team is not None:
        with cp.engine.connect() as conn:
            team = repo.team_of(conn, app)
    refusal = write_refusal(p, app, team)
    if refusal:
        raise Forbidden(refusal)
    return app


def admin_only(p: Principal) -> Principal:
    if p.role != "admin":
        raise Forbidden("only an admin token may do this")
    return p


def agent_of(p: Principal, host: str) -> Principal:
    """The agent join token of ``host``, or an admin."""
    if p.role == "admin" or (p.role == "agent" and p.host == host):
        return p
    if p.role == "agent":
        raise Forbidden(f"this agent join token belongs to host {p.host!r}, not {host!r}")
    raise Forbidden("only the host's agent (its join token: `conveyor hosts join-token`) or an admin may call this")


def image_reader(p: Principal) -> Principal:
    """People and agents fetch images and blobs; routers do not."""
    if p.is_person or p.role == "agent":
        return p
    raise Forbidden(f"a {p.role} join token may not fetch images")


def blob_reader(p: Principal) -> Principal:
    """Agents and people who may deploy fetch layer archives: the app layer holds ``conveyor.toml``,
    whose vars a token that may only read is not shown (``conveyor config list``)."""
    if p.role == "agent" or p.can_write:
        return p
    raise Forbidden(f"a {p.role} token may not fetch layer archives (they hold the app's config): "
                    "use a deployer or admin token")


def may_read_routing(p: Principal) -> Principal:
    if not (p.is_person or p.role == "router"):
        raise Forbidden(f"a {p.role} join token may not read the routing table")
    return p


def register_router(cp: ControlPlane, p: Principal, router_id: str | None, admin: str | None, caller: str,
                    server: str, version: int) -> None:
    """Only a router, with its own join token, registers — as itself, scraped on its own host.

    The attack this stops (issue 15): a viewer registered a "router" whose admin URL served
    forged metrics, and rolled back a healthy canary. Registrations are bounded
    (``state.MAX_ROUTERS``) and expire (``ControlPlane.saw_router``).
    """
    if not router_id:
        if admin:
            raise Forbidden("admin= is given only by a registering router (router=, with its join token)")
        may_read_routing(p)
        return
    if p.role != "router":
        raise Forbidden("only a router, with its own join token (`conveyor hosts join-token HOST --router`), "
                        "may register (router=, admin=)")
    if p.host != router_id:
        raise Forbidden(f"this router join token belongs to router {p.host!r}, not {router_id!r}: "
                        f"start the router with --router-id {p.host}")
    problem = admin_url_problem(admin, caller, server)
    if problem:
        raise Forbidden(problem)
    if not cp.saw_router(router_id, admin, version):
        raise RegistryFull("too many routers are registered: retire some, or wait for silent ones to expire")


# -- tokens: made, listed, revoked (admin only) -------------------------------------


def _make(cp: ControlPlane, p: Principal, *, role: str, name: str, app: str | None, team: str | None,
          host: str | None, expires: str | None) -> dict[str, Any]:
    problem = new_token_problem(role, name=name, app=app, team=team, host=host)
    if problem:
        raise ValueError(problem)
    now = cp.clock()
    expires_at = now + parse_duration(expires, "expires") if expires else None
    token_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    with cp.engine.begin() as conn:
        if app is not None and not repo.app_exists(conn, app):
            raise NotFound(f"no app named {app!r}: see `conveyor apps`")
        view = token_store.insert(conn, token_id=token_id, secret=secret, name=name, role=role, now=now,
                                  created_by=p.name, scope_app=app, scope_team=team, host=host, expires_at=expires_at)
    return {**view, "token": f"{TOKEN_PREFIX}{token_id}_{secret}"}


def create_token(cp: ControlPlane, p: Principal, *, role: str, name: str, app: str | None = None,
                 team: str | None = None, expires: str | None = None) -> dict[str, Any]:
    """A person's token (admin, deployer, viewer; scoped to an app or a team); the secret is in the
    answer and nowhere else, ever: the control plane keeps its hash."""
    admin_only(p)
    if role not in PEOPLE_ROLES:
        raise ValueError(f"unknown role {role!r}: use admin, deployer or viewer "
                         "(agents and routers get join tokens: POST /hosts/{host}/join-tokens)")
    return _make(cp, p, role=role, name=name, app=app, team=team, host=None, expires=expires)


def create_join_token(cp: ControlPlane, p: Principal, host: str, *, role: str = "agent",
                      expires: str | None = None) -> dict[str, Any]:
    """A host's own credential: an agent's (its host's desired state, status, logs, images) or a
    router's (the routing table and its own registration)."""
    admin_only(p)
    if role not in HOST_ROLES:
        raise ValueError(f"unknown join token role {role!r}: use agent or router")
    return _make(cp, p, role=role, name=f"{role}@{host}", app=None, team=None, host=host, expires=expires)


def create_enrol_token(cp: ControlPlane, p: Principal, *, expires: str | None = None) -> dict[str, Any]:
    """A one-time join token: any new host may use it once (``conveyor agent --join URL TOKEN``) to
    get its own agent credential. It expires (1 h unless ``expires``), so a leaked one is worth little."""
    admin_only(p)
    return _make(cp, p, role=ENROL_ROLE, name=f"join-{secrets.token_hex(3)}", app=None, team=None, host=None,
                 expires=expires or "1h")


def join_host(cp: ControlPlane, token: str, host: str, origin: str = "") -> dict[str, Any]:
    """Exchange a one-time join token for ``host``'s own agent credential (shown once).

    Every refusal says what to do, and changes nothing: an unknown, expired, used or wrong kind of
    token, a bad name, a name another host has. Using the token and making the credential is one
    transaction, and the use is a conditional update, so two hosts racing with one token get one
    credential between them."""
    if not re.match(NAME_PATTERN, host or ""):
        raise ValueError(f"host name {host!r}: use 1-100 letters, digits and . _ - (it is the agent's --host)")
    if not token:
        raise SignInRefused(401, "no join token: send it as `Authorization: Bearer TOKEN` "
                                 "(`conveyor agent --join URL TOKEN` does)")
    now = cp.clock()
    gate = authenticator(cp)
    gate.refuse_if_limited(origin, now)
    try:
        credential = _join(cp, token, host, now)
    except SignInRefused:
        gate.note_failure(origin, now)
        raise
    gate.forget()  # the join token is spent: not even this process's cache may take it again
    return credential


def _join(cp: ControlPlane, token: str, host: str, now: float) -> dict[str, Any]:
    parts = split_token(token) if not token_shape_problem(token) else None
    with cp.engine.begin() as conn:
        row = token_store.check(conn, *parts) if parts else None
        if row is None:
            raise SignInRefused(401, "invalid join token: create one with `conveyor hosts join-token` on the control plane")
        if row["role"] != ENROL_ROLE:
            raise Forbidden("this is not a one-time join token: create one with `conveyor hosts join-token` "
                            "(an agent already holding its own credential runs with --token-file, not --join)")
        if row["revoked_at"] is not None:
            raise SignInRefused(401, f"this join token was already used (or revoked) {_when(row['revoked_at'])}: "
                                     "each is good for one host; create another with `conveyor hosts join-token`")
        if row["expires_at"] is not None and row["expires_at"] <= now:
            raise SignInRefused(401, f"this join token expired {_when(row['expires_at'])}: create another with "
                                     "`conveyor hosts join-token`")
        if host_store.exists(conn, host) or token_store.live_host_tokens(conn, host, "agent"):
            raise Conflict(f"a host named {host!r} has already joined: start this agent with another --host, "
                           f"or remove the old one first (`conveyor hosts remove {host}`)")
        if not token_store.use_once(conn, row["id"], now):
            raise SignInRefused(401, "this join token was just used by another host: create another with "
                                     "`conveyor hosts join-token`")
        repo.record_event(conn, "host_joined", f"host {host} joined with one-time token {row['name']}",
                          actor=f"agent@{host}", data={"host": host, "join_token": row["id"]})
    return _make(cp, Principal(name=row["name"], role="admin"), role="agent", name=f"agent@{host}", app=None,
                 team=None, host=host, expires=None)


def remove_host(cp: ControlPlane, p: Principal, host: str) -> dict[str, Any]:
    """Forget a host and revoke its agent credential: its agent is refused from now on, and its
    instances count as lost (started again on the hosts that are left)."""
    admin_only(p)
    now = cp.clock()
    with cp.engine.begin() as conn:
        revoked = [t["id"] for t in token_store.live_host_tokens(conn, host, "agent")]
        known = host_store.remove(conn, host)
        if not known and not revoked:
            raise NotFound(f"no host named {host!r}: see `conveyor hosts`")
        token_store.revoke_ids(conn, revoked, now)
        repo.record_event(conn, "host_removed", f"host {host} removed by {p.name}: its credential is revoked and "
                          "its instances are started on other hosts", actor=p.name,
                          data={"host": host, "revoked_tokens": revoked})
    authenticator(cp).forget()
    cp.notifier.poke("orchestrator", "routing", "desired")
    return {"host": host, "revoked_tokens": revoked}


def _when(ts: float) -> str:
    return time.strftime("at %Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


def list_tokens(cp: ControlPlane, p: Principal, *, include_revoked: bool = False) -> list[dict[str, Any]]:
    admin_only(p)
    with cp.engine.connect() as conn:
        return token_store.list_all(conn, include_revoked=include_revoked)


def revoke_token(cp: ControlPlane, p: Principal, ref: str) -> list[dict[str, Any]]:
    """Revoke by id or name; effective at once in this process, within ``CACHE_FOR`` in others."""
    admin_only(p)
    with cp.engine.begin() as conn:
        rows = token_store.revoke(conn, ref, cp.clock())
    authenticator(cp).forget()
    return rows


# -- the web UI's sessions ---------------------------------------------------------


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
