"""Domains and certificates from files, end to end: `conveyor up --https-port --domain`, the CLI,
the routing table's long-poll, and real TLS clients through the platform's router.
"""

from __future__ import annotations

import hashlib
import json
import socket
import sqlite3
import ssl
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from cvy_platform import Platform, wait_for
from tls_certs import TestCA

from conveyor.store.sealing import Sealer
from conveyor_up import free_port

pytestmark = pytest.mark.integration

BASE = "example.test"
DOMAIN = "shop.example.org"


def tls_get(port: int, ca_file: Path, sni: str, path: str = "/") -> tuple[str, bytes]:
    """GET over TLS with SNI ``sni``; (the served leaf's sha256, the response bytes)."""
    ctx = ssl.create_default_context(cafile=str(ca_file))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, ctx.wrap_socket(raw, server_hostname=sni) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n".encode())
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return hashlib.sha256(s.getpeercert(binary_form=True)).hexdigest(), out


def test_domains_and_certificates_from_files(platform_factory: Callable[[], Platform], tmp_path: Path) -> None:
    p = platform_factory()
    https_port = free_port()
    p.up_args = ["--https-port", str(https_port), "--domain", BASE]
    p.start()
    p.cli("apps", "create", "shop", check=True)
    p.cli("apps", "create", "blog", check=True)
    dep = p.deploy("shop", p.app_copy("shop", "v1"))
    assert dep["state"] == "succeeded", dep
    # The wildcard default domain: APP.BASE.
    assert p.get(f"shop.{BASE}").text == "hello from v1\n"

    # Bad input: a clear error, exit 2, nothing stored.
    res = p.cli("domains", "add", "shop", "not a host")
    assert res.returncode == 2 and "label" in res.stderr, res.stderr
    res = p.cli("domains", "add", "shop", f"shop.{BASE}")
    assert res.returncode == 4 and "default hostname of shop/production" in res.stderr, res.stderr

    d = p.cli_json("domains", "add", "shop", DOMAIN, "--hsts", "300")
    assert (d["name"], d["app"], d["env"], d["status"]) == (DOMAIN, "shop", "production", "none")
    # A domain belongs to one environment: adding it again (here or elsewhere) is a conflict naming the owner.
    res = p.cli("domains", "add", "blog", DOMAIN)
    assert res.returncode == 4 and "already belongs to shop/production" in res.stderr, res.stderr
    # Several domains per environment; routed over plain HTTP until a certificate covers them.
    p.cli_json("domains", "add", "shop", "www.example.org", "--no-redirect")
    wait_for(lambda: p.get(DOMAIN).text == "hello from v1\n", 10, 0.1, "the new domain routed")
    assert p.get("www.example.org").text == "hello from v1\n"

    # Certificates from files: refused with a message when they do not fit.
    ca = TestCA()
    good, other, old = ca.issue([DOMAIN]), ca.issue(["elsewhere.example.org"]), ca.issue([DOMAIN], days=5, start_days_ago=10)
    files = {}
    for name, issued in (("good", good), ("other", other), ("old", old)):
        (tmp_path / f"{name}.crt").write_text(issued.cert_pem)
        (tmp_path / f"{name}.key").write_text(issued.key_pem)
        files[name] = (str(tmp_path / f"{name}.crt"), str(tmp_path / f"{name}.key"))
    for cert, key, says in (
        (files["good"][0], files["other"][1], "private key does not match"),
        (files["other"][0], files["other"][1], f"does not cover {DOMAIN}"),
        (files["old"][0], files["old"][1], "expired on"),
        (files["good"][1], files["good"][1], "holds no PEM certificate"),
    ):
        res = p.cli("certs", "add", DOMAIN, "--cert", cert, "--key", key)
        assert res.returncode == 2 and says in res.stderr, (says, res.stderr)
    assert p.cli_json("domains", "list", "shop")[0]["certificate"] is None

    added = p.cli_json("certs", "add", DOMAIN, "--cert", files["good"][0], "--key", files["good"][1])
    assert added["status"] == "ok" and added["certificate"]["fingerprint"] == good.fingerprint
    assert 8 < added["certificate"]["days_left"] < 10
    listed = {d["name"]: d for d in p.cli_json("domains", "list")}
    assert listed[DOMAIN]["certificate"]["source"] == "file" and listed["www.example.org"]["status"] == "none"
    human = p.cli("domains", "list", check=True).stdout
    assert "shop.ex" in human and "https" in human and "http only" in human, human  # (Rich fits columns to 80)

    # Through the router: TLS with the certificate SNI asks for, the redirect, HSTS, X-Forwarded-Proto.
    ca_file = ca.write(tmp_path / "ca.pem")
    fp, out = wait_for(lambda: (r := _try_tls(https_port, ca_file)) and r[0] == good.fingerprint and r, 15, 0.1,
                       "the router serving the certificate")
    assert out.startswith(b"HTTP/1.1 200 ") and out.endswith(b"hello from v1\n"), out
    assert b"Strict-Transport-Security: max-age=300" in out
    r = p.get(DOMAIN, "/x?y=1")
    assert r.status_code == 308 and r.headers["location"] == f"https://{DOMAIN}:{https_port}/x?y=1"
    curl = subprocess.run(["curl", "-sS", "--cacert", str(ca_file), "--resolve", f"{DOMAIN}:{https_port}:127.0.0.1",
                           f"https://{DOMAIN}:{https_port}/"], capture_output=True, text=True, timeout=30)
    assert curl.returncode == 0 and curl.stdout == "hello from v1\n", curl.stderr

    # At rest: the key is sealed in the database (the one key ring, secrets.key); routers' state file is private.
    db = sqlite3.connect(p.data_dir / "conveyor.db")
    (key_enc,) = db.execute("SELECT key_sealed FROM certificates WHERE domain = ?", (DOMAIN,)).fetchone()
    assert "PRIVATE KEY" not in key_enc and good.key_pem.splitlines()[1] not in key_enc
    assert Sealer.for_data_dir(p.data_dir).open(key_enc.encode()).decode() == good.key_pem  # the one key ring
    dump = "\n".join(db.iterdump())
    assert good.key_pem.splitlines()[1] not in dump  # nowhere in the database (not in counters.note either)
    db.close()
    assert stat.S_IMODE((p.data_dir / "secrets.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((p.data_dir / "router-table.json").stat().st_mode) == 0o600
    # The API never shows a key.
    assert "PRIVATE KEY" not in p.api.get("/domains").text
    events = p.api.get("/events").json()
    assert {"domain_added", "certificate_added"} <= {e["kind"] for e in events}

    # Removing the domain stops routing it.
    p.cli("domains", "remove", "shop", "www.example.org", check=True)
    wait_for(lambda: p.get("www.example.org").status_code == 404, 10, 0.1, "the removed domain unrouted")


def _try_tls(port: int, ca_file: Path) -> tuple[str, bytes] | None:
    try:
        return tls_get(port, ca_file, DOMAIN)
    except (ssl.SSLError, OSError):
        return None
