"""ACME against a real CA: Let's Encrypt's test server pebble, on loopback.

pebble-challtestsrv answers pebble's DNS queries with 127.0.0.1, so pebble's
HTTP-01 validation reaches the platform's router (its plain port is pebble's
``httpPort``), which answers ``/.well-known/acme-challenge/`` from the routing
table. Certificates live 30 s, so renewal (at two thirds) happens within the
test. Then the domain's DNS is pointed elsewhere: the next order fails, the
failure shows in ``domains list`` and the events, and the router keeps serving
the previous certificate. Clients: Python ``ssl``, ``curl --cacert``,
``openssl s_client -servername``, all trusting pebble's root only.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import ssl
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cvy_platform import Platform, wait_for
from tls_certs import TestCA

from conveyor_up import free_port

pytestmark = pytest.mark.integration

DOMAIN = "shop.example.org"
VALIDITY = 30  # seconds: renewal at 20 s


def _need(tool: str) -> None:
    if shutil.which(tool) is None:
        msg = f"{tool} is not installed (Debian package pebble)"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)


class Pebble:
    """pebble + pebble-challtestsrv on loopback ports; the router's plain port is pebble's httpPort."""

    def __init__(self, root: Path, http_port: int) -> None:
        for tool in ("pebble", "pebble-challtestsrv"):
            _need(tool)
        self.root = root
        self.dns_port, self.dns_mgmt = free_port(), free_port()
        self.port, self.mgmt = free_port(), free_port()
        ca = TestCA("pebble's TLS CA (test)")
        self.tls_ca = ca.write(root / "pebble-tls-ca.pem")
        leaf = ca.issue(["localhost"])
        (root / "pebble.crt").write_text(leaf.cert_pem)
        (root / "pebble.key").write_text(leaf.key_pem)
        (root / "pebble.json").write_text(json.dumps({"pebble": {
            "listenAddress": f"127.0.0.1:{self.port}", "managementListenAddress": f"127.0.0.1:{self.mgmt}",
            "certificate": str(root / "pebble.crt"), "privateKey": str(root / "pebble.key"),
            "httpPort": http_port, "tlsPort": free_port(), "ocspResponderURL": "",
            "externalAccountBindingRequired": False, "certificateValidityPeriod": VALIDITY,
        }}))
        self.procs: list[subprocess.Popen[bytes]] = []
        log = (root / "pebble.log").open("ab")
        self.procs.append(subprocess.Popen(
            ["pebble-challtestsrv", "-dns01", f"127.0.0.1:{self.dns_port}", "-http01", "", "-https01", "",
             "-tlsalpn01", "", "-management", f"127.0.0.1:{self.dns_mgmt}", "-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        env = {**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0", "PEBBLE_AUTHZREUSE": "0"}
        self.procs.append(subprocess.Popen(
            ["pebble", "-config", str(root / "pebble.json"), "-dnsserver", f"127.0.0.1:{self.dns_port}"],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True))
        wait_for(lambda: httpx.get(self.directory, verify=str(self.tls_ca), timeout=2).status_code == 200, 30, 0.2,
                 "pebble's directory")

    @property
    def directory(self) -> str:
        return f"https://localhost:{self.port}/dir"

    def root_ca(self) -> Path:
        """pebble's issuing root (made anew at each start), for clients to trust."""
        pem = httpx.get(f"https://localhost:{self.mgmt}/roots/0", verify=str(self.tls_ca), timeout=10).text
        path = self.root / "pebble-root.pem"
        path.write_text(pem)
        return path

    def point(self, host: str, address: str) -> None:
        """Make the fake DNS answer ``address`` for ``host`` (validation then goes there)."""
        r = httpx.post(f"http://127.0.0.1:{self.dns_mgmt}/add-a", json={"host": host + ".", "addresses": [address]}, timeout=10)
        r.raise_for_status()

    def stop(self) -> None:
        for p in self.procs:
            p.kill()
            p.wait(10)


@pytest.fixture
def pebble_platform(platform_factory: Callable[[], Platform]) -> Iterator[tuple[Platform, Pebble, int]]:
    p = platform_factory()
    pebble = Pebble(p.root, p.router_port)
    https_port = free_port()
    p.up_args = ["--https-port", str(https_port), "--domain", "example.test"]
    p.env.update({"CONVEYOR_ACME_DIRECTORY": pebble.directory, "CONVEYOR_ACME_CA_BUNDLE": str(pebble.tls_ca),
                  "CONVEYOR_ACME_RETRY_BASE": "2", "CONVEYOR_ACME_EMAIL": "ops@example.org"})
    try:
        p.start()
        yield p, pebble, https_port
    finally:
        pebble.stop()


