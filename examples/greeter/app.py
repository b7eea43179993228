"""A sample app with one third-party dependency (humanize), for image builds.

Like examples/hello, a small HTTP/1.1 server on 127.0.0.1:$PORT that answers
with its version; it also says how long it has been up, in words, which needs
``humanize`` from its image's dependency layer (and proves the layer is there).
"""

from __future__ import annotations

import json
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import humanize

HERE = Path(__file__).resolve().parent
VERSION = (HERE / "VERSION").read_text().strip() if (HERE / "VERSION").exists() else "dev"
STARTED = time.monotonic()


def greeting(uptime_s: float) -> str:
    return f"hello from greeter {VERSION}, up for {humanize.naturaldelta(uptime_s)}\n"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

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
        elif self.path == "/json":
            body = json.dumps({"version": VERSION, "pid": os.getpid(), "humanize": humanize.__version__})
            self._send(200, body.encode(), "application/json")
        else:
            self._send(200, greeting(time.monotonic() - STARTED).encode())

    do_HEAD = do_GET

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        print(f"{self.address_string()} {format % args}", flush=True)


def main() -> None:
    port = int(os.environ["PORT"])
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print(f"greeter {VERSION} listening on 127.0.0.1:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
