"""The pure parts of benchmarks/control_plane_scale.py: the SIMULATED host's reports, what a
simulated router routes, when a routing change counts as held, the figures' quantiles."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import control_plane_scale as bench  # noqa: E402

from conveyor.domain.manifest import parse_manifest  # noqa: E402
from conveyor.domain.wire import AgentStatus, RoutingTable  # noqa: E402


def test_layout_adds_up_to_the_issue_s_fleet() -> None:
    names = bench.layout(500, 50, 5, 20)
    assert len(names["hosts"]) == 500 and len(set(names["hosts"])) == 500
    assert names["instances"] == 5000 and names["per_host"] == 10


def test_the_app_manifest_parses_with_its_counts() -> None:
    m = parse_manifest(tomllib.loads(bench.app_manifest("sim-app-001", ["e0", "e1"], 20)))
    assert m.env["e0"].instances == 20 and m.env["e1"].instances == 20


def test_a_simulated_host_starts_readies_and_forgets_instances() -> None:
    host = bench.SimHost("sim-host-0001", "10.0.1.1")
    changed, new = host.apply({"version": 3, "instances": [{"id": "a"}, {"id": "b"}]}, now=10.0)
    assert changed and new == ["a", "b"]
    report = AgentStatus.model_validate(host.status())  # what a real agent sends, by the wire's own contract
    assert report.desired_version == 3 and [i.state for i in report.instances] == ["starting", "starting"]
    assert host.ready("a", 10.5) and not host.ready("a", 11.0)  # once only
    assert [i.state for i in AgentStatus.model_validate(host.status()).instances] == ["ready", "starting"]
    assert host.apply({"version": 3, "instances": [{"id": "a"}, {"id": "b"}]}, now=12.0) == (False, [])
    changed, new = host.apply({"version": 4, "instances": [{"id": "b"}]}, now=13.0)
    assert changed and new == [] and list(host.instances) == ["b"]
    assert not host.ready("a", 14.0)  # gone: a late readiness is ignored


def test_what_a_router_routes_and_when_a_change_is_held() -> None:
    table = RoutingTable.model_validate({"version": 7, "environments": [
        {"app": "a", "env": "e0", "hosts": ["e0.a.localhost"], "releases": [
            {"release": 1, "weight": 100, "instances": [{"id": f"i{n}", "address": "10.0.0.1:1"} for n in range(3)]},
            {"release": 2, "weight": 0, "instances": [{"id": "j", "address": "10.0.0.1:2"}]},
        ]},
    ]}).model_dump(mode="json")
    view = bench.routed(table)
    assert view == {("a", "e0"): {1: (100, 3), 2: (0, 1)}}
    assert bench.total_routed(view) == 3 and bench.serving(view, ("a", "e0")) == {1: 3}
    watch = bench.Watch("scale down", lambda v: sum(bench.serving(v, ("a", "e0")).values()) == 2, t0=100.0,
                        routers={"r1", "r2"})
    watch.offer("r1", view, 100.2)
    assert not watch.seen
    smaller = {("a", "e0"): {1: (100, 2)}}
    watch.offer("r1", smaller, 100.3)
    watch.offer("r1", smaller, 100.9)  # the first table with the change counts
    watch.offer("r3", smaller, 100.4)  # not a router the change waits for
    assert not watch.done
    watch.offer("r2", smaller, 100.5)
    assert watch.done and sorted(round(d, 3) for d in watch.delays()) == [0.3, 0.5]


def test_quantiles() -> None:
    assert bench.quantiles([]) == {"n": 0, "p50": None, "p99": None, "max": None}
    q = bench.quantiles([i / 1000 for i in range(1, 101)], 1000)
    assert q == {"n": 100, "p50": 51.0, "p99": 100.0, "max": 100.0}
