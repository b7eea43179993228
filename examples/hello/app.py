"""The sample app Conveyor's demo and tests deploy.

A small HTTP/1.1 server (standard library only, keep-alive) that listens on
127.0.0.1:$PORT and answers with its version, so a client can see which release
served it. ``behaviour.json`` (optional, next to this file) makes a release
misbehave on purpose: ``{"fail_rate": 0.3, "extra_latency_ms": 50}``.
"""

from __future__ import annotations

import json
import os
import random
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
VERSION = (HERE / "VERSION").read_text().strip() if (HERE / "VERSION").exists() else "dev"
BEHAVIOUR = json.loads((HERE / "behaviour.json").read_text()) if (HERE / "behaviour.json").exists() else {}
FAIL_RATE = float(BEHAVIOUR.get("fail_rate", 0.0))
EXTRA_LATENCY = float(BEHAVIOUR.get("extra_latency_ms", 0.0)) / 1000.0


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # head and body are two writes: don't let Nagle hold the body back

    def _send(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-App-Version", VERSION)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path == "/healthz":
            self._send(200, b"ok\n")
            return
        if EXTRA_LATENCY:
            time.sleep(EXTRA_LATENCY)
        if FAIL_RATE and random.random() < FAIL_RATE:
            self._send(500, f"hello {VERSION}: simulated failure\n".encode())
            return
        if self.path == "/json":
            body = json.dumps({"version": VERSION, "pid": os.getpid()}).encode()
            self._send(200, body, "application/json")
            return
        self._send(200, f"hello from {VERSION}\n".encode())

    do_HEAD = do_GET

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length", "0"))
        data = self.rfile.read(length)
        self._send(200, data, self.headers.get("Content-Type", "application/octet-stream"))

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        print(f"{self.address_string()} {format % args}", flush=True)


class Server(ThreadingHTTPServer):
    # http.server listens with a backlog of 5: on a starved host (the app not scheduled for a
    # moment) a burst of new connections from the router overflows it, SYNs are dropped and the
    # router's connect times out (a 502 after 3 s). Any production server listens with far more.
    request_queue_size = 128


def main() -> None:
    host, port = os.environ.get("HOST", "127.0.0.1"), int(os.environ["PORT"])
    server = Server((host, port), Handler)
    server.daemon_threads = True
    print(f"hello {VERSION} listening on {host}:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
