"""Small, explicit queries over the schema, shared by the API and the orchestrator.

Every function takes a Connection inside a transaction the caller owns, so a
command that touches several tables (a deployment and its release, an event)
commits or rolls back as one.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, Insert, RowMapping, Table, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from conveyor.store.tables import apps, counters, environments, events, images, leases, releases


class NotFound(LookupError):
    """The named thing does not exist. The message says what and how to find valid names."""


class Conflict(ValueError):
    """The request contradicts the current state (e.g. the app already exists)."""


def now() -> float:
    return time.time()


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


def counters_with_prefix(conn: Connection, prefix: str) -> dict[str, tuple[int, str]]:
    """name → (value, note) of the counters whose name starts with ``prefix``."""
    rows = conn.execute(select(counters.c.name, counters.c.value, counters.c.note).where(counters.c.name.startswith(prefix)))
    return {r.name: (int(r.value), str(r.note)) for r in rows}


def _insert_counter(conn: Connection, name: str, note: str) -> Insert:
    """``INSERT`` of counter ``name`` at 1 in this database's dialect (for ``ON CONFLICT``)."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(counters).values(name=name, value=1, note=note)  # type: ignore[no-any-return]


def _create_counter(conn: Connection, name: str, note: str) -> bool:
    """Create counter ``name`` at 1; False when it exists already (one statement: no check-then-insert race)."""
    stmt = _insert_counter(conn, name, note).on_conflict_do_nothing(index_elements=[counters.c.name])  # type: ignore[attr-defined]
    return bool(conn.execute(stmt).rowcount)


def advance_counter(conn: Connection, name: str, expected: int, note: str) -> bool:
    """Set counter ``name`` to ``expected + 1`` (with ``note``) only if it still is ``expected``."""
    if expected == 0:
        return _create_counter(conn, name, note)
    moved = conn.execute(
        update(counters).where(counters.c.name == name, counters.c.value == expected).values(value=expected + 1, note=note)
    ).rowcount
    return bool(moved)


def bump_counter(conn: Connection, name: str, note: str = "") -> int:
    """Add one to counter ``name``, creating it at 1, and return the new value.

    One statement (``INSERT … ON CONFLICT DO UPDATE … RETURNING``), so two writers can neither
    both write the same value nor both try to create the counter.
    """
    stmt = _insert_counter(conn, name, note)
    stmt = stmt.on_conflict_do_update(  # type: ignore[attr-defined]
        index_elements=[counters.c.name], set_={"value": counters.c.value + 1, "note": note}
    ).returning(counters.c.value)
    return int(conn.execute(stmt).scalar_one())


# --- apps and environments --------------------------------------------------


def get_app(conn: Connection, name: str) -> RowMapping:
    row = conn.execute(select(apps).where(apps.c.name == name)).mappings().first()
    if row is None:
        known = [r.name for r in conn.execute(select(apps.c.name).order_by(apps.c.name)).all()]
        hint = f"known apps: {', '.join(known)}" if known else "no app exists yet"
        raise NotFound(f"app {name!r} not found ({hint}); create it with `conveyor apps create {name}`")
    return row


def team_of(conn: Connection, name: str) -> str | None:
    """The team of app ``name`` (None: no team, or no such app): what a team-scoped token is checked against."""
    row = conn.execute(select(apps.c.team).where(apps.c.name == name)).first()
    return row.team if row is not None else None


def app_exists(conn: Connection, name: str) -> bool:
    return conn.execute(select(apps.c.id).where(apps.c.name == name)).first() is not None


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


def routed_envs(conn: Connection) -> list[RowMapping]:
    """Environments with routes (id, name, routes, sticky, app): the routing table's entries."""
    return [
        r
        for r in conn.execute(
            select(environments.c.id, environments.c.name, environments.c.routes, environments.c.sticky,
                   apps.c.name.label("app"))
            .select_from(environments.join(apps, apps.c.id == environments.c.app_id))
        ).mappings().all()
        if r["routes"]
    ]


def env_states(conn: Connection) -> list[RowMapping]:
    """(id, current_release, routes) of every environment, by id."""
    return list(conn.execute(select(environments.c.id, environments.c.current_release, environments.c.routes)
                             .order_by(environments.c.id)).mappings().all())


