"""Who may do what: principals, token shapes, scopes, expiry, router registration. No I/O.

Why a module of its own: every door (API, web forms, the data plane's long-polls)
asks the same questions — is this token well formed, may this principal change
app X, may this router register that admin URL — and the answers must not drift
between doors. The functions here take data and return a decision or a reason
(a sentence saying what to fix), so each rule is tested by a direct call.

Roles:

* ``admin`` — everything, including tokens and join tokens;
* ``deployer`` — builds, deployments and commands of the apps in its scope
  (all apps when unscoped, one app with ``--app``, a team's apps with ``--team``);
* ``viewer`` — reads;
* ``agent`` / ``router`` — a host's join token: only that host's data-plane
  endpoints (desired state, status, logs, images for an agent; the routing
  table and its registration for a router). Neither can read or change anything else.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

PEOPLE_ROLES = ("admin", "deployer", "viewer")
HOST_ROLES = ("agent", "router")
#: A one-time join token (``conveyor hosts join-token`` without a host): it reaches one endpoint,
#: ``POST /hosts/join``, once, and is exchanged there for the joining host's own agent credential.
ENROL_ROLE = "enrol"
ROLES = PEOPLE_ROLES + HOST_ROLES + (ENROL_ROLE,)

#: Tokens made by ``conveyor tokens create`` / ``hosts join-token``: ``cvt_<id>_<secret>``.
TOKEN_PREFIX = "cvt_"
#: Longer than any token we issue (the admin token of ``conveyor up`` is 36 characters): a longer
#: one is garbage or an attack on the comparison, refused before any lookup.
MAX_TOKEN_LENGTH = 200
#: A token given by hand (``--admin-token``) must be at least this long.
MIN_TOKEN_LENGTH = 16
#: A token's name and a host's name (JSON Schema pattern too: the API states it).
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@:-]{0,99}$"
_NAME = re.compile(NAME_PATTERN)
_TOKEN_CHARS = re.compile(r"^[\x21-\x7e]+$")


@dataclass(frozen=True)
class Principal:
    """The caller of a request, as its credential says."""

    name: str
    role: str  # one of ROLES
    origin: str = ""
    scope_app: str | None = None
    scope_team: str | None = None
    host: str | None = None  # agent and router join tokens: the host they belong to
    token_id: str | None = None  # None for the bootstrap admin token and --viewer-token tokens

    @property
    def can_write(self) -> bool:
        """May change *some* app (the web UI shows its buttons); :func:`write_refusal` says which."""
        return self.role in ("admin", "deployer")

    @property
    def is_person(self) -> bool:
        return self.role in PEOPLE_ROLES


def token_shape_problem(token: str) -> str | None:
    """Why ``token`` cannot be a credential of ours (checked before any lookup), else None."""
    if len(token) > MAX_TOKEN_LENGTH:
        return f"token too long ({len(token)} characters; ours are under {MAX_TOKEN_LENGTH})"
    if not _TOKEN_CHARS.match(token):
        return "token contains spaces or non-printable characters"
    return None


def split_token(token: str) -> tuple[str, str] | None:
    """``(id, secret)`` of a ``cvt_<id>_<secret>`` token, else None."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    rest = token[len(TOKEN_PREFIX):]
    token_id, sep, secret = rest.partition("_")
    if not sep or not token_id or not secret or len(token_id) > 32:
        return None
    return token_id, secret


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
#: What :func:`parse_duration` accepts, as a JSON Schema pattern (the API states it): a positive
#: number of at most 12 digits (so never ``inf``) and a unit.
DURATION_PATTERN = r"^\s*0*[1-9]\d{0,11}(\.\d{1,6})?\s*[smhdw]\s*$"


def parse_duration(text: str, what: str = "--expires") -> float:
    """``"30d"`` → seconds. Units s, m, h, d, w; raises ValueError naming ``what``."""
    m = re.fullmatch(r"\s*(0*[1-9]\d{0,11}(?:\.\d{1,6})?)\s*([smhdw])\s*", text or "")
    if not m:
        raise ValueError(f"{what}: {text!r} is not a duration: write a positive number and a unit, e.g. 12h, 30d, 2w")
    return float(m.group(1)) * _UNITS[m.group(2)]


