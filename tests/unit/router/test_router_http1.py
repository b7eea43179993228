"""Request validation and head rewriting, on parsed header lists (no sockets)."""

from __future__ import annotations

import pytest

from conveyor.router.http1 import BadRequest, inspect_request, passthrough_info, response_head, simple_response

H = (b"Host", b"hello.localhost")


def head_of(info_lines: list[bytes]) -> bytes:
    return b"".join(info_lines)


def test_forwarded_head() -> None:
    info = inspect_request(
        "GET",
        b"/a?b=1",
        "1.1",
        [H, (b"X-Forwarded-For", b"1.1.1.1"), (b"Connection", b"keep-alive, X-Secret"), (b"X-Secret", b"s"), (b"Keep-Alive", b"5"), (b"Accept", b"*/*")],
        "127.0.0.9",
        True,
    )
    head = info.forwarded_head
    assert head.startswith(b"GET /a?b=1 HTTP/1.1\r\nHost: hello.localhost\r\n")
    assert b"X-Forwarded-For: 1.1.1.1, 127.0.0.9\r\n" in head
    assert b"X-Forwarded-Proto: http\r\nX-Forwarded-Host: hello.localhost\r\n" in head
    assert b"X-Secret" not in head and b"Keep-Alive" not in head and b"Connection" not in head
    assert b"Accept: */*\r\n" in head and head.endswith(b"\r\n\r\n")
    assert info.keep_alive and info.host == "hello.localhost"
    assert b"X-Request-Id: " + info.request_id in head


def test_request_id_kept_or_made() -> None:
    kept = inspect_request("GET", b"/", "1.1", [H, (b"X-Request-Id", b"abc-123")], "1.2.3.4", True)
    assert kept.request_id == b"abc-123"
    bad = inspect_request("GET", b"/", "1.1", [H, (b"X-Request-Id", b"has space")], "1.2.3.4", True)
    assert bad.request_id != b"has space"
    a = inspect_request("GET", b"/", "1.1", [H], "1", True).request_id
    b = inspect_request("GET", b"/", "1.1", [H], "1", True).request_id
    assert a != b


def test_framing() -> None:
    cl = inspect_request("POST", b"/", "1.1", [H, (b"Content-Length", b"12")], "1", True)
    assert cl.content_length == 12 and b"Content-Length: 12\r\n" in cl.forwarded_head
    ch = inspect_request("POST", b"/", "1.1", [H, (b"Transfer-Encoding", b"Chunked")], "1", True)
    assert ch.chunked and b"Transfer-Encoding: chunked\r\n" in ch.forwarded_head
    up = inspect_request("GET", b"/ws", "1.1", [H, (b"Connection", b"Upgrade"), (b"Upgrade", b"websocket")], "1", True)
    assert up.upgrade == b"websocket" and b"Connection: Upgrade\r\nUpgrade: websocket\r\n" in up.forwarded_head
    not_up = inspect_request("GET", b"/", "1.1", [H, (b"Upgrade", b"websocket")], "1", True)
    assert not_up.upgrade is None
    ex = inspect_request("POST", b"/", "1.1", [H, (b"Expect", b"100-continue"), (b"Content-Length", b"1")], "1", True)
    assert ex.expect_continue and b"Expect" not in ex.forwarded_head
    close = inspect_request("GET", b"/", "1.1", [H, (b"Connection", b"close")], "1", True)
    assert not close.keep_alive


