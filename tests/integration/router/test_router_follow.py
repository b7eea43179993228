"""Following a (stub) control plane: updates, draining, outage, restart from the state file, SIGTERM."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from router_helpers import Backend, Router, http_get, make_table, wait_until

pytestmark = pytest.mark.integration

TOKEN = "s3cret"


class StubControlPlane:
    """Serves GET /api/v1/routing with the long-poll contract of docs/ARCHITECTURE.md."""

    def __init__(self) -> None:
        self.table: dict[str, Any] = {"version": 0, "environments": []}
        self.cond = threading.Condition()
        self.queries: list[dict[str, str]] = []
        self.max_wait = 1.0
        self.conns: list[socket.socket] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                stub.conns.append(self.connection)

            def do_GET(self) -> None:  # noqa: N802
                url = urlsplit(self.path)
                q = {k: v[0] for k, v in parse_qs(url.query).items()}
                if url.path != "/api/v1/routing":
                    return self._send(404, b"{}")
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    return self._send(401, b'{"detail": "bad token"}')
                stub.queries.append(q)
                after = int(q.get("after", "-1"))
                deadline = time.monotonic() + min(float(q.get("wait", "0")), stub.max_wait)
                with stub.cond:
                    while stub.table["version"] == after and time.monotonic() < deadline:
                        stub.cond.wait(deadline - time.monotonic())
                    body = json.dumps(stub.table).encode()
                self._send(200, body)

            def _send(self, code: int, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def publish(self, table: dict[str, Any]) -> None:
        with self.cond:
            self.table = table
            self.cond.notify_all()

    def stop(self) -> None:
        """Go away like a crashed process: stop listening and cut open connections."""
        self.server.shutdown()
        self.server.server_close()
        for c in self.conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


@pytest.fixture
def cp() -> Iterator[StubControlPlane]:
    s = StubControlPlane()
    try:
        yield s
    finally:
        s.stop()


def _version(r: Router, token: str = TOKEN) -> int:
    """The table version in force (``/table`` needs the router's own token)."""
    return int(json.loads(http_get(r.admin_port, "/table", headers={"Authorization": f"Bearer {token}"})[2])["version"])


def _follow(router: Callable[..., Router], cp: StubControlPlane, state: Path, *extra: str) -> Router:
    return router(None, "--control-plane", cp.url, "--token", TOKEN, "--state-file", str(state), "--poll-wait", "1", *extra)


def test_follows_table_drains_removed_instance(cp: StubControlPlane, backend: Callable[..., Backend], router: Callable[..., Router], tmp_path: Path) -> None:
    a, b = backend("a"), backend("b")
    cp.publish(make_table(1, [(1, 100, [a])]))
    state = tmp_path / "state.json"
    r = _follow(router, cp, state)
    wait_until(lambda: _version(r) == 1, what="table v1")
    assert http_get(r.port, "/")[2] == b"a\n"
    assert cp.queries[-1]["router"] == "r-test" and cp.queries[-1]["admin"].startswith("http://127.0.0.1:")
    slow: dict[str, Any] = {}
    t = threading.Thread(target=lambda: slow.update(res=http_get(r.port, "/slow?s=1.5", timeout=20)))
    t.start()
    wait_until(lambda: r.release_metrics(1)["in_flight"] == 1, what="slow request in flight")
    cp.publish(make_table(2, [(2, 100, [b])]))
    wait_until(lambda: _version(r) == 2, what="table v2")
    for _ in range(10):
        assert http_get(r.port, "/")[2] == b"b\n"  # no new request to the removed instance
    t.join(20)
    assert slow["res"][0] == 200 and slow["res"][2] == b"a\n"  # the in-flight one finished
    assert json.loads(state.read_text())["version"] == 2


def test_drain_timeout_cuts_stragglers(cp: StubControlPlane, backend: Callable[..., Backend], router: Callable[..., Router], tmp_path: Path) -> None:
    a, b = backend("a"), backend("b")
    cp.publish(make_table(1, [(1, 100, [a])]))
    r = _follow(router, cp, tmp_path / "state.json", "--drain-timeout", "1")
    wait_until(lambda: _version(r) == 1, what="table v1")
    res: dict[str, Any] = {}

    def hang() -> None:
        try:
            res["status"] = http_get(r.port, "/hang", timeout=20)[0]
        except (ConnectionError, http.client.HTTPException) as e:
            res["error"] = e

    t = threading.Thread(target=hang)
    t.start()
    wait_until(lambda: r.release_metrics(1)["in_flight"] == 1, what="request in flight")
    t0 = time.monotonic()
    cp.publish(make_table(2, [(2, 100, [b])]))
    t.join(20)
    assert time.monotonic() - t0 < 8
    assert res.get("status") in (502, 504, None), res


def test_table_updates_under_load_zero_failures(cp: StubControlPlane, backend: Callable[..., Backend], router: Callable[..., Router], tmp_path: Path) -> None:
    a, b = backend("a"), backend("b")
    cp.publish(make_table(1, [(1, 100, [a])]))
    r = _follow(router, cp, tmp_path / "state.json")
    wait_until(lambda: _version(r) == 1, what="table v1")
    stop = threading.Event()
    results: list[int] = []
    errors: list[BaseException] = []

    def load() -> None:
        c = http.client.HTTPConnection("127.0.0.1", r.port, timeout=10)
        try:
            while not stop.is_set() and len(results) < 20000:
                c.request("GET", "/", headers={"Host": "hello.localhost"})
                resp = c.getresponse()
                resp.read()
                results.append(resp.status)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)
        finally:
            c.close()

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        layouts = [[(1, 100, [a])], [(1, 50, [a]), (2, 50, [b])], [(2, 100, [b])], [(3, 100, [a, b])]]
        for v in range(2, 14):
            cp.publish(make_table(v, layouts[v % len(layouts)]))
            wait_until(lambda v=v: _version(r) == v, what=f"table v{v}")
            n = len(results)
            wait_until(lambda n=n: len(results) >= n + 20, what="traffic on the new table")
    finally:
        stop.set()
        for t in threads:
            t.join(20)
    assert not errors, errors
    assert len(results) > 200
    assert set(results) == {200}
    total = sum(rel["requests"] for rel in r.metrics()["releases"])
    assert total == len(results)


