"""``conveyor up`` (the embedded platform) and the process commands it supervises.

``up`` runs ``conveyor server``, ``conveyor agent`` and ``conveyor router`` as
three child processes, like a tiny init: each is restarted with backoff if it
dies, and Ctrl-C (or SIGTERM) stops them in order — router last, so traffic is
served while the agent stops the instances. Because the three are separate
processes, killing the control plane leaves the agent's instances and the
router's table untouched, exactly as on a fleet.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import httpx
import typer

from conveyor.cli import output as o
from conveyor.config import (
    DEFAULT_API_PORT,
    DEFAULT_ROUTER_PORT,
    ServerSettings,
    default_data_dir,
    load_or_create_token,
    save_client_config,
)
from conveyor.domain.backoff import Backoff

#: A child that died is restarted after 1 s, 2 s, 4 s … 30 s (reset once it ran a minute). Local: no jitter.
CHILD_RESTART = Backoff(1.0, 30.0)


@dataclass
class Child:
    name: str
    argv: list[str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    started_at: float = 0.0
    env: dict[str, str] = field(default_factory=dict)

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        out = self.log.open("ab")
        self.proc = subprocess.Popen(
            self.argv, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **self.env}, start_new_session=True
        )
        out.close()
        self.started_at = time.monotonic()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace: float) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)


def _py(*args: str) -> list[str]:
    return [sys.executable, "-m", "conveyor", *args]


def _wait_http(url: str, deadline: float, child: Child) -> bool:
    while time.monotonic() < deadline:
        if not child.alive():
            return False
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    return False


def supervise(children: list[Child], stop_flag: list[bool]) -> None:
    """Restart children that die, with exponential backoff (1 s … 30 s)."""
    while not stop_flag[0]:
        now = time.monotonic()
        for c in children:
            if c.alive() or stop_flag[0]:
                continue
            if c.proc is not None and c.next_start == 0.0:
                code = c.proc.returncode
                up_for = now - c.started_at
                if up_for > 60:
                    c.restarts = 0
                delay = CHILD_RESTART.delay(c.restarts + 1)
                c.restarts += 1
                c.next_start = now + delay
                o.err.print(f"[yellow]{c.name} exited with code {code}; restarting in {delay:.0f}s (log: {c.log})[/yellow]")
            if now >= c.next_start:
                c.next_start = 0.0
                c.start()
        time.sleep(0.2)


def register(app: typer.Typer) -> None:
    @app.command()
    def up(
        data_dir: Annotated[Path, typer.Option("--data-dir", help="Database, images and logs.")] = default_data_dir(),
        api_port: Annotated[int, typer.Option("--api-port", help="Control plane API and web UI port.")] = DEFAULT_API_PORT,
        router_port: Annotated[int, typer.Option("--router-port", help="Port users' HTTP traffic comes in on.")] = DEFAULT_ROUTER_PORT,
        router_admin_port: Annotated[int, typer.Option("--router-admin-port", help="Router metrics port (default: router port + 1).")] = 0,
        admin_token: Annotated[str | None, typer.Option("--admin-token", help="Admin token (default: generated once and saved).")] = None,
        viewer_token: Annotated[list[str] | None, typer.Option(
            "--viewer-token", help="A read-only token for the web UI and API (repeatable).")] = None,
        host: Annotated[str, typer.Option("--host", help="Address the API and router listen on.")] = "127.0.0.1",
        domain: Annotated[str, typer.Option("--domain", help="Apps answer at APP.DOMAIN and ENV.APP.DOMAIN.")] = "localhost",
        https_port: Annotated[int, typer.Option("--https-port", help="Also serve HTTPS on this port (0: no HTTPS).")] = 0,
        json: Annotated[bool, typer.Option("--json", help="Print the URLs as one JSON line when ready.")] = False,
    ) -> None:
        """Run the whole platform on this machine: control plane, agent and router, in the foreground.

        Ctrl-C stops everything. Restarting on the same --data-dir brings every
        environment back to the release it last had.
        """
        data_dir = data_dir.resolve()
        token = load_or_create_token(data_dir, admin_token)
        api_url = f"http://{host}:{api_port}"
        router_url = f"http://{host}:{router_port}"
        admin_port = router_admin_port or router_port + 1
        env = {"CONVEYOR_TOKEN": token}
        logs = data_dir / "platform-logs"
        children = [
            Child("server", _py("server", "--data-dir", str(data_dir), "--host", host, "--port", str(api_port),
                                "--router-url", router_url, "--domain", domain,
                                *[a for t in (viewer_token or []) for a in ("--viewer-token", t)]),
                  logs / "server.log", env=env),
            Child("agent", _py("agent", "--control-plane", api_url, "--host", "local", "--address", "127.0.0.1",
                               "--data-dir", str(data_dir / "agent")), logs / "agent.log", env=env),
            Child("router", _py("router", "--listen", f"{host}:{router_port}", "--admin", f"127.0.0.1:{admin_port}",
                                "--control-plane", api_url, "--state-file", str(data_dir / "router-table.json"),
                                "--router-id", "local",
                                *(["--listen-tls", f"{host}:{https_port}"] if https_port else [])), logs / "router.log", env=env),
        ]
        stop_flag = [False]

        def _stop(signum: int, _frame: object) -> None:
            stop_flag[0] = True

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        children[0].start()
        if not _wait_http(f"{api_url}/healthz", time.monotonic() + 60, children[0]):
            o.err.print(f"[red]error:[/red] the control plane did not start; see {children[0].log}")
            for c in children:
                c.stop(5)
            raise typer.Exit(5)
        for c in children[1:]:
            c.start()
        if not _wait_http(f"http://127.0.0.1:{admin_port}/healthz", time.monotonic() + 30, children[2]):
            o.err.print(f"[yellow]warning:[/yellow] the router is not answering yet; see {children[2].log}")
        cfg = save_client_config(api_url, token, router_url)
        if json:
            o.emit_json({"api": api_url, "router": router_url, "router_admin": f"http://127.0.0.1:{admin_port}",
                         "router_https": f"https://{host}:{https_port}" if https_port else None,
                         "token": token, "data_dir": str(data_dir), "client_config": str(cfg)})
        else:
            o.out.print(f"[bold green]Conveyor is up.[/bold green]  data: {data_dir}")
            o.out.print(f"  API and web UI  {api_url}   (token saved in {cfg})")
            o.out.print(f"  Router          {router_url}   (app APP at http://APP.{domain}:{router_port})")
            if https_port:
                o.out.print(f"  HTTPS           https://{host}:{https_port}   (domains with a certificate: `conveyor domains list`)")
            o.out.print(f"  Metrics         http://127.0.0.1:{admin_port}/metrics")
            o.out.print(f"  Admin token     {token}")
            o.out.print("Press Ctrl-C to stop.")
        try:
            supervise(children, stop_flag)
        finally:
            o.err.print("Stopping…")
            # Agent first (it stops the instances gracefully), then the server, router last.
            for name in ("agent", "server", "router"):
                for c in children:
                    if c.name == name:
                        c.stop(20)
        raise typer.Exit(0)

    @app.command()
    def server(
        data_dir: Annotated[Path, typer.Option("--data-dir")] = default_data_dir(),
        host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
        port: Annotated[int, typer.Option("--port")] = DEFAULT_API_PORT,
        database_url: Annotated[str | None, typer.Option("--database-url", envvar="CONVEYOR_DATABASE_URL",
                                                         help="SQLAlchemy URL; default SQLite in --data-dir.")] = None,
        admin_token: Annotated[str | None, typer.Option("--admin-token", envvar="CONVEYOR_TOKEN")] = None,
        router_url: Annotated[str | None, typer.Option("--router-url", help="Public router URL, shown to users.")] = None,
        domain: Annotated[str, typer.Option("--domain", help="Apps are served at APP.DOMAIN.")] = "localhost",
        build_workers: Annotated[int, typer.Option("--build-workers", help="Builds that may run at once.")] = 2,
        keep_images: Annotated[int, typer.Option("--keep-images", help="Images kept per app by GC (plus any in use).")] = 10,
        viewer_token: Annotated[list[str] | None, typer.Option(
            "--viewer-token", envvar="CONVEYOR_VIEWER_TOKENS",
            help="A token that may look but not change anything (repeatable).")] = None,
    ) -> None:
        """Run the control plane alone (API, web UI, orchestrator, builds)."""
        from conveyor.server import create_app, serve

        data_dir = data_dir.resolve()
        settings = ServerSettings(
            data_dir=data_dir, admin_token=load_or_create_token(data_dir, admin_token), database_url=database_url,
            domain=domain, host=host, port=port, build_workers=build_workers, router_url=router_url,
            keep_images=keep_images,
        )
        settings.viewer_tokens = [t for t in (viewer_token or []) if t]
        app_ = create_app(settings)
        print(f"conveyor server listening on http://{host}:{port}", flush=True)
        serve(app_, host, port)

    ctx = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}

    @app.command(context_settings=ctx, add_help_option=False)
    def agent(ctx_: typer.Context) -> None:
        """Run a host agent (see `conveyor agent --help`)."""
        from conveyor.agent.main import main as agent_main

        raise typer.Exit(agent_main(list(ctx_.args)))

    @app.command(context_settings=ctx, add_help_option=False)
    def router(ctx_: typer.Context) -> None:
        """Run a router, the HTTP data plane (see `conveyor router --help`)."""
        from conveyor.router.main import main as router_main

        raise typer.Exit(router_main(list(ctx_.args)))
