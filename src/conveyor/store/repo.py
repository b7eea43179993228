"""Small, explicit queries over the schema, shared by the API and the orchestrator.

Every function takes a Connection inside a transaction the caller owns, so a
command that touches several tables (a deployment and its release, an event)
commits or rolls back as one.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Connection, RowMapping, Table, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from conveyor.store.tables import apps, counters, environments, events, hosts, images, instances, leases, releases


class NotFound(LookupError):
    """The named thing does not exist. The message says what and how to find valid names."""


class Conflict(ValueError):
    """The request contradicts the current state (e.g. the app already exists)."""


def now() -> float:
    return time.time()


#: A host that has not reported for this long is lost: its instances leave the routing table and
#: count as not running, and new instances go elsewhere. Agents report at least every 5 s, so this
#: is three missed reports.
HOST_LOST_AFTER = 15.0
#: When this process started: after a control-plane restart every host gets HOST_LOST_AFTER
#: seconds to report again before it can be judged lost (its last report predates the restart).
_STARTED_AT = time.time()


def lost_cutoff(at: float | None = None) -> float:
    """Hosts whose last report is older than this are lost (none in this process's first HOST_LOST_AFTER s)."""
    t = now() if at is None else at
    if t - _STARTED_AT < HOST_LOST_AFTER:
        return 0.0  # (epoch seconds: every report is newer)
    return t - HOST_LOST_AFTER


# --- leases (one orchestrator among control-plane replicas) ----------------


def take_lease(conn: Connection, name: str, holder: str, at: float, ttl: float) -> bool:
    """Take or renew lease ``name`` for ``holder`` until ``at + ttl``; False while another holds it.

    One conditional UPDATE: atomic on PostgreSQL (row lock) and SQLite (one writer), so two
    replicas can never both hold it. The row is created by migration 0003.
    """
    taken = conn.execute(
        update(leases)
        .where(leases.c.name == name, or_(leases.c.holder == holder, leases.c.expires_at < at))
        .values(holder=holder, expires_at=at + ttl)
    ).rowcount
    return bool(taken)


def release_lease(conn: Connection, name: str, holder: str) -> None:
    """Give the lease up (a clean shutdown), so another replica takes over at once."""
    conn.execute(update(leases).where(leases.c.name == name, leases.c.holder == holder).values(expires_at=0.0))


# --- counters (monotonic versions for long-polls) ---------------------------


def counter(conn: Connection, name: str) -> tuple[int, str]:
    row = conn.execute(select(counters.c.value, counters.c.note).where(counters.c.name == name)).first()
    return (int(row.value), str(row.note)) if row else (0, "")


def _create_counter(conn: Connection, name: str, note: str) -> bool:
    """Create counter ``name`` at 1; False when it exists already."""
    if conn.execute(select(counters.c.name).where(counters.c.name == name)).first():
        return False
    conn.execute(insert(counters).values(name=name, value=1, note=note))
    return True


def advance_counter(conn: Connection, name: str, expected: int, note: str) -> bool:
    """Set counter ``name`` to ``expected + 1`` (with ``note``) only if it still is ``expected``."""
    if expected == 0:
        return _create_counter(conn, name, note)
    moved = conn.execute(
        update(counters).where(counters.c.name == name, counters.c.value == expected).values(value=expected + 1, note=note)
    ).rowcount
    return bool(moved)


def bump_counter(conn: Connection, name: str, note: str = "") -> int:
    """Add one to counter ``name`` (in SQL, so two writers cannot both write the same value)."""
    moved = conn.execute(
        update(counters).where(counters.c.name == name).values(value=counters.c.value + 1, note=note)
    ).rowcount
    if not moved and _create_counter(conn, name, note):
        return 1
    return counter(conn, name)[0]


# --- apps and environments --------------------------------------------------


def get_app(conn: Connection, name: str) -> RowMapping:
    row = conn.execute(select(apps).where(apps.c.name == name)).mappings().first()
    if row is None:
        known = [r.name for r in conn.execute(select(apps.c.name).order_by(apps.c.name)).all()]
        hint = f"known apps: {', '.join(known)}" if known else "no app exists yet"
        raise NotFound(f"app {name!r} not found ({hint}); create it with `conveyor apps create {name}`")
    return row


def insert_if_absent(conn: Connection, table: Table, **values: Any) -> bool:
    """Insert a row unless it would violate a unique constraint; True when this call inserted it.

    ``INSERT … ON CONFLICT DO NOTHING`` (PostgreSQL and SQLite): two concurrent creators of the
    same row cannot both insert it, and the loser gets False instead of an IntegrityError (which
    would abort a PostgreSQL transaction and reach the client as a 500). On PostgreSQL the loser
    waits for the winner's transaction and sees its row once it commits.
    """
    dialect = conn.dialect.name
    stmt: Any
    if dialect == "postgresql":
        stmt = postgresql.insert(table).values(**values).on_conflict_do_nothing()
    elif dialect == "sqlite":
        stmt = sqlite.insert(table).values(**values).on_conflict_do_nothing()
    else:  # pragma: no cover - the two backends we support
        raise NotImplementedError(f"insert_if_absent: no ON CONFLICT for {dialect}")
    # RETURNING, not rowcount: with an implicit RETURNING the driver's rowcount is not reliable
    first_key = next(iter(table.primary_key.columns))
    return conn.execute(stmt.returning(first_key)).first() is not None


def get_env(conn: Connection, app_id: int, name: str, *, create: bool = False) -> RowMapping:
    row = (
        conn.execute(select(environments).where(environments.c.app_id == app_id, environments.c.name == name))
        .mappings()
        .first()
    )
    if row is None and create:  # concurrent deploys to a new environment: one creates it, all use it
        insert_if_absent(conn, environments, app_id=app_id, name=name, routes={}, sticky=False, created_at=now())
        return get_env(conn, app_id, name)
    if row is None:
        known = [
            r.name
            for r in conn.execute(
                select(environments.c.name).where(environments.c.app_id == app_id).order_by(environments.c.name)
            )
        ]
        hint = f"environments: {', '.join(known)}" if known else "nothing has been deployed yet"
        raise NotFound(f"environment {name!r} not found ({hint})")
    return row


def env_by_id(conn: Connection, env_id: int) -> RowMapping:
    row = conn.execute(select(environments).where(environments.c.id == env_id)).mappings().first()
    if row is None:
        raise NotFound(f"environment {env_id} not found")
    return row


def app_env_names(conn: Connection, env_id: int) -> tuple[str, str]:
    row = conn.execute(
        select(apps.c.name.label("app"), environments.c.name.label("env"))
        .select_from(environments.join(apps, apps.c.id == environments.c.app_id))
        .where(environments.c.id == env_id)
    ).first()
    if row is None:
        raise NotFound(f"environment {env_id} not found")
    return str(row.app), str(row.env)


def routes_of(env: RowMapping) -> dict[int, int]:
    return {int(k): int(v) for k, v in (env["routes"] or {}).items()}


# --- images and releases ----------------------------------------------------


def get_image(conn: Connection, app_id: int, ref: str) -> RowMapping:
    """An image by full digest, by hex prefix (≥ 7 chars), of this app."""
    digest = ref if ref.startswith("sha256:") else f"sha256:{ref}"
    rows = (
        conn.execute(select(images).where(images.c.app_id == app_id, images.c.digest.startswith(digest)))
        .mappings()
        .all()
    )
    if len(ref.removeprefix("sha256:")) < 7:
        raise NotFound(f"image reference {ref!r} is too short: give at least 7 hex digits of the digest")
    if not rows:
        raise NotFound(f"image {ref!r} not found for this app; list images with `conveyor images APP`")
    if len(rows) > 1:
        raise NotFound(f"image reference {ref!r} is ambiguous ({len(rows)} images match); give more digits")
    return rows[0]


def get_release(conn: Connection, env_id: int, number: int) -> RowMapping:
    row = (
        conn.execute(select(releases).where(releases.c.env_id == env_id, releases.c.number == number))
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound(f"release {number} not found in this environment")
    return row


def lock_env(conn: Connection, env_id: int) -> None:
    """Hold the environment's row for the rest of the transaction (a no-op write).

    Numbering a release reads the highest number and inserts the next one; without a lock two
    concurrent deploys read the same number and one hits ``uq_releases_env_number``. The write
    takes PostgreSQL's row lock (the second deploy waits, then reads the first one's release) and
    SQLite's database write lock (taken before the read, so the read is never stale).
    """
    conn.execute(update(environments).where(environments.c.id == env_id).values(sticky=environments.c.sticky))


def next_release_number(conn: Connection, env_id: int) -> int:
    """The next release number of an environment; call :func:`lock_env` first in the same transaction."""
    top = conn.execute(select(func.max(releases.c.number)).where(releases.c.env_id == env_id)).scalar()
    return int(top or 0) + 1


def rollback_target(conn: Connection, env_id: int, current: int | None) -> int | None:
    """The release that was live before the current one (skipping failed and rolled-back ones)."""
    if current is None:
        return None
    row = conn.execute(
        select(releases.c.number)
        .where(
            releases.c.env_id == env_id,
            releases.c.number < current,
            releases.c.live_at.is_not(None),
            releases.c.status.in_(["superseded", "live"]),
        )
        .order_by(releases.c.number.desc())
        .limit(1)
    ).first()
    return int(row.number) if row else None


# --- hosts and instances ----------------------------------------------------


def alive_hosts(conn: Connection, within: float = HOST_LOST_AFTER) -> list[RowMapping]:
    return list(
        conn.execute(select(hosts).where(hosts.c.last_seen >= now() - within).order_by(hosts.c.name)).mappings().all()
    )


def instance_status_map(conn: Connection) -> dict[str, tuple[str, dict[str, Any]]]:
    """instance id → (host address, last reported InstanceStatus dict), from the last report of
    every host that is not lost (see :func:`lost_cutoff`): a lost host's instances are unknown."""
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    for row in conn.execute(select(hosts.c.address, hosts.c.status).where(hosts.c.last_seen >= lost_cutoff())).all():
        for inst in (row.status or {}).get("instances", []):
            out[inst["id"]] = (row.address, inst)
    return out


def env_instances(conn: Connection, env_id: int) -> list[RowMapping]:
    return list(
        conn.execute(select(instances).where(instances.c.env_id == env_id).order_by(instances.c.id)).mappings().all()
    )


# --- events -----------------------------------------------------------------


def record_event(
    conn: Connection,
    kind: str,
    message: str,
    *,
    app: str | None = None,
    env: str | None = None,
    actor: str = "",
    origin: str = "",
    data: dict[str, Any] | None = None,
) -> None:
    conn.execute(
        insert(events).values(
            at=now(), app=app, env=env, kind=kind, actor=actor, origin=origin, message=message, data=data or {}
        )
    )