def envs_of_app(conn: Connection, app_id: int) -> list[RowMapping]:
    """An app's environments, by name."""
    return list(
        conn.execute(select(environments).where(environments.c.app_id == app_id).order_by(environments.c.name))
        .mappings()
        .all()
    )


def env_ids_by_name(conn: Connection) -> dict[tuple[str, str], int]:
    """(app, env) → environment id, for every environment."""
    return {
        (r.app, r.env): r.id
        for r in conn.execute(
            select(apps.c.name.label("app"), environments.c.name.label("env"), environments.c.id).select_from(
                environments.join(apps, apps.c.id == environments.c.app_id)
            )
        )
    }


def set_routes(conn: Connection, env_id: int, weights: dict[int, int]) -> None:
    conn.execute(
        update(environments).where(environments.c.id == env_id).values(routes={str(k): v for k, v in weights.items()})
    )


def list_apps(conn: Connection) -> list[RowMapping]:
    return list(conn.execute(select(apps).order_by(apps.c.name)).mappings().all())


def count_apps(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(apps)).scalar_one())


def team_has_apps(conn: Connection, team: str) -> bool:
    return conn.execute(select(apps.c.id).where(apps.c.team == team)).first() is not None


def app_names(conn: Connection) -> list[str]:
    return [r.name for r in conn.execute(select(apps.c.name).order_by(apps.c.name))]


def app_name_of(conn: Connection, app_id: int) -> str:
    return str(conn.execute(select(apps.c.name).where(apps.c.id == app_id)).scalar_one())


def create_app(conn: Connection, name: str, team: str | None, actor: str, now: float) -> bool:
    """Insert the app; False when one of that name exists (or a concurrent creator won)."""
    return insert_if_absent(conn, apps, name=name, team=team, created_at=now, created_by=actor)


def set_team(conn: Connection, app_id: int, team: str | None) -> None:
    conn.execute(update(apps).where(apps.c.id == app_id).values(team=team))


def teams(conn: Connection) -> list[str]:
    """Every team that owns an app, sorted."""
    return sorted({r.team for r in conn.execute(select(apps.c.team)) if r.team})


def env_names_by_app(conn: Connection) -> dict[int, list[str]]:
    """app id → its environments' names, sorted."""
    envs: dict[int, list[str]] = {}
    for e in conn.execute(select(environments.c.app_id, environments.c.name).order_by(environments.c.name)):
        envs.setdefault(e.app_id, []).append(e.name)
    return envs


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


def image_commit(conn: Connection, app_id: int, digest: str) -> dict[str, Any] | None:
    """The commit an app's image was built from (None if unknown)."""
    img = conn.execute(select(images.c.commit).where(images.c.digest == digest, images.c.app_id == app_id)).first()
    return img.commit if img else None


def add_release(conn: Connection, env_id: int, number: int, image: str, config: dict[str, Any], actor: str,
                now: float) -> None:
    conn.execute(
        insert(releases).values(
            env_id=env_id, number=number, image_digest=image, config=config, status="pending",
            created_by=actor, created_at=now,
        )
    )


def set_release_status(conn: Connection, env_id: int, number: int, status: str, *, retired_at: float | None = None,
                       only_if: str | None = None) -> None:
    """Set a release's status (and ``retired_at`` when given); ``only_if``: only from that status."""
    cond = (releases.c.env_id == env_id) & (releases.c.number == number)
    if only_if is not None:
        cond &= releases.c.status == only_if
    values: dict[str, Any] = {"status": status}
    if retired_at is not None:
        values["retired_at"] = retired_at
    conn.execute(update(releases).where(cond).values(**values))


def make_current(conn: Connection, env_id: int, number: int, now: float) -> None:
    """Release ``number`` is now the environment's live release."""
    conn.execute(update(environments).where(environments.c.id == env_id).values(current_release=number))
    conn.execute(
        update(releases)
        .where(releases.c.env_id == env_id, releases.c.number == number)
        .values(status="live", live_at=now, retired_at=None)
    )


