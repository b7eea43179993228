"""The upstream connection's parser-free fast path, against canned response bytes."""

from __future__ import annotations

import pytest

from conveyor.router.config import RouterConfig
from conveyor.router.exchange import Exchange
from conveyor.router.metrics import Metrics
from conveyor.router.proxy import ClientConnection, Proxy
from conveyor.router.table import Target
from conveyor.router.upstream import UpstreamConnection
from router_fakes import FakeTransport


def exchange_and_conn() -> tuple[Exchange, UpstreamConnection, Target]:
    """A real exchange (its client's socket faked) attached to a real upstream connection (socket faked).

    Real classes, not look-alikes: the router's modules are compiled (mypyc), and
    compiled code only accepts the types it declares.
    """
    client = ClientConnection(Proxy(RouterConfig(), Metrics(enabled=False)))
    client.connection_made(FakeTransport())  # type: ignore[arg-type]
    ex = Exchange(client)
    ex.fast_ok = True
    target = Target("i", "127.0.0.1:1")
    conn = UpstreamConnection(target)
    conn.connection_made(FakeTransport())  # type: ignore[arg-type]
    target.outstanding += 1
    ex.target = target
    ex.conn = conn
    ex.request_done = True
    conn.start(ex)
    return ex, conn, target


def sent(ex: Exchange) -> list[bytes]:
    return ex.client.transport.out  # type: ignore[no-any-return]


async def test_whole_response_in_one_read() -> None:
    ex, c, target = exchange_and_conn()
    data = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"
    assert c.fast_head(ex, data)
    assert ex.status == 200 and ex.finished and sent(ex) == [data]
    assert target.idle == [c] and not c.closed  # complete and clean: back in the pool


async def test_body_counted_across_reads() -> None:
    ex, c, target = exchange_and_conn()
    c.data_received(b"HTTP/1.1 404 Not Found\r\nContent-Length: 10\r\n\r\nabc")
    assert ex.status == 404 and not ex.finished and c.remaining == 7
    c.data_received(b"defg")
    assert not ex.finished and c.remaining == 3
    c.data_received(b"hijEXTRA")  # bytes beyond the body: the connection is not reusable
    assert ex.finished and c.closed and target.idle == []
    assert b"".join(sent(ex)).endswith(b"abcdefghij")


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
async def test_anything_unusual_goes_through_the_parser(data: bytes) -> None:
    ex, c, _ = exchange_and_conn()
    assert not c.fast_head(ex, data)
    assert ex.status == 0 and not ex.passthrough and sent(ex) == [] and c.remaining == 0
