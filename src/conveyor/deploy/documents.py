"""The two documents the control plane publishes: the routing table (for routers)
and each host's desired state (for agents), read from SQL and versioned.

Versions are content-driven and persistent: a table gets a new version only
when its content changes, and the counter lives in the database, so a restarted
control plane publishes the same version for the same content and routers and
agents see no change at all.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError, OperationalError

from conveyor.domain.routing import EnvRoutes, LiveInstance, build_table, content_key
from conveyor.domain.wire import (
    DesiredInstance,
    DesiredState,
    HealthCheck,
    InstanceState,
    ResourceLimits,
    RoutingTable,
    baseline_route,
)
from conveyor.store import domains, hosts, instances, repo
from conveyor.store.sealing import Sealer

#: The process type of a release's run-once release command (``[release] command``).
RELEASE_PROCESS = "release"
#: The process type of a one-off command (`conveyor run`): its command is on its instance row.
RUN_PROCESS = "run"


def routing_table(
    engine: Engine, domain: str, now: float, started_at: float, ring: Callable[[], Sealer] | None = None
) -> RoutingTable:
    """The current routing table, with a version that changes only with its content.

    Usually the content is unchanged and this only reads. For new content the counter is read
    *before* the content and bumped only if nobody bumped it since (compare-and-set): otherwise a
    reader that computed the content just before a deployment committed could publish that stale
    content under a number newer than the one given to the fresh content, and a router holding it
    would count as up to date.

    ``now`` and ``started_at`` (the control plane's clock) decide which hosts are lost: their
    instances leave the table. ``ring`` gives the key ring that opens the certificates' keys
    (asked for only when one is stored); without it the keys read ``(redacted)``.
    """
    for _ in range(20):
        try:
            with engine.begin() as conn:
                version, note = repo.counter(conn, "routing")
                table = _compute_table(conn, domain, now, started_at, ring)
                key = content_key(table)
                if note == key and version:
                    return table.model_copy(update={"version": version})
                if repo.advance_counter(conn, "routing", version, key):
                    return table.model_copy(update={"version": version + 1})
        except (OperationalError, IntegrityError):  # another writer got there first: read again
            pass
    raise RuntimeError("the routing table version kept moving under 20 attempts")


def _compute_table(
    conn: Connection, domain: str, now: float, started_at: float, ring: Callable[[], Sealer] | None = None
) -> RoutingTable:
    envs = [
        EnvRoutes(env_id=r["id"], app=r["app"], env=r["name"], weights=repo.routes_of(r), sticky=bool(r["sticky"]))
        for r in repo.routed_envs(conn)
    ]
    status = hosts.instance_status_map(conn, now, started_at)
    live: list[LiveInstance] = []
    for row in instances.not_draining(conn):
        addr, st = status.get(row.id, ("", {}))
        if not st:
            continue
        live.append(
            LiveInstance(
                id=row.id,
                env_id=row.env_id,
                release=baseline_route(row.release) if row.role == "baseline" else row.release,
                address=addr,
                port=st.get("port"),
                state=InstanceState(st.get("state", "pending")),
            )
        )
    extra_hosts, certs, https = domains.routing_parts(conn, ring)
    table = build_table(envs, live, domain, extra_hosts)
    table.certificates = certs
    table.https = https
    table.acme_challenges = domains.challenges(conn)
    return table


def desired_counter(engine: Engine) -> int:
    """The counter the orchestrator and the services bump whenever any host's desired state may
    have changed (``services.hosts.watch_desired`` watches it for other replicas' changes)."""
    with engine.connect() as conn:
        return repo.counter(conn, "desired")[0]


def desired_rows(engine: Engine) -> tuple[dict[str, list[Any]], dict[str, tuple[int, str]]]:
    """Every host's :func:`conveyor.store.instances.desired_on` rows (without configs) and desired-state
    counter, in two queries: what :func:`desired_unchanged` compares, for every waiting agent at once.
    The counters are read first, so rows newer than a counter only make a host look changed."""
    rows: dict[str, list[Any]] = {}
    with engine.connect() as conn:
        counters = {name.removeprefix("desired:"): held for name, held in repo.counters_with_prefix(conn, "desired:").items()}
        for r in instances.desired_on(conn, None, config=False):
            rows.setdefault(r.host, []).append(r)
    return rows, counters


def desired_unchanged(host: str, read: tuple[dict[str, list[Any]], dict[str, tuple[int, str]]], version: int) -> bool:
    """Whether ``host``'s desired state is still ``version`` by ``read`` (:func:`desired_rows`, read
    once for every waiting agent after a poke): no query of its own. A read older than a change
    only makes this False, and the document is read afresh."""
    rows, counters = read
    held, note = counters.get(host, (0, ""))
    return bool(version and held == version and note == desired_key(rows.get(host, [])))


def desired_key(rows: list[Any]) -> str:
    """What a host's desired state is made of, as a short stable key: its instances' ids, releases,
    images, process types, commands and interrupt counts. A release's config is not in it: what a
    release runs never changes (``repo.set_release_config`` only re-seals its secrets)."""
    parts = [(r.id, r.app, r.env, r.release, r.image_digest, r.process or "web", r.command or "", int(r.interrupts or 0))
             for r in rows]
    return hashlib.sha256(json.dumps(parts, separators=(",", ":")).encode()).hexdigest()


def desired_state(engine: Engine, host: str,
                  open_secrets: Callable[[dict[str, Any]], dict[str, str]] | None = None) -> DesiredState:
    """Everything ``host`` should run, with a version of its own that changes only with its content
    (counter ``desired:HOST``, its note the :func:`desired_key`), so a change on other hosts does
    not answer this host's agent (500 hosts: every placement answered 500 agents, which each
    took their unchanged document and reported back). As with the routing table, the counter is
    read before the content and advanced by compare-and-set, so a stale document never gets a
    newer number.

    ``open_secrets`` turns a release's config into its secrets in clear (``services.config``); each
    host's document carries the secrets of its own instances only."""
    name = f"desired:{host}"
    for _ in range(20):
        try:
            with engine.begin() as conn:
                version, note = repo.counter(conn, name)
                rows = instances.desired_on(conn, host)
                key = desired_key(rows)
                if not (version and note == key):
                    if not repo.advance_counter(conn, name, version, key):
                        continue
                    version += 1
            return DesiredState(version=version, host=host, instances=_desired_instances(rows, open_secrets))
        except (OperationalError, IntegrityError):  # another reader advanced it first: read again
            pass
    raise RuntimeError(f"the desired state version of {host} kept moving under 20 attempts")


def _desired_instances(rows: list[Any], open_secrets: Callable[[dict[str, Any]], dict[str, str]] | None) -> list[DesiredInstance]:
    out = []
    for r in rows:
        cfg = r.config or {}
        process = r.process or "web"
        # a worker has no HTTP endpoint: an empty health path tells the agent to judge it by staying up
        health = HealthCheck(**cfg.get("health", {})) if process == "web" else HealthCheck(path="")
        once = process in (RELEASE_PROCESS, RUN_PROCESS)
        if process == RUN_PROCESS:
            command = r.command or ""
        elif process == RELEASE_PROCESS:
            command = cfg.get("release_command") or ""
        else:
            command = (cfg.get("processes") or {}).get(process, cfg.get("command", ""))
        out.append(
            DesiredInstance(
                id=r.id,
                app=r.app,
                env=r.env,
                release=r.release,
                image=r.image_digest,
                command=command,
                once=once,
                interrupts=int(r.interrupts or 0) if process == RUN_PROCESS else 0,
                environment=dict(cfg.get("environment", {})),
                secrets=open_secrets(cfg) if open_secrets is not None and cfg.get("secrets") else {},
                health=health,
                limits=_limits(cfg, process),
            )
        )
    return out


def _limits(cfg: dict[str, Any], process: str) -> ResourceLimits | None:
    """The release's limits for one process type: its own ([limits.<type>]), else the web process's
    (releases made before process types had their own), else None (the agent's defaults)."""
    chosen = (cfg.get("process_limits") or {}).get(process) or cfg.get("limits")
    return ResourceLimits(**chosen) if chosen else None
