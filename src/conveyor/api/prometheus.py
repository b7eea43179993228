"""The control plane's own Prometheus metrics at ``/metrics``.

It needs a credential like every other endpoint: the numbers say which apps exist
and how they deploy. Read from SQL at scrape time (a custom collector), so every replica reports
the same fleet-wide numbers and nothing is lost when one restarts. Request
metrics of the apps themselves come from the routers' admin ports.
"""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from conveyor.api.deps import Reader
from conveyor.services.metrics import control_plane_numbers
from conveyor.services.state import ControlPlane

router = APIRouter(include_in_schema=False)


class ControlPlaneCollector:
    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp

    def collect(self) -> Iterator[Metric]:
        n = control_plane_numbers(self.cp)
        dep = GaugeMetricFamily("conveyor_deployments", "Deployments by kind and state", labels=["kind", "state"])
        for kind, state, count in n.deployments:
            dep.add_metric([kind, state], count)
        yield dep
        b = GaugeMetricFamily("conveyor_builds", "Builds by state", labels=["state"])
        for state, count in n.builds:
            b.add_metric([state], count)
        yield b
        yield GaugeMetricFamily("conveyor_apps", "Apps", value=n.apps)
        yield GaugeMetricFamily("conveyor_images", "Image records", value=n.images)
        inst = GaugeMetricFamily("conveyor_instances", "Instances as their agents report them", labels=["state"])
        for state, count in n.instances.items():
            inst.add_metric([state], count)
        yield inst
        yield GaugeMetricFamily("conveyor_hosts_alive", "Agents that reported in the last 30 s", value=n.hosts_alive)
        yield GaugeMetricFamily("conveyor_routers_connected", "Routers that long-polled in the last 90 s",
                                value=n.routers_connected)
        ticks = CounterMetricFamily("conveyor_orchestrator_ticks", "Orchestrator reconcile passes")
        ticks.add_metric([], n.orchestrator_ticks)
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
