"""Instances: the rows the orchestrator writes and the agents' desired state is read from.

An instance row is desired state (run this release on that host). Removing one
is two steps: ``drain`` (it leaves the routing table at once; its process keeps
finishing in-flight requests) and, after the release's drain period, ``delete``
(the agent stops it). Every function takes a Connection inside a transaction the
caller owns.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import ColumnElement, Connection, Row, RowMapping, delete, insert, select, update

from conveyor.store.tables import apps, environments, instances, releases


def of_env(conn: Connection, env_id: int) -> list[RowMapping]:
    """Every instance of an environment (draining ones included), by id."""
    return list(
        conn.execute(select(instances).where(instances.c.env_id == env_id).order_by(instances.c.id)).mappings().all()
    )


def ids_of_app(conn: Connection, app_id: int) -> set[str]:
    """The ids of every instance of an app's environments."""
    q = (
        select(instances.c.id)
        .select_from(instances.join(environments, environments.c.id == instances.c.env_id))
        .where(environments.c.app_id == app_id)
    )
    return {r.id for r in conn.execute(q)}


def placements(conn: Connection) -> list[Row]:  # type: ignore[type-arg]
    """(env_id, release, host, draining_since) of every instance: the orchestrator's facts per tick."""
    return list(
        conn.execute(select(instances.c.env_id, instances.c.release, instances.c.host, instances.c.draining_since)).all()
    )


def serving(conn: Connection, env_id: int) -> list[Row]:  # type: ignore[type-arg]
    """(id, release, role, host) of an environment's instances that are not draining."""
    return list(
        conn.execute(
            select(instances.c.id, instances.c.release, instances.c.role, instances.c.host).where(
                instances.c.env_id == env_id, instances.c.draining_since.is_(None)
            )
        ).all()
    )


def active_ids(conn: Connection, env_id: int, release: int, role: str, process: str = "web") -> list[str]:
    """Ids of the release's instances of ``role`` (and process type) that are not draining, newest first."""
    return [
        r.id
        for r in conn.execute(
            select(instances.c.id).where(
                instances.c.env_id == env_id, instances.c.release == release, instances.c.role == role,
                instances.c.process == process, instances.c.draining_since.is_(None),
            ).order_by(instances.c.created_at.desc())
        ).all()
    ]


def active_hosts(conn: Connection, env_id: int, release: int, role: str, process: str = "web") -> list[tuple[str, str]]:
    """(id, host) of the release's instances of ``role`` that are not draining, newest first."""
    return [
        (r.id, r.host)
        for r in conn.execute(
            select(instances.c.id, instances.c.host).where(
                instances.c.env_id == env_id, instances.c.release == release, instances.c.role == role,
                instances.c.process == process, instances.c.draining_since.is_(None),
            ).order_by(instances.c.created_at.desc())
        ).all()
    ]


def memory_by_host(conn: Connection) -> dict[str, int]:
    """host → the memory limits (bytes) of the instances placed on it, summed (their release's
    ``process_limits`` for their process type, else its ``limits``; none: not counted)."""
    q = select(instances.c.host, instances.c.process, releases.c.config).select_from(
        instances.join(releases, (releases.c.env_id == instances.c.env_id) & (releases.c.number == instances.c.release))
    )
    out: dict[str, int] = {}
    for r in conn.execute(q):
        cfg = r.config or {}
        lim = (cfg.get("process_limits") or {}).get(r.process) or cfg.get("limits") or {}
        out[r.host] = out.get(r.host, 0) + int(lim.get("memory") or 0)
    return out


def load_by_host(conn: Connection) -> dict[str, int]:
    """Instances per host, every environment counted (draining ones too: they still run)."""
    out: dict[str, int] = {}
    for r in conn.execute(select(instances.c.host)).all():
        out[r.host] = out.get(r.host, 0) + 1
    return out


def hosts_of(conn: Connection, ids: Iterable[str]) -> dict[str, str]:
    """instance id → the host it is placed on, for the ids that exist."""
    wanted = list(ids)
    if not wanted:
        return {}
    return {r.id: r.host for r in conn.execute(select(instances.c.id, instances.c.host).where(instances.c.id.in_(wanted)))}


def add(conn: Connection, iid: str, env_id: int, release: int, host: str, role: str, now: float,
        process: str = "web", command: str | None = None) -> None:
    conn.execute(insert(instances).values(id=iid, env_id=env_id, release=release, host=host, role=role, created_at=now,
                                          process=process, command=command))


def _of_release(env_id: int, release: int, role: str | None) -> ColumnElement[bool]:
    cond = (instances.c.env_id == env_id) & (instances.c.release == release)
    if role is not None:
        cond &= instances.c.role == role
    return cond


