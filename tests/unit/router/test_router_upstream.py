"""The upstream connection's parser-free fast path, against canned response bytes."""

from __future__ import annotations

from typing import Any

import pytest

from conveyor.router.table import Target
from conveyor.router.upstream import UpstreamConnection


class FakeTransport:
    def __init__(self) -> None:
        self.out: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.out.append(data)

    def close(self) -> None:
        self.closed = True


class FakeClient:
    def __init__(self) -> None:
        self.transport = FakeTransport()


class FakeExchange:
    """Just what fast_head/data_received touch."""

    fast_ok = True

    def __init__(self) -> None:
        self.client = FakeClient()
        self.state = type("S", (), {"upstream_deadline": 0.0})()
        self.started: int | None = None
        self.completed: bool | None = None

    def fast_start(self, conn: Any, status: int) -> None:
        self.started = status

    def fast_complete(self, conn: Any, clean: bool) -> None:
        self.completed = clean


def conn_with(ex: FakeExchange) -> UpstreamConnection:
    c = UpstreamConnection(Target("i", "127.0.0.1:1"))
    c.connection_made(FakeTransport())  # type: ignore[arg-type]
    c.start(ex)  # type: ignore[arg-type]
    return c


def test_whole_response_in_one_read() -> None:
    ex = FakeExchange()
    c = conn_with(ex)
    data = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"
    assert c.fast_head(ex, data)  # type: ignore[arg-type]
    assert ex.started == 200 and ex.completed is True and ex.client.transport.out == [data]


def test_body_counted_across_reads() -> None:
    ex = FakeExchange()
    c = conn_with(ex)
    c.data_received(b"HTTP/1.1 404 Not Found\r\nContent-Length: 10\r\n\r\nabc")
    assert ex.started == 404 and ex.completed is None and c.remaining == 7
    c.data_received(b"defg")
    assert ex.completed is None and c.remaining == 3
    c.data_received(b"hijEXTRA")  # bytes beyond the body: the connection is not reusable
    assert ex.completed is False
    assert b"".join(ex.client.transport.out).endswith(b"abcdefghij")


@pytest.mark.parametrize(
    "data",
    [
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",  # HTTP/1.0 upstream
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",  # chunked
        b"HTTP/1.1 200 OK\r\nContent-Type: x\r\n\r\nok",  # close-delimited
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",  # hop-by-hop header
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",  # duplicate length
        b"HTTP/1.1 200 OK\r\nX: y\nContent-Length: 9\r\n\r\nok",  # bare LF
        b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",  # no body by status
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",  # interim
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n",  # head not complete in this read
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nok",  # more bytes than announced
        b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\nok",  # bad length
    ],
)
def test_anything_unusual_goes_through_the_parser(data: bytes) -> None:
    ex = FakeExchange()
    c = conn_with(ex)
    assert not c.fast_head(ex, data)  # type: ignore[arg-type]
    assert ex.started is None and ex.client.transport.out == [] and c.remaining == 0
