"""One request and its response: routing, the upstream attempt(s), streaming, completion.

An :class:`Exchange` lives from the client's first request byte to the last
response byte. It is driven by two protocols: the client connection feeds it
request events (head, body chunks, end), the upstream connection feeds it
response events. It picks the release and instance, opens or reuses an
upstream connection (retrying a refused connect once on another instance, and
ejecting the failed one), streams bodies with flow control, answers errors
itself (404, 502, 503, 504), and at the end records metrics and hands the
upstream connection back to the pool.

Why not a coroutine per request: with a pooled connection nothing here awaits,
and a coroutine would add a task and a future per request on the hot path.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import random
import time
from typing import TYPE_CHECKING, Final, cast

from conveyor.router import balancer
from conveyor.router.http1 import (
    CONTINUE_100,
    LAST_CHUNK,
    BadRequest,
    RequestInfo,
    ResponseInfo,
    chunk,
    raw_passthrough,
    response_head,
    simple_response,
    split_head,
)
from conveyor.domain.histogram import GAMMA, MIN_INDEX, MIN_VALUE
from conveyor.router.metrics import FAST_BUCKETS
from conveyor.router.table import EnvRoute, ReleaseRoute, Target, normalise_host
from conveyor.router.upstream import UpstreamConnection, upstream_factory

if TYPE_CHECKING:
    from conveyor.router.proxy import ClientConnection

log = logging.getLogger("conveyor.router")

# Reasons a client connection's reading is paused (bit mask).
P_BUFFER: Final = 1  # request body buffered while the upstream connection opens
P_UPSTREAM: Final = 2  # upstream socket's write buffer is full
P_QUEUE: Final = 4  # a pipelined request waits for the one before it
P_UPGRADE: Final = 8  # waiting for the upstream's 101 before tunnelling
_BUFFER_LIMIT: Final = 256 * 1024
#: The framing of a response copied by the fast path (shared, never mutated).
_FAST_RESP: Final = ResponseInfo(b"", None, False, False, False, False, False, True)
# Module constants are Final: compiled (mypyc), they are C values instead of lookups in
# the module's dict; imported ones are copied here for the same reason.
_LOG_GAMMA: Final = math.log(GAMMA)  # as conveyor.domain.histogram computes it: same buckets
_MIN_INDEX: Final = MIN_INDEX
_MIN_VALUE: Final = MIN_VALUE
_FAST_BUCKETS: Final = FAST_BUCKETS
#: Status code -> index in ReleaseStats.status (class 1..5; anything odd counts as 5xx).
_STATUS_CLASS: Final = [5] * 100 + [1] * 100 + [2] * 100 + [3] * 100 + [4] * 100 + [5] * 500


class Exchange:
    """One request and its response, from the client's first byte to the last byte back."""

    # Defaults on the class: a new exchange per request only sets what differs
    # (no __slots__ on purpose; this keeps construction cheap on the request path).
    method = b"GET"  # as parsed (bytes)
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
    #: May the response skip the parser (see UpstreamConnection.fast_head)? Set
    #: once the head is parsed: HTTP/1.1 keep-alive, no upgrade, not HEAD, no
    #: header to add (``extra``), router not shutting down.
    fast_ok = False

    def __init__(self, client: ClientConnection) -> None:
        self.client = client
        self.state = client.state
        self.t0 = time.perf_counter()
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
        client = self.client
        env = client.hosts.get(info.host_raw)
        if env is None:  # not cached: a new or unknown host, a redirect, HSTS, ACME (see Proxy.host_cache)
            if state.acme and not client.tls:
                answer = state.acme_answer(info.forwarded_head.split(b" ", 2)[1])
                if answer is not None:
                    self.respond(200, answer, close=False)
                    return
            env = state.lookup_host(info.host_raw, client.tls)
            if env is None:
                self.no_route(info)
                return
            if client.tls:
                hsts = state.hsts_header(info.host_raw)
                if hsts is not None:
                    self.fast_ok = False  # the response gets a header: it goes through response_head
                    self.extra = [hsts]
        if info.pin is None and info.cookie is None and not env.sticky:
            rel = balancer.choose_release(env, random.random())
        else:
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
        self.dispatch(target, True)

    def no_route(self, info: RequestInfo) -> None:
        """No environment for this Host here: a 308 to HTTPS when the host has one, else 404."""
        state = self.state
        if not self.client.tls:
            url = info.forwarded_head.split(b" ", 2)[1]  # (the request line, as forwarded)
            location = state.redirect_location(info.host_raw, url)
            if location is not None:
                self.extra = [b"Location: " + location + b"\r\n"]
                self.respond(308, "conveyor router: this site is served over HTTPS\n", close=False)
                return
        self.respond(404, state.unknown_host_text(normalise_host(info.host)), close=False)

    def _sticky_point(self, env: EnvRoute, info: RequestInfo) -> float:
        token = balancer.cookie_value(info.cookie, balancer.STICKY_COOKIE)
        if not token:
            token = os.urandom(8).hex()
            self.fast_ok = False  # the response gets a header: it goes through response_head
            cookie = f"Set-Cookie: {balancer.STICKY_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax\r\n".encode()
            self.extra = [cookie] if self.extra is None else [*self.extra, cookie]
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
        task = self.state.loop.create_task(self._connect(target))
        tasks = self.state.tasks  # the loop keeps only weak references to tasks
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def _untarget(self) -> None:
        t = self.target
        if t is not None:
            t.outstanding -= 1
            self.target = None

    async def _connect(self, target: Target) -> None:
        state = self.state
        try:
            _, proto = await asyncio.wait_for(
                state.loop.create_connection(upstream_factory(target), target.host, target.port),
                state.config.connect_timeout,
            )
        except (OSError, asyncio.TimeoutError) as e:
            self._connect_failed(target, e)
            return
        conn = cast(UpstreamConnection, proto)
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
        reason = "timed out" if isinstance(err, asyncio.TimeoutError) else (getattr(err, "strerror", None) or str(err))
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
        self.conn = conn
        conn.start(self)
        tr = conn.transport
        buf = self.body_buf
        self.body_buf = None
        tr.write(self.info.forwarded_head)  # type: ignore[union-attr]
        if buf:
            tr.writelines(buf)
        self.upstream_deadline = self.state.upstream_deadline
        client = self.client
        if client.write_paused:
            tr.pause_reading()
        if client.paused:
            client.resume(P_BUFFER)

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
                self.client.pause(P_BUFFER)

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
            fast = raw_passthrough(head, status, self.method == b"HEAD", self.http11, info.keep_alive, upstream_http11)
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
            self.method == b"HEAD",
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

    def fast_start(self, conn: UpstreamConnection, status: int) -> None:
        self.resp = _FAST_RESP
        self.status = status
        self.passthrough = True

    def fast_complete(self, conn: UpstreamConnection, clean: bool) -> None:
        self.finish(self.status, clean and self.request_done)

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
        if self.state.record_metrics:
            self._record(101)
        self._untarget()
        conn.ex = None
        self.finished = True
        client.active = None
        if client.queue:
            client.queue.popleft()
        client.resume(P_UPGRADE | P_QUEUE | P_BUFFER)

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
        """Count a finished request against its release and instance (metrics on)."""
        rel = self.release
        rs = rel.stats if rel is not None else None
        if rs is None:
            self.state.metrics.count_unrouted(status)
            return
        rs.requests += 1
        rs.status[_STATUS_CLASS[status]] += 1  # (a status has 3 digits)
        dt = time.perf_counter() - self.t0
        # Histogram.record, inlined: one log and one list slot (see ReleaseStats.lat_fast).
        i = math.ceil(math.log(dt) / _LOG_GAMMA) - _MIN_INDEX if dt > _MIN_VALUE else 0
        if i < _FAST_BUCKETS:
            rs.lat_fast[i] += 1
            rs.lat_fast_sum += dt
        else:
            rs.latency.record(dt)
        t = self.target
        if t is None:
            t = self.blame
        if t is not None:
            ist = t.stats
            if ist is not None:
                ist.requests += 1
                if status >= 500:
                    ist.errors_5xx += 1

    def finish(self, status: int, reuse: bool) -> None:
        if self.finished:
            return
        self.finished = True
        state = self.state
        if state.record_metrics:
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
                conn.idle_since = state.now
                target.idle.append(conn)
            else:
                conn.close()
        self.client.exchange_done(self)
