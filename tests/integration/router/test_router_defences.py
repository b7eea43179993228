"""Malformed and hostile requests, with raw sockets: refused with the right status and a closed connection."""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Callable

import pytest
from router_helpers import Backend, Router, closed_by_peer, http_get, make_table, raw, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(params=["installed", "pure-python"])
def router_build(request: pytest.FixtureRequest) -> str:
    """Each test here runs against the installed router (compiled by mypyc when the install could)
    and against its plain-Python sources: the two must behave the same."""
    return str(request.param)

H = b"Host: hello.localhost\r\n"

SMUGGLING = {
    "cl_and_te": b"POST /sink HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /x HTTP/1.1\r\n\r\n",
    "duplicate_cl": b"POST /sink HTTP/1.1\r\n" + H + b"Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
    "conflicting_cl": b"POST /sink HTTP/1.1\r\n" + H + b"Content-Length: 3\r\nContent-Length: 40\r\n\r\nabc",
    "cl_list": b"POST /sink HTTP/1.1\r\n" + H + b"Content-Length: 3, 3\r\n\r\nabc",
    "cl_sign": b"POST /sink HTTP/1.1\r\n" + H + b"Content-Length: +3\r\n\r\nabc",
    "cl_hex": b"POST /sink HTTP/1.1\r\n" + H + b"Content-Length: 0x3\r\n\r\nabc",
    "te_unknown": b"POST /sink HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip\r\n\r\nabc",
    "te_list": b"POST /sink HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    "te_duplicate": b"POST /sink HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "te_obfuscated": b"POST /sink HTTP/1.1\r\n" + H + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
    "te_http10": b"POST /sink HTTP/1.0\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "obs_fold": b"GET / HTTP/1.1\r\n" + H + b"X-A: b\r\n c\r\n\r\n",
    "bare_lf_head": b"GET / HTTP/1.1\n" + H + b"\n",
    "bare_lf_header": b"GET / HTTP/1.1\r\nHost: hello.localhost\nX: y\r\n\r\n",
    "bare_lf_chunk": b"POST /sink HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n",
    "space_before_colon": b"GET / HTTP/1.1\r\nHost : hello.localhost\r\n\r\n",
    "two_hosts": b"GET / HTTP/1.1\r\n" + H + H + b"\r\n",
    "no_host_11": b"GET / HTTP/1.1\r\n\r\n",
    "garbage": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
}


#: Malformed chunked bodies (llhttp rejects each; the router must answer 400 and let no
#: request complete at the backend, nor the one smuggled behind it).
BAD_CHUNKS = {
    "chunk_size_not_hex": b"zz\r\nabc\r\n0\r\n\r\n",
    "chunk_size_overflow": b"1ffffffffffffffff\r\nabc\r\n0\r\n\r\n",
    "chunk_size_space": b"3 ;a=b\r\nabc\r\n0\r\n\r\n",
    "no_crlf_after_chunk_data": b"3\r\nabcX\r\n0\r\n\r\n",
    "no_crlf_then_last_chunk": b"3\r\nabc0\r\n\r\n",
    "chunk_ext_control_byte": b"3;a\x01=b\r\nabc\r\n0\r\n\r\n",
    "chunk_ext_open_quote": b"3;a=\"b\r\nabc\r\n0\r\n\r\n",
    "chunk_ext_bare_lf": b"3;a=b\nabc\r\n0\r\n\r\n",
}
SMUGGLED = b"GET /smuggled HTTP/1.1\r\n" + H + b"\r\n"


@pytest.fixture
def plain_backend(backend: Callable[..., Backend]) -> Backend:
    return backend("b1")


@pytest.fixture
def plain(plain_backend: Backend, router: Callable[..., Router]) -> Router:
    return router(make_table(1, [(1, 100, [plain_backend])]), "--max-headers", "20", "--max-head-bytes", "4096", "--max-body-bytes", "1000", "--head-timeout", "1", "--idle-timeout", "1.5")


def backend_seen(b: Backend) -> dict[str, list[str]]:
    """What the backend itself received (heads, requests whose body it read whole), asked directly."""
    return json.loads(http_get(b.port, "/_seen")[2])


def test_smuggling_attempts_get_400_and_close(plain: Router, plain_backend: Backend) -> None:
    for name, data in SMUGGLING.items():
        out = raw(plain.port, data, timeout=5)  # returns when the router closes
        assert out.startswith(b"HTTP/1.1 400 "), (name, out)
        assert b"Connection: close" in out, name
        assert len(re.findall(rb"HTTP/1\.1 \d{3} ", out)) == 1, (name, out)  # nothing smuggled behind it
    # The router is still healthy; counted at the backend: only the one good request completed there,
    # and nothing smuggled (``GET /x`` of cl_and_te) ever reached it.
    assert http_get(plain.port, "/")[0] == 200
    seen = backend_seen(plain_backend)
    assert seen["completed"] == ["/"], seen
    assert set(seen["heads"]) <= {"/", "/sink"} and seen["heads"].count("/") == 1, seen


