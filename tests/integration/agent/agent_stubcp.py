"""A tiny stand-in for the control plane's agent endpoints, for the agent's integration tests.

It serves the long-poll ``GET /api/v1/agents/{host}/desired`` from a desired
state the test sets, and records every ``PUT .../status`` and ``POST .../logs``
with the time it arrived. It can be stopped and started again on the same port
(to play "control plane down, then back"), and told to fail log posts.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from conveyor.domain.wire import AgentStatus, DesiredInstance, DesiredState, LogBatch


class StubControlPlane:
    def __init__(self, host: str, token: str = "test-token", port: int = 0) -> None:
        self.host = host
        self.token = token
        self.port = port
        self.desired = DesiredState(version=1, host=host)
        self.statuses: list[tuple[float, AgentStatus]] = []
        self.log_posts: list[LogBatch] = []
        self.fail_log_posts = 0
        #: Serves images from this ``conveyor.build.store.ArtifactStore`` when set.
        self.store: Any = None
        self.corrupt_blobs = False
        self.unauthorized = 0
        self._cond = threading.Condition()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._closing = False
        self._conns: set[socket.socket] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ------------------------------------------------------------------ control

    def start(self) -> StubControlPlane:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

            def setup(self) -> None:
                super().setup()
                with stub._cond:
                    stub._conns.add(self.connection)

            def finish(self) -> None:
                with stub._cond:
                    stub._conns.discard(self.connection)
                super().finish()

            def _reply(self, status: int, body: bytes = b"{}") -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the agent gave up on a long poll (it stopped or restarted)

            def _authorized(self) -> bool:
                if self.headers.get("Authorization") != f"Bearer {stub.token}":
                    stub.unauthorized += 1
                    self._reply(401, b'{"detail": "bad token"}')
                    return False
                return True

            def do_GET(self) -> None:  # noqa: N802
                if not self._authorized():
                    return
                url = urlparse(self.path)
                if url.path.startswith("/api/v1/images/") and url.path.endswith("/manifest") and stub.store is not None:
                    digest = url.path[len("/api/v1/images/") : -len("/manifest")]
                    if not stub.store.has_manifest(digest):
                        self._reply(404, b'{"detail": "no such image"}')
                        return
                    self._reply(200, stub.store.manifest_bytes(digest))
                    return
                if url.path.startswith("/api/v1/blobs/") and stub.store is not None:
                    digest = url.path[len("/api/v1/blobs/") :]
                    with stub.store.open(digest) as f:
                        data = f.read()
                    self._reply(200, data[:-1] + b"x" if stub.corrupt_blobs else data)
                    return
                if url.path != f"/api/v1/agents/{stub.host}/desired":
                    self._reply(404)
                    return
                q = parse_qs(url.query)
                after = int(q.get("after", ["-1"])[0])
                wait = min(60.0, float(q.get("wait", ["0"])[0]))
                deadline = time.monotonic() + wait
                with stub._cond:
                    while stub.desired.version == after and not stub._closing and time.monotonic() < deadline:
                        stub._cond.wait(timeout=min(0.5, max(0.0, deadline - time.monotonic())))
                    body = stub.desired.model_dump_json().encode()
                self._reply(200, body)

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length", "0")))

            def do_PUT(self) -> None:  # noqa: N802
                if not self._authorized():
                    return
                body = self._body()
                if urlparse(self.path).path != f"/api/v1/agents/{stub.host}/status":
                    self._reply(404)
                    return
                status = AgentStatus.model_validate_json(body)
                with stub._cond:
                    stub.statuses.append((time.time(), status))
                    stub._cond.notify_all()
                self._reply(200)

            def do_POST(self) -> None:  # noqa: N802
                if not self._authorized():
                    return
                body = self._body()
                if urlparse(self.path).path != f"/api/v1/agents/{stub.host}/logs":
                    self._reply(404)
                    return
                with stub._cond:
                    if stub.fail_log_posts > 0:
                        stub.fail_log_posts -= 1
                        self._reply(503, b'{"detail": "try again"}')
                        return
                    stub.log_posts.append(LogBatch.model_validate_json(body))
                self._reply(200)

        self._closing = False
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop answering (connections are refused until :meth:`start` again)."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self._cond:  # kept-alive connections too: a real crash drops them
            for conn in list(self._conns):
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)

    def set_instances(self, instances: list[DesiredInstance]) -> int:
        with self._cond:
            self.desired = DesiredState(version=self.desired.version + 1, host=self.host, instances=instances)
            self._cond.notify_all()
            return self.desired.version

    # ------------------------------------------------------------------ observations

    def last_status(self) -> AgentStatus | None:
        with self._cond:
            return self.statuses[-1][1] if self.statuses else None

    def instance(self, instance_id: str, status: AgentStatus | None = None) -> Any:
        status = status or self.last_status()
        if status is None:
            return None
        return next((i for i in status.instances if i.id == instance_id), None)

    def all_states(self, instance_id: str) -> list[str]:
        with self._cond:
            return [i.state.value for _, s in self.statuses for i in s.instances if i.id == instance_id]

    def log_text(self, instance_id: str) -> bytes:
        """The instance's log as the control plane would rebuild it (deduplicated by offset)."""
        data = bytearray()
        with self._cond:
            posts = list(self.log_posts)
        for batch in posts:
            for chunk in batch.chunks:
                if chunk.instance != instance_id:
                    continue
                raw = chunk.data.encode()
                assert chunk.offset <= len(data), f"gap in shipped log: offset {chunk.offset} > {len(data)}"
                data[chunk.offset : chunk.offset + len(raw)] = raw
        return bytes(data)

    def dump(self) -> str:
        with self._cond:
            tail = self.statuses[-3:]
        return json.dumps([s.model_dump(mode="json") for _, s in tail], indent=1)[:4000]