def drain_release(conn: Connection, env_id: int, release: int, role: str | None, now: float) -> bool:
    """Start draining a release's instances (of ``role``, or all); True if any started."""
    return _drain(conn, _of_release(env_id, release, role), now)


def drain_ids(conn: Connection, ids: Iterable[str], now: float) -> bool:
    """Start draining these instances; True if any started."""
    return _drain(conn, instances.c.id.in_(list(ids)), now)


def _drain(conn: Connection, cond: ColumnElement[bool], now: float) -> bool:
    n = conn.execute(
        update(instances).where(cond, instances.c.draining_since.is_(None)).values(draining_since=now)
    ).rowcount
    return bool(n)


def delete_release(conn: Connection, env_id: int, release: int, role: str | None) -> int:
    """Delete a release's instances (of ``role``, or all) at once; how many."""
    return int(conn.execute(delete(instances).where(_of_release(env_id, release, role))).rowcount)


def draining(conn: Connection, env_id: int) -> list[Row]:  # type: ignore[type-arg]
    """(id, release, draining_since) of an environment's draining instances."""
    return list(
        conn.execute(
            select(instances.c.id, instances.c.release, instances.c.draining_since).where(
                instances.c.env_id == env_id, instances.c.draining_since.is_not(None)
            )
        ).all()
    )


def delete_ids(conn: Connection, ids: Iterable[str]) -> None:
    conn.execute(delete(instances).where(instances.c.id.in_(list(ids))))


def running_releases(conn: Connection, env_id: int) -> set[int]:
    """The releases of an environment that have instance rows."""
    return {
        r.release for r in conn.execute(select(instances.c.release).distinct().where(instances.c.env_id == env_id)).all()
    }


def delete_releases(conn: Connection, env_id: int, numbers: Iterable[int]) -> None:
    conn.execute(delete(instances).where(instances.c.env_id == env_id, instances.c.release.in_(list(numbers))))


def not_draining(conn: Connection) -> list[Row]:  # type: ignore[type-arg]
    """(id, env_id, release, role) of every web instance that is not draining: the routing table's
    candidates (other process types are never routed)."""
    return list(
        conn.execute(
            select(instances.c.id, instances.c.env_id, instances.c.release, instances.c.role).where(
                instances.c.draining_since.is_(None), instances.c.process == "web"
            )
        ).all()
    )


def desired_on(conn: Connection, host: str | None, config: bool = True) -> list[Row]:  # type: ignore[type-arg]
    """What ``host`` should run (None: every host, with the column ``host``): (id, release, env,
    app, image_digest, config) per instance, by id; ``config=False`` leaves the release's config out."""
    columns = [instances.c.host, instances.c.id, instances.c.release, instances.c.process, instances.c.command,
               instances.c.interrupts, environments.c.name.label("env"), apps.c.name.label("app"),
               releases.c.image_digest, *([releases.c.config] if config else [])]
    q = (
        select(*columns)
        .select_from(
            instances.join(environments, environments.c.id == instances.c.env_id)
            .join(apps, apps.c.id == environments.c.app_id)
            .join(releases, (releases.c.env_id == instances.c.env_id) & (releases.c.number == instances.c.release))
        )
        .order_by(instances.c.id)
    )
    return list(conn.execute(q if host is None else q.where(instances.c.host == host)).all())


def owners(conn: Connection) -> dict[str, tuple[str, str, int, str]]:
    """instance id → (app, env, release, role), for every instance row."""
    return {
        r.id: (r.app, r.env, r.release, r.role)
        for r in conn.execute(
            select(
                instances.c.id, instances.c.release, instances.c.role,
                apps.c.name.label("app"), environments.c.name.label("env"),
            ).select_from(
                instances.join(environments, environments.c.id == instances.c.env_id)
                .join(apps, apps.c.id == environments.c.app_id)
            )
        )
    }


def get(conn: Connection, iid: str) -> RowMapping | None:
    return conn.execute(select(instances).where(instances.c.id == iid)).mappings().first()


def interrupt(conn: Connection, iid: str) -> int:
    """Count one more interrupt of instance ``iid`` (a one-off run); the new count, 0 if it is gone."""
    conn.execute(update(instances).where(instances.c.id == iid).values(interrupts=instances.c.interrupts + 1))
    row = conn.execute(select(instances.c.interrupts).where(instances.c.id == iid)).first()
    return int(row.interrupts) if row is not None else 0


def runs_before(conn: Connection, cutoff: float) -> list[str]:
    """Ids of one-off runs (`conveyor run`) started before ``cutoff``: past the longest timeout."""
    return [r.id for r in conn.execute(select(instances.c.id).where(instances.c.process == "run",
                                                                    instances.c.created_at < cutoff))]
