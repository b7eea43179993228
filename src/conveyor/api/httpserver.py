"""The API's HTTP/1.1 server: uvicorn's httptools protocol with the router's head timeout.

Why: uvicorn bounds an idle keep-alive connection (``timeout_keep_alive``) but
not a request whose head never ends, so a slowloris client sending one header
byte at a time held 200 connections for a minute. The router answers such a
client with 408 after ``head_timeout`` (10 s, ``conveyor.router.config``); the
API does the same here: from a connection's first byte (or its opening) to the
end of a request's headers, at most :data:`HEAD_TIMEOUT` seconds.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

#: seconds from a new connection or a request's first byte to its last header line (the router's)
HEAD_TIMEOUT = 10.0

_408 = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 42\r\nconnection: close\r\n\r\nrequest headers not received within time\r\n"
)


class HeadTimeoutProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` that answers 408 and closes when a request's head takes too long."""

    head_timeout: float = HEAD_TIMEOUT

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_head_timer()

    def on_headers_complete(self) -> None:
        self._disarm_head_timer()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # a response is still being written (the slow head is a pipelined request): let it
            # finish, then this connection ends
            self.cycle.keep_alive = False
            return
        self.transport.write(_408)
        self.transport.close()
