"""A host cut off from the control plane, then back (issue 13, item 6) — real agents in network
namespaces, real traffic through the router, transport errors counted as failures.

Two role=web hosts, h1 and h2, one instance of the app on each. h2's link to the control plane is
cut (a routing rule in its namespace refuses TCP to the API's port) while the router can still
reach it: h2's agent can no longer report, but its instance keeps serving. After the lost-host
deadline (here 10 s, the shortest ``--host-lost-after``) the control plane judges h2 lost, takes its instance out
of the routing table (requests in flight finish: the instance is not stopped) and starts a
replacement on h1. When the link comes back, h2 reports again with its old instance still running:
that instance is surplus, and it is stopped (it serves no traffic by then) instead of being counted
a third time — the environment runs exactly its two instances, and no request failed throughout.

Then, with the next release spread over both hosts again, h2's whole link is cut (its veth down:
neither the control plane nor the router reach it) and restored: the same, and every request the
router answers meanwhile comes from h1.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest

from cvy_platform import Platform, Traffic, wait_for
from netns_hosts import Host, HostNetwork, require_netns

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOML = """[app]
name = "cutoff"

[run]
web = "python app.py"

[health]
path = "/healthz"
timeout = "2s"

[env.production]
instances = 2
hosts = "role=web"
ready_timeout = "40s"
drain_timeout = "2s"
"""



def _online(p: Platform) -> dict[str, bool]:
    return {h["name"]: h["online"] for h in p.api.get("/hosts").json()["hosts"]}


def _cut_control_plane(host: Host, api_port: int, cut: bool) -> None:
    """Refuse (or allow again) the host's TCP to the control plane's port; all else still flows."""
    subprocess.run(["ip", "netns", "exec", host.netns, "ip", "rule", "add" if cut else "del",
                    "ipproto", "tcp", "dport", str(api_port), "prohibit"], check=True, capture_output=True, timeout=20)


def _answers(address: str) -> bool:
    """The instance at ``address`` answers HTTP directly (not through the router)."""
    try:
        return httpx.get(f"http://{address}/", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_a_host_cut_off_from_the_control_plane_is_replaced_and_its_surplus_stopped_on_return(tmp_path: Path) -> None:
    require_netns()
    net = HostNetwork()
    p = Platform(tmp_path / "p", host=net.gateway)
    p.up_args = ["--host-lost-after", "10"]
    try:
        net.create(2)
        p.root.mkdir(parents=True)
        p.start()
        h1, h2 = net.hosts
        for h in net.hosts:
            net.start_agent(h, p.api_url, p.token, tmp_path / h.name, tmp_path / f"{h.name}-agent.log",
                            ["--label", "role=web"])
        wait_for(lambda: {n for n, up in _online(p).items() if up} >= {"local", "h1", "h2"}, 60, 0.2,
                 "the three agents reporting")
        p.cli("apps", "create", "cutoff", check=True)
        dep = p.deploy("cutoff", p.app_copy("cutoff", "v1", conveyor__toml=TOML))
        assert dep["state"] == "succeeded", dep
        placed = {i["host"]: i for i in p.instances("cutoff")}
        assert sorted(placed) == ["h1", "h2"], placed
        cut_id = placed["h2"]["id"]
        cut_address = p.routed("cutoff")[cut_id]  # address:port

        with Traffic(p, "cutoff", rate=40, threads=2, max_s=150) as traffic:
            _cut_control_plane(h2, p.api_port, cut=True)
            try:
                wait_for(lambda: _online(p)["h2"] is False, 30, 0.2, "h2 judged lost after 10 s without a report")
                wait_for(lambda: cut_id not in p.routed("cutoff") and len(p.routed("cutoff")) == 2, 60, 0.2,
                         "h2's instance out of the routing table and a replacement routed")
                assert all(a.startswith(h1.address + ":") for a in p.routed("cutoff").values()), p.routed("cutoff")
                # cut off, h2 still runs (and serves) its instance: nothing reached it to stop it
                assert _answers(cut_address), f"{cut_address} stopped answering while cut off"
                events = p.api.get("/events", params={"app": "cutoff"}).json()
                assert any(e["kind"] == "instances_replaced" and "h2" in e["message"] for e in events), events
            finally:
                _cut_control_plane(h2, p.api_port, cut=False)

            wait_for(lambda: _online(p)["h2"] is True, 30, 0.2, "h2 reporting again")
            # its instance is surplus now: stopped, not a third instance counted or routed
            wait_for(lambda: not _answers(cut_address), 60, 0.2, f"the surplus instance {cut_address} on h2 stopped")
            wait_for(lambda: all(i["host"] == "h1" for i in p.instances("cutoff")), 30, 0.2, "no instance left on h2")
            ready = [i for i in p.instances("cutoff") if i["state"] == "ready"]
            assert len(ready) == 2 and len(p.routed("cutoff")) == 2, (ready, p.routed("cutoff"))
            start = traffic.count()
            wait_for(lambda: traffic.count() >= start + 20, 20, 0.1, "traffic after h2 came back")
        assert traffic.failures() == [], traffic.failures()[:5]
        assert traffic.count() >= 100

        # h2 takes new instances again: the next release spreads over both hosts
        dep = p.deploy("cutoff", p.app_copy("cutoff", "v2", conveyor__toml=TOML))
        assert dep["state"] == "succeeded", dep
        assert sorted(i["host"] for i in p.instances("cutoff") if i["release"] == dep["release"]) == ["h1", "h2"]

        # The whole link, now: h2's veth down, so neither the control plane nor the router reach it.
        v2 = dep["release"]
        [on_h2] = [i for i in p.instances("cutoff") if i["release"] == v2 and i["host"] == "h2"]
        on_h2_address = p.routed("cutoff")[on_h2["id"]]
        veth = f"cvy{net.tag}v2"
        subprocess.run(["ip", "link", "set", veth, "down"], check=True, capture_output=True, timeout=20)
        try:
            wait_for(lambda: _online(p)["h2"] is False and on_h2["id"] not in (routed := p.routed("cutoff"))
                     and len(routed) == 2, 60, 0.2, "h2 lost and its instance replaced on h1")
            with httpx.Client() as client:  # the router no longer tries h2: every request answers at once
                assert all(p.get("cutoff.localhost", client=client).text == "hello from v2\n" for _ in range(20))
        finally:
            subprocess.run(["ip", "link", "set", veth, "up"], check=True, capture_output=True, timeout=20)
        wait_for(lambda: _online(p)["h2"] is True, 30, 0.2, "h2 reporting again after its link came back")
        wait_for(lambda: not _answers(on_h2_address)
                 and all(i["host"] == "h1" for i in p.instances("cutoff") if i["release"] == v2),
                 60, 0.2, "the surplus instance on h2 stopped")
        assert len(p.routed("cutoff")) == 2 and len([i for i in p.instances("cutoff") if i["release"] == v2]) == 2
    finally:
        p.stop_all()
        net.destroy()