def release_configs(conn: Connection, env_id: int) -> dict[int, dict[str, Any]]:
    """release number → its config, for an environment."""
    return {
        r.number: dict(r.config or {})
        for r in conn.execute(select(releases.c.number, releases.c.config).where(releases.c.env_id == env_id))
    }


def all_release_configs(conn: Connection) -> list[tuple[int, int, dict[str, Any]]]:
    """(env id, number, config) of every release: what a secrets key rotation re-seals."""
    return [(r.env_id, r.number, dict(r.config or {}))
            for r in conn.execute(select(releases.c.env_id, releases.c.number, releases.c.config))]


def set_release_config(conn: Connection, env_id: int, number: int, config: dict[str, Any]) -> None:
    """Replace a release's stored config (only to re-seal its secrets: what runs never changes)."""
    conn.execute(update(releases).where(releases.c.env_id == env_id, releases.c.number == number).values(config=config))


def releases_in(conn: Connection, env_id: int, numbers: Iterable[int]) -> list[RowMapping]:
    return list(
        conn.execute(select(releases).where(releases.c.env_id == env_id, releases.c.number.in_(list(numbers))))
        .mappings()
        .all()
    )


def release_history(conn: Connection, app_id: int, env: str | None, limit: int) -> list[RowMapping]:
    """An app's releases (of one environment, or all) with their environment's name (``env_name``)
    and image's ``commit``, newest first."""
    q = (
        select(releases, environments.c.name.label("env_name"), images.c.commit)
        .select_from(
            releases.join(environments, environments.c.id == releases.c.env_id).outerjoin(
                images,
                (images.c.digest == releases.c.image_digest) & (images.c.app_id == environments.c.app_id),
            )
        )
        .where(environments.c.app_id == app_id)
        .order_by(releases.c.created_at.desc(), releases.c.id.desc())
        .limit(limit)
    )
    if env:
        q = q.where(environments.c.name == env)
    return list(conn.execute(q).mappings().all())


def releases_of_image(conn: Connection, digest: str, limit: int = 50) -> list[dict[str, Any]]:
    """Releases made from an image (any app): where it ran and when, newest first."""
    rows = conn.execute(
        select(releases.c.number, releases.c.status, releases.c.live_at, releases.c.created_by,
               environments.c.name.label("env"), apps.c.name.label("app"))
        .select_from(releases.join(environments, environments.c.id == releases.c.env_id)
                     .join(apps, apps.c.id == environments.c.app_id))
        .where(releases.c.image_digest == digest).order_by(releases.c.created_at.desc()).limit(limit)
    ).mappings()
    return [dict(r) for r in rows]


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


def list_events(
    conn: Connection,
    *,
    app: str | None = None,
    env: str | None = None,
    kind: str | None = None,
    since: float | None = None,
    kinds: Iterable[str] | None = None,
    limit: int | None = None,
    order: str = "newest",
) -> list[RowMapping]:
    """Events matching every filter given: ``newest`` first, ``oldest`` first (both by id), or by ``time``."""
    q = select(events).order_by({"newest": events.c.id.desc(), "oldest": events.c.id, "time": events.c.at}[order])
    if limit is not None:
        q = q.limit(limit)
    if app:
        q = q.where(events.c.app == app)
    if env:
        q = q.where(events.c.env == env)
    if kind:
        q = q.where(events.c.kind == kind)
    if kinds is not None:
        q = q.where(events.c.kind.in_(list(kinds)))
    if since is not None:
        q = q.where(events.c.at >= since)
    return list(conn.execute(q).mappings().all())


def event_kinds(conn: Connection) -> list[str]:
    return sorted(r[0] for r in conn.execute(select(events.c.kind).distinct()))


def health_paths_of_app(conn: Connection, app_id: int) -> list[str]:
    """The health-check paths of every release of an app's environments."""
    cfgs = conn.execute(
        select(releases.c.config)
        .select_from(releases.join(environments, environments.c.id == releases.c.env_id))
        .where(environments.c.app_id == app_id)
    ).scalars()
    return sorted({((c or {}).get("health") or {}).get("path") or "" for c in cfgs} - {""})
