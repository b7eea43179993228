"""Hosts, as their agents report them: the last report of each, and which are alive.

One place for the notions of a live host (``domain.healing``: alive = reported within
``HOST_LOST_AFTER``; lost = silent longer, with a grace period after the control plane
starts). Every function takes ``now`` (and ``started_at``) from its caller, so the
orchestrator's injectable clock decides, and nothing reads the time at import.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, RowMapping, delete, func, insert, select, update

from conveyor.domain.healing import alive_cutoff, lost_cutoff
from conveyor.domain.placement import Host
from conveyor.store import instances as instance_rows
from conveyor.store.tables import hosts


def alive(conn: Connection, now: float) -> list[RowMapping]:
    """Hosts that reported within ``HOST_LOST_AFTER`` of ``now``, by name: where instances may go."""
    return list(
        conn.execute(select(hosts).where(hosts.c.last_seen >= alive_cutoff(now)).order_by(hosts.c.name)).mappings().all()
    )


def alive_names(conn: Connection, now: float, among: Iterable[str] | None = None) -> list[str]:
    """The names of :func:`alive`'s hosts (``among`` these only, if given), without their reports
    (reading those costs a JSON document per host)."""
    q = select(hosts.c.name).where(hosts.c.last_seen >= alive_cutoff(now)).order_by(hosts.c.name)
    if among is not None:
        q = q.where(hosts.c.name.in_(sorted(set(among))))
    return list(conn.execute(q).scalars())


def alive_count(conn: Connection, now: float) -> int:
    return int(conn.execute(select(func.count()).select_from(hosts).where(hosts.c.last_seen >= alive_cutoff(now)))
               .scalar_one())


def instance_status_map(conn: Connection, now: float, started_at: float,
                        on: Iterable[str] | None = None) -> dict[str, tuple[str, dict[str, Any]]]:
    """instance id → (host address, last reported InstanceStatus dict), from the last report of
    every host that is not lost (see :func:`conveyor.domain.healing.lost_cutoff`): a lost host's
    instances are unknown.

    ``on``: only these hosts' reports (those an environment's or an app's instances are placed
    on). Every report is a JSON document of its host's instances: reading them all for one
    environment cost O(hosts × instances) per environment (500 hosts: 2 MB of JSON each time)."""
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    cutoff = lost_cutoff(now, started_at)
    q = select(hosts.c.address, hosts.c.status).where(hosts.c.last_seen >= cutoff)
    if on is not None:
        names = sorted(set(on))
        if not names:
            return out
        q = q.where(hosts.c.name.in_(names))
    for row in conn.execute(q).all():
        for inst in (row.status or {}).get("instances", []):
            out[inst["id"]] = (row.address, inst)
    return out


def save_report(conn: Connection, name: str, address: str, desired_version: int, status: dict[str, Any],
                now: float) -> dict[str, Any] | None:
    """Store a host's report (registering the host on its first); returns the previous status, or
    None for a new host."""
    old = conn.execute(select(hosts.c.status).where(hosts.c.name == name)).first()
    values = dict(address=address, last_seen=now, desired_version=desired_version, status=status)
    if old is None:
        conn.execute(insert(hosts).values(name=name, **values))
        return None
    conn.execute(update(hosts).where(hosts.c.name == name).values(**values))
    return dict(old.status or {})


def every(conn: Connection) -> list[RowMapping]:
    """Every host that ever reported, by name."""
    return list(conn.execute(select(hosts).order_by(hosts.c.name)).mappings().all())


def set_drained(conn: Connection, name: str, actor: str | None, now: float) -> bool:
    """Drain (``actor`` given) or undrain (None) a host; False when no host of that name ever reported."""
    values = dict(drained_at=now, drained_by=actor) if actor is not None else dict(drained_at=None, drained_by=None)
    return bool(conn.execute(update(hosts).where(hosts.c.name == name).values(**values)).rowcount)


def drained_names(conn: Connection) -> set[str]:
    return {r.name for r in conn.execute(select(hosts.c.name).where(hosts.c.drained_at.is_not(None)))}


def exists(conn: Connection, name: str) -> bool:
    return conn.execute(select(hosts.c.name).where(hosts.c.name == name)).first() is not None


def remove(conn: Connection, name: str) -> bool:
    """Forget a host (``conveyor hosts remove``); its instances' rows are the caller's to move."""
    return bool(conn.execute(delete(hosts).where(hosts.c.name == name)).rowcount)


def fleet(conn: Connection, now: float) -> list[Host]:
    """The online hosts as placement sees them: labels, capacity and memory from their reports,
    drained or not, and what they run (``domain/placement.py``)."""
    load = instance_rows.load_by_host(conn)
    # only the report's three fields placement needs, extracted in SQL: decoding whole reports (each
    # lists its host's instances) cost O(hosts × instances) per placement
    rows = conn.execute(
        select(hosts.c.name, hosts.c.drained_at, hosts.c.status["labels"].label("labels"),
               hosts.c.status["capacity"].label("capacity"), hosts.c.status["memory"].label("memory"))
        .where(hosts.c.last_seen >= alive_cutoff(now)).order_by(hosts.c.name)
    ).all()
    memory_used = instance_rows.memory_by_host(conn) if any(r.memory for r in rows) else {}
    return [Host(r.name, labels=dict(r.labels or {}), capacity=r.capacity, memory=r.memory,
                 drained=r.drained_at is not None, load=load.get(r.name, 0), memory_used=memory_used.get(r.name, 0))
            for r in rows]
