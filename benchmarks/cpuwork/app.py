"""The autoscaling benchmark's app: every request costs a fixed amount of CPU on a small CPU share.

Each instance is one worker with a CPU share of ``cpu_ms / service_ms`` of a core (0.15 by
default), like a container with a CPU limit: a request burns ``cpu_ms`` of the thread's CPU time
(``time.thread_time``, so it is CPU actually spent, however busy the machine is), then holds the
worker until ``service_ms`` have passed since it started, as the limit would make it wait for its
next share. Requests are served one at a time (the worker is a lock), so an instance serves at
most ``1000 / service_ms`` requests/s and the rest queue: that fixed capacity per instance is what
makes the number of instances a load needs computable. A share paced in the app rather than by a
cgroup's CFS quota (100 ms periods) keeps the service time even, and the whole benchmark's CPU
small enough for a shared 2-core machine.

``/healthz`` does not queue behind the worker: an overloaded instance is slow, not unhealthy.
``work.json`` next to this file: ``{"cpu_ms": 3, "service_ms": 20}``.
"""

from __future__ import annotations

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORK = json.loads((HERE / "work.json").read_text()) if (HERE / "work.json").exists() else {}
CPU_S = float(WORK.get("cpu_ms", 3.0)) / 1000.0
SERVICE_S = float(WORK.get("service_ms", 20.0)) / 1000.0
WORKER = threading.Lock()


def work() -> None:
    with WORKER:
        start = time.monotonic()
        until = time.thread_time() + CPU_S
        while time.thread_time() < until:
            pass
        rest = SERVICE_S - (time.monotonic() - start)
        if rest > 0:
            time.sleep(rest)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def _send(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path != "/healthz":
            work()
        self._send(b"ok\n")

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - no access log: it would cost CPU
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # the router opens a connection per waiting request: no refusals at 5


def main() -> None:
    server = Server((os.environ.get("HOST", "127.0.0.1"), int(os.environ["PORT"])), Handler)
    print(f"cpuwork: {CPU_S * 1000:g} ms CPU in {SERVICE_S * 1000:g} ms a request, listening on port "
          f"{os.environ['PORT']}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
