"""TLS termination in the router, with real TLS clients: Python ``ssl``, curl and openssl s_client.

Certificates come from a throwaway CA (tests/tls_certs.py) through the routing
table, as the control plane delivers them. Every test runs against the
compiled build and the pure-Python sources.
"""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from router_helpers import Backend, Router, closed_by_peer, http_get, make_table, wait_until
from test_router_follow import TOKEN, StubControlPlane
from tls_certs import Issued, TestCA

pytestmark = pytest.mark.integration

HOST = "hello.example.test"
PLAIN_HOST = "plain.example.test"  # has a certificate, redirect turned off
WILD = "*.wild.test"


@pytest.fixture(params=["installed", "pure-python"])
def router_build(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def ca() -> TestCA:
    return TestCA()


def tls_table(backend: Backend, certs: list[dict[str, object]], version: int = 1) -> dict[str, Any]:
    t = make_table(version, [(1, 100, [backend])], host=HOST)
    t["environments"][0]["hosts"] = [HOST, PLAIN_HOST, "app.wild.test", "nocert.example.test"]
    t["certificates"] = certs
    t["https"] = [
        {"host": HOST, "redirect": True, "hsts_max_age": 600},
        {"host": PLAIN_HOST, "redirect": False},
        {"host": "app.wild.test"},
        {"host": "nocert.example.test"},  # redirect asked, but no certificate covers it: served plain
    ]
    return t


def client_context(ca: TestCA, tmp_path: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca.write(tmp_path / "ca.pem")))
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def tls_request(port: int, ctx: ssl.SSLContext, sni: str | None, path: str = "/", host: str | None = None) -> tuple[bytes, ssl.SSLSocket]:
    """One GET over a fresh TLS connection; returns the response bytes and the (open) socket."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    s = ctx.wrap_socket(raw, server_hostname=sni)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host or sni}\r\n\r\n".encode())
    return read_response(s), s


def read_response(s: socket.socket) -> bytes:
    out = b""
    while b"\r\n\r\n" not in out:
        chunk = s.recv(65536)
        assert chunk, out
        out += chunk
    head, _, body = out.partition(b"\r\n\r\n")
    n = int(next(l.split(b":", 1)[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")))
    while len(body) < n:
        chunk = s.recv(65536)
        assert chunk
        body += chunk
    return head + b"\r\n\r\n" + body


@pytest.fixture
def tls_router(backend: Callable[..., Backend], router: Callable[..., Router], ca: TestCA) -> tuple[Router, Backend, Issued]:
    b = backend("b1")
    leaf = ca.issue([HOST, PLAIN_HOST])
    wild = ca.issue([WILD])
    r = router(tls_table(b, [leaf.route([HOST, PLAIN_HOST]), wild.route([WILD])]), "--listen-tls", "127.0.0.1:0", "--tls-handshake-timeout", "1")
    assert r.tls_port is not None
    return r, b, leaf


def test_https_sni_forwarded_proto_alpn_and_modern_settings(tls_router: tuple[Router, Backend, Issued], ca: TestCA, tmp_path: Path) -> None:
    r, _, leaf = tls_router
    ctx = client_context(ca, tmp_path)
    out, s = tls_request(r.tls_port, ctx, HOST, "/headers")
    try:
        assert out.startswith(b"HTTP/1.1 200 "), out
        assert s.selected_alpn_protocol() == "http/1.1"
        assert s.version() in ("TLSv1.2", "TLSv1.3")
        # SNI picked the certificate for this name (the one issued for it, not the wildcard).
        import hashlib

        assert hashlib.sha256(s.getpeercert(binary_form=True)).hexdigest() == leaf.fingerprint
        headers = {k.lower(): v for k, v in json.loads(out.split(b"\r\n\r\n", 1)[1])["headers"]}
        assert headers["x-forwarded-proto"] == "https"
        assert headers["x-forwarded-host"] == HOST
        assert b"Strict-Transport-Security: max-age=600\r\n" in out
        # Keep-alive over TLS: a second request on the same connection.
        s.sendall(f"GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
        assert read_response(s).endswith(b"\r\n\r\nb1\n")
    finally:
        s.close()
    # The wildcard certificate for a name under it; no HSTS there.
    out, s = tls_request(r.tls_port, ctx, "app.wild.test")
    s.close()
    assert out.startswith(b"HTTP/1.1 200 ") and b"Strict-Transport-Security" not in out, out
    # Plain HTTP still says http.
    headers = {k.lower(): v for k, v in json.loads(http_get(r.port, "/headers", host=PLAIN_HOST)[2])["headers"]}
    assert headers["x-forwarded-proto"] == "http"


def test_old_protocols_and_weak_ciphers_are_refused(tls_router: tuple[Router, Backend, Issued], ca: TestCA, tmp_path: Path) -> None:
    r, _, _ = tls_router
    old = client_context(ca, tmp_path)
    old.minimum_version = ssl.TLSVersion.TLSv1
    old.maximum_version = ssl.TLSVersion.TLSv1_1
    try:
        old.set_ciphers("ALL:@SECLEVEL=0")
    except ssl.SSLError:
        pass
    with pytest.raises((ssl.SSLError, ConnectionError)):
        tls_request(r.tls_port, old, HOST)
    weak = client_context(ca, tmp_path)
    weak.maximum_version = ssl.TLSVersion.TLSv1_2
    weak.set_ciphers("AES128-SHA:AES256-SHA:AES128-GCM-SHA256")  # no forward secrecy / CBC
    with pytest.raises(ssl.SSLError):
        tls_request(r.tls_port, weak, HOST)
    strong = client_context(ca, tmp_path)
    strong.maximum_version = ssl.TLSVersion.TLSv1_2
    out, s = tls_request(r.tls_port, strong, HOST)
    assert s.version() == "TLSv1.2" and "ECDHE" in s.cipher()[0], s.cipher()
    s.close()
    assert out.startswith(b"HTTP/1.1 200 ")


def test_no_sni_or_unknown_name_is_refused_cleanly(tls_router: tuple[Router, Backend, Issued], ca: TestCA, tmp_path: Path) -> None:
    """No default certificate: the router ends the handshake without sending any certificate (the
    client sees the connection closed mid-handshake: asyncio's TLS transport drops OpenSSL's
    unrecognized_name alert), and serves everyone else on."""
    r, _, _ = tls_router
    ctx = client_context(ca, tmp_path)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # accept any certificate: the router must send none
    for sni in (None, "unknown.example.test", "nocert.example.test", "a.b.wild.test"):
        with pytest.raises((ssl.SSLError, ConnectionError)):
            tls_request(r.tls_port, ctx, sni, host=HOST)
    out, s = tls_request(r.tls_port, client_context(ca, tmp_path), HOST)
    s.close()
    assert out.startswith(b"HTTP/1.1 200 ")
    health = json.loads(http_get(r.admin_port, "/healthz")[2])
    assert health["tls"]["refused_handshakes"] == 4, health


def test_redirect_308_per_domain(tls_router: tuple[Router, Backend, Issued]) -> None:
    r, _, _ = tls_router
    status, headers, _ = http_get(r.port, "/a/b?c=1", host=HOST)
    assert status == 308
    assert headers["location"] == f"https://{HOST}:{r.tls_port}/a/b?c=1"
    # Turned off for this domain; and never towards a name no certificate covers.
    assert http_get(r.port, "/", host=PLAIN_HOST)[0] == 200
    assert http_get(r.port, "/", host="nocert.example.test")[0] == 200
    assert http_get(r.port, "/", host="unknown.example.test")[0] == 404
    # The redirect host's 308 is not cached into plain serving: asked again, still 308.
    assert http_get(r.port, "/", host=HOST)[0] == 308


def test_a_hello_that_never_finishes_is_timed_out(tls_router: tuple[Router, Backend, Issued], ca: TestCA, tmp_path: Path) -> None:
    r, _, _ = tls_router
    s = socket.create_connection(("127.0.0.1", r.tls_port), timeout=10)
    try:
        s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # the start of a ClientHello
        t0 = time.monotonic()
        assert closed_by_peer(s, 8), "the router kept a half handshake open"
        assert time.monotonic() - t0 < 6
    finally:
        s.close()
    out, s2 = tls_request(r.tls_port, client_context(ca, tmp_path), HOST)
    s2.close()
    assert out.startswith(b"HTTP/1.1 200 ")


def test_curl_and_openssl_s_client(tls_router: tuple[Router, Backend, Issued], ca: TestCA, tmp_path: Path) -> None:
    r, _, leaf = tls_router
    cafile = ca.write(tmp_path / "ca.pem")
    for tool in ("curl", "openssl"):
        if shutil.which(tool) is None:
            if __import__("os").environ.get("CI") == "true":
                pytest.fail(f"{tool} is not installed (Debian package {tool})")
            pytest.skip(f"{tool} is not installed (Debian package {tool})")
    out = subprocess.run(
        ["curl", "-sS", "--cacert", str(cafile), "--resolve", f"{HOST}:{r.tls_port}:127.0.0.1", "-D", "-", f"https://{HOST}:{r.tls_port}/"],
        capture_output=True, text=True, timeout=30,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("HTTP/1.1 200") and out.stdout.endswith("b1\n"), out.stdout
    out = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{r.tls_port}", "-servername", HOST, "-CAfile", str(cafile),
         "-verify_return_error", "-alpn", "http/1.1", "-ign_eof"],
        input=f"GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n", capture_output=True, text=True, timeout=30,
    )
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "Verify return code: 0 (ok)" in text and "ALPN protocol: http/1.1" in text, text
    assert f"subject=CN={HOST}" in text.replace(" = ", "=") and "HTTP/1.1 200 " in text and "b1" in text, text


def test_new_certificate_reaches_new_connections_without_dropping_open_ones(
    backend: Callable[..., Backend], router: Callable[..., Router], ca: TestCA, tmp_path: Path
) -> None:
    """A renewed certificate arrives through the routing table's long-poll: new handshakes get it;
    a connection opened before keeps working on the old one."""
    b = backend("b1")
    first, second = ca.issue([HOST]), ca.issue([HOST])
    cp = StubControlPlane()
    try:
        cp.publish(tls_table(b, [first.route([HOST])], version=1))
        r = router(None, "--listen-tls", "127.0.0.1:0", "--control-plane", cp.url, "--token", TOKEN, "--poll-wait", "1")
        ctx = client_context(ca, tmp_path)
        import hashlib

        def served() -> str:
            try:
                out, s = tls_request(r.tls_port, ctx, HOST)
            except (ssl.SSLError, ConnectionError):  # before the first table: no certificate yet
                return ""
            try:
                assert out.startswith(b"HTTP/1.1 200 "), out
                return hashlib.sha256(s.getpeercert(binary_form=True)).hexdigest()
            finally:
                s.close()

        wait_until(lambda: served() == first.fingerprint, what="the first certificate served")
        _, old_conn = tls_request(r.tls_port, ctx, HOST)
        cp.publish(tls_table(b, [second.route([HOST])], version=2))
        wait_until(lambda: served() == second.fingerprint, what="the renewed certificate served")
        old_conn.sendall(f"GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
        assert read_response(old_conn).endswith(b"b1\n")
        assert hashlib.sha256(old_conn.getpeercert(binary_form=True)).hexdigest() == first.fingerprint
        old_conn.close()
        # The private key is not shown by the admin port's /table, even to the router's own token.
        own = {"Authorization": f"Bearer {TOKEN}"}
        status, _, body = http_get(r.admin_port, "/table", headers=own)
        assert status == 200, body
        assert json.loads(body)["certificates"][0]["key_pem"] == "(redacted)"
        assert "PRIVATE KEY" not in body.decode()
    finally:
        cp.stop()


def test_acme_http01_challenges_answered_by_the_router(backend: Callable[..., Backend], router: Callable[..., Router]) -> None:
    """The router answers /.well-known/acme-challenge/TOKEN over plain HTTP from its table, for any
    host and before any redirect; everything else routes as usual."""
    b = backend("b1")
    t = make_table(1, [(1, 100, [b])], host=HOST)
    t["acme_challenges"] = [{"token": "tok-123_AB", "key_authorization": "tok-123_AB.thumbprint"}]
    r = router(t)
    for host in (HOST, "new.example.test"):  # a routed host, and one not in the table yet
        status, _, body = http_get(r.port, "/.well-known/acme-challenge/tok-123_AB", host=host)
        assert (status, body) == (200, b"tok-123_AB.thumbprint"), (host, status, body)
    assert http_get(r.port, "/.well-known/acme-challenge/other", host="new.example.test")[0] == 404
    assert http_get(r.port, "/", host=HOST)[2] == b"b1\n"
    assert http_get(r.port, "/", host=HOST)[2] == b"b1\n"  # (served twice: not cached while a challenge is pending)