def served(port: int, root: Path) -> tuple[str, bytes] | None:
    """(sha256 of the leaf served for DOMAIN, the response) over TLS, or None if the handshake fails."""
    ctx = ssl.create_default_context(cafile=str(root))
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, ctx.wrap_socket(raw, server_hostname=DOMAIN) as s:
            s.sendall(f"GET / HTTP/1.1\r\nHost: {DOMAIN}\r\nConnection: close\r\n\r\n".encode())
            out = b""
            while chunk := s.recv(65536):
                out += chunk
            return hashlib.sha256(s.getpeercert(binary_form=True)).hexdigest(), out
    except (ssl.SSLError, OSError):
        return None


def domain(p: Platform) -> dict[str, Any]:
    return next(d for d in p.cli_json("domains", "list") if d["name"] == DOMAIN)


def test_obtain_serve_renew_and_survive_a_failed_order(pebble_platform: tuple[Platform, Pebble, int]) -> None:
    p, pebble, https_port = pebble_platform
    p.cli("apps", "create", "shop", check=True)
    assert p.deploy("shop", p.app_copy("shop", "v1"))["state"] == "succeeded"
    added = p.cli_json("domains", "add", "shop", DOMAIN)
    assert added["acme"] is True and added["status"] in ("pending", "issuing", "ok")

    # Obtained: the domain says so, and the router serves it to clients trusting pebble's root only.
    first = wait_for(lambda: (d := domain(p))["status"] == "ok" and d, 60, 0.5, "the ACME certificate")
    cert = first["certificate"]
    assert cert["source"] == "acme" and cert["names"] == [DOMAIN]
    assert cert["renew_at"] == pytest.approx(cert["not_before"] + (cert["not_after"] - cert["not_before"]) * 2 / 3)
    root = pebble.root_ca()
    fp, out = wait_for(lambda: (r := served(https_port, root)) and r[0] == cert["fingerprint"] and r, 15, 0.2,
                       "the router serving the ACME certificate")
    assert out.startswith(b"HTTP/1.1 200 ") and out.endswith(b"hello from v1\n"), out
    curl = subprocess.run(["curl", "-sS", "--cacert", str(root), "--resolve", f"{DOMAIN}:{https_port}:127.0.0.1",
                           f"https://{DOMAIN}:{https_port}/"], capture_output=True, text=True, timeout=30)
    assert curl.returncode == 0 and curl.stdout == "hello from v1\n", curl.stderr
    s_client = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{https_port}", "-servername", DOMAIN,
                               "-CAfile", str(root), "-verify_return_error"], input="", capture_output=True, text=True, timeout=30)
    assert s_client.returncode == 0 and "Verify return code: 0 (ok)" in s_client.stdout, s_client.stdout + s_client.stderr
    # Plain HTTP is redirected now that a certificate covers the domain.
    r = p.get(DOMAIN, "/a")
    assert r.status_code == 308 and r.headers["location"] == f"https://{DOMAIN}:{https_port}/a"

    # Renewed at two thirds of its 30 s life, and served to new connections.
    second = wait_for(lambda: (d := domain(p))["certificate"]["fingerprint"] != cert["fingerprint"] and d["status"] == "ok" and d,
                      VALIDITY + 30, 0.5, "the renewal")
    assert second["certificate"]["not_before"] >= cert["renew_at"] - 5
    wait_for(lambda: (r := served(https_port, root)) and r[0] == second["certificate"]["fingerprint"], 15, 0.2,
             "the renewed certificate served")

    # A failed order (validation goes to an address where nothing answers) keeps the previous certificate.
    pebble.point(DOMAIN, "127.0.0.2")
    failed = wait_for(lambda: (d := domain(p))["status"] == "failed" and d, VALIDITY + 30, 0.5, "the failed renewal")
    assert failed["error"], failed
    assert failed["certificate"]["fingerprint"] == second["certificate"]["fingerprint"]
    r = served(https_port, root)
    assert r is not None and r[0] == second["certificate"]["fingerprint"]
    events = p.api.get("/events").json()
    kinds = [e["kind"] for e in events]
    assert {"certificate_issued", "certificate_renewed", "certificate_failed"} <= set(kinds), kinds
    fail_event = next(e for e in events if e["kind"] == "certificate_failed")
    assert "previous certificate stays in use" in fail_event["message"], fail_event