def test_outage_keeps_last_table_and_restart_uses_state_file(cp: StubControlPlane, backend: Callable[..., Backend], router: Callable[..., Router], tmp_path: Path) -> None:
    a = backend("a")
    cp.publish(make_table(5, [(1, 100, [a])]))
    state = tmp_path / "state.json"
    r = _follow(router, cp, state)
    wait_until(lambda: _version(r) == 5, what="table v5")
    cp.stop()
    wait_until(lambda: json.loads(http_get(r.admin_port, "/healthz")[2])["control_plane"]["failures"] >= 2, what="failed polls")
    for _ in range(10):
        assert http_get(r.port, "/")[2] == b"a\n"
    assert r.proc.poll() is None
    r.proc.send_signal(signal.SIGKILL)
    r.proc.wait(10)
    # Restart with the control plane still down: the saved table routes.
    r2 = router(None, "--control-plane", cp.url, "--token", TOKEN, "--state-file", str(state))
    assert _version(r2) == 5
    assert http_get(r2.port, "/")[2] == b"a\n"


def test_bad_token_is_reported_and_router_keeps_serving(cp: StubControlPlane, backend: Callable[..., Backend], router: Callable[..., Router], tmp_path: Path) -> None:
    a = backend("a")
    state = tmp_path / "state.json"
    state.write_text(json.dumps(make_table(3, [(1, 100, [a])])))
    cp.publish(make_table(4, [(1, 100, [a])]))
    r = router(None, "--control-plane", cp.url, "--token", "wrong", "--state-file", str(state))
    wait_until(lambda: "token" in json.loads(http_get(r.admin_port, "/healthz")[2])["control_plane"]["last_error"], what="token error")
    assert _version(r, "wrong") == 3
    assert http_get(r.port, "/")[0] == 200


def test_corrupt_state_file_is_ignored_with_a_warning(backend: Callable[..., Backend], router: Callable[..., Router], tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    state.write_text("{not json")
    r = router(None, "--state-file", str(state), "--token", TOKEN)
    assert _version(r) == 0
    assert "ignoring the saved table" in r.stderr() or wait_until(lambda: "ignoring the saved table" in r.stderr(), what="warning")
    assert state.read_text() == "{not json"  # left for a human to look at


def test_the_table_needs_the_routers_own_token(router: Callable[..., Router]) -> None:
    r = router(make_table(1, []), "--token", TOKEN)
    assert http_get(r.admin_port, "/table")[0] == 401
    assert http_get(r.admin_port, "/table", headers={"Authorization": "Bearer s3creT"})[0] == 401
    assert _version(r) == 1
    bare = router(make_table(1, []))  # no token: no /table at all
    status, _, body = http_get(bare.admin_port, "/table")
    assert status == 403 and b"needs a credential" in body
    assert http_get(bare.admin_port, "/metrics.json")[0] == 200  # the scraper's endpoint stays open


def test_sigterm_finishes_in_flight_then_exits_0(backend: Callable[..., Backend], router: Callable[..., Router]) -> None:
    r = router(make_table(1, [(1, 100, [backend("a")])]))
    res: dict[str, Any] = {}
    t = threading.Thread(target=lambda: res.update(r=http_get(r.port, "/slow?s=1", timeout=20)))
    t.start()
    wait_until(lambda: r.release_metrics(1)["in_flight"] == 1, what="request in flight")
    r.proc.send_signal(signal.SIGTERM)
    t.join(20)
    assert res["r"][0] == 200
    assert r.proc.wait(20) == 0
