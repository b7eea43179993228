"""Authentication: a presented token → a :class:`Principal`, or a refusal with its reason.

Three kinds of credential are accepted, checked in this order:

* the bootstrap admin token (``--admin-token`` / ``admin-token`` in the data dir);
* ``--viewer-token`` tokens (read-only, given on the server's command line or env);
* scoped tokens from ``conveyor tokens create`` and ``conveyor hosts join-token``
  (``cvt_<id>_<secret>``, kept as hashes in SQL: ``store/tokens.py``).

Every comparison is constant-time. Failed attempts are logged with the caller's
address (never the token) and counted per address (:class:`FailureLimiter`):
past 10 in a minute, an address gets 429 for tokens it has not already proven.
A token that authenticated recently (from anywhere) is still checked, so a
guesser on the same address as the agent, the router or the CLI — loopback in
``conveyor up`` — cannot lock them out; and it gains nothing, since its guesses
are refused unchecked.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
from dataclasses import replace

from fastapi import HTTPException

from conveyor.domain.access import Principal, expiry_problem, split_token, token_shape_problem
from conveyor.domain.ratelimit import FailureLimiter
from conveyor.store import tokens as token_store

log = logging.getLogger("conveyor.auth")

#: A token that authenticated within this many seconds bypasses an address's failure block.
KNOWN_GOOD_FOR = 600.0
#: Resolved scoped tokens are cached this long (revocation takes effect within it).
CACHE_FOR = 1.0


class Authenticator:
    """Per control-plane process: the failure limiter and a small cache of resolved tokens."""

    def __init__(self, cp: object, limiter: FailureLimiter | None = None) -> None:
        self.cp = cp
        self.limiter = limiter or FailureLimiter()
        self._known: dict[str, float] = {}  # sha256(token) -> last success
        self._cache: dict[str, tuple[Principal, float, float | None]] = {}  # sha -> (principal, at, expires_at)
        self._lock = threading.Lock()

    # -- the one entry point -------------------------------------------------

    def authenticate(self, token: str, origin: str, now: float | None = None) -> Principal:
        """The principal of ``token``, else HTTPException 401 (with the reason) or 429."""
        now = time.time() if now is None else now
        digest = hashlib.sha256(token.encode()).hexdigest()
        with self._lock:
            wait = self.limiter.retry_after(origin, now)
            known = self._known.get(digest, 0.0) > now - KNOWN_GOOD_FOR
        if wait > 0 and not known:
            log.warning("sign-in refused: %s is blocked for %.0f s after repeated failures", origin, wait)
            raise HTTPException(429, f"too many failed sign-ins from {origin}: try again in {wait:.0f} s",
                                headers={"Retry-After": str(int(wait) + 1)})
        result = self.resolve(token, now, digest)
        if isinstance(result, str):
            with self._lock:
                count = self.limiter.failed(origin, now)
            log.warning("failed sign-in from %s: %s (%d in the last minute)", origin or "?", result, count)
            raise HTTPException(401, result, headers={"WWW-Authenticate": "Bearer"})
        with self._lock:
            self._known[digest] = now
            if len(self._known) > 10_000:
                self._known = {k: t for k, t in self._known.items() if t > now - KNOWN_GOOD_FOR}
        return replace(result, origin=origin)

    def resolve(self, token: str, now: float, digest: str | None = None) -> Principal | str:
        """The principal of ``token`` or the reason it is refused (no rate limiting, no logging)."""
        problem = token_shape_problem(token)
        if problem:
            return problem
        settings = self.cp.settings  # type: ignore[attr-defined]
        if hmac.compare_digest(token.encode(), settings.admin_token.encode()):
            return Principal(name="admin", role="admin")
        if any(hmac.compare_digest(token.encode(), t.encode()) for t in self.cp.viewer_tokens):  # type: ignore[attr-defined]
            return Principal(name="viewer", role="viewer")
        parts = split_token(token)
        if parts is None:
            return "invalid token"
        digest = digest or hashlib.sha256(token.encode()).hexdigest()
        cached = self._cache.get(digest)
        if cached is not None and cached[1] > now - CACHE_FOR and (cached[2] is None or cached[2] > now):
            return cached[0]
        row = token_store.check(self.cp.engine, *parts)  # type: ignore[attr-defined]
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

    def forget(self) -> None:
        """Drop cached resolutions (after a revocation in this process: effective at once here)."""
        self._cache.clear()