def test_malformed_chunked_bodies_get_400_and_reach_no_backend(plain: Router, plain_backend: Backend) -> None:
    head = b"POST /sink HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
    for i, (name, body) in enumerate(BAD_CHUNKS.items()):
        out = raw(plain.port, head + body + SMUGGLED, timeout=5)
        assert out.startswith(b"HTTP/1.1 400 "), (name, out)
        assert b"Connection: close" in out, name
        assert len(re.findall(rb"HTTP/1\.1 \d{3} ", out)) == 1, (name, out)
        # Again with a good first chunk that the backend is already reading when the bad one comes.
        s = socket.create_connection(("127.0.0.1", plain.port), timeout=5)
        try:
            s.sendall(head + b"2\r\nok\r\n")
            wait_until(lambda: backend_seen(plain_backend)["heads"].count("/sink") >= i + 1, what=f"{name}: head at the backend")
            s.sendall(body + SMUGGLED)
            assert closed_by_peer(s, 5), name
        finally:
            s.close()
    # A well-formed chunked body with an extension still goes through (the control case).
    out = raw(plain.port, head + b"3;a=b\r\nabc\r\n0\r\n\r\n" + b"GET / HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n")
    assert re.findall(rb"HTTP/1\.1 (\d{3}) ", out) == [b"200", b"200"], out
    assert b'"bytes": 3' in out, out
    seen = backend_seen(plain_backend)
    # Counted at the backend: the head of a refused request may have left before its body went
    # bad, but its body never completed there, and the request behind it never arrived.
    assert seen["completed"] == ["/sink", "/"], seen
    assert "/smuggled" not in seen["heads"], seen


def test_limits_431_413(plain: Router) -> None:
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(25))
    out = raw(plain.port, b"GET / HTTP/1.1\r\n" + H + many + b"\r\n")
    assert out.startswith(b"HTTP/1.1 431 "), out
    big = b"X-Big: " + b"a" * 5000 + b"\r\n"
    out = raw(plain.port, b"GET / HTTP/1.1\r\n" + H + big + b"\r\n")
    assert out.startswith(b"HTTP/1.1 431 "), out
    out = raw(plain.port, b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\n" + H + b"\r\n")
    assert out.startswith(b"HTTP/1.1 414 "), out
    # A head that never ends is cut at the limit, not buffered forever.
    s = socket.create_connection(("127.0.0.1", plain.port), timeout=5)
    try:
        s.sendall(b"GET / HTTP/1.1\r\n" + H + b"X-Long: ")
        with pytest.raises(OSError):
            for _ in range(100):
                s.sendall(b"a" * 1024)
                time.sleep(0.005)
    except AssertionError:
        raise
    finally:
        s.close()
    out = raw(plain.port, b"POST /sink HTTP/1.1\r\n" + H + b"Content-Length: 1001\r\n\r\n" + b"a" * 1001)
    assert out.startswith(b"HTTP/1.1 413 "), out
    chunks = b"".join(b"100\r\n" + b"a" * 256 + b"\r\n" for _ in range(5))
    out = raw(plain.port, b"POST /sink HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 413 "), out
    out = raw(plain.port, b"POST /sink HTTP/1.1\r\n" + H + b"Content-Length: 1000\r\nConnection: close\r\n\r\n" + b"a" * 1000)
    assert out.startswith(b"HTTP/1.1 200 "), out


def test_pipelined_large_body_does_not_count_as_head_bytes(backend: Callable[..., Backend], router: Callable[..., Router]) -> None:
    """One read that ends a request's 30 KB body and begins the next head: only the new head's bytes
    count against a 4 KB head limit (they were once all counted: a false 431)."""
    r = router(make_table(1, [(1, 100, [backend("b1")])]), "--max-head-bytes", "4096")
    body = b"a" * 30000
    first = b"POST /sink HTTP/1.1\r\n" + H + b"Content-Length: %d\r\n\r\n" % len(body) + body
    second = b"GET / HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n"
    s = socket.create_connection(("127.0.0.1", r.port), timeout=10)
    try:
        s.sendall(first + second[:10])  # the next head begins in the same segment
        out = b""
        while b"\r\n\r\n" not in out:  # the first response comes while the second head is incomplete
            chunk = s.recv(65536)
            assert chunk, out
            out += chunk
        assert out.startswith(b"HTTP/1.1 200 "), out
        s.sendall(second[10:])
        while chunk := s.recv(65536):
            out += chunk
    finally:
        s.close()
    assert re.findall(rb"HTTP/1\.1 (\d{3}) ", out) == [b"200", b"200"], out


def test_slowloris_is_cut(plain: Router) -> None:
    s = socket.create_connection(("127.0.0.1", plain.port), timeout=10)
    try:
        start = time.monotonic()
        s.sendall(b"GET / HTTP/1.1\r\n")
        # Trickle one header byte every 100 ms: each byte is progress, but the head deadline is fixed.
        closed = False
        s.settimeout(0.1)
        got = b""
        while time.monotonic() - start < 8:
            try:
                s.sendall(b"X")
            except OSError:
                closed = True
                break
            try:
                chunk = s.recv(4096)
                if not chunk:
                    closed = True
                    break
                got += chunk
            except (TimeoutError, socket.timeout):
                pass
            except ConnectionError:  # closed with our trickled bytes unread: a reset
                closed = True
                break
        assert closed, "router kept a slowloris connection open"
        assert time.monotonic() - start < 6
        assert got == b"" or got.startswith(b"HTTP/1.1 408"), got
    finally:
        s.close()
    # A connection that sends nothing is closed after the head timeout too.
    s = socket.create_connection(("127.0.0.1", plain.port), timeout=10)
    try:
        assert closed_by_peer(s, 6)
    finally:
        s.close()


def test_idle_keepalive_timeout(plain: Router) -> None:
    s = socket.create_connection(("127.0.0.1", plain.port), timeout=10)
    try:
        s.sendall(b"GET / HTTP/1.1\r\n" + H + b"\r\n")
        buf = b""
        while b"b1\n" not in buf:
            buf += s.recv(4096)
        t0 = time.monotonic()
        assert closed_by_peer(s, 8)
        assert time.monotonic() - t0 >= 1.0
    finally:
        s.close()
    wait_until(lambda: plain.metrics()["releases"][0]["requests"] == 1, what="one request counted")
