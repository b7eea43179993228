"""Hosts for tests: network namespaces (``ip netns``) on one bridge, each running a Conveyor agent.

Each namespace has its own network stack and an address on a private /24 that
only this test uses (10.231.N.0/24, N random); the root namespace holds the
bridge's .1, where ``conveyor up --host`` puts the control plane and the router.
An agent in a namespace reaches the control plane over the bridge, starts its
instances on its own address, and the router reaches them there: as separate
machines would, minus the cables. Needs root and iproute2.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest


def require_netns() -> None:
    """Skip (fail under CI=true) when network namespaces cannot be made here."""
    why = None
    if shutil.which("ip") is None:
        why = "needs iproute2 (apt-get install iproute2) for network namespaces"
    elif os.geteuid() != 0:
        why = "needs root to create network namespaces"
    if why:
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)


def _ip(*args: str, netns: str | None = None) -> None:
    cmd = ["ip", "netns", "exec", netns, "ip", *args] if netns else ["ip", *args]
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=20)


@dataclass
class Host:
    name: str
    netns: str
    address: str
    agent: subprocess.Popen[bytes] | None = None


@dataclass
class HostNetwork:
    """A bridge in the root namespace and one namespace per host."""

    tag: str = field(default_factory=lambda: secrets.token_hex(2))
    subnet: int = field(default_factory=lambda: 100 + secrets.randbelow(150))
    hosts: list[Host] = field(default_factory=list)

    @property
    def bridge(self) -> str:
        return f"cvyb{self.tag}"

    @property
    def gateway(self) -> str:
        """The root namespace's address on the bridge: where the control plane and router listen."""
        return f"10.231.{self.subnet}.1"

    def create(self, count: int) -> None:
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for i in range(1, count + 1):
            ns, veth, peer = f"cvy{self.tag}h{i}", f"cvy{self.tag}v{i}", f"cvy{self.tag}p{i}"
            subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True, timeout=20)
            host = Host(f"h{i}", ns, f"10.231.{self.subnet}.{1 + i}")
            self.hosts.append(host)
            _ip("link", "add", veth, "type", "veth", "peer", "name", peer)
            _ip("link", "set", peer, "netns", ns)
            _ip("link", "set", veth, "master", self.bridge)
            _ip("link", "set", veth, "up")
            _ip("addr", "add", f"{host.address}/24", "dev", peer, netns=ns)
            _ip("link", "set", peer, "up", netns=ns)
            _ip("link", "set", "lo", "up", netns=ns)

    def start_agent(self, host: Host, api_url: str, token: str, data_dir: Path, log: Path,
                    extra: Sequence[str] = ()) -> None:
        """``conveyor agent`` inside the host's namespace, its instances on the host's address
        (``extra``: more flags, e.g. ``--label role=web --capacity 2``)."""
        with log.open("ab") as out:
            host.agent = subprocess.Popen(
                ["ip", "netns", "exec", host.netns, sys.executable, "-m", "conveyor", "agent", "--control-plane", api_url,
                 "--host", host.name, "--address", host.address, "--data-dir", str(data_dir), *extra],
                stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "CONVEYOR_TOKEN": token}, start_new_session=True,
            )

    def power_off(self, host: Host) -> None:
        """Every process of the host dies at once (agent and instances), as when a machine goes down."""
        pids = subprocess.run(["ip", "netns", "pids", host.netns], capture_output=True, text=True, timeout=20).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        if host.agent is not None:
            host.agent.wait(10)

    def destroy(self) -> None:
        for host in self.hosts:
            self.power_off(host)
            subprocess.run(["ip", "netns", "del", host.netns], capture_output=True, timeout=20)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, timeout=20)
