"""The autoscaling benchmark's app: every request costs a fixed amount of CPU on a small CPU share.

Each instance is one worker with a CPU share of ``cpu_ms / service_ms`` of a core (0.02 by
default), like a container with a CPU limit: a request burns ``cpu_ms`` of CPU time (measured with
``time.thread_time``, so it is CPU actually spent, however busy the machine is), then holds the
worker until ``service_ms`` have passed since it started, as the limit would make it wait for its
next share. Requests are served one at a time, first come first served, so an instance serves at
most ``1000 / service_ms`` requests/s and the rest queue: that fixed capacity per instance is what
makes the number of instances a load needs computable. A share paced in the app rather than by a
cgroup's CFS quota (100 ms periods) keeps the service time even, and the whole benchmark's CPU
small enough for a shared 2-core machine.

One asyncio thread serves every connection (the router opens one per waiting request under
overload: a thread each would hit the instance's pids limit), and ``/healthz`` does not queue
behind the worker: an overloaded instance is slow, not unhealthy. A request whose connection closed
while it queued (the client gave up, so the router closed it) is dropped rather than served: without
that, an overload leaves a queue of abandoned work longer than the clients' timeout, and every later
request times out even once the load is back down (a metastable failure, seen in the first runs).
``work.json`` next to this file: ``{"cpu_ms": 1, "service_ms": 50}``.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORK = json.loads((HERE / "work.json").read_text()) if (HERE / "work.json").exists() else {}
CPU_S = float(WORK.get("cpu_ms", 1.0)) / 1000.0
SERVICE_S = float(WORK.get("service_ms", 50.0)) / 1000.0


def response(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


async def work(worker: asyncio.Lock, reader: asyncio.StreamReader) -> None:
    async with worker:  # FIFO: the queue of an instance with one worker
        if reader.at_eof():
            return  # the router gave up on it (its client timed out): serving it would only lengthen the queue
        start = time.monotonic()
        until = time.thread_time() + CPU_S
        while time.thread_time() < until:
            pass
        rest = SERVICE_S - (time.monotonic() - start)
        if rest > 0:
            await asyncio.sleep(rest)


async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, worker: asyncio.Lock) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            line, _, rest = head.partition(b"\r\n")
            length = 0
            for h in rest.split(b"\r\n"):
                name, _, value = h.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if length:
                await reader.readexactly(length)
            path = line.split(b" ")[1] if line.count(b" ") >= 2 else b"/"
            if path != b"/healthz":
                await work(worker, reader)
            writer.write(response(b"ok\n"))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, ValueError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def main() -> None:
    worker = asyncio.Lock()
    port = int(os.environ["PORT"])
    server = await asyncio.start_server(lambda r, w: serve(r, w, worker), os.environ.get("HOST", "127.0.0.1"), port,
                                        backlog=1024)
    print(f"cpuwork: {CPU_S * 1000:g} ms CPU in {SERVICE_S * 1000:g} ms a request, listening on port {port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
