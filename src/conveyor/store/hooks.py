"""Queries for push webhooks: an app's registered repository (``app_repos``) and the deliveries it
received (``hook_deliveries``). The rules are ``conveyor.domain.webhooks``; the transactions
``conveyor.services.hooks``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, RowMapping, delete, insert, select, update

from conveyor.store.repo import insert_if_absent
from conveyor.store.sealing import Sealer
from conveyor.store.tables import app_repos, apps, hook_deliveries

#: deliveries kept per app (the log and the replay memory); older ones go
KEEP_DELIVERIES = 1000


def get(conn: Connection, app_id: int) -> RowMapping | None:
    return conn.execute(select(app_repos).where(app_repos.c.app_id == app_id)).mappings().first()


def of_app_name(conn: Connection, app: str) -> RowMapping | None:
    """The registration of app ``app`` with the app's id (None: no such app, or none registered)."""
    return conn.execute(
        select(app_repos, apps.c.name.label("app"))
        .select_from(app_repos.join(apps, apps.c.id == app_repos.c.app_id))
        .where(apps.c.name == app)
    ).mappings().first()


def put(conn: Connection, app_id: int, url: str, branch: str, env: str, secret_sealed: str, at: float, by: str) -> None:
    """Register (or replace) the app's repository; a replacement gets a new secret."""
    conn.execute(delete(app_repos).where(app_repos.c.app_id == app_id))
    conn.execute(insert(app_repos).values(app_id=app_id, url=url, branch=branch, env=env, secret_sealed=secret_sealed,
                                          created_at=at, created_by=by))


def remove(conn: Connection, app_id: int) -> bool:
    return conn.execute(delete(app_repos).where(app_repos.c.app_id == app_id)).rowcount > 0


def sealed_secrets(conn: Connection) -> list[tuple[int, str]]:
    return [(r.app_id, r.secret_sealed) for r in conn.execute(select(app_repos.c.app_id, app_repos.c.secret_sealed)).all()]


def set_sealed_secret(conn: Connection, app_id: int, sealed: str) -> None:
    conn.execute(update(app_repos).where(app_repos.c.app_id == app_id).values(secret_sealed=sealed))


def remember(conn: Connection, app_id: int, delivery: str, values: dict[str, Any]) -> int | None:
    """Record a delivery by its id; None when that id was received before (a replay)."""
    if not insert_if_absent(conn, hook_deliveries, app_id=app_id, delivery=delivery, **values):
        return None
    row = conn.execute(select(hook_deliveries.c.id).where(hook_deliveries.c.app_id == app_id,
                                                          hook_deliveries.c.delivery == delivery)).first()
    assert row is not None
    cutoff = conn.execute(select(hook_deliveries.c.id).where(hook_deliveries.c.app_id == app_id)
                          .order_by(hook_deliveries.c.id.desc()).offset(KEEP_DELIVERIES).limit(1)).first()
    if cutoff is not None:
        conn.execute(delete(hook_deliveries).where(hook_deliveries.c.app_id == app_id, hook_deliveries.c.id <= cutoff.id))
    return int(row.id)


def update_delivery(conn: Connection, row_id: int, **values: Any) -> None:
    conn.execute(update(hook_deliveries).where(hook_deliveries.c.id == row_id).values(**values))


def deliveries(conn: Connection, app_id: int, limit: int = 50) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute(
        select(hook_deliveries).where(hook_deliveries.c.app_id == app_id)
        .order_by(hook_deliveries.c.id.desc()).limit(limit)).mappings().all()]


def reseal(conn: Connection, ring: Sealer) -> int:
    """Re-seal every webhook secret with ``ring``'s newest key (a key rotation); how many were."""
    n = 0
    for app_id, sealed in sealed_secrets(conn):
        set_sealed_secret(conn, app_id, ring.seal(ring.open(sealed.encode())).decode())
        n += 1
    return n


def fail_unfinished(conn: Connection, reason: str) -> int:
    """Mark deliveries still building as failed (their build died with the process that ran it)."""
    return conn.execute(update(hook_deliveries).where(hook_deliveries.c.outcome == "building")
                        .values(outcome="failed", reason=reason)).rowcount
