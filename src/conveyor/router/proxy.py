"""The client side of the proxy: one Protocol per client connection, one Exchange per request.

Why Protocols and callbacks: a request that reuses a pooled upstream connection
goes from the client's bytes to the upstream socket without a task or a future;
only opening a new upstream connection runs a coroutine. Bodies are streamed
chunk by chunk in both directions with transport flow control (a slow reader
pauses the other side's reads), so memory stays bounded whatever the size.

Pipelined requests are parsed ahead but answered in order: only the head of
the queue is active, and reading pauses while a later request waits, so at
most one read buffer of a waiting request's body is held.

Exchanges (one per request) live in ``exchange.py``. :class:`Proxy` holds what
the connections share: the compiled table (swapped atomically by
:meth:`Proxy.apply_table`), the metrics, the config, the set of connections,
and a 4 Hz ticker that enforces timeouts and finishes draining.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any

import httptools

from conveyor.domain.wire import RoutingTable
from conveyor.router.config import RouterConfig
from conveyor.router.exchange import P_BUFFER, P_QUEUE, P_UPGRADE, P_UPSTREAM, Exchange
from conveyor.router.http1 import XF_HTTP, XF_HTTPS, BadRequest, inspect_head, simple_response
from conveyor.router.metrics import Metrics
from conveyor.router.table import CompiledTable, EnvRoute, Target, compile_table, normalise_host
from conveyor.router.upstream import UpstreamConnection

log = logging.getLogger("conveyor.router")


class Proxy:
    """State shared by all connections of one router process."""

    def __init__(self, config: RouterConfig, metrics: Metrics | None = None) -> None:
        self.config = config
        self.metrics = metrics or Metrics(config.metrics)
        self.record_metrics = self.metrics.enabled  # read once per request
        self.loop = asyncio.get_running_loop()
        self.table: CompiledTable = compile_table(RoutingTable())[0]
        self.clients: set[ClientConnection] = set()
        self.tasks: set[asyncio.Task[None]] = set()  # upstream connects in progress
        self.draining: list[Target] = []
        self.now = self.loop.time()
        # Hot-path copies of settings, and deadlines precomputed once per tick.
        self.max_head = config.max_head_bytes
        self.max_headers = config.max_headers
        self.max_body = config.max_body_bytes
        self.head_deadline = self.idle_deadline = self.upstream_deadline = 0.0
        self._refresh_deadlines()
        self._ticker: asyncio.Task[None] | None = None
        self.accepting = True
        #: Host header as sent -> environment, for the table in force (cleared on apply), one
        #: per listener: connections hold theirs (``ClientConnection.hosts``), so the TLS
        #: listener's routing and redirects cost the plain path nothing. A host that plain
        #: HTTP redirects to HTTPS, or that TLS answers with HSTS, is never cached: its
        #: requests take the miss path (:meth:`lookup_host`, then ``Exchange.no_route``).
        self.host_cache: dict[bytes, EnvRoute] = {}
        self.tls_host_cache: dict[bytes, EnvRoute] = {}
        #: TLS termination (``--listen-tls``): a ``conveyor.router.tls.TlsTerminator``, or None.
        self.tls: Any = None
        self.https_port = 443  # the port redirects point to (the TLS listener's)
        self.redirects: dict[str, bool] = {}  # hosts whose plain HTTP gets a 308 to https://
        self.hsts: dict[str, bytes] = {}  # hosts -> their Strict-Transport-Security header line
        #: ACME HTTP-01 answers, by request target ("/.well-known/acme-challenge/TOKEN"). While
        #: any is pending, plain HTTP caches no host, so every request passes the check in the
        #: miss path (``Exchange.activate``); with none, the plain path does no extra work.
        self.acme: dict[bytes, str] = {}

    def lookup_host(self, raw_host: bytes, tls: bool = False) -> EnvRoute | None:
        host = normalise_host(raw_host.decode("latin-1"))
        if tls:
            env = self.table.hosts.get(host)
            if env is not None and host not in self.hsts:
                cache = self.tls_host_cache
                if len(cache) > 4096:
                    cache.clear()
                cache[raw_host] = env
            return env
        if host in self.redirects:
            return None
        env = self.table.hosts.get(host)
        if env is not None and not self.acme:
            if len(self.host_cache) > 4096:  # random Host headers must not grow it forever
                self.host_cache.clear()
            self.host_cache[raw_host] = env
        return env

    def redirect_location(self, raw_host: bytes, url: bytes) -> bytes | None:
        """Where a plain-HTTP request for ``raw_host`` is redirected (308), or None."""
        host = normalise_host(raw_host.decode("latin-1"))
        if host not in self.redirects:
            return None
        port = b"" if self.https_port == 443 else b":%d" % self.https_port
        if not url.startswith(b"/"):
            url = b"/"  # absolute-form or '*': keep the origin only
        return b"https://" + host.encode("idna") + port + url

    def acme_answer(self, url: bytes) -> str | None:
        """The key authorization for an ACME HTTP-01 challenge request, or None."""
        return self.acme.get(url)

    def hsts_header(self, raw_host: bytes) -> bytes | None:
        return self.hsts.get(normalise_host(raw_host.decode("latin-1"))) if self.hsts else None

    # -- table -------------------------------------------------------------

    def apply_table(self, table: RoutingTable) -> None:
        """Swap in a new table atomically; start draining instances it dropped."""
        m = self.metrics
        if m.enabled:
            compiled, removed = compile_table(table, self.table, m.release, m.instance)
        else:
            compiled, removed = compile_table(table, self.table)
        self.table = compiled
        self.host_cache.clear()  # cleared, not replaced: connections hold these dicts
        self.tls_host_cache.clear()
        self._apply_https(table)
        deadline = self.loop.time() + self.config.drain_timeout
        for t in removed:
            t.draining = True
            t.drain_deadline = deadline
            for c in list(t.idle):
                c.close()
            t.idle.clear()
            self.draining.append(t)
        # Targets revived by this table stop draining.
        self.draining = [t for t in self.draining if t.draining]

    def _apply_https(self, table: RoutingTable) -> None:
        """Certificates to the TLS listener; redirect and HSTS per host (only with a TLS listener
        and a certificate covering the host: never a redirect to an HTTPS that cannot answer)."""
        redirects: dict[str, bool] = {}
        hsts: dict[str, bytes] = {}
        tls = self.tls
        if tls is not None:
            tls.apply(table.certificates)
            for h in table.https:
                host = normalise_host(h.host)
                if not tls.covers(host):
                    continue
                if h.redirect:
                    redirects[host] = True
                if h.hsts_max_age:
                    hsts[host] = b"Strict-Transport-Security: max-age=%d\r\n" % h.hsts_max_age
        self.redirects = redirects
        self.hsts = hsts
        self.acme = {b"/.well-known/acme-challenge/" + c.token.encode(): c.key_authorization for c in table.acme_challenges}

    # -- lifecycle ---------------------------------------------------------

    def protocol(self) -> ClientConnection:
        return ClientConnection(self)

    def tls_protocol(self) -> ClientConnection:
        return ClientConnection(self, True)

    def start_ticker(self) -> None:
        self._ticker = self.loop.create_task(self._tick_forever())

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - a timeout sweep must never stop
                log.exception("router ticker failed")

    def _refresh_deadlines(self) -> None:
        now = self.now
        cfg = self.config
        self.head_deadline = now + cfg.head_timeout
        self.idle_deadline = now + cfg.idle_timeout
        self.upstream_deadline = now + cfg.upstream_timeout

    def tick(self) -> None:
        """Enforce timeouts, expire idle upstream connections, finish draining."""
        now = self.now = self.loop.time()
        self._refresh_deadlines()
        cfg = self.config
        for c in list(self.clients):
            if c.deadline and now > c.deadline and c.active is None:
                c.timeout()
                continue
            ex = c.active
            if ex is not None and ex.conn is not None and not ex.finished and not c.write_paused:
                if now > ex.upstream_deadline:
                    ex.upstream_timeout()
                elif ex.target is not None and ex.target.draining and now > ex.target.drain_deadline:
                    ex.abort("instance removed from the routing table and drain timeout passed")
        for t in self.table.targets.values():
            idle = t.idle
            while idle and now - idle[0].idle_since > cfg.upstream_idle_timeout:
                idle.pop(0).close()
        if self.draining:
            keep = []
            for t in self.draining:
                if t.outstanding > 0 and now <= t.drain_deadline:
                    keep.append(t)
            self.draining = keep

    def metrics_snapshot(self, router_id: str) -> dict[str, Any]:
        """The metrics document, with in-flight gauges read from the targets."""
        return self.metrics.snapshot(router_id, self.table.version, [*self.table.targets.values(), *self.draining])

    def in_flight(self) -> int:
        return sum(1 for c in self.clients if c.active is not None)

    async def shutdown(self, timeout: float) -> None:
        """Stop: close idle connections, let active requests finish up to ``timeout``."""
        self.accepting = False
        for c in self.clients:  # responses still to come say "Connection: close"
            for ex in c.queue:
                ex.fast_ok = False
        deadline = self.loop.time() + timeout
        while True:
            for c in list(self.clients):
                if c.active is None and c.parsing is None and c.tunnel is None:
                    c.transport.close()
            if not any(c.active is not None for c in self.clients) or self.loop.time() > deadline:
                break
            await asyncio.sleep(0.05)
        for c in list(self.clients):
            c.transport.close()
        for t in self.table.targets.values():
            for u in list(t.idle):
                u.close()
        if self._ticker is not None:
            self._ticker.cancel()

    def unknown_host_text(self, host: str) -> str:
        known = sorted(self.table.hosts)
        shown = ", ".join(known[:20]) + (", ..." if len(known) > 20 else "") if known else "(none yet)"
        return (
            f"conveyor router: no environment serves host {host!r}.\n"
            "Hosts map to environments through the routing table from the control plane "
            f"(version {self.table.version}): by default the production environment of app APP "
            "answers at APP.localhost and environment ENV at ENV.APP.localhost.\n"
            f"Hosts this router knows: {shown}\n"
        )


class ClientConnection:
    """A connection from a client: parses requests, runs their exchanges in order.

    An asyncio Protocol by its methods, not by inheritance: a class compiled by
    mypyc is native (attributes in a C struct) only when it derives from nothing
    interpreted, and this one is touched a dozen times per request.
    """

    def __init__(self, state: Proxy, tls: bool = False) -> None:
        self.state = state
        self.tls = tls
        #: This listener's host cache and X-Forwarded-Proto (see Proxy.host_cache).
        self.hosts = state.tls_host_cache if tls else state.host_cache
        self.xf_proto = XF_HTTPS if tls else XF_HTTP
        self.transport: Any = None
        #: Made in connection_made, dropped in connection_lost: it refers back to this
        #: connection (a cycle, see connection_lost), and over TLS a handshake that fails
        #: never calls either, so a connection that never starts never holds one.
        self.parser: httptools.HttpRequestParser | None = None
        self.peer_ip = ""
        self.peer_ip_bytes = b""
        self.parsing: Exchange | None = None
        self.active: Exchange | None = None
        self.queue: deque[Exchange] = deque()
        self.paused = 0
        self.write_paused = False
        self.close_after = False
        self.broken = False
        self.tunnel: UpstreamConnection | None = None
        self.in_head = True
        self.head_bytes = 0
        self.completed = False  # a request ended during the current feed_data
        self.deadline = 0.0
        self.cb_error: BadRequest | None = None  # raised inside a parser callback
        # The request head being parsed (reset at each message begin).
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_size = 0
        self.max_head = state.max_head
        self.max_headers = state.max_headers
        #: The bytes being fed when no request had begun: its first line is the
        #: request line, which tells the HTTP version cheaper than the parser does.
        self.chunk: bytes | None = None

    # -- connection --------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.parser = httptools.HttpRequestParser(self)
        peer = transport.get_extra_info("peername")
        self.peer_ip = peer[0] if peer else ""
        self.peer_ip_bytes = self.peer_ip.encode()
        self.state.clients.add(self)
        self.deadline = self.state.head_deadline

    def connection_lost(self, exc: Exception | None) -> None:
        self.state.clients.discard(self)
        self.close_after = True
        # The parser holds bound methods of this connection: a reference cycle that only the
        # garbage collector breaks. Until it runs (every few dozen connections) the connection,
        # its transport and, over TLS, the SSL protocol, object and OpenSSL state stay allocated:
        # more memory touched per connection and more for the collector to walk. Dropping the
        # parser here lets reference counting free them all now.
        self.parser = None
        if self.tunnel is not None:
            self.tunnel.close()
            return
        ex = self.active
        if ex is not None and not ex.finished:
            self.queue.clear()
            ex.finish(ex.status or 499, False)

    def eof_received(self) -> bool | None:
        """The client half-closed (plain FIN, or TLS close_notify): close our side too.

        Not inheriting ``asyncio.Protocol`` (see the class docstring), this method
        must exist by itself: uvloop's plain transport tolerates its absence, but
        its TLS transport treats the AttributeError as a fatal error, logging a
        traceback per connection (wrk's close_notify after a ``Connection: close``
        answer made that 6 % of the router's CPU) and aborting without flushing.
        Returning None lets the transport flush what is written, then close.
        """
        return None

    def pause(self, bit: int) -> None:
        if not self.paused and self.transport is not None:
            self.transport.pause_reading()
        self.paused |= bit

    def resume(self, bit: int) -> None:
        if self.paused & bit:
            self.paused &= ~bit
            if not self.paused and not self.close_after:
                self.transport.resume_reading()

    def pause_writing(self) -> None:
        self.write_paused = True
        up = self.tunnel or (self.active.conn if self.active is not None else None)
        if up is not None and not up.closed:
            up.transport.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        up = self.tunnel or (self.active.conn if self.active is not None else None)
        if up is not None and not up.closed:
            up.transport.resume_reading()

    def timeout(self) -> None:
        if self.parsing is not None or self.head_bytes:
            self.transport.write(simple_response(408, "conveyor router: request head not received in time\n", True))
            if self.state.metrics.enabled:
                self.state.metrics.count_unrouted(408)
        self.close_after = True
        self.transport.close()

    # -- data --------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel.transport.write(data)
            return
        if self.broken or self.close_after:
            return
        queue = self.queue
        if queue and queue[-1].upgrade_buf is not None:  # bytes before the 101: keep for the tunnel
            queue[-1].upgrade_buf.append(data)
            self.pause(P_UPGRADE)
            return
        parser = self.parser
        if parser is None:  # lost (data after connection_lost breaks the protocol contract)
            return
        was_head = self.in_head
        self.completed = False
        self.chunk = data if self.parsing is None else None
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade as e:
            ex = self.queue[-1] if self.queue else None
            if ex is None or ex.info is None or ex.info.upgrade is None or ex.finished:
                # Answered already (404, 503...): the bytes that follow are not HTTP; hang up.
                self.close()
                return
            ex.upgrade_buf = [data[e.args[0] :]] if e.args[0] < len(data) else []
            self.pause(P_UPGRADE)
            return
        except httptools.HttpParserError as e:
            err = self.cb_error
            if err is None:
                if e.__context__ is not None:
                    log.error("request callback failed", exc_info=e.__context__)
                err = BadRequest(400, f"malformed request: {e}")
            self._bad(err)
            return
        if was_head and self.in_head and self.parsing is not None and not self.completed:
            # A head still incomplete, begun before this read. (When a request ended in this read
            # and the next head began in it, the read's bytes are mostly the old request's: they
            # are not counted, and the next read counts.)
            self.head_bytes += len(data)
            if self.head_bytes > self.state.max_head:
                self._bad(BadRequest(431, f"request head larger than {self.state.max_head} bytes"))

    def _bad(self, err: BadRequest) -> None:
        """Refuse the request being parsed and stop reading: the framing can no longer be trusted."""
        self.broken = True
        self.pause(P_QUEUE)
        ex = self.parsing
        if ex is None:
            ex = Exchange(self)
        if ex.finished:
            self.close_after = True
            self.transport.close()
            return
        ex.error = err
        self.parsing = None
        if ex not in self.queue:
            self.queue.append(ex)
        if self.active is None:
            self.active = ex
            ex.activate()
        elif self.active is ex:
            if ex.resp is None and not ex.finished:
                if ex.conn is not None:
                    ex.conn.close()
                    ex.conn = None
                ex.respond(err.status, f"bad request: {err.reason}\n", close=True)
            else:
                ex.abort(err.reason)

    # httptools callbacks

    def on_message_begin(self) -> None:
        self.parsing = Exchange(self)
        self.url = b""
        self.headers = []
        self.head_size = 0
        self.in_head = True
        self.deadline = self.state.head_deadline
        if self.active is not None:
            self.pause(P_QUEUE)

    def on_url(self, url: bytes) -> None:
        self.url += url
        size = self.head_size = self.head_size + len(url)
        if size > self.max_head:
            self.cb_error = BadRequest(414, f"request target longer than {self.max_head} bytes")
            raise self.cb_error

    def on_header(self, name: bytes, value: bytes) -> None:
        """Collect a header. The head's size is checked once it is complete (see
        :meth:`_check_head_size`); trailers, which come after it, are checked here."""
        headers = self.headers
        headers.append((name, value))
        if len(headers) > self.max_headers:
            self.cb_error = BadRequest(431, f"more than {self.max_headers} request headers")
            raise self.cb_error
        if not self.in_head:  # a trailer of a chunked body
            self.head_size += len(name) + len(value) + 4
            self._check_head_size(self.head_size)

    def _check_head_size(self, size: int) -> None:
        if size > self.max_head:
            self.cb_error = BadRequest(431, f"request head larger than {self.max_head} bytes")
            raise self.cb_error

    def on_headers_complete(self) -> None:
        ex = self.parsing
        assert ex is not None
        p = self.parser
        assert p is not None  # a callback of this very parser
        method = p.get_method()
        ex.method = method
        chunk = self.chunk
        if chunk is not None:  # the head began in this chunk: sniff "HTTP/1.1" from its request line
            self.chunk = None  # (only the first request of a chunk begins at its start)
            eol = chunk.find(b"\n")
            http11 = chunk[eol - 10 : eol] == b" HTTP/1.1\r" if eol > 10 else False
            if not http11:
                http11 = p.get_http_version() == "1.1"
            # The head lies in this chunk, and counts at most 2 bytes more per line than
            # it has (``a:b\n`` counts as ``a: b\r\n``): a short chunk cannot exceed the limit.
            measure = len(chunk) * 2 > self.max_head
        else:
            http11 = p.get_http_version() == "1.1"
            measure = True
        headers = self.headers
        if measure:
            self.head_size += sum(len(n) + len(v) for n, v in headers) + 4 * len(headers)
            self._check_head_size(self.head_size)
        ex.http11 = http11
        self.in_head = False
        self.head_bytes = 0
        self.deadline = 0.0
        self.headers = []  # trailers of a chunked body land in a fresh list
        try:
            info = inspect_head(method, self.url, http11, headers, self.peer_ip_bytes, p.should_keep_alive(), self.xf_proto)
        except BadRequest as e:
            self.cb_error = e
            raise
        ex.info = info
        ex.body_expected = info.chunked or bool(info.content_length)
        ex.fast_ok = http11 and info.keep_alive and info.upgrade is None and method != b"HEAD" and self.state.accepting
        self.queue.append(ex)
        if self.active is None:
            self.active = ex
            ex.activate()

    def on_body(self, body: bytes) -> None:
        ex = self.parsing
        if ex is not None and not ex.finished:
            try:
                ex.request_body(body)
            except BadRequest as e:
                self.cb_error = e
                raise

    def on_message_complete(self) -> None:
        ex = self.parsing
        self.parsing = None
        self.in_head = True
        self.completed = True
        if ex is not None:
            ex.request_done = True
            if ex.body_expected and not ex.finished:
                ex.request_end()
        if self.active is None and not self.close_after:
            self.deadline = self.state.idle_deadline

    # -- exchange completion ----------------------------------------------

    def exchange_done(self, ex: Exchange) -> None:
        queue = self.queue
        if queue and queue[0] is ex:
            queue.popleft()
        self.active = None
        if self.paused:
            self.resume(P_UPSTREAM | P_BUFFER)
        resp = ex.resp
        info = ex.info
        if (
            self.close_after
            or not (ex.request_done or not ex.body_expected)
            or (resp is not None and resp.close_client)
            or not self.state.accepting
            or (info is not None and not info.keep_alive)
        ):
            self.close_after = True
            self.transport.close()
            return
        if queue:
            nxt = queue[0]
            self.active = nxt
            nxt.activate()
        elif self.parsing is None:
            self.deadline = self.state.idle_deadline
        if self.paused and (not self.queue or self.parsing is None):
            self.resume(P_QUEUE)

    def close(self) -> None:
        self.close_after = True
        self.transport.close()
