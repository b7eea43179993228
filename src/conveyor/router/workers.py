"""``--workers N``: N router processes share the listening port (SO_REUSEPORT).

Why processes and a supervisor: one Python process saturates one core; the
kernel spreads connections across sockets bound with SO_REUSEPORT. The
supervisor reserves the port (bound, not listening, so it gets no
connections), starts N children that each run the full single-process router
(proxy, follower, state file) with a private admin port, restarts a child that
dies, and serves the public admin port itself: ``/metrics.json`` and
``/metrics`` are the sum of the children's snapshots (:func:`merge_snapshots`),
so the control plane sees one router.
"""

from __future__ import annotations

import asyncio
import logging
import re
import signal
import socket
import sys
from dataclasses import dataclass, field
from typing import Any

import httpx

from conveyor.router import native
from conveyor.router.admin import make_handler, start_admin
from conveyor.router.config import RouterConfig
from conveyor.router.metrics import merge_snapshots

log = logging.getLogger("conveyor.router.workers")
_ADMIN_RE = re.compile(r"admin http://[^ ]*:(\d+)")


@dataclass
class Worker:
    index: int
    proc: asyncio.subprocess.Process | None = None
    admin_port: int | None = None
    restarts: int = 0
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)


def child_argv(argv: list[str], listen: str, advertise_admin: str | None) -> list[str]:
    """The flags for a child: the user's, overridden (argparse keeps the last) for one worker."""
    out = [*argv, "--workers", "1", "--listen", listen, "--admin", "127.0.0.1:0", "--reuse-port"]
    if advertise_admin:
        out += ["--advertise-admin", advertise_admin]
    return out


async def supervise(config: RouterConfig, argv: list[str]) -> int:
    host, port = config.listen
    reserve = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    reserve.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    reserve.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        reserve.bind((host, port))
    except OSError as e:
        print(f"conveyor router: cannot listen on {host}:{port}: {e}", file=sys.stderr)
        return 2
    port = reserve.getsockname()[1]
    stopping = asyncio.Event()
    workers = [Worker(i) for i in range(config.workers)]
    http = httpx.AsyncClient(timeout=5)
    admin_server = None
    advertise = None

    async def snapshot() -> dict[str, Any]:
        async def one(w: Worker) -> dict[str, Any] | None:
            if w.admin_port is None:
                return None
            try:
                r = await http.get(f"http://127.0.0.1:{w.admin_port}/metrics.json")
                return r.json() if r.status_code == 200 else None
            except httpx.HTTPError:
                return None

        snaps = [s for s in await asyncio.gather(*(one(w) for w in workers)) if s is not None]
        merged = merge_snapshots(snaps, config.router_id)
        merged["workers"] = len(snaps)
        return merged

    async def table() -> dict[str, Any]:
        for w in workers:
            if w.admin_port is not None:
                try:
                    r = await http.get(f"http://127.0.0.1:{w.admin_port}/table",
                                       headers={"Authorization": f"Bearer {config.token}"} if config.token else {})
                    return dict(r.json())
                except httpx.HTTPError:
                    continue
        return {"version": 0, "environments": []}

    async def health() -> dict[str, Any]:
        alive = sum(1 for w in workers if w.proc is not None and w.proc.returncode is None and w.admin_port)
        return {"ok": alive == len(workers), "router": config.router_id, "workers": len(workers), "alive": alive, "native": native.status().as_dict()}

    if config.admin is not None:
        admin_server = await start_admin(config.admin[0], config.admin[1], make_handler(snapshot, table, health, config.token))
        aport = admin_server.sockets[0].getsockname()[1]
        advertise = f"http://{config.admin[0]}:{aport}"

    async def pump(w: Worker, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            sys.stdout.write(f"[worker {w.index}] {line.decode(errors='replace')}")
            sys.stdout.flush()

    async def run_worker(w: Worker) -> None:
        args = child_argv(argv, f"{host}:{port}", advertise)
        while not stopping.is_set():
            w.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "conveyor.router", *args, stdout=asyncio.subprocess.PIPE
            )
            assert w.proc.stdout is not None
            first = await w.proc.stdout.readline()
            m = _ADMIN_RE.search(first.decode(errors="replace"))
            w.admin_port = int(m.group(1)) if m else None
            pumper = asyncio.create_task(pump(w, w.proc.stdout))
            code = await w.proc.wait()
            w.admin_port = None
            await pumper
            if stopping.is_set():
                return
            w.restarts += 1
            delay = min(10.0, 0.5 * 2 ** min(w.restarts, 5))
            log.warning("router worker %d exited with %s; restarting in %.1fs", w.index, code, delay)
            try:
                await asyncio.wait_for(stopping.wait(), delay)
            except asyncio.TimeoutError:
                pass

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    runners = [asyncio.create_task(run_worker(w)) for w in workers]
    # Announce once every worker listens.
    deadline = loop.time() + 30
    while not stopping.is_set() and loop.time() < deadline and not all(w.admin_port for w in workers):
        await asyncio.sleep(0.05)
    admin_txt = f" admin {advertise}" if advertise else ""
    print(f"conveyor router {config.router_id} listening on http://{host}:{port}{admin_txt} workers {config.workers}", flush=True)
    await stopping.wait()
    for w in workers:
        if w.proc is not None and w.proc.returncode is None:
            w.proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(asyncio.gather(*runners, return_exceptions=True), config.shutdown_timeout + 5)
    except asyncio.TimeoutError:
        for w in workers:
            if w.proc is not None and w.proc.returncode is None:
                w.proc.kill()
    if admin_server is not None:
        admin_server.close()
    await http.aclose()
    reserve.close()
    return 0
