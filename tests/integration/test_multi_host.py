"""Several hosts, one control plane: agents in network namespaces as separate machines.

``conveyor up`` runs the control plane, the router and a local agent in the
root namespace on a bridge address; two more agents run in their own network
namespaces (netns_hosts.py). A deployment of three instances lands one per
host, the router sends traffic to all three over the bridge, and when one
host powers off (every process in it killed at once) traffic goes on without a
failed request while the control plane notices the host is gone, drops its
instance from the routing table and starts a replacement on a live host.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from cvy_platform import Platform, Traffic, wait_for
from netns_hosts import HostNetwork, require_netns

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOML = """[app]
name = "spread"

[run]
web = "python app.py"

[health]
path = "/healthz"
timeout = "2s"

[env.production]
instances = 3
"""



def test_three_hosts_share_the_traffic_and_one_can_power_off(tmp_path: Path) -> None:
    require_netns()
    net = HostNetwork()
    p = Platform(tmp_path / "p", host=net.gateway)
    try:
        net.create(2)
        p.root.mkdir(parents=True)
        p.start()
        for h in net.hosts:
            net.start_agent(h, p.api_url, p.token, tmp_path / h.name, tmp_path / f"{h.name}-agent.log")
        wait_for(lambda: {h["name"] for h in p.api.get("/hosts").json()["hosts"] if h["online"]} >= {"local", "h1", "h2"},
                 60, 0.2, "the three agents reporting")

        p.cli("apps", "create", "spread", check=True)
        dep = p.deploy("spread", p.app_copy("spread", "v1", conveyor__toml=TOML))
        assert dep["state"] == "succeeded", dep
        placed = {i["host"]: i for i in p.instances("spread")}
        assert set(placed) == {"local", "h1", "h2"}, placed  # one per host
        assert placed["h1"]["address"] == net.hosts[0].address and placed["h2"]["address"] == net.hosts[1].address

        with httpx.Client() as client:
            for _ in range(90):
                assert p.get("spread.localhost", client=client).text == "hello from v1\n"
        per_instance = httpx.get(f"http://127.0.0.1:{p.admin_port}/metrics.json", timeout=10).json()
        counts = {i: s["requests"] for r in per_instance["releases"] if r["app"] == "spread" for i, s in r["instances"].items()}
        assert all(counts.get(i["id"], 0) > 0 for i in placed.values()), counts  # every host served some

        lost = placed["h2"]["id"]
        # Every request is counted, transport errors too (a wait helper would read them as "not yet").
        with Traffic(p, "spread", rate=60, threads=3, max_s=90) as traffic:
            net.power_off(net.hosts[1])
            wait_for(lambda: lost not in p.routed("spread"), 60, 0.1,
                     f"instance {lost} of the powered-off host leaving the routing table")
        assert traffic.failures() == [], traffic.failures()[:5]
        assert traffic.count() >= 20
        hosts = {h["name"]: h for h in p.api.get("/hosts").json()["hosts"]}
        assert hosts["h2"]["online"] is False and hosts["h1"]["online"] is True

        def healed() -> list[dict]:  # type: ignore[type-arg]
            ready = [i for i in p.instances("spread") if i["state"] == "ready" and i["host"] != "h2"]
            return ready if len(ready) == 3 else []

        ready = wait_for(healed, 60, 0.2, "a replacement instance on a live host")
        assert lost not in {i["id"] for i in ready}
        assert {i["host"] for i in ready} == {"local", "h1"}
        assert lost not in p.routed("spread") and len(p.routed("spread")) == 3
        events = p.api.get("/events", params={"app": "spread"}).json()
        assert any(e["kind"] == "instances_replaced" and "h2" in e["message"] for e in events), events
        with httpx.Client() as client:
            assert all(p.get("spread.localhost", client=client).status_code == 200 for _ in range(30))

        listed = p.cli_json("hosts")
        assert {h["name"]: h["online"] for h in listed["hosts"]} == {"local": True, "h1": True, "h2": False}
        assert listed["routers"]["synced"] is True and [r["id"] for r in listed["routers"]["routers"]] == ["local"]
        shown = p.cli("hosts", check=True).stdout
        assert "h2" in shown and "lost" in shown and net.hosts[0].address in shown
    finally:
        p.stop_all()
        net.destroy()
