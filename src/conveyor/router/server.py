"""One router process: the proxy, its admin port and its control-plane follower.

Start-up order matters for "routes even if the control plane never answers":
the table comes first from ``--table-file`` (static) or the ``--state-file``
saved by the last run, then the listener opens, then the follower starts
long-polling. Every applied table is written back to the state file.

SIGTERM/SIGINT: stop accepting, let in-flight requests finish up to the
shutdown timeout, exit 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
from collections.abc import Callable
from typing import Any, cast

from conveyor.domain.wire import RoutingTable
from conveyor.router import native
from conveyor.router.admin import make_handler, start_admin
from conveyor.router.config import RouterConfig
from conveyor.router.follower import Follower
from conveyor.router.metrics import Metrics
from conveyor.router.proxy import Proxy
from conveyor.router.table import TableFileError, load_table_file, save_table_file

log = logging.getLogger("conveyor.router")


class RouterProcess:
    """The pieces of one router process, started and stopped together."""

    def __init__(self, config: RouterConfig, advertise_admin: str | None = None) -> None:
        self.config = config
        self.advertise_admin = advertise_admin
        self.proxy: Proxy | None = None
        self.server: asyncio.Server | None = None
        self.tls_server: asyncio.Server | None = None
        self.admin: asyncio.Server | None = None
        self.follower: Follower | None = None
        self._follow_task: asyncio.Task[None] | None = None
        self.stopping = asyncio.Event()

    @property
    def listen_port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    @property
    def tls_port(self) -> int | None:
        return int(self.tls_server.sockets[0].getsockname()[1]) if self.tls_server else None

    @property
    def admin_port(self) -> int | None:
        return int(self.admin.sockets[0].getsockname()[1]) if self.admin else None

    def initial_table(self) -> RoutingTable | None:
        cfg = self.config
        if cfg.table_file:
            t = load_table_file(cfg.table_file)
            if t is None:
                raise TableFileError(f"--table-file {cfg.table_file} does not exist")
            return t
        if cfg.state_file:
            try:
                return load_table_file(cfg.state_file)
            except TableFileError as e:
                log.warning("ignoring the saved table: %s", e)
        return None

    async def apply(self, table: RoutingTable) -> None:
        assert self.proxy is not None
        self.proxy.apply_table(table)
        log.info("routing table v%d applied (%d environments)", table.version, len(table.environments))
        if self.config.state_file:
            try:
                await asyncio.to_thread(save_table_file, self.config.state_file, table)
            except OSError as e:
                log.warning("cannot save the routing table to %s: %s", self.config.state_file, e)

    async def start(self) -> None:
        cfg = self.config
        self.proxy = Proxy(cfg, Metrics(cfg.metrics))
        if cfg.listen_tls is not None:
            from conveyor.router.tls import TlsTerminator

            self.proxy.tls = TlsTerminator()
        table = self.initial_table()
        if table is not None:
            self.proxy.apply_table(table)
        self.proxy.start_ticker()
        loop = asyncio.get_running_loop()
        factory = cast("Callable[[], asyncio.Protocol]", self.proxy.protocol)  # a Protocol by its methods
        self.server = await loop.create_server(factory, sock=self._listening_socket(cfg.listen))
        if cfg.listen_tls is not None:
            tls_factory = cast("Callable[[], asyncio.Protocol]", self.proxy.tls_protocol)
            self.tls_server = await loop.create_server(
                tls_factory,
                sock=self._listening_socket(cfg.listen_tls),
                ssl=self.proxy.tls.context,
                ssl_handshake_timeout=cfg.tls_handshake_timeout,
            )
            self.proxy.https_port = self.tls_port or 443
        if cfg.admin is not None:
            self.admin = await start_admin(cfg.admin[0], cfg.admin[1], make_handler(self._snapshot, self._table, self._health, cfg.token))
        if cfg.control_plane:
            admin_url = self.advertise_admin or (f"http://{cfg.admin[0]}:{self.admin_port}" if cfg.admin else None)
            self.follower = Follower(
                cfg.control_plane,
                cfg.token,
                cfg.router_id,
                admin_url,
                lambda: self.proxy.table.version if self.proxy else 0,
                self.apply,
                wait=cfg.poll_wait,
                backoff_max=cfg.backoff_max,
            )
            self._follow_task = loop.create_task(self.follower.run())

    def _listening_socket(self, addr: tuple[str, int]) -> socket.socket:
        host, port = addr
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.config.reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(2048)
        sock.setblocking(False)
        return sock

    async def _snapshot(self) -> dict[str, Any]:
        assert self.proxy is not None
        return self.proxy.metrics_snapshot(self.config.router_id)

    async def _table(self) -> dict[str, Any]:
        assert self.proxy is not None
        doc = self.proxy.table.table.model_dump(mode="json")
        for cert in doc.get("certificates", []):
            cert["key_pem"] = "(redacted)"  # private keys never leave the router
        return doc

    async def _health(self) -> dict[str, Any]:
        assert self.proxy is not None
        f = self.follower
        return {
            "ok": True,
            "router": self.config.router_id,
            "table_version": self.proxy.table.version,
            "connections": len(self.proxy.clients),
            "in_flight": self.proxy.in_flight(),
            "native": native.status().as_dict(),
            "tls": None
            if self.proxy.tls is None
            else {
                "port": self.tls_port,
                "certificates": len(self.proxy.tls.certs.by_key),
                "errors": self.proxy.tls.certs.errors,
                "refused_handshakes": self.proxy.tls.refused,
            },
            "control_plane": None
            if f is None
            else {"polls": f.status.polls, "failures": f.status.failures, "last_error": f.status.last_error},
        }

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        if self.tls_server is not None:
            self.tls_server.close()
        if self._follow_task is not None:
            self._follow_task.cancel()
        if self.proxy is not None:
            await self.proxy.shutdown(self.config.shutdown_timeout)
        if self.admin is not None:
            self.admin.close()


def install_loop() -> None:
    """Use uvloop when it is installed (it is a dependency, but stay importable without it)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def serve(config: RouterConfig, advertise_admin: str | None = None, announce: bool = True) -> int:
    """Run one router process until SIGTERM/SIGINT; returns the exit code."""
    proc = RouterProcess(config, advertise_admin)
    try:
        await proc.start()
    except TableFileError as e:
        print(f"conveyor router: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        where = f"{config.listen[0]}:{config.listen[1]}" + (f" or {config.listen_tls[0]}:{config.listen_tls[1]}" if config.listen_tls else "")
        print(f"conveyor router: cannot listen on {where}: {e}", file=sys.stderr)
        return 2
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, proc.stopping.set)
    if announce:
        admin = f" admin http://{config.admin[0]}:{proc.admin_port}" if config.admin else ""
        if config.listen_tls is not None:
            admin += f" tls https://{config.listen_tls[0]}:{proc.tls_port}"
        build = native.status()
        print(
            f"conveyor router {config.router_id} listening on http://{config.listen[0]}:{proc.listen_port}{admin}"
            f" table v{proc.proxy.table.version if proc.proxy else 0} ({build.mode})",
            flush=True,
        )
        if build.warning():
            print(f"conveyor router: warning: {build.warning()}", file=sys.stderr, flush=True)
    await proc.stopping.wait()
    await proc.stop()
    return 0
