"""Malformed response heads from an instance: 502 to the client and an upstream error for the release.

RFC 9112 §5 forbids a proxy to forward a message its parser would reject. The
router's response fast path copies a common response head unparsed; these
tests prove that each head llhttp rejects gets a 502 (never the instance's
bytes) and counts as the release's upstream error, on both the fast-path
candidate (keep-alive GET) and the parsed path (``Connection: close``), with
the compiled build and with the pure-Python sources.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest
from router_helpers import Backend, Router, make_table, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(params=["installed", "pure-python"])
def router_build(request: pytest.FixtureRequest) -> str:
    return str(request.param)


MALFORMED = {
    "space_before_colon": b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok",
    "space_before_colon_other_header": b"HTTP/1.1 200 OK\r\nX-A : 1\r\nContent-Length: 2\r\n\r\nok",
    "folded_header_line": b"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 2\r\n\r\nok",
    "line_starting_with_space": b"HTTP/1.1 200 OK\r\n X-A: a\r\nContent-Length: 2\r\n\r\nok",
    "status_2000": b"HTTP/1.1 2000 OK\r\nContent-Length: 2\r\n\r\nok",
    "control_byte_in_name": b"HTTP/1.1 200 OK\r\nX\x01A: a\r\nContent-Length: 2\r\n\r\nok",
}
GOOD = b"HTTP/1.1 200 OK\r\nX-A: a\r\nContent-Length: 2\r\n\r\nok"


def _ask(port: int, response: bytes, close: bool) -> bytes:
    """Have the backend send ``response`` verbatim, through the router; the client's bytes."""
    conn = b"Connection: close\r\n" if close else b""
    req = b"GET /raw?h=%s HTTP/1.1\r\nHost: hello.localhost\r\n%s\r\n" % (response.hex().encode(), conn)
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        s.sendall(req)
        out = b""
        # Until the router closes (a 502 closes) or the good response's body is in.
        while not out.endswith(b"\r\n\r\nok"):
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
        return out
    finally:
        s.close()


@pytest.mark.parametrize("close", [False, True], ids=["keepalive-fastpath", "close-parsed"])
def test_malformed_response_heads_get_502_and_count_as_upstream_errors(
    backend: Callable[..., Backend], router: Callable[..., Router], close: bool
) -> None:
    r = router(make_table(1, [(1, 100, [backend("b1")])]))
    # The control case: a well-formed head through the same path reaches the client as sent.
    out = _ask(r.port, GOOD, close)
    assert out.startswith(b"HTTP/1.1 200 OK\r\n") and out.endswith(b"\r\n\r\nok"), out
    errors = 0
    for name, response in MALFORMED.items():
        out = _ask(r.port, response, close)
        assert out.startswith(b"HTTP/1.1 502 "), (name, out)
        assert b"malformed response from instance" in out, (name, out)
        assert response.split(b"\r\n\r\n")[0] not in out, (name, out)  # nothing of the bad head leaks
        errors += 1
        m = wait_until(lambda: r.release_metrics(1), what="metrics")
        assert m["upstream_errors"] == errors, (name, m)
        assert m["status"]["5xx"] == errors, (name, m)
    # And the router keeps serving.
    assert _ask(r.port, GOOD, close).startswith(b"HTTP/1.1 200 OK\r\n")
