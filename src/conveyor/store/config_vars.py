"""Queries over an environment's config vars, process counts and restarts (tables ``config_vars``,
``process_counts``, ``restarts``).

Values arrive here already sealed when secret: this module never sees a secret in clear.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, RowMapping, delete, insert, select, update

from conveyor.store.tables import config_vars, process_counts, restarts


def of_env(conn: Connection, env_id: int) -> list[RowMapping]:
    """An environment's set vars, by key."""
    return list(conn.execute(select(config_vars).where(config_vars.c.env_id == env_id).order_by(config_vars.c.key))
                .mappings().all())


def snapshot(conn: Connection, env_id: int) -> list[dict[str, Any]]:
    """The set vars as a release stores them (secrets sealed): what a rollback restores."""
    return [{"key": r["key"], "secret": bool(r["secret"]), "value": r["value"], "sealed": r["sealed"],
             "updated_at": r["updated_at"], "updated_by": r["updated_by"]} for r in of_env(conn, env_id)]


def put(conn: Connection, env_id: int, key: str, *, secret: bool, value: str | None, sealed: str | None,
        actor: str, now: float) -> None:
    """Set one var (insert or overwrite)."""
    values: dict[str, Any] = {"secret": secret, "value": value, "sealed": sealed, "updated_at": now,
                              "updated_by": actor}
    moved = conn.execute(
        update(config_vars).where(config_vars.c.env_id == env_id, config_vars.c.key == key).values(**values)
    ).rowcount
    if not moved:
        conn.execute(insert(config_vars).values(env_id=env_id, key=key, **values))


def remove(conn: Connection, env_id: int, key: str) -> bool:
    return bool(conn.execute(delete(config_vars).where(config_vars.c.env_id == env_id, config_vars.c.key == key)).rowcount)


def replace_all(conn: Connection, env_id: int, rows: list[dict[str, Any]], actor: str, now: float) -> None:
    """Make the environment's vars exactly ``rows`` ({key, secret, value, sealed}): a rollback restores them."""
    conn.execute(delete(config_vars).where(config_vars.c.env_id == env_id))
    for r in rows:
        conn.execute(insert(config_vars).values(env_id=env_id, key=r["key"], secret=bool(r["secret"]),
                                                value=r.get("value"), sealed=r.get("sealed"),
                                                updated_at=r.get("updated_at", now),
                                                updated_by=r.get("updated_by", actor)))


def all_sealed(conn: Connection) -> list[RowMapping]:
    """Every secret var (env_id, key, sealed): what a key rotation re-seals."""
    return list(conn.execute(select(config_vars.c.env_id, config_vars.c.key, config_vars.c.sealed)
                             .where(config_vars.c.sealed.is_not(None))).mappings().all())


def set_sealed(conn: Connection, env_id: int, key: str, sealed: str) -> None:
    conn.execute(update(config_vars).where(config_vars.c.env_id == env_id, config_vars.c.key == key)
                 .values(sealed=sealed))


# --- process counts ----------------------------------------------------------


def counts_of(conn: Connection, env_id: int) -> dict[str, int]:
    """process type → instance count set with `conveyor scale` (absent: the manifest's default)."""
    return {r.process: int(r.count) for r in
            conn.execute(select(process_counts.c.process, process_counts.c.count).where(process_counts.c.env_id == env_id))}


def set_count(conn: Connection, env_id: int, process: str, count: int, actor: str, now: float) -> None:
    moved = conn.execute(
        update(process_counts).where(process_counts.c.env_id == env_id, process_counts.c.process == process)
        .values(count=count, updated_at=now, updated_by=actor)
    ).rowcount
    if not moved:
        conn.execute(insert(process_counts).values(env_id=env_id, process=process, count=count, updated_at=now,
                                                   updated_by=actor))


# --- rolling restarts ----------------------------------------------------------


def env_ids_scaled(conn: Connection) -> set[int]:
    """Environments with a `conveyor scale` (or autoscaler) count for some process type."""
    return {r.env_id for r in conn.execute(select(process_counts.c.env_id).distinct())}


def env_ids_restarting(conn: Connection) -> set[int]:
    """Environments with a rolling restart in progress."""
    return {r.env_id for r in conn.execute(select(restarts.c.env_id).distinct())}


def restarts_of(conn: Connection, env_id: int) -> dict[str, tuple[float, int]]:
    """process type → (requested_at, count) of the restarts in progress."""
    return {r.process: (float(r.requested_at), int(r.count)) for r in
            conn.execute(select(restarts.c.process, restarts.c.requested_at, restarts.c.count).where(restarts.c.env_id == env_id))}


def request_restart(conn: Connection, env_id: int, process: str, count: int, actor: str, now: float) -> None:
    conn.execute(delete(restarts).where(restarts.c.env_id == env_id, restarts.c.process == process))
    conn.execute(insert(restarts).values(env_id=env_id, process=process, requested_at=now, count=count, requested_by=actor))


def restart_done(conn: Connection, env_id: int, process: str) -> None:
    conn.execute(delete(restarts).where(restarts.c.env_id == env_id, restarts.c.process == process))
