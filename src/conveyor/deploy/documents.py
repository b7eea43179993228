"""The two documents the control plane publishes: the routing table (for routers)
and each host's desired state (for agents), read from SQL and versioned.

Versions are content-driven and persistent: a table gets a new version only
when its content changes, and the counter lives in the database, so a restarted
control plane publishes the same version for the same content and routers and
agents see no change at all.
"""

from __future__ import annotations

from sqlalchemy import Connection, Engine, select
from sqlalchemy.exc import IntegrityError, OperationalError

from conveyor.domain.routing import EnvRoutes, LiveInstance, build_table, content_key
from conveyor.domain.wire import (
    DesiredInstance,
    DesiredState,
    HealthCheck,
    InstanceState,
    RoutingTable,
    baseline_route,
)
from conveyor.store import repo
from conveyor.store.domains import challenges as domain_challenges
from conveyor.store.domains import routing_parts as domain_parts
from conveyor.store.secretbox import SecretBox
from conveyor.store.tables import apps, environments, hosts, instances, releases


def routing_table(engine: Engine, domain: str, box: SecretBox | None) -> RoutingTable:
    """The current routing table, with a version that changes only with its content.

    Usually the content is unchanged and this only reads. For new content the counter is read
    *before* the content and bumped only if nobody bumped it since (compare-and-set): otherwise a
    reader that computed the content just before a deployment committed could publish that stale
    content under a number newer than the one given to the fresh content, and a router holding it
    would count as up to date.
    """
    for _ in range(20):
        try:
            with engine.begin() as conn:
                version, note = repo.counter(conn, "routing")
                table = _compute_table(conn, domain, box)
                key = content_key(table)
                if note == key and version:
                    return table.model_copy(update={"version": version})
                if repo.advance_counter(conn, "routing", version, key):
                    return table.model_copy(update={"version": version + 1})
        except (OperationalError, IntegrityError):  # another writer got there first: read again
            pass
    raise RuntimeError("the routing table version kept moving under 20 attempts")


def _compute_table(conn: Connection, domain: str, box: SecretBox | None = None) -> RoutingTable:
    envs = [
        EnvRoutes(env_id=r.id, app=r.app, env=r.name, weights=repo.routes_of(r._mapping), sticky=bool(r.sticky))
        for r in conn.execute(
            select(environments.c.id, environments.c.name, environments.c.routes, environments.c.sticky, apps.c.name.label("app"))
            .select_from(environments.join(apps, apps.c.id == environments.c.app_id))
        ).all()
        if r.routes
    ]
    status = repo.instance_status_map(conn)
    live: list[LiveInstance] = []
    for row in conn.execute(
        select(instances.c.id, instances.c.env_id, instances.c.release, instances.c.role).where(
            instances.c.draining_since.is_(None)
        )
    ).all():
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
    extra_hosts, certs, https = domain_parts(conn, box)
    table = build_table(envs, live, domain, extra_hosts)
    table.certificates = certs
    table.https = https
    table.acme_challenges = domain_challenges(conn)
    return table


def desired_state(engine: Engine, host: str) -> DesiredState:
    """Everything ``host`` should run, versioned by the global ``desired`` counter."""
    with engine.connect() as conn:
        version, _ = repo.counter(conn, "desired")
        rows = conn.execute(
            select(
                instances.c.id,
                instances.c.release,
                environments.c.name.label("env"),
                apps.c.name.label("app"),
                releases.c.image_digest,
                releases.c.config,
            )
            .select_from(
                instances.join(environments, environments.c.id == instances.c.env_id)
                .join(apps, apps.c.id == environments.c.app_id)
                .join(
                    releases,
                    (releases.c.env_id == instances.c.env_id) & (releases.c.number == instances.c.release),
                )
            )
            .where(instances.c.host == host)
            .order_by(instances.c.id)
        ).all()
    out = []
    for r in rows:
        cfg = r.config or {}
        out.append(
            DesiredInstance(
                id=r.id,
                app=r.app,
                env=r.env,
                release=r.release,
                image=r.image_digest,
                command=cfg.get("command", ""),
                environment=dict(cfg.get("environment", {})),
                health=HealthCheck(**cfg.get("health", {})),
            )
        )
    return DesiredState(version=version, host=host, instances=out)


def known_hosts(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return [r.name for r in conn.execute(select(hosts.c.name)).all()]
