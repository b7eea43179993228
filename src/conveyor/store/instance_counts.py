"""Instance counts over time: per environment and process type, the ready instances and the count
in force, as a step function (a row when either changes), for the graph of instances against load.

Why a change log and not a point a second: counts change a few times an hour, so an environment
costs a handful of rows where per-second points would cost 86,400 a day; and a step function is
exact at any zoom (the value holds until the next row).
"""

from __future__ import annotations

from sqlalchemy import Connection, delete, func, insert, select

from conveyor.store.tables import instance_counts


def newest(conn: Connection, env_id: int) -> dict[str, tuple[int, int]]:
    """process → (ready, count) of the newest row of each process type."""
    latest = (select(instance_counts.c.process, func.max(instance_counts.c.t).label("t"))
              .where(instance_counts.c.env_id == env_id).group_by(instance_counts.c.process).subquery())
    rows = conn.execute(
        select(instance_counts.c.process, instance_counts.c.ready, instance_counts.c.count)
        .join(latest, (instance_counts.c.process == latest.c.process) & (instance_counts.c.t == latest.c.t))
        .where(instance_counts.c.env_id == env_id)
    )
    return {r.process: (int(r.ready), int(r.count)) for r in rows}


def record(conn: Connection, env_id: int, process: str, t: float, ready: int, count: int) -> None:
    """A new value from second ``t`` on (a second already recorded keeps its first value)."""
    exists = conn.execute(select(instance_counts.c.id).where(
        instance_counts.c.env_id == env_id, instance_counts.c.process == process, instance_counts.c.t == t)).first()
    if exists is None:
        conn.execute(insert(instance_counts).values(env_id=env_id, process=process, t=t, ready=ready, count=count))


def window(conn: Connection, env_id: int, since: float) -> dict[str, list[dict[str, float | int]]]:
    """process → [{t, ready, count}] oldest first: the value in force at ``since`` (its row moved to
    ``since``), then every change after it."""
    out: dict[str, list[dict[str, float | int]]] = {}
    before = (select(instance_counts.c.process, func.max(instance_counts.c.t).label("t"))
              .where(instance_counts.c.env_id == env_id, instance_counts.c.t < since)
              .group_by(instance_counts.c.process).subquery())
    for r in conn.execute(
        select(instance_counts.c.process, instance_counts.c.ready, instance_counts.c.count)
        .join(before, (instance_counts.c.process == before.c.process) & (instance_counts.c.t == before.c.t))
        .where(instance_counts.c.env_id == env_id)
    ):
        out.setdefault(r.process, []).append({"t": since, "ready": int(r.ready), "count": int(r.count)})
    for m in conn.execute(  # (Row.t is SQLAlchemy's tuple accessor, hence mappings)
        select(instance_counts.c.process, instance_counts.c.t, instance_counts.c.ready, instance_counts.c.count)
        .where(instance_counts.c.env_id == env_id, instance_counts.c.t >= since)
        .order_by(instance_counts.c.process, instance_counts.c.t)
    ).mappings():
        out.setdefault(m["process"], []).append({"t": float(m["t"]), "ready": int(m["ready"]), "count": int(m["count"])})
    return out


def prune(conn: Connection, before: float) -> None:
    """Delete the rows older than ``before``, but each process type's newest (it still holds)."""
    keep = (select(instance_counts.c.env_id, instance_counts.c.process, func.max(instance_counts.c.t).label("t"))
            .group_by(instance_counts.c.env_id, instance_counts.c.process).subquery())
    kept = select(instance_counts.c.id).join(keep, (instance_counts.c.env_id == keep.c.env_id)
                                             & (instance_counts.c.process == keep.c.process)
                                             & (instance_counts.c.t == keep.c.t))
    conn.execute(delete(instance_counts).where(instance_counts.c.t < before, instance_counts.c.id.not_in(kept)))
