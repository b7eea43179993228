"""Autoscalers in SQL: the policy of each (environment, process type) and its last decision."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, RowMapping, delete, insert, select, update

from conveyor.store.tables import autoscalers


def of_env(conn: Connection, env_id: int) -> list[RowMapping]:
    return list(conn.execute(select(autoscalers).where(autoscalers.c.env_id == env_id)
                             .order_by(autoscalers.c.process)).mappings().all())


def env_ids(conn: Connection) -> set[int]:
    return {r.env_id for r in conn.execute(select(autoscalers.c.env_id))}


def put(conn: Connection, env_id: int, process: str, policy: dict[str, Any], actor: str, now: float) -> None:
    moved = conn.execute(update(autoscalers).where(autoscalers.c.env_id == env_id, autoscalers.c.process == process)
                         .values(policy=policy, updated_at=now, updated_by=actor)).rowcount
    if not moved:
        conn.execute(insert(autoscalers).values(env_id=env_id, process=process, policy=policy, updated_at=now,
                                                updated_by=actor))


def remove(conn: Connection, env_id: int, process: str) -> bool:
    return bool(conn.execute(delete(autoscalers).where(autoscalers.c.env_id == env_id,
                                                       autoscalers.c.process == process)).rowcount)


def record(conn: Connection, env_id: int, process: str, decision: dict[str, Any], now: float) -> None:
    conn.execute(update(autoscalers).where(autoscalers.c.env_id == env_id, autoscalers.c.process == process)
                 .values(decision=decision, decided_at=now))
