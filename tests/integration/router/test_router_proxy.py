"""HTTP/1.1 proxying through a real router process to real backend processes."""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Callable

import pytest

from router_helpers import Backend, Router, http_get, make_table, raw, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(params=["installed", "pure-python"])
def router_build(request: pytest.FixtureRequest) -> str:
    """Each test here runs against the installed router (compiled by mypyc when the install could)
    and against its plain-Python sources: the two must behave the same."""
    return str(request.param)


def test_get_keepalive_balances_across_instances(backend: Callable[..., Backend], router: Callable[..., Router]) -> None:
    b1, b2 = backend("b1"), backend("b2")
    r = router(make_table(1, [(1, 100, [b1, b2])]))
    c = http.client.HTTPConnection("127.0.0.1", r.port, timeout=10)
    seen: dict[bytes, int] = {}
    for _ in range(40):
        c.request("GET", "/", headers={"Host": "hello.localhost"})
        resp = c.getresponse()
        body = resp.read()
        assert resp.status == 200
        seen[body] = seen.get(body, 0) + 1
    c.close()
    # One client, sequential requests: least-outstanding ties rotate over both instances.
    assert set(seen) == {b"b1\n", b"b2\n"}, seen
    assert min(seen.values()) >= 10, seen


def test_forwarded_and_hop_by_hop_headers(backend: Callable[..., Backend], router: Callable[..., Router]) -> None:
    b1 = backend("b1")
    r = router(make_table(1, [(1, 100, [b1])]))
    req = (
        b"GET /headers?x=1 HTTP/1.1\r\nHost: Hello.LOCALHOST:8080\r\nX-Request-Id: my-id-1\r\n"
        b"X-Forwarded-For: 10.1.2.3\r\nConnection: keep-alive, X-Drop\r\nX-Drop: secret\r\nKeep-Alive: timeout=5\r\n"
        b"Proxy-Connection: keep-alive\r\nTE: trailers\r\nX-Custom: kept\r\nX-Forwarded-Proto: https\r\n\r\n"
    )
    out = raw(r.port, req, until_close=False)
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), out
    while len(body) < int(dict(ln.split(b": ", 1) for ln in head.split(b"\r\n")[1:])[b"Content-Length"]):
        body += raw(r.port, b"", timeout=0.1)  # pragma: no cover - the body is tiny, arrives with the head
    seen = json.loads(body)
    hdrs = {k.lower(): v for k, v in seen["headers"]}
    assert seen["target"] == "/headers?x=1"
    assert hdrs["x-forwarded-for"] == "10.1.2.3, 127.0.0.1"
    assert hdrs["x-forwarded-proto"] == "http"
    assert hdrs["x-forwarded-host"] == "Hello.LOCALHOST:8080"
    assert hdrs["x-request-id"] == "my-id-1"
    assert hdrs["x-custom"] == "kept"
    for gone in ("x-drop", "keep-alive", "proxy-connection", "te"):
        assert gone not in hdrs, (gone, hdrs)
    # Without an id from the client, the router makes one.
    _, _, body = http_get(r.port, "/headers")
    hdrs = {k.lower(): v for k, v in json.loads(body)["headers"]}
    assert len(hdrs["x-request-id"]) >= 12


def test_unknown_host_404_explains(backend: Callable[..., Backend], router: Callable[..., Router]) -> None:
    r = router(make_table(1, [(1, 100, [backend("b1")])]))
    status, _, body = http_get(r.port, "/", host="nope.localhost")
    assert status == 404
    text = body.decode()
    assert "'nope.localhost'" in text and "hello.localhost" in text and "routing table" in text


def test_no_ready_instance_503(router: Callable[..., Router]) -> None:
    r = router(make_table(1, [(1, 100, [])]))
    status, _, body = http_get(r.port, "/")
    assert status == 503
    assert b"no ready instance" in body
    assert r.release_metrics(1)["status"]["5xx"] == 1


