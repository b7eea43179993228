"""Capacity across hosts (issue 13): labels, placement, capacity, drain — with real agents in network
namespaces and real traffic through the router.

Three hosts: the `conveyor up` agent ("local", no labels) and two agents in their own network
namespaces, h1 (role=web, capacity 2) and h2 (role=web). An environment that selects role=web
lands its instances on h1 and h2, spread, and none on local; draining the host of a release's only
instance moves it with no failed request (its replacement is ready before it leaves the routing
table), counting transport errors; a release that
selects a label no host has fails at once, saying which constraint is unmet, and the live release
keeps serving.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from cvy_platform import Platform, Traffic, wait_for
from netns_hosts import HostNetwork, require_netns

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOML = """[app]
name = "placed"

[run]
web = "python app.py"

[health]
path = "/healthz"
timeout = "2s"

[env.production]
instances = 2
hosts = "{selector}"
ready_timeout = "40s"
drain_timeout = "2s"
"""



def _serving(p: Platform, release: int | None = None) -> list[str]:
    """Hosts of the ready instances (of ``release`` only, when given: the previous one is kept warm), sorted."""
    return sorted(i["host"] for i in p.instances("placed") if i["state"] == "ready" and release in (None, i["release"]))


def test_labels_spread_drain_and_an_unplaceable_release(tmp_path: Path) -> None:
    require_netns()
    net = HostNetwork()
    p = Platform(tmp_path / "p", host=net.gateway)
    try:
        net.create(2)
        p.root.mkdir(parents=True)
        p.start()
        h1, h2 = net.hosts
        net.start_agent(h1, p.api_url, p.token, tmp_path / "h1", tmp_path / "h1-agent.log",
                        ["--label", "role=web", "--label", "zone=a", "--capacity", "2"])
        net.start_agent(h2, p.api_url, p.token, tmp_path / "h2", tmp_path / "h2-agent.log", ["--label", "role=web"])
        wait_for(lambda: {h["name"] for h in p.api.get("/hosts").json()["hosts"] if h["online"]} >= {"local", "h1", "h2"},
                 60, 0.2, "the three agents reporting")
        listed = {h["name"]: h for h in p.cli_json("hosts")["hosts"]}
        assert listed["h1"]["labels"] == {"role": "web", "zone": "a"} and listed["h1"]["capacity"] == 2
        assert listed["h2"]["labels"] == {"role": "web"} and listed["h2"]["capacity"] is None
        assert listed["local"]["labels"] == {} and listed["local"]["drained"] is False
        table = p.cli("hosts", check=True).stdout
        assert "role=web" in table and "0/2" in table and "drained" not in table

        p.cli("apps", "create", "placed", check=True)

        def toml(selector: str = "role=web", instances: int = 2) -> str:
            return TOML.format(selector=selector).replace("instances = 2", f"instances = {instances}")

        dep = p.deploy("placed", p.app_copy("placed", "v1", conveyor__toml=toml(instances=1)))
        assert dep["state"] == "succeeded", dep
        assert _serving(p) == ["h1"]  # a role=web host (h1 and h2 tie; by name); never local

        with Traffic(p, "placed", rate=60, threads=3, max_s=180) as traffic:
            # its only instance moves: the replacement must be ready before the old one leaves the table
            drained = p.cli_json("hosts", "drain", "h1")
            assert drained["drained"] is True and drained["drained_by"]
            wait_for(lambda: _serving(p) == ["h2"] and all(i["host"] == "h2" for i in p.instances("placed")),
                     60, 0.2, "the instance on h1 replaced on h2, then gone from h1")
            assert p.cli_json("hosts", "undrain", "h1")["drained"] is False

            dep = p.deploy("placed", p.app_copy("placed", "v2", conveyor__toml=toml()))
            assert dep["state"] == "succeeded", dep
            assert _serving(p, dep["release"]) == ["h1", "h2"]  # spread over the role=web hosts

            p.cli_json("hosts", "drain", "h2")
            v2 = dep["release"]
            wait_for(lambda: _serving(p, v2) == ["h1", "h1"]
                     and all(i["host"] == "h1" for i in p.instances("placed") if i["release"] == v2),
                     60, 0.2, "the instance on h2 replaced on h1, then gone from h2")
            start = len(traffic.snapshot())  # traffic goes on a little after the moves
            wait_for(lambda: len(traffic.snapshot()) >= start + 30, 20, 0.1, "traffic after the move")
        assert traffic.failures() == [], traffic.failures()[:5]
        assert traffic.count() >= 60
        kinds = [e["kind"] for e in p.api.get("/events", params={"app": "placed"}).json()]
        assert kinds.count("instances_moved") >= 2, kinds

        # h1 is full (2/2) and h2 drained: a third instance has nowhere to go, and the deployment says so
        dep = p.deploy("placed", p.app_copy("placed", "v3", conveyor__toml=toml(instances=3)))
        assert dep["state"] == "failed", dep
        assert "cannot be placed" in dep["reason"] and "h2 drained" in dep["reason"], dep["reason"]
        # ... and a label no host has: at once, naming the selector and the hosts there are
        dep = p.deploy("placed", p.app_copy("placed", "v4", conveyor__toml=toml(selector="role=gpu")))
        assert dep["state"] == "failed", dep
        assert "no online host has labels role=gpu" in dep["reason"] and "h1 [role=web,zone=a]" in dep["reason"]
        assert dep["_exit"] != 0
        assert p.get("placed.localhost").text == "hello from v2\n"  # v2 still serves

        undrained = p.cli_json("hosts", "undrain", "h2")
        assert undrained["drained"] is False
        bad = p.cli("hosts", "drain", "nosuch")
        assert bad.returncode != 0 and "host 'nosuch' has never reported" in bad.stderr, bad.stderr
        bad = p.cli("deploy", "placed", "--source", str(p.app_copy(
            "placed", "v5", conveyor__toml=TOML.format(selector="role=web,=x"))), "--wait")
        assert bad.returncode != 0 and "hosts" in bad.stderr and "invalid key or value" in bad.stderr, bad.stderr
    finally:
        p.stop_all()
        net.destroy()


def _agent(p: Platform, data_dir: Path, log: Path, *args: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "CONVEYOR_TOKEN"}  # the join token is its only credential
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "conveyor", "agent", "--address", "127.0.0.1",
                                 "--data-dir", str(data_dir), *args], stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)


def test_a_host_joins_with_a_one_time_token_and_is_refused_once_removed(
        platform_factory: Callable[[], Platform], tmp_path: Path) -> None:
    p = platform_factory()
    p.start()
    token = p.cli_json("hosts", "join-token")["token"]
    agent = _agent(p, tmp_path / "extra", tmp_path / "extra.log", "--join", p.api_url, token, "--host", "extra",
                   "--label", "role=batch", "--capacity", "1")
    try:
        extra = wait_for(lambda: next((h for h in p.cli_json("hosts")["hosts"] if h["name"] == "extra" and h["online"]),
                                      None), 60, 0.3, "the joined agent reporting")
        assert extra["labels"] == {"role": "batch"} and extra["capacity"] == 1
        credential = tmp_path / "extra" / "credential"
        assert credential.stat().st_mode & 0o777 == 0o600 and token not in credential.read_text()

        # the token is spent: a second host using it is refused with a message, exit 2, and does not appear
        other = _agent(p, tmp_path / "other", tmp_path / "other.log", "--join", p.api_url, token, "--host", "other")
        assert other.wait(60) == 2
        assert "already used" in (tmp_path / "other.log").read_text()
        # a host named like another is refused too, even with a fresh token
        fresh = p.cli_json("hosts", "join-token")["token"]
        clash = _agent(p, tmp_path / "clash", tmp_path / "clash.log", "--join", p.api_url, fresh, "--host", "extra")
        assert clash.wait(60) == 2
        assert "already joined" in (tmp_path / "clash.log").read_text()
        assert {h["name"] for h in p.cli_json("hosts")["hosts"]} == {"local", "extra"}

        # restarted with the same flags, it uses its saved credential (the token is not spent twice)
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(30) == 0
        agent = _agent(p, tmp_path / "extra", tmp_path / "extra.log", "--join", p.api_url, token, "--host", "extra",
                       "--label", "role=batch", "--capacity", "1")
        wait_for(lambda: "already joined as extra" in (tmp_path / "extra.log").read_text(), 30, 0.2,
                 "the restarted agent using its saved credential")

        removed = p.cli_json("hosts", "remove", "extra")
        assert len(removed["revoked_tokens"]) == 1
        start = (tmp_path / "extra.log").stat().st_size
        wait_for(lambda: "401" in (tmp_path / "extra.log").read_text()[start:], 30, 0.3,
                 "the removed host's agent refused")
        assert "extra" not in {h["name"] for h in p.cli_json("hosts")["hosts"]}
    finally:
        agent.send_signal(signal.SIGTERM)
        try:
            agent.wait(30)
        except subprocess.TimeoutExpired:
            agent.kill()