def new_token_problem(role: str, *, name: str, app: str | None, team: str | None, host: str | None) -> str | None:
    """Why a token with these properties cannot be made, else None."""
    if role not in ROLES:
        return f"unknown role {role!r}: use one of {', '.join(PEOPLE_ROLES)} (or `conveyor hosts join-token` for agents and routers)"
    if not _NAME.match(name or ""):
        return f"token name {name!r}: use 1-100 letters, digits and . _ - @ :, starting with a letter or digit"
    if app and team:
        return "a token is scoped to an app or to a team, not both: drop --app or --team"
    if role == "admin" and (app or team):
        return "an admin token cannot be scoped: use --role deployer or viewer with --app or --team"
    if role == ENROL_ROLE:
        if host or app or team:
            return "a one-time join token names no host, app or team: the host names itself when it joins"
    elif role in HOST_ROLES:
        if not host or not _NAME.match(host):
            return f"a {role} join token needs the host's name (letters, digits, . _ -)"
        if app or team:
            return "join tokens belong to a host, not an app or team"
    elif host:
        return "only agent and router join tokens belong to a host"
    return None


def expiry_problem(expires_at: float | None, revoked_at: float | None, now: float) -> str | None:
    """Why a stored token no longer signs anyone in (said in the 401), else None."""
    if revoked_at is not None:
        return "token revoked: ask an admin for a new one"
    if expires_at is not None and expires_at <= now:
        return "token expired: ask an admin for a new one (`conveyor tokens create --expires ...`)"
    return None


def write_refusal(p: Principal, app: str | None, app_team: str | None) -> str | None:
    """Why ``p`` may not change ``app`` (None: the call is not about one app), else None (allowed)."""
    if p.role == "admin":
        return None
    if p.role != "deployer":
        if p.role == "viewer":
            return "this token may only read; ask an admin for a token that may deploy"
        return f"a {p.role} join token may only call its host's data-plane endpoints"
    if p.scope_app is None and p.scope_team is None:
        return None
    if app is None:
        return "this token is scoped to " + _scope(p) + ": this call is not about one of its apps"
    if p.scope_app is not None and p.scope_app != app:
        return f"this token is scoped to {_scope(p)} and may not change app {app!r}"
    if p.scope_team is not None and p.scope_team != app_team:
        return f"this token is scoped to {_scope(p)} and app {app!r} belongs to " + (
            f"team {app_team!r}" if app_team else "no team")
    return None


def _scope(p: Principal) -> str:
    return f"app {p.scope_app!r}" if p.scope_app is not None else f"team {p.scope_team!r}"


def admin_url_problem(admin_url: str | None, caller_address: str, server_address: str = "") -> str | None:
    """Why a router calling from ``caller_address`` may not be scraped at ``admin_url``, else None.

    The control plane fetches that URL every second and stores what it says as real
    traffic, so it must point at the router's own host: the address its request came
    from. A loopback admin URL is accepted only from a caller on the control plane's
    own machine (a loopback address, or the very address it was reached at,
    ``server_address``: ``conveyor up --host IP``).
    """
    if admin_url is None:
        return None
    parts = urlsplit(admin_url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        return f"admin URL {admin_url!r}: expected http://ADDRESS:PORT of the router's admin port"
    try:
        target = ipaddress.ip_address(parts.hostname)
        caller = ipaddress.ip_address(caller_address)
        port = parts.port
    except ValueError:
        return f"admin URL {admin_url!r}: give the router's IP address and port, not a name"
    if port is None:
        return f"admin URL {admin_url!r}: give the admin port"
    local = caller.is_loopback or (server_address != "" and caller_address == server_address)
    if target == caller or (target.is_loopback and local):
        return None
    return f"admin URL {admin_url!r} is not on the router's host ({caller_address}): a router may only be scraped where it runs"
