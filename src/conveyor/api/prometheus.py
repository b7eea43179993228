"""The control plane's own Prometheus metrics at ``/metrics``.

It needs a credential like every other endpoint: the numbers say which apps exist
and how they deploy. Read from SQL at scrape time (a custom collector), so every replica reports
the same fleet-wide numbers and nothing is lost when one restarts. Request
metrics of the apps themselves come from the routers' admin ports.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from sqlalchemy import func, select

from conveyor.api.deps import Reader
from conveyor.api.state import ControlPlane
from conveyor.store import repo
from conveyor.store.tables import apps, builds, deployments, images

router = APIRouter(include_in_schema=False)


class ControlPlaneCollector:
    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp

    def collect(self) -> Iterator[Metric]:
        cp = self.cp
        with cp.engine.connect() as conn:
            dep = GaugeMetricFamily("conveyor_deployments", "Deployments by kind and state", labels=["kind", "state"])
            for kind, state, n in conn.execute(
                select(deployments.c.kind, deployments.c.state, func.count()).group_by(deployments.c.kind, deployments.c.state)
            ):
                dep.add_metric([kind, state], n)
            yield dep
            b = GaugeMetricFamily("conveyor_builds", "Builds by state", labels=["state"])
            for state, n in conn.execute(select(builds.c.state, func.count()).group_by(builds.c.state)):
                b.add_metric([state], n)
            yield b
            yield GaugeMetricFamily("conveyor_apps", "Apps", value=conn.execute(select(func.count()).select_from(apps)).scalar_one())
            yield GaugeMetricFamily("conveyor_images", "Image records",
                                    value=conn.execute(select(func.count()).select_from(images)).scalar_one())
            hosts_alive = len(repo.alive_hosts(conn))
            inst = GaugeMetricFamily("conveyor_instances", "Instances as their agents report them", labels=["state"])
            counts: dict[str, int] = {}
            for _addr, st in repo.instance_status_map(conn).values():
                counts[st.get("state", "pending")] = counts.get(st.get("state", "pending"), 0) + 1
            for state, n in sorted(counts.items()):
                inst.add_metric([state], n)
            yield inst
        yield GaugeMetricFamily("conveyor_hosts_alive", "Agents that reported in the last 30 s", value=hosts_alive)
        now = time.time()
        yield GaugeMetricFamily("conveyor_routers_connected", "Routers that long-polled in the last 90 s",
                                value=sum(1 for r in cp.routers.values() if now - r.last_seen < 90))
        ticks = CounterMetricFamily("conveyor_orchestrator_ticks", "Orchestrator reconcile passes")
        ticks.add_metric([], cp.orchestrator.ticks if cp.orchestrator else 0)
        yield ticks


@router.get("/metrics")
def metrics(request: Request, _p: Reader) -> Response:
    """Any person's token (a Prometheus scraper: a viewer token as its bearer token)."""
    cp: ControlPlane = request.app.state.cp
    registry = getattr(cp, "_prom_registry", None)
    if registry is None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(ControlPlaneCollector(cp))  # type: ignore[arg-type]
        cp._prom_registry = registry  # type: ignore[attr-defined]
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