def test_bodies_content_length_and_chunked(backend: Callable[..., Backend], router: Callable[..., Router]) -> None:
    r = router(make_table(1, [(1, 100, [backend("b1")])]))
    c = http.client.HTTPConnection("127.0.0.1", r.port, timeout=10)
    c.request("POST", "/echo", body=b"abc" * 1000, headers={"Host": "hello.localhost"})
    resp = c.getresponse()
    assert resp.status == 200 and resp.read() == b"abc" * 1000
    c.request("POST", "/echo", body=iter([b"one,", b"two,", b"three"]), headers={"Host": "hello.localhost"}, encode_chunked=True)
    resp = c.getresponse()
    assert resp.getheader("Transfer-Encoding") == "chunked"
    assert resp.read() == b"one,two,three"
    # HEAD then GET on the same connection: the HEAD response's Content-Length announces no body.
    c.request("HEAD", "/", headers={"Host": "hello.localhost"})
    resp = c.getresponse()
    assert resp.status == 200 and resp.read() == b""
    c.request("GET", "/", headers={"Host": "hello.localhost"})
    assert c.getresponse().read() == b"b1\n"
    # A close-delimited upstream body reaches an HTTP/1.1 client chunked.
    c.request("GET", "/bigclose?n=100000", headers={"Host": "hello.localhost"})
    resp = c.getresponse()
    assert resp.getheader("Transfer-Encoding") == "chunked"
    assert len(resp.read()) == 100000
    c.close()


def test_pipelined_requests_answered_in_order(backend: Callable[..., Backend], router: Callable[..., Router]) -> None:
    r = router(make_table(1, [(1, 100, [backend("b1")])]))
    reqs = b"".join(
        b"GET /slow?s=%s HTTP/1.1\r\nHost: hello.localhost\r\nX-Request-Id: r%d\r\n\r\n" % (s, i)
        for i, s in enumerate([b"0.2", b"0", b"0.1"])
    ) + b"GET / HTTP/1.1\r\nHost: hello.localhost\r\nConnection: close\r\n\r\n"
    out = raw(r.port, reqs, timeout=10)
    ids = [ln.split(b": ")[1] for ln in out.split(b"\r\n") if ln.startswith(b"X-Seen-Request-Id")]
    assert ids[:3] == [b"r0", b"r1", b"r2"] and len(ids) == 4, out
    assert out.count(b"HTTP/1.1 200") == 4


def test_http10_client(backend: Callable[..., Backend], router: Callable[..., Router]) -> None:
    r = router(make_table(1, [(1, 100, [backend("b1")])]))
    out = raw(r.port, b"GET /bigchunked?n=5000 HTTP/1.0\r\nHost: hello.localhost\r\n\r\n")
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"Transfer-Encoding" not in head
    assert body == b"x" * 5000  # close-delimited for an HTTP/1.0 client


def test_http_version_read_per_pipelined_request(backend: Callable[..., Backend], router: Callable[..., Router]) -> None:
    """Requests sharing one packet each keep their own HTTP version (the router reads it
    from the request line of the first one only): an HTTP/1.0 keep-alive request after
    an HTTP/1.1 one is answered with ``Connection: keep-alive``, the 1.1 ones without."""
    r = router(make_table(1, [(1, 100, [backend("b1")])]))
    out = raw(
        r.port,
        b"GET / HTTP/1.1\r\nHost: hello.localhost\r\n\r\n"
        b"GET / HTTP/1.0\r\nHost: hello.localhost\r\nConnection: keep-alive\r\n\r\n"
        b"GET / HTTP/1.1\r\nHost: hello.localhost\r\nConnection: close\r\n\r\n",
        timeout=10,
    )
    answers = out.split(b"HTTP/1.1 200 ")
    assert len(answers) == 4 and answers[0] == b"", out
    heads = [a.partition(b"\r\n\r\n")[0].lower() for a in answers[1:]]
    assert b"connection:" not in heads[0], out
    assert b"connection: keep-alive" in heads[1], out
    assert b"connection: close" in heads[2], out