@pytest.mark.parametrize(
    ("method", "version", "headers", "status", "match"),
    [
        ("POST", "1.1", [H, (b"Content-Length", b"1"), (b"Content-Length", b"1")], 400, "Content-Length"),
        ("POST", "1.1", [H, (b"Content-Length", b"1a")], 400, "Content-Length"),
        ("POST", "1.1", [H, (b"Transfer-Encoding", b"gzip, chunked")], 400, "Transfer-Encoding"),
        ("POST", "1.0", [H, (b"Transfer-Encoding", b"chunked")], 400, "HTTP/1.0"),
        ("POST", "1.1", [H, (b"Transfer-Encoding", b"chunked"), (b"Transfer-Encoding", b"chunked")], 400, "more than one"),
        ("POST", "1.1", [H, (b"Transfer-Encoding", b"chunked"), (b"Content-Length", b"3")], 400, "both"),
        ("GET", "1.1", [], 400, "Host"),
        ("GET", "1.1", [H, H], 400, "Host"),
        ("GET", "1.1", [H, (b"Expect", b"magic")], 417, "Expect"),
        ("CONNECT", "1.1", [H], 405, "CONNECT"),
    ],
)
def test_refused(method: str, version: str, headers: list[tuple[bytes, bytes]], status: int, match: str) -> None:
    with pytest.raises(BadRequest, match=match) as e:
        inspect_request(method, b"/", version, headers, "1", True)
    assert e.value.status == status


def test_http10_without_host_is_fine() -> None:
    assert inspect_request("GET", b"/", "1.0", [], "1", False).host == ""


def test_response_head_rewrites() -> None:
    r = response_head(200, b"OK", [(b"Content-Length", b"5"), (b"Connection", b"keep-alive, X-Hop"), (b"X-Hop", b"1"), (b"Keep-Alive", b"t")], False, True, True, b"rid")
    assert r.head == b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Request-Id: rid\r\n\r\n"
    assert r.content_length == 5 and not r.close_client and r.upstream_keep_alive
    # Close-delimited upstream body: chunked to a 1.1 client, connection closed for a 1.0 one.
    r = response_head(200, b"OK", [], False, True, True, b"r")
    assert r.chunked_out and r.close_delimited and not r.upstream_keep_alive
    r = response_head(200, b"OK", [(b"Transfer-Encoding", b"chunked")], False, False, True, b"r")
    assert r.close_client and b"Connection: close" in r.head and not r.chunked_out
    r = response_head(200, b"OK", [(b"Content-Length", b"5")], False, False, True, b"r")
    assert b"Connection: keep-alive" in r.head
    r = response_head(304, b"", [(b"ETag", b"x")], False, True, False, b"r")
    assert r.no_body and r.head.startswith(b"HTTP/1.1 304 Not Modified\r\n") and b"Connection: close" in r.head
    r = response_head(200, b"OK", [(b"Content-Length", b"5")], True, True, True, b"r")
    assert r.no_body and b"Content-Length: 5" in r.head
    r = response_head(200, b"OK", [(b"Content-Length", b"5"), (b"Connection", b"close")], False, True, True, b"r")
    assert not r.upstream_keep_alive


def test_passthrough_only_when_nothing_to_rewrite() -> None:
    ok = passthrough_info(200, [(b"Content-Length", b"5"), (b"X", b"y")], False, True, True, True)
    assert ok is not None and ok.content_length == 5 and ok.head == b""
    assert passthrough_info(200, [(b"Transfer-Encoding", b"chunked")], False, True, True, True) is not None
    assert passthrough_info(200, [(b"Content-Length", b"5"), (b"Connection", b"close")], False, True, True, True) is None
    assert passthrough_info(200, [(b"Content-Length", b"5")], False, False, True, True) is None  # 1.0 client
    assert passthrough_info(200, [(b"Content-Length", b"5")], False, True, False, True) is None  # client closes
    assert passthrough_info(200, [(b"Content-Length", b"5")], False, True, True, False) is None  # 1.0 upstream
    assert passthrough_info(200, [], False, True, True, True) is None  # close-delimited
    assert passthrough_info(204, [], False, True, True, True) is not None


def test_simple_response() -> None:
    out = simple_response(503, "no\n", True, b"id1")
    assert out == (
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 3\r\n"
        b"X-Request-Id: id1\r\nConnection: close\r\n\r\nno\n"
    )
