"""Queries for notifications out: targets (``notify_targets``) and the outbox (``notify_outbox``).

The outbox is written from the event log by the sender loop (``services/notifications.py``) in one
transaction with the target's ``cursor``, so a loop killed at any line neither skips nor repeats an
event: either the rows and the new cursor are both in, or neither is.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, RowMapping, and_, delete, func, insert, or_, select, update

from conveyor.store.sealing import Sealer
from conveyor.store.tables import apps, events, notify_outbox, notify_targets

#: outbox rows kept per target (the delivery log); older finished ones go
KEEP_PER_TARGET = 500


def add_target(conn: Connection, values: dict[str, Any]) -> int:
    start = conn.execute(select(func.max(events.c.id))).scalar() or 0  # a new target gets new events only
    return int(conn.execute(insert(notify_targets).values(cursor=start, **values)).inserted_primary_key[0])  # type: ignore[index]


def targets(conn: Connection, app_id: int | None = None) -> list[RowMapping]:
    q = (select(notify_targets, apps.c.name.label("app"))
         .select_from(notify_targets.join(apps, apps.c.id == notify_targets.c.app_id)).order_by(notify_targets.c.id))
    if app_id is not None:
        q = q.where(notify_targets.c.app_id == app_id)
    return list(conn.execute(q).mappings().all())


def target(conn: Connection, app_id: int, target_id: int) -> RowMapping | None:
    return next((t for t in targets(conn, app_id) if t["id"] == target_id), None)


def remove_target(conn: Connection, app_id: int, target_id: int) -> bool:
    conn.execute(delete(notify_outbox).where(notify_outbox.c.target_id == target_id,
                                             notify_outbox.c.target_id.in_(
                                                 select(notify_targets.c.id).where(notify_targets.c.app_id == app_id))))
    return conn.execute(delete(notify_targets).where(notify_targets.c.id == target_id,
                                                     notify_targets.c.app_id == app_id)).rowcount > 0


def events_after(conn: Connection, app: str, cursor: int, limit: int = 200) -> list[dict[str, Any]]:
    """The app's events after ``cursor``, oldest first."""
    return [dict(r) for r in conn.execute(
        select(events).where(events.c.id > cursor, events.c.app == app).order_by(events.c.id).limit(limit)
    ).mappings().all()]


def newest_event_id(conn: Connection) -> int:
    return int(conn.execute(select(func.max(events.c.id))).scalar() or 0)


def fan_out(conn: Connection, target_id: int, rows: list[dict[str, Any]], old_cursor: int, cursor: int, now: float) -> bool:
    """Move a target's cursor from ``old_cursor`` to ``cursor`` and queue ``rows`` (event_id, kind, payload), in the
    caller's transaction; False (nothing written) when another pass moved the cursor first (compare-and-set: on
    PostgreSQL the loser waits for the winner's row lock and then finds the cursor moved)."""
    moved = conn.execute(update(notify_targets).where(notify_targets.c.id == target_id, notify_targets.c.cursor == old_cursor)
                         .values(cursor=cursor)).rowcount
    if not moved:
        return False
    for r in rows:
        conn.execute(insert(notify_outbox).values(target_id=target_id, status="pending", attempts=0, next_at=now,
                                                  error="", created_at=now, **r))
    return True


def queue_one(conn: Connection, target_id: int, event_id: int, kind: str, payload: dict[str, Any], now: float) -> int:
    return int(conn.execute(insert(notify_outbox).values(
        target_id=target_id, event_id=event_id, kind=kind, payload=payload, status="pending", attempts=0, next_at=now,
        error="", created_at=now)).inserted_primary_key[0])  # type: ignore[index]


def due(conn: Connection, now: float, limit: int = 20) -> list[RowMapping]:
    """Outbox rows to attempt now, with their target's kind and sealed URL and secret, oldest first."""
    return list(conn.execute(
        select(notify_outbox, notify_targets.c.kind.label("target_kind"), notify_targets.c.url_sealed,
               notify_targets.c.secret_sealed)
        .select_from(notify_outbox.join(notify_targets, notify_targets.c.id == notify_outbox.c.target_id))
        .where(notify_outbox.c.status.in_(("pending", "retrying")), notify_outbox.c.next_at <= now)
        .order_by(notify_outbox.c.next_at, notify_outbox.c.id).limit(limit)
    ).mappings().all())


def next_due_at(conn: Connection) -> float | None:
    return conn.execute(select(func.min(notify_outbox.c.next_at))
                        .where(notify_outbox.c.status.in_(("pending", "retrying")))).scalar()


def record_attempt(conn: Connection, row_id: int, attempts: int, status: str, next_at: float | None,
                   status_code: int | None, error: str, now: float) -> None:
    """An attempt's outcome; only if the row still has the attempt count it was read with (idempotent)."""
    conn.execute(update(notify_outbox)
                 .where(notify_outbox.c.id == row_id, notify_outbox.c.attempts == attempts - 1)
                 .values(attempts=attempts, status=status, next_at=next_at, status_code=status_code,
                         error=error[:2000], last_at=now))


def log(conn: Connection, app_id: int, limit: int = 50) -> list[dict[str, Any]]:
    """An app's notifications, newest first, with their target."""
    return [dict(r) for r in conn.execute(
        select(notify_outbox.c.id, notify_outbox.c.target_id, notify_outbox.c.event_id, notify_outbox.c.kind,
               notify_outbox.c.status, notify_outbox.c.attempts, notify_outbox.c.next_at, notify_outbox.c.status_code,
               notify_outbox.c.error, notify_outbox.c.created_at, notify_outbox.c.last_at,
               notify_targets.c.kind.label("target_kind"), notify_targets.c.url_shown)
        .select_from(notify_outbox.join(notify_targets, notify_targets.c.id == notify_outbox.c.target_id))
        .where(notify_targets.c.app_id == app_id).order_by(notify_outbox.c.id.desc()).limit(limit)
    ).mappings().all()]


def trim(conn: Connection, target_id: int) -> None:
    """Keep a target's newest ``KEEP_PER_TARGET`` rows (finished ones only go)."""
    cutoff = conn.execute(select(notify_outbox.c.id).where(notify_outbox.c.target_id == target_id)
                          .order_by(notify_outbox.c.id.desc()).offset(KEEP_PER_TARGET).limit(1)).first()
    if cutoff is not None:
        conn.execute(delete(notify_outbox).where(and_(
            notify_outbox.c.target_id == target_id, notify_outbox.c.id <= cutoff.id,
            or_(notify_outbox.c.status == "delivered", notify_outbox.c.status == "failed"))))


def sealed(conn: Connection) -> list[RowMapping]:
    return list(conn.execute(select(notify_targets.c.id, notify_targets.c.url_sealed, notify_targets.c.secret_sealed)).mappings().all())


def set_sealed(conn: Connection, target_id: int, url_sealed: str, secret_sealed: str | None) -> None:
    conn.execute(update(notify_targets).where(notify_targets.c.id == target_id)
                 .values(url_sealed=url_sealed, secret_sealed=secret_sealed))


def reseal(conn: Connection, ring: Sealer) -> int:
    """Re-seal every target's URL and secret with ``ring``'s newest key (a key rotation); how many targets."""
    n = 0
    for r in sealed(conn):
        secret = r["secret_sealed"]
        set_sealed(conn, r["id"], ring.seal(ring.open(r["url_sealed"].encode())).decode(),
                   ring.seal(ring.open(secret.encode())).decode() if secret else None)
        n += 1
    return n
