"""Scoped API tokens in SQL: insert, look up by id, list, revoke. Every function takes a connection.

Why hashes and an id: the table keeps only SHA-256 of each token's random part, so
a copy of the database (or of a backup) signs nobody in; the token carries its row
id in clear (``cvt_<id>_<secret>``), so checking one is a primary-key read and one
constant-time comparison, never a scan or a comparison that leaks by timing.
Making the secret and deciding who may hold which token is ``services/auth.py``'s.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from sqlalchemy import Connection, RowMapping, select, update

from conveyor.store.repo import NotFound
from conveyor.store.tables import api_tokens

#: What ``tokens list`` and the API show of a row (never ``secret_hash``).
PUBLIC_KEYS = ("id", "name", "role", "scope_app", "scope_team", "host", "created_at", "created_by", "expires_at",
               "revoked_at")


def secret_hash(secret: str) -> str:
    """SHA-256 of a token's random part: a 32-byte random value needs no slow hash."""
    return hashlib.sha256(secret.encode()).hexdigest()


def insert(conn: Connection, *, token_id: str, secret: str, name: str, role: str, now: float, created_by: str,
           scope_app: str | None, scope_team: str | None, host: str | None, expires_at: float | None) -> dict[str, Any]:
    """Store a new token (its hash only); returns its public view."""
    row = dict(id=token_id, name=name, role=role, scope_app=scope_app, scope_team=scope_team, host=host,
               secret_hash=secret_hash(secret), created_at=now, created_by=created_by, expires_at=expires_at,
               revoked_at=None)
    conn.execute(api_tokens.insert().values(**row))
    return public(row)


def check(conn: Connection, token_id: str, secret: str) -> RowMapping | None:
    """The row of token ``token_id`` if ``secret`` is its secret (constant-time, also for an unknown id), else None."""
    row = conn.execute(select(api_tokens).where(api_tokens.c.id == token_id)).mappings().first()
    expected = row["secret_hash"] if row is not None else "0" * 64
    ok = hmac.compare_digest(secret_hash(secret), expected)
    return row if ok and row is not None else None


def public(row: Any) -> dict[str, Any]:
    """A token row without its hash."""
    return {k: row[k] for k in PUBLIC_KEYS}


def list_all(conn: Connection, *, include_revoked: bool = False) -> list[dict[str, Any]]:
    """Tokens, oldest first; live ones only unless ``include_revoked``."""
    q = select(api_tokens).order_by(api_tokens.c.created_at)
    if not include_revoked:
        q = q.where(api_tokens.c.revoked_at.is_(None))
    return [public(r) for r in conn.execute(q).mappings()]


def revoke(conn: Connection, ref: str, now: float) -> list[dict[str, Any]]:
    """Revoke the token whose id or name is ``ref`` (all live tokens of that name); returns them."""
    rows = conn.execute(select(api_tokens).where(
        (api_tokens.c.id == ref) | (api_tokens.c.name == ref), api_tokens.c.revoked_at.is_(None))).mappings().all()
    if not rows:
        raise NotFound(f"no live token with id or name {ref!r}: see `conveyor tokens list`")
    conn.execute(update(api_tokens).where(api_tokens.c.id.in_([r["id"] for r in rows])).values(revoked_at=now))
    return [{**public(r), "revoked_at": now} for r in rows]


def live_host_tokens(conn: Connection, host: str, role: str) -> list[dict[str, Any]]:
    """The live (not revoked) tokens of ``role`` that belong to ``host``."""
    q = select(api_tokens).where(api_tokens.c.host == host, api_tokens.c.role == role, api_tokens.c.revoked_at.is_(None))
    return [public(r) for r in conn.execute(q).mappings()]


def use_once(conn: Connection, token_id: str, now: float) -> bool:
    """Spend a one-time token: True for the one caller that did (a conditional update)."""
    return bool(conn.execute(update(api_tokens).where(api_tokens.c.id == token_id, api_tokens.c.revoked_at.is_(None))
                             .values(revoked_at=now)).rowcount)


def revoke_ids(conn: Connection, ids: list[str], now: float) -> None:
    if ids:
        conn.execute(update(api_tokens).where(api_tokens.c.id.in_(ids)).values(revoked_at=now))
