"""One keep-alive connection from the router to an instance (the pool's unit).

Why a Protocol and not streams: the proxy moves every byte through here, and
asyncio streams would add a task switch and a buffer copy per chunk. The
connection parses the response with httptools and hands events to the
:class:`~conveyor.router.proxy.Exchange` it currently serves; between exchanges
it sits in its target's ``idle`` list. A fresh parser per exchange keeps a HEAD
response (whose Content-Length announces a body that never comes) from
confusing the next one.

Reentrancy rule: nothing that could start a new exchange on this connection
runs inside parser callbacks; completion is noticed in the callbacks and acted
on after ``feed_data`` returns.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, cast

import httptools

from conveyor.router.http1 import FRAMING_LOWER_RE, split_head

if TYPE_CHECKING:
    from conveyor.router.exchange import Exchange
    from conveyor.router.proxy import ClientConnection
    from conveyor.router.table import Target


#: Status lines' first 12 bytes whose response has a body framed by its headers:
#: the fast path's candidates (HTTP/1.1; not 1xx, 204, 304).
_FAST_STATUS: Final[dict[bytes, int]] = {b"HTTP/1.1 %d" % c: c for c in range(200, 1000) if c not in (204, 304)}
#: A response head as RFC 9112 §4-5 writes it, and nothing else: status line with
#: a three-digit status and a space, then ``token:value`` lines, CRLF everywhere. A head
#: the fast path copies unparsed must match it; anything else (a space before the colon,
#: a folded or space-led line, status "2000", a bare LF, a control byte) goes to llhttp,
#: which rejects what a proxy must not pass on (the exchange then answers 502). Possessive
#: quantifiers: no backtracking state, ~10 % fewer instructions than the plain form.
_STRICT_HEAD: Final = re.compile(
    rb"HTTP/1\.1 [1-9][0-9][0-9] [\t -~\x80-\xff]*+\r\n(?:[!#$%&'*+.^_`|~0-9A-Za-z-]++:[\t -~\x80-\xff]*+\r\n)*+"
)


class UpstreamConnection:
    """An asyncio Protocol by its methods (see ClientConnection for why it does not inherit the class)."""

    __slots__ = (
        "target",
        "transport",
        "parser",
        "ex",
        "headers",
        "reason",
        "done",
        "interim",
        "reused",
        "got_bytes",
        "closed",
        "idle_since",
        "tunnel",
        "status",
        "raw",
        "fresh",
        "pre",
        "remaining",
    )

    def __init__(self, target: Target) -> None:
        self.target = target
        self.transport: Any = None
        self.parser: Any = None
        self.ex: Exchange | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.reason = b""
        self.done = False
        self.interim = False
        self.reused = False
        self.got_bytes = False
        self.closed = False
        self.idle_since = 0.0
        self.tunnel: ClientConnection | None = None
        self.status = 0
        self.raw: bytes | None = None  # the chunk being parsed, while it began this response
        self.fresh = False  # no byte of the current response seen yet
        self.pre: list[bytes] | None = None  # bytes of the current response until its head is parsed
        self.remaining = 0  # fast path: body bytes still to copy (see fast_head)

    # -- lifecycle ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def start(self, ex: Exchange) -> None:
        """Begin serving ``ex``: a fresh response parser and state.

        (``pre``, ``headers`` and ``reason`` are set when the response needs them:
        the fast path never does.)
        """
        self.ex = ex
        if self.parser is None:
            self.parser = httptools.HttpResponseParser(self)
        self.fresh = True
        self.done = False
        self.interim = False
        self.got_bytes = False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        idle = self.target.idle
        if self.ex is None and self in idle:
            idle.remove(self)
        if self.tunnel is not None:
            self.tunnel.transport.close()
            return
        ex = self.ex
        if ex is not None:
            self.ex = None
            ex.upstream_lost(self)

    def eof_received(self) -> bool | None:
        return None  # close our side too

    # -- flow control ------------------------------------------------------

    def pause_writing(self) -> None:
        client = self.tunnel if self.tunnel is not None else (self.ex.client if self.ex is not None else None)
        if client is not None:
            client.pause(2)

    def resume_writing(self) -> None:
        client = self.tunnel if self.tunnel is not None else (self.ex.client if self.ex is not None else None)
        if client is not None:
            client.resume(2)

    # -- data --------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel.transport.write(data)
            return
        ex = self.ex
        if ex is None:  # unsolicited bytes on an idle connection: it is not reusable
            self.close()
            return
        self.got_bytes = True
        rem = self.remaining
        if rem:  # fast path: copy the rest of a Content-Length body, counting
            ex.upstream_deadline = ex.state.upstream_deadline
            n = len(data)
            if n < rem:
                self.remaining = rem - n
                ex.client.transport.write(data)
                return
            self.remaining = 0
            ex.client.transport.write(data if n == rem else data[:rem])
            ex.fast_complete(self, clean=n == rem)
            return
        if self.fresh:
            self.fresh = False
            if ex.fast_ok and self.fast_head(ex, data):
                return
            ex.upstream_deadline = ex.state.upstream_deadline
            self.raw = data
            self.pre = [data]
        else:
            ex.upstream_deadline = ex.state.upstream_deadline
            if ex.passthrough:
                ex.client.transport.write(data)
            pre = self.pre
            if pre is not None:
                pre.append(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as e:
            self.raw = None
            self.parser = None
            ex.upgraded(self, data[e.args[0] :])
            return
        except httptools.HttpParserError as e:
            self.raw = None
            self.parser = None
            ex.flush()
            if self.ex is ex:
                ex.upstream_failed(self, f"malformed response from instance: {e}")
            return
        self.raw = None
        if ex.out is not None:
            ex.flush()
        if self.done and self.ex is ex:
            ex.response_complete(self)

    def fast_head(self, ex: Exchange, data: bytes) -> bool:
        """The common response, handled without the parser: True when it was.

        An HTTP/1.1 response whose head arrived whole in the first read, with a
        single Content-Length, no hop-by-hop header and no bare LF, is copied to
        the client as it is and its end found by counting. Anything else returns
        False and goes through llhttp (this method then changed nothing).
        """
        status = _FAST_STATUS.get(data[:12])
        if status is None:  # not HTTP/1.1, or 1xx, 204, 304
            return False
        end = data.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = data[: end + 2]
        if _STRICT_HEAD.fullmatch(head) is None:
            return False  # bare LF, folding, odd whitespace, a bad name or status: llhttp decides
        found = FRAMING_LOWER_RE.findall(head.lower())
        if len(found) != 1:
            return False
        name, value = found[0]
        if name != b"content-length" or not value.isdigit():
            return False
        length = int(value)
        body = len(data) - end - 4
        if body > length:
            return False  # bytes after the response: let the parser complain
        ex.fast_start(self, status)
        ex.client.transport.write(data)
        if body == length:
            ex.fast_complete(self, True)
        else:
            self.remaining = length - body
            ex.upstream_deadline = ex.state.upstream_deadline
        return True

    # httptools callbacks (no on_header: the head is read from the raw bytes, see head_bytes)

    def head_bytes(self) -> bytes:
        """The current response's head (status line + headers + one CRLF), from the bytes seen."""
        pre = self.pre or []
        buf = pre[0] if len(pre) == 1 else b"".join(pre)
        end = buf.find(b"\r\n\r\n")
        return buf[: end + 2]

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        self.status = status
        if 100 <= status < 200 and status != 101:
            self.interim = True  # 100 Continue & co: the router answered Expect itself
            return
        if status == 101:
            self.reason, self.headers = split_head(self.head_bytes())
            return  # the upgrade is handled when feed_data raises HttpParserUpgrade
        ex = self.ex
        if ex is not None and ex.response_head(self, status):
            self.done = True  # no body (HEAD, 204, 304)
            if ex.method == b"HEAD":
                self.parser = None  # it would wait for the announced body: use a fresh one next time

    def on_body(self, body: bytes) -> None:
        ex = self.ex
        if ex is not None and not ex.passthrough and not self.done:
            ex.response_body(body)

    def on_message_complete(self) -> None:
        if self.interim:
            # Drop the interim response's head from the bytes kept for the final head.
            self.interim = False
            self.raw = None
            pre = self.pre or []
            buf = b"".join(pre)
            self.pre = [buf[buf.find(b"\r\n\r\n") + 4 :]]
            return
        self.done = True


def upstream_factory(target: Target) -> Callable[[], asyncio.Protocol]:
    """``loop.create_connection``'s protocol factory for ``target`` (the cast tells the type checker
    that a Protocol by its methods will do, see ClientConnection)."""
    return cast("Callable[[], asyncio.Protocol]", lambda: UpstreamConnection(target))
