"""Hosts and routers: the agents' reports, the documents the data plane long-polls, and the
fleet as the hosts page shows it.

The time-dependent rules (is a host lost? is a router live?) take ``now`` from the
control plane's clock (``cp.clock``), and the grace period after a restart from
``cp.started_at``, the same start the orchestrator is given.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from conveyor.deploy.documents import desired_counter, desired_rows, desired_state, routing_table
from conveyor.deploy.documents import desired_unchanged as desired_unchanged_by
from conveyor.domain.healing import lost_after
from conveyor.domain.wire import AgentStatus, DesiredState, RoutingTable
from conveyor.services import config, domains
from conveyor.services.schemas import RoutersView, RouterView
from conveyor.services.state import ControlPlane, router_sync
from conveyor.store import hosts, instances, repo
from conveyor.store.repo import NotFound

log = logging.getLogger("conveyor.server")

def record_report(cp: ControlPlane, host: str, report: AgentStatus) -> None:
    """Store an agent's report (registering its host on the first); poke whoever routes or
    deploys when what runs where changed."""
    if report.host != host:
        raise ValueError(f"report is for host {report.host!r} but was sent to /agents/{host}/status")
    doc = report.model_dump(mode="json")
    with cp.engine.begin() as conn:
        old = hosts.save_report(conn, host, report.address, report.desired_version, doc, cp.clock())
    if old is None or _routing_view(old) != _routing_view(doc):
        cp.notifier.poke("routing", "orchestrator", "instances")


def _routing_view(status: dict[str, Any] | None) -> list[tuple[str, str, int | None, int]]:
    return sorted(
        (i["id"], i["state"], i.get("port"), i.get("restarts", 0)) for i in (status or {}).get("instances", [])
    )


def routing(cp: ControlPlane, *, with_keys: bool = True, shared: bool = False) -> RoutingTable:
    """The routing table now (versioned by content; see ``deploy.documents``).

    It carries the certificates' private keys, opened with the control plane's key ring: routers
    (the admin token) need them to terminate TLS. ``with_keys=False`` (every other reader, e.g. a
    viewer's token) gets them redacted, and no key is opened; the version is the same either way.

    ``shared``: the table the routers' long-polls share, computed at most once per poke of
    ``routing`` or per second (``deploy.notify.Shared``); it may lack a change committed but not
    poked yet (the poke follows the commit), so only readers who wait for the poke take it."""
    ring = cp.sealer if with_keys else None

    def read() -> RoutingTable:
        return routing_table(cp.engine, cp.settings.domain, cp.clock(), cp.started_at, ring)

    if shared:
        table: RoutingTable = cp.shared(f"routing-table:{with_keys}", "routing").get(read)
        return table
    return read()


def desired(cp: ControlPlane, host: str) -> DesiredState:
    return desired_state(cp.engine, host, lambda cfg: config.secret_environment(cp, cfg))


def desired_unchanged(cp: ControlPlane, host: str, version: int) -> bool:
    """Whether ``host``'s desired state is still ``version``, by the rows of every host read once per
    poke of ``desired`` for all the waiting agents (``deploy.notify.Shared``): a placement on a few
    hosts costs one query, not one document per waiting agent."""
    read = cp.shared("desired-rows", "desired").get(lambda: desired_rows(cp.engine))
    return desired_unchanged_by(host, read, version)


async def watch_desired(cp: ControlPlane, every: float = 1.0) -> None:
    """Poke ``desired`` when the desired-state counter moved: changes made by another replica
    sharing the database are seen within a second (this process's own changes were poked at once;
    the extra check costs the waiting agents one shared read). One read a second for every waiting
    agent together; before, each waiting agent re-read its whole document every second (500
    hosts: 500 reads a second while nothing changed)."""
    seen = None
    while True:
        try:
            value = await asyncio.to_thread(desired_counter, cp.engine)
        except Exception:  # noqa: BLE001 - a database hiccup: try again next time
            log.warning("reading the desired-state counter failed; retrying", exc_info=True)
        else:
            if seen is not None and value != seen:
                cp.notifier.poke("desired")
            seen = value
        await asyncio.sleep(every)


async def start(cp: ControlPlane) -> None:
    """Start-up hook: :func:`watch_desired`."""
    cp.tasks.append(asyncio.create_task(watch_desired(cp), name="desired-watch"))


def routers(cp: ControlPlane) -> RoutersView:
    """The live routers, the table version each holds, and whether all hold the current one."""
    table = routing(cp, with_keys=False)
    sync = router_sync(cp.routers, table.version, cp.clock())
    return RoutersView(
        table_version=sync.table_version,
        synced=sync.synced,
        routers=[RouterView(id=rid, table_version=v, seconds_since_poll=age, synced=v >= sync.table_version)
                 for rid, v, age in sync.routers],
    )


def scrape_targets(cp: ControlPlane, window: float = 90.0) -> dict[str, str]:
    """router id → admin URL of the routers that long-polled within ``window`` seconds."""
    now = cp.clock()
    return {r.id: r.admin_url for r in cp.routers.values() if r.admin_url and now - r.last_seen < window}


def hosts_view(cp: ControlPlane) -> dict[str, Any]:
    """Every host that ever reported, whether it is online, and what runs on it; and the routers."""
    now = cp.clock()
    with cp.engine.connect() as conn:
        rows = hosts.every(conn)
        owner = instances.owners(conn)
    out = []
    for h in rows:
        insts = []
        for i in (h["status"] or {}).get("instances", []):
            app, env, release, role = owner.get(i["id"], (None, None, None, None))
            insts.append({**i, "app": app, "env": env, "release": release, "role": role})
        st = h["status"] or {}
        out.append({
            "name": h["name"], "address": h["address"], "last_seen": h["last_seen"],
            "online": now - h["last_seen"] < lost_after(),
            "labels": dict(st.get("labels") or {}), "capacity": st.get("capacity"), "memory": st.get("memory"),
            "drained": h["drained_at"] is not None, "drained_at": h["drained_at"], "drained_by": h["drained_by"],
            "agent_version": (h["status"] or {}).get("agent_version", ""),
            "sandbox": (h["status"] or {}).get("sandbox", ""),
            "desired_version": h["desired_version"], "instances": insts,
        })
    routers = [
        {"id": r.id, "admin_url": r.admin_url, "table_version": r.version, "last_seen": r.last_seen,
         "online": now - r.last_seen < lost_after() + 60}
        for r in cp.routers.values()
    ]
    return {"hosts": out, "routers": routers, "time": now}


def drain(cp: ControlPlane, host: str, actor: str) -> dict[str, Any]:
    """Keep new instances off ``host`` and move its instances elsewhere (the orchestrator starts each
    replacement, then drains the old one once it is ready: no request fails). Idempotent."""
    with cp.engine.begin() as conn:
        if not hosts.set_drained(conn, host, actor or "someone", cp.clock()):
            raise NotFound(_unknown(conn, host))
        repo.record_event(conn, "host_drained", f"host {host} drained by {actor or 'someone'}: its instances move "
                          "to other hosts; nothing new is placed on it", actor=actor, data={"host": host})
    cp.notifier.poke("orchestrator")
    return _one(cp, host)


def undrain(cp: ControlPlane, host: str, actor: str) -> dict[str, Any]:
    """Let new instances onto ``host`` again (the ones moved away stay where they are)."""
    with cp.engine.begin() as conn:
        if not hosts.set_drained(conn, host, None, cp.clock()):
            raise NotFound(_unknown(conn, host))
        repo.record_event(conn, "host_undrained", f"host {host} undrained by {actor or 'someone'}: it takes new "
                          "instances again", actor=actor, data={"host": host})
    cp.notifier.poke("orchestrator")
    return _one(cp, host)


def _unknown(conn: Any, host: str) -> str:
    known = ", ".join(h["name"] for h in hosts.every(conn)) or "none yet"
    return f"host {host!r} has never reported (hosts: {known})"


def _one(cp: ControlPlane, host: str) -> dict[str, Any]:
    return next(h for h in hosts_view(cp)["hosts"] if h["name"] == host)
