"""Hosts, as their agents report them: the last report of each, and which are alive.

One place for the notions of a live host (``domain.healing``: alive = reported within
``HOST_LOST_AFTER``; lost = silent longer, with a grace period after the control plane
starts). Every function takes ``now`` (and ``started_at``) from its caller, so the
orchestrator's injectable clock decides, and nothing reads the time at import.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, RowMapping, delete, insert, select, update

from conveyor.domain.healing import alive_cutoff, lost_cutoff
from conveyor.domain.placement import Host
from conveyor.store import instances as instance_rows
from conveyor.store.tables import hosts


def alive(conn: Connection, now: float) -> list[RowMapping]:
    """Hosts that reported within ``HOST_LOST_AFTER`` of ``now``, by name: where instances may go."""
    return list(
        conn.execute(select(hosts).where(hosts.c.last_seen >= alive_cutoff(now)).order_by(hosts.c.name)).mappings().all()
    )


def alive_names(conn: Connection, now: float) -> list[str]:
    """The names of :func:`alive` hosts (without their reports: those are large)."""
    return [r.name for r in conn.execute(select(hosts.c.name).where(hosts.c.last_seen >= alive_cutoff(now))
                                         .order_by(hosts.c.name)).all()]


def instance_status_map(conn: Connection, now: float, started_at: float) -> dict[str, tuple[str, dict[str, Any]]]:
    """instance id → (host address, last reported InstanceStatus dict), from the last report of
    every host that is not lost (see :func:`conveyor.domain.healing.lost_cutoff`): a lost host's
    instances are unknown."""
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    cutoff = lost_cutoff(now, started_at)
    for row in conn.execute(select(hosts.c.address, hosts.c.status).where(hosts.c.last_seen >= cutoff)).all():
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
    rows = alive(conn, now)
    memory_used = instance_rows.memory_by_host(conn) if any((r["status"] or {}).get("memory") for r in rows) else {}
    out = []
    for r in rows:
        st = r["status"] or {}
        out.append(Host(r["name"], labels=dict(st.get("labels") or {}), capacity=st.get("capacity"),
                        memory=st.get("memory"), drained=r["drained_at"] is not None,
                        load=load.get(r["name"], 0), memory_used=memory_used.get(r["name"], 0)))
    return out
