"""Scoped API tokens in SQL: create (the secret is returned once), look up, list, revoke.

Why hashes and an id: the table keeps only SHA-256 of each token's random part, so
a copy of the database (or of a backup) signs nobody in; the token carries its row
id in clear (``cvt_<id>_<secret>``), so checking one is a primary-key read and one
constant-time comparison, never a scan or a comparison that leaks by timing.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

from sqlalchemy import Engine, RowMapping, select, update

from conveyor.domain.access import TOKEN_PREFIX
from conveyor.store.repo import NotFound
from conveyor.store.tables import api_tokens, apps


def _sha(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create(engine: Engine, *, name: str, role: str, now: float, created_by: str, scope_app: str | None = None,
           scope_team: str | None = None, host: str | None = None, expires_at: float | None = None) -> tuple[dict[str, Any], str]:
    """A new token row; returns ``(public view, the token)``. The token is never stored or shown again."""
    token_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    row = dict(id=token_id, name=name, role=role, scope_app=scope_app, scope_team=scope_team, host=host,
               secret_hash=_sha(secret), created_at=now, created_by=created_by, expires_at=expires_at, revoked_at=None)
    with engine.begin() as conn:
        if scope_app is not None and conn.execute(select(apps.c.id).where(apps.c.name == scope_app)).first() is None:
            raise NotFound(f"no app named {scope_app!r}: see `conveyor apps`")
        conn.execute(api_tokens.insert().values(**row))
    return public(row), f"{TOKEN_PREFIX}{token_id}_{secret}"


def check(engine: Engine, token_id: str, secret: str) -> RowMapping | None:
    """The row of token ``token_id`` if ``secret`` is its secret (constant-time), else None."""
    with engine.connect() as conn:
        row = conn.execute(select(api_tokens).where(api_tokens.c.id == token_id)).mappings().first()
    expected = row.secret_hash if row is not None else "0" * 64
    ok = hmac.compare_digest(_sha(secret), expected)
    return row if ok and row is not None else None


def public(row: Any) -> dict[str, Any]:
    """A token row without its hash: what ``tokens list`` shows."""
    keys = ("id", "name", "role", "scope_app", "scope_team", "host", "created_at", "created_by", "expires_at", "revoked_at")
    return {k: row[k] for k in keys}


def list_all(engine: Engine, *, include_revoked: bool = False) -> list[dict[str, Any]]:
    q = select(api_tokens).order_by(api_tokens.c.created_at)
    if not include_revoked:
        q = q.where(api_tokens.c.revoked_at.is_(None))
    with engine.connect() as conn:
        return [public(r) for r in conn.execute(q).mappings()]


def revoke(engine: Engine, ref: str, now: float) -> list[dict[str, Any]]:
    """Revoke the token whose id or name is ``ref`` (all live tokens of that name); returns them."""
    with engine.begin() as conn:
        rows = conn.execute(select(api_tokens).where(
            (api_tokens.c.id == ref) | (api_tokens.c.name == ref), api_tokens.c.revoked_at.is_(None))).mappings().all()
        if not rows:
            raise NotFound(f"no live token with id or name {ref!r}: see `conveyor tokens list`")
        conn.execute(update(api_tokens).where(api_tokens.c.id.in_([r["id"] for r in rows])).values(revoked_at=now))
    return [{**public(r), "revoked_at": now} for r in rows]


def app_team(engine: Engine, app: str) -> str | None:
    with engine.connect() as conn:
        row = conn.execute(select(apps.c.team).where(apps.c.name == app)).first()
    return row.team if row is not None else None


def app_of_deployment(engine: Engine, dep_id: int) -> str | None:
    """The app a deployment belongs to (for scope checks on ``/deployments/{id}/...``)."""
    from conveyor.store.tables import deployments, environments

    with engine.connect() as conn:
        row = conn.execute(
            select(apps.c.name).select_from(deployments.join(environments, deployments.c.env_id == environments.c.id)
                                            .join(apps, environments.c.app_id == apps.c.id))
            .where(deployments.c.id == dep_id)).first()
    return row.name if row is not None else None
