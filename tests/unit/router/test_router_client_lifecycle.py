"""A client connection's life: what it leaves behind once closed, and a half-close.

Why these matter for speed: a closed connection left to the garbage collector
(a reference cycle) keeps its transport and, over TLS, its OpenSSL state
allocated until the next collection; under new-connection load that made each
handshake touch cold memory (see docs/ARCHITECTURE.md, TLS termination).
"""

from __future__ import annotations

import gc

from conveyor.router.config import RouterConfig
from conveyor.router.metrics import Metrics
from conveyor.router.proxy import ClientConnection, Proxy
from router_fakes import FakeTransport


def _unreachable_after(make: object) -> int:
    """Objects the collector finds unreachable once ``make()``'s connection is dropped."""
    gc.collect()
    gc.disable()
    try:
        make()  # type: ignore[operator]
        return gc.collect()
    finally:
        gc.enable()


async def test_a_closed_connection_is_freed_without_the_collector() -> None:
    proxy = Proxy(RouterConfig(), Metrics(enabled=False))

    def served_and_closed() -> None:
        c = ClientConnection(proxy, True)
        t = FakeTransport()
        c.connection_made(t)  # type: ignore[arg-type]
        c.data_received(b"GET / HTTP/1.1\r\nHost: nowhere.test\r\n\r\n")  # answered 404 here
        assert t.out and t.out[0].startswith(b"HTTP/1.1 404 ")
        c.connection_lost(None)

    def never_made() -> None:  # a TLS handshake that failed: uvloop calls neither method
        ClientConnection(proxy, True)

    assert _unreachable_after(served_and_closed) == 0
    assert _unreachable_after(never_made) == 0


async def test_a_half_close_closes_after_flushing() -> None:
    """``eof_received`` must exist (the class does not inherit asyncio.Protocol): without it
    uvloop's TLS transport logs a traceback and aborts on every client close_notify."""
    c = ClientConnection(Proxy(RouterConfig(), Metrics(enabled=False)), True)
    c.connection_made(FakeTransport())  # type: ignore[arg-type]
    assert not c.eof_received()  # falsy: the transport flushes, then closes
