"""Web: each GET / enqueues a job in PostgreSQL for the worker. v2 sets the column its migration adds."""

from __future__ import annotations

import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from db import sql

VERSION = (Path(__file__).parent / "VERSION").read_text().strip()
USES_PRIORITY = (Path(__file__).parent / "USES_PRIORITY").exists()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _send(self, status: int, text: str) -> None:
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/healthz":
            self._send(200, "ok\n")
            return
        try:
            if USES_PRIORITY:
                job = sql("INSERT INTO jobs (payload, priority) VALUES ('hello', 1) RETURNING id")
            else:
                job = sql("INSERT INTO jobs (payload) VALUES ('hello') RETURNING id")
            self._send(200, f"{VERSION} job {job}\n")
        except Exception as exc:  # noqa: BLE001
            self._send(500, f"{VERSION} error: {exc}\n")

    def log_message(self, *args: object) -> None:
        pass


ThreadingHTTPServer((os.environ["HOST"], int(os.environ["PORT"])), Handler).serve_forever()
