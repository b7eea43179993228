"""The client side of the proxy: one Protocol per client connection, one Exchange per request.

Why Protocols and callbacks: a request that reuses a pooled upstream connection
goes from the client's bytes to the upstream socket without a task or a future;
only opening a new upstream connection runs a coroutine. Bodies are streamed
chunk by chunk in both directions with transport flow control (a slow reader
pauses the other side's reads), so memory stays bounded whatever the size.

Pipelined requests are parsed ahead but answered in order: only the head of
the queue is active, and reading pauses while a later request waits, so at
most one read buffer of a waiting request's body is held.

:class:`Proxy` holds what the connections share: the compiled table (swapped
atomically by :meth:`Proxy.apply_table`), the metrics, the config, the set of
connections, and a 4 Hz ticker that enforces timeouts and finishes draining.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections import deque
from typing import Any

import httptools

from conveyor.domain.wire import RoutingTable
from conveyor.router import balancer
from conveyor.router.config import RouterConfig
from conveyor.router.http1 import (
    CONTINUE_100,
    LAST_CHUNK,
    BadRequest,
    RequestInfo,
    ResponseInfo,
    chunk,
    inspect_request,
    raw_passthrough,
    response_head,
    split_head,
    simple_response,
)
from conveyor.router.metrics import Metrics, ReleaseStats
from conveyor.router.table import CompiledTable, EnvRoute, ReleaseRoute, Target, compile_table, normalise_host
from conveyor.router.upstream import UpstreamConnection

log = logging.getLogger("conveyor.router")

# Reasons a client connection's reading is paused (bit mask).
_P_BUFFER = 1  # request body buffered while the upstream connection opens
_P_UPSTREAM = 2  # upstream socket's write buffer is full
_P_QUEUE = 4  # a pipelined request waits for the one before it
_P_UPGRADE = 8  # waiting for the upstream's 101 before tunnelling
_BUFFER_LIMIT = 256 * 1024
_perf = time.perf_counter


class Proxy:
    """State shared by all connections of one router process."""

    def __init__(self, config: RouterConfig, metrics: Metrics | None = None) -> None:
        self.config = config
        self.metrics = metrics or Metrics(config.metrics)
        self.loop = asyncio.get_running_loop()
        self.table: CompiledTable = compile_table(RoutingTable())[0]
        self.clients: set[ClientConnection] = set()
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
        #: Host header as sent -> environment, for the table in force (cleared on apply).
        self.host_cache: dict[str, EnvRoute] = {}

    def lookup_host(self, raw_host: str) -> EnvRoute | None:
        env = self.table.hosts.get(normalise_host(raw_host))
        if env is not None:
            if len(self.host_cache) > 4096:  # random Host headers must not grow it forever
                self.host_cache.clear()
            self.host_cache[raw_host] = env
        return env

    # -- table -------------------------------------------------------------

    def apply_table(self, table: RoutingTable) -> None:
        """Swap in a new table atomically; start draining instances it dropped."""
        m = self.metrics
        if m.enabled:
            compiled, removed = compile_table(table, self.table, m.release, m.instance)
        else:
            compiled, removed = compile_table(table, self.table)
        self.table = compiled
        self.host_cache = {}
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

    # -- lifecycle ---------------------------------------------------------

    def protocol(self) -> ClientConnection:
        return ClientConnection(self)

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


class Exchange:
    """One request and its response, from the client's first byte to the last byte back."""

    # Defaults on the class: a new exchange per request only sets what differs
    # (no __slots__ on purpose; this keeps construction cheap on the request path).
    url = b""
    head_size = 0
    method = "GET"
    http11 = True
    info: RequestInfo | None = None
    error: BadRequest | None = None
    request_done = False
    body_expected = False
    body_bytes = 0
    buffered = 0
    conn: UpstreamConnection | None = None
    target: Target | None = None
    release: ReleaseRoute | None = None
    resp: ResponseInfo | None = None
    status = 0
    finished = False
    retried = False
    upstream_deadline = 0.0
    upgrade_buf: list[bytes] | None = None
    extra: list[bytes] | None = None
    blame: Target | None = None  # the last instance tried, for per-instance counts
    #: Response bytes gathered during one upstream read, written to the client in one
    #: call after the parser returns (head and a small body in one segment).
    out: list[bytes] | None = None
    passthrough = False  # the response is copied byte for byte (see http1.raw_passthrough)

    def __init__(self, client: ClientConnection) -> None:
        self.client = client
        self.state = client.state
        self.t0 = _perf()
        self.headers: list[tuple[bytes, bytes]] = []
        self.body_buf: list[bytes] | None = []

    # -- routing -----------------------------------------------------------

    def activate(self) -> None:
        """Route the request and send it upstream (or answer it here)."""
        state = self.state
        if self.error is not None:
            self.respond(self.error.status, f"bad request: {self.error.reason}\n", close=True)
            return
        info = self.info
        assert info is not None
        env = state.host_cache.get(info.host)
        if env is None:
            env = state.lookup_host(info.host)
            if env is None:
                self.respond(404, state.unknown_host_text(normalise_host(info.host)), close=False)
                return
        pin = balancer.parse_pin(info.pin, info.cookie) if (info.pin or info.cookie) else None
        point = self._sticky_point(env, info) if env.sticky and pin is None else random.random()
        rel = balancer.choose_release(env, point, pin)
        if rel is None:
            self.release = env.blame_release()
            self.respond(503, f"conveyor router: {env.app}/{env.env} has no ready instance\n", close=False)
            return
        self.release = rel
        target = balancer.choose_target(rel, state.now)
        if target is None:
            self.respond(503, f"conveyor router: release {rel.release} of {env.app}/{env.env} has no ready instance\n", close=False)
            return
        limit = state.max_body
        if limit and info.content_length is not None and info.content_length > limit:
            self.respond(413, f"request body larger than {limit} bytes\n", close=True)
            return
        if info.expect_continue and not self.request_done:
            self.client.transport.write(CONTINUE_100)
        self.dispatch(target, allow_idle=True)

    def _sticky_point(self, env: EnvRoute, info: RequestInfo) -> float:
        token = balancer.cookie_value(info.cookie, balancer.STICKY_COOKIE)
        if not token:
            token = os.urandom(8).hex()
            self.extra = [f"Set-Cookie: {balancer.STICKY_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax\r\n".encode()]
        return balancer.sticky_point(token)

    def dispatch(self, target: Target, allow_idle: bool) -> None:
        self.target = self.blame = target
        target.outstanding += 1
        if allow_idle:
            idle = target.idle
            while idle:
                conn = idle.pop()
                if not conn.closed:
                    conn.reused = True
                    self.attach(conn)
                    return
        self.state.loop.create_task(self._connect(target))

    def _untarget(self) -> None:
        t = self.target
        if t is not None:
            t.outstanding -= 1
            self.target = None

    async def _connect(self, target: Target) -> None:
        state = self.state
        try:
            _, conn = await asyncio.wait_for(
                state.loop.create_connection(lambda: UpstreamConnection(target), target.host, target.port),
                state.config.connect_timeout,
            )
        except (OSError, asyncio.TimeoutError) as e:
            self._connect_failed(target, e)
            return
        balancer.succeed(target)
        if self.finished or self.target is not target:
            conn.close()
            return
        self.attach(conn)

    def _connect_failed(self, target: Target, err: BaseException) -> None:
        state = self.state
        balancer.eject(target, state.loop.time(), state.config.eject_base, state.config.eject_max)
        self._count_upstream_error(target)
        if self.finished or self.target is not target:
            return
        self._untarget()
        if not self.retried and self.release is not None:
            self.retried = True
            other = balancer.choose_target(self.release, state.loop.time(), exclude=target)
            if other is not None and other is not target:
                self.dispatch(other, allow_idle=True)
                return
        reason = "timed out" if isinstance(err, asyncio.TimeoutError) else (err.strerror or str(err))
        self.respond(502, f"conveyor router: cannot connect to instance {target.id} ({target.address}): {reason}\n", close=not self.request_done)

    def _count_upstream_error(self, target: Target | None) -> None:
        if not self.state.metrics.enabled:
            return
        rel = self.release
        if rel is not None and rel.stats is not None:
            rel.stats.upstream_errors += 1
        if target is not None and target.stats is not None:
            target.stats.upstream_errors += 1

    def attach(self, conn: UpstreamConnection) -> None:
        """Send the request head and whatever body is buffered to ``conn``."""
        state = self.state
        self.conn = conn
        conn.start(self)
        info = self.info
        assert info is not None
        client = self.client
        tr = conn.transport
        buf = self.body_buf
        self.body_buf = None
        if buf:
            tr.write(info.forwarded_head)
            tr.writelines(buf)
        else:
            tr.write(info.forwarded_head)
        self.upstream_deadline = state.upstream_deadline
        if client.write_paused:
            tr.pause_reading()
        if client.paused:
            client.resume(_P_BUFFER)

    # -- request body ------------------------------------------------------

    def request_body(self, data: bytes) -> None:
        self.body_bytes += len(data)
        limit = self.state.max_body
        if limit and self.body_bytes > limit:
            raise BadRequest(413, f"request body larger than {limit} bytes")
        framed = chunk(data) if self.info is not None and self.info.chunked else [data]
        conn = self.conn
        if conn is not None and not conn.closed:
            conn.transport.writelines(framed)
            self.upstream_deadline = self.state.upstream_deadline
        elif self.body_buf is not None:
            self.body_buf += framed
            self.buffered += len(data)
            if self.buffered > _BUFFER_LIMIT:
                self.client.pause(_P_BUFFER)

    def request_end(self) -> None:
        self.request_done = True
        if self.info is not None and self.info.chunked:
            conn = self.conn
            if conn is not None and not conn.closed:
                conn.transport.write(LAST_CHUNK)
            elif self.body_buf is not None:
                self.body_buf.append(LAST_CHUNK)

    # -- response ----------------------------------------------------------

    def response_head(self, conn: UpstreamConnection, status: int) -> bool:
        info = self.info
        assert info is not None
        client = self.client
        upstream_http11 = conn.parser.get_http_version() == "1.1"
        head = conn.head_bytes()
        conn.pre = None
        if conn.raw is not None and self.extra is None and info.upgrade is None and client.state.accepting:
            fast = raw_passthrough(head, status, self.method == "HEAD", self.http11, info.keep_alive, upstream_http11)
            if fast is not None:
                self.resp = fast
                self.status = status
                self.passthrough = True
                self.out = [conn.raw]
                return fast.no_body
        reason, headers = split_head(head)
        resp = response_head(
            status,
            reason,
            headers,
            self.method == "HEAD",
            self.http11,
            info.keep_alive and info.upgrade is None and client.state.accepting,
            info.request_id,
            self.extra,
            upstream_http11,
        )
        self.resp = resp
        self.status = status
        self.out = [resp.head]
        return resp.no_body

    def response_body(self, data: bytes) -> None:
        resp = self.resp
        out = self.out
        if out is not None:
            if resp is not None and resp.chunked_out:
                out += chunk(data)
            else:
                out.append(data)
        elif resp is not None and resp.chunked_out:
            self.client.transport.writelines(chunk(data))
        else:
            self.client.transport.write(data)

    def flush(self) -> None:
        out = self.out
        if out is not None:
            self.out = None
            self.client.transport.write(b"".join(out) if len(out) > 1 else out[0])

    def response_complete(self, conn: UpstreamConnection) -> None:
        resp = self.resp
        if not self.passthrough and resp is not None and resp.chunked_out:
            self.client.transport.write(LAST_CHUNK)
        reuse = (
            self.request_done
            and resp is not None
            and resp.upstream_keep_alive
            and (self.info is None or self.info.upgrade is None)
        )
        self.finish(self.status, reuse)

    def upgraded(self, conn: UpstreamConnection, rest: bytes) -> None:
        """The instance switched protocols (101): tunnel bytes both ways from now on."""
        client = self.client
        if conn.status != 101 or self.upgrade_buf is None:
            self.upstream_failed(conn, "instance switched protocols without an Upgrade request")
            return
        head = [b"HTTP/1.1 101 ", conn.reason or b"Switching Protocols", b"\r\n"]
        for name, value in conn.headers:
            head += (name, b": ", value, b"\r\n")
        head.append(b"\r\n")
        client.transport.write(b"".join(head))
        if rest:
            client.transport.write(rest)
        conn.tunnel = client
        client.tunnel = conn
        if self.upgrade_buf:
            conn.transport.writelines(self.upgrade_buf)
        self.upgrade_buf = None
        self.status = 101
        self._record(101)
        self._untarget()
        conn.ex = None
        self.finished = True
        client.active = None
        if client.queue:
            client.queue.popleft()
        client.resume(_P_UPGRADE | _P_QUEUE | _P_BUFFER)

    # -- failures ----------------------------------------------------------

    def upstream_lost(self, conn: UpstreamConnection) -> None:
        """The upstream connection closed while serving this exchange."""
        if self.finished:
            return
        self.conn = None
        resp = self.resp
        if resp is None:
            if conn.reused and not conn.got_bytes and not self.body_expected and not self.retried:
                # A pooled connection the instance had closed: nothing was processed, resend.
                self.retried = True
                target = conn.target
                self._untarget()
                if self.body_buf is None:
                    self.body_buf = []
                self.dispatch(target, allow_idle=False)
                return
            self._count_upstream_error(conn.target)
            self.respond(502, "conveyor router: the instance closed the connection before responding\n", close=not self.request_done)
            return
        if resp.close_delimited:
            if resp.chunked_out:
                self.client.transport.write(LAST_CHUNK)
            self.finish(self.status, False)
            return
        self._count_upstream_error(conn.target)
        self.abort("the instance closed the connection in the middle of the response")

    def upstream_failed(self, conn: UpstreamConnection, reason: str) -> None:
        self._count_upstream_error(conn.target)
        if self.resp is None:
            self.respond(502, f"conveyor router: {reason}\n", close=True)
        else:
            self.abort(reason)

    def upstream_timeout(self) -> None:
        self._count_upstream_error(self.target)
        if self.resp is None:
            self.respond(504, "conveyor router: the instance did not answer in time\n", close=True)
        else:
            self.abort("the instance stalled in the middle of the response")

    def abort(self, reason: str) -> None:
        """Cut both connections: the response cannot be completed."""
        self.flush()
        log.info("aborting request %s: %s", self.info.request_id.decode() if self.info else "-", reason)
        self.client.close_after = True
        self.finish(self.status or 502, False)
        self.client.transport.close()

    def respond(self, status: int, text: str, close: bool) -> None:
        """Answer with the router's own response (errors, 404)."""
        info = self.info
        rid = info.request_id if info is not None else b""
        if status >= 400 and (self.body_expected and not self.request_done):
            close = True
        if info is not None and not info.keep_alive:
            close = True
        extra = self.extra
        self.client.transport.write(simple_response(status, text, close, rid, extra))
        if close:
            self.client.close_after = True
        self.status = status
        self.finish(status, False)

    # -- completion --------------------------------------------------------

    def _record(self, status: int) -> None:
        rel = self.release
        if not self.state.metrics.enabled:
            return
        if rel is None or rel.stats is None:
            self.state.metrics.count_unrouted(status)
            return
        rs: ReleaseStats = rel.stats
        rs.requests += 1
        rs.status[status // 100 if 100 <= status < 600 else 5] += 1
        rs.latency.record(_perf() - self.t0)
        t = self.target or self.blame
        if t is not None and t.stats is not None:
            ist = t.stats
            ist.requests += 1
            if status >= 500:
                ist.errors_5xx += 1

    def finish(self, status: int, reuse: bool) -> None:
        if self.finished:
            return
        self.finished = True
        self._record(status)
        conn = self.conn
        target = self.target
        if target is not None:
            target.outstanding -= 1
            self.target = None
        if conn is not None:
            conn.ex = None
            self.conn = None
            if reuse and not conn.closed and target is not None and not target.draining:
                conn.idle_since = self.state.now
                target.idle.append(conn)
            else:
                conn.close()
        self.client.exchange_done(self)


class ClientConnection(asyncio.Protocol):
    """A connection from a client: parses requests, runs their exchanges in order."""

    def __init__(self, state: Proxy) -> None:
        self.state = state
        self.transport: Any = None
        self.parser = httptools.HttpRequestParser(self)
        self.peer_ip = ""
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
        self.deadline = 0.0
        self.cb_error: BadRequest | None = None  # raised inside a parser callback

    # -- connection --------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer_ip = peer[0] if peer else ""
        self.state.clients.add(self)
        self.deadline = self.state.head_deadline

    def connection_lost(self, exc: Exception | None) -> None:
        self.state.clients.discard(self)
        self.close_after = True
        if self.tunnel is not None:
            self.tunnel.close()
            return
        ex = self.active
        if ex is not None and not ex.finished:
            self.queue.clear()
            ex.finish(ex.status or 499, False)

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
        ex = self.queue[-1] if self.queue else None
        if ex is not None and ex.upgrade_buf is not None:  # bytes before the 101: keep for the tunnel
            ex.upgrade_buf.append(data)
            self.pause(_P_UPGRADE)
            return
        was_head = self.in_head
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as e:
            ex = self.queue[-1] if self.queue else None
            if ex is None or ex.info is None or ex.info.upgrade is None or ex.finished:
                # Answered already (404, 503...): the bytes that follow are not HTTP; hang up.
                self.close()
                return
            ex.upgrade_buf = [data[e.args[0] :]] if e.args[0] < len(data) else []
            self.pause(_P_UPGRADE)
            return
        except httptools.HttpParserError as e:
            err = self.cb_error
            if err is None:
                if e.__context__ is not None:
                    log.error("request callback failed", exc_info=e.__context__)
                err = BadRequest(400, f"malformed request: {e}")
            self._bad(err)
            return
        if was_head and self.in_head:
            self.head_bytes += len(data)
            if self.head_bytes > self.state.max_head:
                self._bad(BadRequest(431, f"request head larger than {self.state.max_head} bytes"))

    def _bad(self, err: BadRequest) -> None:
        """Refuse the request being parsed and stop reading: the framing can no longer be trusted."""
        self.broken = True
        self.pause(_P_QUEUE)
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
        ex = Exchange(self)
        self.parsing = ex
        self.in_head = True
        self.deadline = self.state.head_deadline
        if self.active is not None:
            self.pause(_P_QUEUE)

    def on_url(self, url: bytes) -> None:
        ex = self.parsing
        assert ex is not None
        ex.url += url
        ex.head_size += len(url)
        if ex.head_size > self.state.max_head:
            self.cb_error = BadRequest(414, f"request target longer than {self.state.max_head} bytes")
            raise self.cb_error

    def on_header(self, name: bytes, value: bytes) -> None:
        ex = self.parsing
        assert ex is not None
        headers = ex.headers
        headers.append((name, value))
        size = ex.head_size = ex.head_size + len(name) + len(value) + 4
        state = self.state
        if size > state.max_head or len(headers) > state.max_headers:
            if size > state.max_head:
                self.cb_error = BadRequest(431, f"request head larger than {state.max_head} bytes")
            else:
                self.cb_error = BadRequest(431, f"more than {state.max_headers} request headers")
            raise self.cb_error

    def on_headers_complete(self) -> None:
        ex = self.parsing
        assert ex is not None
        p = self.parser
        ex.method = p.get_method().decode()
        version = p.get_http_version()
        ex.http11 = version == "1.1"
        self.in_head = False
        self.head_bytes = 0
        self.deadline = 0.0
        try:
            info = inspect_request(ex.method, ex.url, version, ex.headers, self.peer_ip, p.should_keep_alive())
        except BadRequest as e:
            self.cb_error = e
            raise
        ex.info = info
        ex.headers = []
        ex.body_expected = info.chunked or bool(info.content_length)
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
        if ex is not None:
            ex.request_done = True
            if not ex.finished:
                ex.request_end()
        if self.active is None and not self.close_after:
            self.deadline = self.state.idle_deadline

    # -- exchange completion ----------------------------------------------

    def exchange_done(self, ex: Exchange) -> None:
        if self.queue and self.queue[0] is ex:
            self.queue.popleft()
        self.active = None
        if self.paused:
            self.resume(_P_UPSTREAM | _P_BUFFER)
        resp = ex.resp
        request_over = ex.request_done or not ex.body_expected
        if self.close_after or not request_over or (resp is not None and resp.close_client) or not self.state.accepting:
            self.close_after = True
            self.transport.close()
            return
        if ex.info is not None and not ex.info.keep_alive:
            self.close_after = True
            self.transport.close()
            return
        if self.queue:
            nxt = self.queue[0]
            self.active = nxt
            nxt.activate()
        elif self.parsing is None:
            self.deadline = self.state.idle_deadline
        if self.paused and (not self.queue or self.parsing is None):
            self.resume(_P_QUEUE)

    def close(self) -> None:
        self.close_after = True
        self.transport.close()
