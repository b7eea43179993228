"""Web sessions that survive a control-plane restart: rows in SQL, a small cache in front.

Why SQL and not memory: ``conveyor up`` restarts the control plane (an upgrade, a
crash, the supervisor's backoff), and signing every browser out each time is a
small daily cruelty. Why hashes: a session id is a bearer credential and the
token behind it more so; the table keeps SHA-256 of both, so a copy of the
database signs nobody in. The token's hash is resolved against the tokens the
server accepts *now*, so changing the admin token or dropping a viewer token
ends the sessions made with it. A scoped token (``cvt_…``, kept by the control
plane as a hash of its secret only) cannot be found from its hash: the row also
holds the token *sealed* (Fernet: authenticated encryption from ``cryptography``) under a
key derived from the session id, which only the browser holding the cookie can open; whoever
resolves the token then checks it is still valid (not revoked, not expired).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Callable, Iterable

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import Engine, delete, func, insert, select

from conveyor.domain.access import TOKEN_PREFIX  # scoped tokens: the only ones opened from a sealed copy
from conveyor.store.tables import web_sessions

#: A session lasts this long after sign-in, then the browser must sign in again.
SESSION_MAX_AGE = 12 * 3600.0
#: Past this many live sessions the oldest tenth is forgotten.
MAX_SESSIONS = 10_000
#: Cached (token, started_at) per session id: the per-request check costs no query.
_CACHE_MAX = 4096


def _sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _fernet(sid: str) -> Fernet:
    """The session's own key: SHA-256 of the (32-byte random) session id, which the table never holds."""
    return Fernet(base64.urlsafe_b64encode(hashlib.sha256(b"conveyor-session-seal:" + sid.encode()).digest()))


def seal(sid: str, token: str) -> str:
    """``token`` encrypted and authenticated under the session id (stored only as a hash)."""
    return _fernet(sid).encrypt(token.encode()).decode("ascii")


def unseal(sid: str, sealed: str) -> str | None:
    """The token :func:`seal` sealed under ``sid``; None when it does not open (another session's, altered)."""
    try:
        return _fernet(sid).decrypt(sealed.encode("ascii")).decode()
    except (InvalidToken, ValueError, UnicodeError):
        return None


class SessionStore:
    """Session id (the cookie's value) → the token it signs in with, for ``max_age`` seconds."""

    def __init__(self, engine: Engine, tokens: Callable[[], Iterable[str]], max_age: float = SESSION_MAX_AGE,
                 max_sessions: int = MAX_SESSIONS, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.tokens = tokens
        self.max_age = max_age
        self.max_sessions = max_sessions
        self.clock = clock
        self._cache: dict[str, tuple[str, float]] = {}

    def start(self, token: str) -> str:
        """A new session for ``token``; returns its id (for the cookie)."""
        sid = secrets.token_urlsafe(32)
        now = self.clock()
        with self.engine.begin() as conn:
            conn.execute(delete(web_sessions).where(web_sessions.c.started_at < now - self.max_age))
            count = conn.execute(select(func.count()).select_from(web_sessions)).scalar_one()
            if count >= self.max_sessions:  # forget the oldest rather than grow without bound
                oldest = select(web_sessions.c.id_hash).order_by(web_sessions.c.started_at).limit(max(1, self.max_sessions // 10))
                conn.execute(delete(web_sessions).where(web_sessions.c.id_hash.in_(oldest.scalar_subquery())))
                self._cache.clear()
            conn.execute(insert(web_sessions).values(id_hash=_sha(sid), token_hash=_sha(token), started_at=now,
                                                     token_sealed=seal(sid, token) if len(token) <= 290 else None))
        self._remember(sid, token, now)
        return sid

    def get(self, sid: str | None) -> str | None:
        """The token behind a live session, or None (unknown, expired, or its token no longer valid)."""
        if not sid:
            return None
        cached = self._cache.get(sid)
        if cached is None:
            with self.engine.connect() as conn:
                row = conn.execute(
                    select(web_sessions.c.token_hash, web_sessions.c.started_at, web_sessions.c.token_sealed)
                    .where(web_sessions.c.id_hash == _sha(sid))
                ).first()
            if row is None:
                return None
            token = next((t for t in self.tokens() if t and _sha(t) == row.token_hash), None)
            if token is None and row.token_sealed and (opened := unseal(sid, row.token_sealed)) is not None:
                # a scoped token: its validity (revoked? expired?) is checked wherever it is resolved
                token = opened if opened.startswith(TOKEN_PREFIX) and _sha(opened) == row.token_hash else None
            if token is None:
                return None
            cached = (token, row.started_at)
            self._remember(sid, *cached)
        token, started = cached
        if self.clock() - started > self.max_age:
            self.end(sid)
            return None
        return token

    def end(self, sid: str) -> None:
        """Forget a session: its cookie stops working at once."""
        self._cache.pop(sid, None)
        with self.engine.begin() as conn:
            conn.execute(delete(web_sessions).where(web_sessions.c.id_hash == _sha(sid)))

    def __len__(self) -> int:
        """Live sessions (not expired)."""
        with self.engine.connect() as conn:
            return int(conn.execute(
                select(func.count()).select_from(web_sessions).where(web_sessions.c.started_at >= self.clock() - self.max_age)
            ).scalar_one())

    def _remember(self, sid: str, token: str, started: float) -> None:
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
        self._cache[sid] = (token, started)