def test_expect_100_continue(backend: Callable[..., Backend], router: Callable[..., Router]) -> None:
    r = router(make_table(1, [(1, 100, [backend("b1")])]))
    s = socket.create_connection(("127.0.0.1", r.port), timeout=10)
    try:
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: hello.localhost\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        first = s.recv(100)
        assert first == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(b"hello")
        out = b""
        while not out.endswith(b"hello"):
            chunk = s.recv(4096)
            assert chunk
            out += chunk
        assert out.startswith(b"HTTP/1.1 200")
    finally:
        s.close()


def _ws_frame(payload: bytes, opcode: int = 1) -> bytes:
    mask = b"\x01\x02\x03\x04"
    n = len(payload)
    hdr = bytes([0x80 | opcode]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big"))
    return hdr + mask + bytes(c ^ mask[i % 4] for i, c in enumerate(payload))


def _read_ws(s: socket.socket, buf: bytes) -> tuple[bytes, bytes]:
    while len(buf) < 2:
        buf += s.recv(4096)
    n = buf[1] & 0x7F
    off = 2
    if n == 126:
        while len(buf) < 4:
            buf += s.recv(4096)
        n, off = int.from_bytes(buf[2:4], "big"), 4
    while len(buf) < off + n:
        chunk = s.recv(65536)
        assert chunk, "tunnel closed"
        buf += chunk
    return buf[off : off + n], buf[off + n :]


def test_websocket_echo_tunnel(backend: Callable[..., Backend], router: Callable[..., Router]) -> None:
    r = router(make_table(1, [(1, 100, [backend("b1")])]))
    s = socket.create_connection(("127.0.0.1", r.port), timeout=10)
    try:
        s.sendall(
            b"GET /ws HTTP/1.1\r\nHost: hello.localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n" + _ws_frame(b"early")
        )
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += s.recv(4096)
        head, _, buf = buf.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        assert b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head
        msg, buf = _read_ws(s, buf)
        assert msg == b"early"
        for i in range(20):
            payload = b"message %d " % i * (i * 50 + 1)
            s.sendall(_ws_frame(payload))
            msg, buf = _read_ws(s, buf)
            assert msg == payload
    finally:
        s.close()
    wait_until(lambda: r.release_metrics(1)["status"]["1xx"] == 1, what="101 counted")


def test_upgrade_to_unknown_host_gets_404_then_close(router: Callable[..., Router]) -> None:
    r = router(make_table(1, [(1, 100, [])]))
    out = raw(r.port, b"GET /ws HTTP/1.1\r\nHost: nope\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x85abcdefghi")
    assert out.startswith(b"HTTP/1.1 404 ") and out.count(b"HTTP/1.1 ") == 1, out


def test_upgrade_refused_by_instance_is_relayed_and_closed(backend: Callable[..., Backend], router: Callable[..., Router]) -> None:
    r = router(make_table(1, [(1, 100, [backend("b1")])]))
    out = raw(r.port, b"GET /status?code=400 HTTP/1.1\r\nHost: hello.localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 ") and b"Connection: close" in out and out.endswith(b"b1\n"), out


def test_client_gone_mid_response_frees_everything(backend: Callable[..., Backend], router: Callable[..., Router]) -> None:
    r = router(make_table(1, [(1, 100, [backend("b1")])]))
    s = socket.create_connection(("127.0.0.1", r.port), timeout=10)
    s.sendall(b"GET /big?n=100000000 HTTP/1.1\r\nHost: hello.localhost\r\n\r\n")
    assert s.recv(65536).startswith(b"HTTP/1.1 200")
    s.close()
    wait_until(lambda: (m := r.release_metrics(1))["in_flight"] == 0 and m["requests"] == 1, what="exchange finished")
    assert http_get(r.port, "/")[0] == 200


def test_expect_100_with_body_over_limit_gets_413_without_100(backend: Callable[..., Backend], router: Callable[..., Router]) -> None:
    r = router(make_table(1, [(1, 100, [backend("b1")])]), "--max-body-bytes", "100")
    out = raw(r.port, b"POST /echo HTTP/1.1\r\nHost: hello.localhost\r\nContent-Length: 101\r\nExpect: 100-continue\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 413 "), out
