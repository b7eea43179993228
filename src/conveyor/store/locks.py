"""Deploy locks and freeze windows (tables ``locks`` and ``freezes``, migration 0008_pipelines).

Rows only; what they mean is ``domain/gate.py``. ``env`` "" means every environment of the app.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, delete, insert, or_, select

from conveyor.domain.gate import Freeze, Lock, parse_window
from conveyor.store.repo import insert_if_absent
from conveyor.store.tables import freezes, locks


def add_lock(conn: Connection, app_id: int, env: str, kind: str, reason: str, actor: str, now: float,
             deployment_id: int | None = None) -> bool:
    """Lock ``env`` ("" every environment); False if a lock of that kind is already there (it stays as it was)."""
    return insert_if_absent(conn, locks, app_id=app_id, env=env, kind=kind, reason=reason, created_by=actor,
                            created_at=now, deployment_id=deployment_id)


def remove_locks(conn: Connection, app_id: int, env: str) -> int:
    """Remove every lock of ``env`` ("" the app-wide ones); how many went."""
    return int(conn.execute(delete(locks).where(locks.c.app_id == app_id, locks.c.env == env)).rowcount or 0)


def locks_of(conn: Connection, app_id: int, env: str | None = None) -> list[dict[str, Any]]:
    """The app's locks (with ``env``: those applying to it: its own and the app-wide ones), oldest first."""
    q = select(locks).where(locks.c.app_id == app_id).order_by(locks.c.id)
    if env is not None:
        q = q.where(or_(locks.c.env == env, locks.c.env == ""))
    return [dict(r) for r in conn.execute(q).mappings()]


def as_lock(row: dict[str, Any]) -> Lock:
    return Lock(env=row["env"], reason=row["reason"], by=row["created_by"], since=row["created_at"],
                automatic_only=row["kind"] == "rollback")


def add_freeze(conn: Connection, app_id: int, env: str, spec: str, tz: str, reason: str, actor: str, now: float) -> int:
    result = conn.execute(insert(freezes).values(app_id=app_id, env=env, spec=spec, tz=tz, reason=reason,
                                                 created_by=actor, created_at=now))
    return int(result.inserted_primary_key[0])  # type: ignore[index]


def remove_freeze(conn: Connection, app_id: int, freeze_id: int) -> bool:
    return bool(conn.execute(delete(freezes).where(freezes.c.app_id == app_id, freezes.c.id == freeze_id)).rowcount)


def freezes_of(conn: Connection, app_id: int, env: str | None = None) -> list[dict[str, Any]]:
    q = select(freezes).where(freezes.c.app_id == app_id).order_by(freezes.c.id)
    if env is not None:
        q = q.where(or_(freezes.c.env == env, freezes.c.env == ""))
    return [dict(r) for r in conn.execute(q).mappings()]


def as_freeze(row: dict[str, Any]) -> Freeze:
    return Freeze(id=row["id"], env=row["env"], window=parse_window(row["spec"], row["tz"]), reason=row["reason"])


def gate_inputs(conn: Connection, app_id: int, env: str) -> tuple[list[Lock], list[Freeze]]:
    """What ``domain.gate.gate`` needs for one app's environment."""
    return ([as_lock(r) for r in locks_of(conn, app_id, env)], [as_freeze(r) for r in freezes_of(conn, app_id, env)])
