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

from conveyor.agent.sandbox import sandbox_warning
from conveyor.cli import output as o
from conveyor.config import (
    DEFAULT_API_PORT,
    DEFAULT_ROUTER_PORT,
    ServerSettings,
    default_data_dir,
    load_or_create_token,
    private_dir,
    save_client_config,
    write_private,
)
from conveyor.domain.backoff import Backoff
from conveyor.domain.healing import HOST_LOST_AFTER

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
        # Credentials reach each child only as it needs them (``env``), never inherited from ours:
        # the agent and the router hold their own join tokens, not the admin token.
        base = {k: v for k, v in os.environ.items() if k not in ("CONVEYOR_TOKEN", "CONVEYOR_VIEWER_TOKENS")}
        self.proc = subprocess.Popen(
            self.argv, stdout=out, stderr=subprocess.STDOUT, env={**base, **self.env}, start_new_session=True
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


def join_token_file(api_url: str, admin_token: str, path: Path, host: str, role: str) -> Path:
    """A file holding this host's ``role`` join token: the saved one if the control plane still
    accepts it, else a new one (the old one of that name revoked). 0600 in the 0700 data dir."""
    auth = {"Authorization": f"Bearer {admin_token}"}
    if path.exists():
        saved = path.read_text().strip()
        r = httpx.get(f"{api_url}/api/v1/whoami", headers={"Authorization": f"Bearer {saved}"}, timeout=10)
        if r.status_code == 200 and r.json().get("role") == role and r.json().get("host") == host:
            return path
    httpx.delete(f"{api_url}/api/v1/tokens/{role}@{host}", headers=auth, timeout=10)  # 404 when there is none
    r = httpx.post(f"{api_url}/api/v1/hosts/{host}/join-tokens", json={"role": role}, headers=auth, timeout=10)
    r.raise_for_status()
    write_private(path, r.json()["token"])
    return path


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


HOST_LOST_HELP = ("Seconds without a report after which a host is lost: its instances leave the routing table "
                  "and are started elsewhere (agents report every 5 s, so at least 10; Kubernetes waits 40 s).")


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
        host_lost_after: Annotated[float, typer.Option(
            "--host-lost-after", help=HOST_LOST_HELP, min=10, max=3600)] = HOST_LOST_AFTER,
        replace_client_config: Annotated[bool, typer.Option(
            "--replace-client-config", help="Overwrite the CLI's client.json even if it names another platform or token.")] = False,
    ) -> None:
        """Run the whole platform on this machine: control plane, agent and router, in the foreground.

        Ctrl-C stops everything. Restarting on the same --data-dir brings every
        environment back to the release it last had.
        """
        os.umask(0o077)  # everything the platform writes is its own: 0600 files, 0700 directories
        data_dir = private_dir(data_dir.resolve())
        try:
            token = load_or_create_token(data_dir, admin_token)
        except ValueError as exc:
            o.err.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from None
        api_url = f"http://{host}:{api_port}"
        router_url = f"http://{host}:{router_port}"
        admin_port = router_admin_port or router_port + 1
        logs = data_dir / "platform-logs"
        agent_token, router_token = data_dir / "agent-join-token", data_dir / "router-join-token"
        # The server reads the admin token from the data dir; viewer tokens go by environment, not argv (`ps`).
        server_env = {"CONVEYOR_VIEWER_TOKENS": " ".join(viewer_token)} if viewer_token else {}
        children = [
            Child("server", _py("server", "--data-dir", str(data_dir), "--host", host, "--port", str(api_port),
                                "--router-url", router_url, "--domain", domain, "--host-lost-after", str(host_lost_after)),
                  logs / "server.log", env=server_env),
            Child("agent", _py("agent", "--control-plane", api_url, "--host", "local", "--address", "127.0.0.1",
                               "--data-dir", str(data_dir / "agent"), "--token-file", str(agent_token),
                               "--hide", str(data_dir)), logs / "agent.log"),
            Child("router", _py("router", "--listen", f"{host}:{router_port}", "--admin", f"127.0.0.1:{admin_port}",
                                "--control-plane", api_url, "--state-file", str(data_dir / "router-table.json"),
                                "--router-id", "local", "--token-file", str(router_token),
                                *(["--listen-tls", f"{host}:{https_port}"] if https_port else [])), logs / "router.log"),
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
        try:
            join_token_file(api_url, token, agent_token, "local", "agent")
            join_token_file(api_url, token, router_token, "local", "router")
        except httpx.HTTPError as exc:
            o.err.print(f"[red]error:[/red] could not make the agent's and router's join tokens: {exc}")
            children[0].stop(5)
            raise typer.Exit(5) from None
        for c in children[1:]:
            c.start()
        if not _wait_http(f"http://127.0.0.1:{admin_port}/healthz", time.monotonic() + 30, children[2]):
            o.err.print(f"[yellow]warning:[/yellow] the router is not answering yet; see {children[2].log}")
        cfg, saved = save_client_config(api_url, token, router_url, replace=replace_client_config)
        if saved == "kept":
            o.err.print(f"[bold yellow]warning:[/bold yellow] {cfg} names another control plane or token; "
                        "left it as it is. Use CONVEYOR_URL and CONVEYOR_TOKEN (the token is in "
                        f"{data_dir / 'admin-token'}), or restart with --replace-client-config.")
        sandbox_note = sandbox_warning()
        if sandbox_note:
            o.err.print(f"[bold red]WARNING:[/bold red] {sandbox_note}")
        if json:
            o.emit_json({"api": api_url, "router": router_url, "router_admin": f"http://127.0.0.1:{admin_port}",
                         "router_https": f"https://{host}:{https_port}" if https_port else None,
                         "token_file": str(data_dir / "admin-token"), "data_dir": str(data_dir),
                         "client_config": str(cfg), "client_config_saved": saved, "sandbox": sandbox_note or "bubblewrap"})
        else:
            o.out.print(f"[bold green]Conveyor is up.[/bold green]  data: {data_dir}")
            o.out.print(f"  API and web UI  {api_url}   (client config {cfg}: {saved})")
            o.out.print(f"  Router          {router_url}   (app APP at http://APP.{domain}:{router_port})")
            if https_port:
                o.out.print(f"  HTTPS           https://{host}:{https_port}   (domains with a certificate: `conveyor domains list`)")
            o.out.print(f"  Metrics         http://127.0.0.1:{admin_port}/metrics")
            o.out.print(f"  Admin token     in {data_dir / 'admin-token'} (0600; `conveyor ui` signs you in)")
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
            help="A token that may look but not change anything (repeatable; shows in `ps`: prefer "
                 "CONVEYOR_VIEWER_TOKENS, space-separated, or `conveyor tokens create --role viewer`).")] = None,
        host_lost_after: Annotated[float, typer.Option(
            "--host-lost-after", help=HOST_LOST_HELP, min=10, max=3600)] = HOST_LOST_AFTER,
    ) -> None:
        """Run the control plane alone (API, web UI, orchestrator, builds)."""
        from conveyor.server import create_app, serve

        os.umask(0o077)  # the database, images, logs and uploads: 0600 files in 0700 directories
        data_dir = private_dir(data_dir.resolve())
        try:
            admin = load_or_create_token(data_dir, admin_token)
        except ValueError as exc:
            print(f"conveyor server: {exc}", file=sys.stderr)
            raise typer.Exit(2) from None
        settings = ServerSettings(
            data_dir=data_dir, admin_token=admin, database_url=database_url,
            domain=domain, host=host, port=port, build_workers=build_workers, router_url=router_url,
            keep_images=keep_images, host_lost_after=host_lost_after,
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
