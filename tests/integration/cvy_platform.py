"""A real platform for integration tests: ``conveyor up`` on free loopback ports.

Each ``Platform`` runs the same command a user runs, with its own data dir and
client config, and talks to it only through the CLI, the HTTP API and the
router, like a user. Teardown stops it with SIGTERM (Ctrl-C) and then makes
sure no process of its session is left.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(cond: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05, what: str = "condition") -> Any:
    """Poll ``cond`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = cond()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - keep polling, report the last error
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last_exc!r})" if last_exc else ""))


class Platform:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.data_dir = root / "data"
        self.api_port = free_port()
        self.router_port = free_port()
        self.admin_port = free_port()
        self.token = "test-admin-token"
        self.env = {
            **os.environ,
            "CONVEYOR_CONFIG": str(root / "client.json"),
            "CONVEYOR_URL": f"http://127.0.0.1:{self.api_port}",
            "CONVEYOR_TOKEN": self.token,
            "PYTHONUNBUFFERED": "1",
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.api = httpx.Client(
            base_url=f"http://127.0.0.1:{self.api_port}/api/v1",
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=30,
        )

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        log = (self.root / "up.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "conveyor", "up", "--data-dir", str(self.data_dir),
             "--api-port", str(self.api_port), "--router-port", str(self.router_port),
             "--router-admin-port", str(self.admin_port), "--admin-token", self.token],
            stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True, cwd=self.root,
        )
        log.close()
        wait_for(self._ready, 60, 0.1, "conveyor up to print that it is up")

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"conveyor up exited with {self.proc.returncode}:\n{self.log()}")
        return "Conveyor is up" in self.log()

    def log(self) -> str:
        path = self.root / "up.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(45)
            except subprocess.TimeoutExpired:
                pass
        _kill_group(self.proc.pid)
        self.proc = None

    def child_pid(self, name: str) -> int:
        """The pid of the up's child process ``server``, ``agent`` or ``router``."""
        pattern = {
            "server": f"-m conveyor server --data-dir {self.data_dir} ",
            "agent": f"-m conveyor agent .* --data-dir {self.data_dir}/agent",
            "router": f"-m conveyor router --listen 127.0.0.1:{self.router_port} ",
        }[name]
        out = subprocess.run(["pgrep", "-f", "--", pattern], capture_output=True, text=True)
        pids = [int(p) for p in out.stdout.split()]
        assert pids, f"no {name} process found"
        return min(pids)

    # -- using it ----------------------------------------------------------

    def cli(self, *args: str, check: bool = False, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        res = subprocess.run([sys.executable, "-m", "conveyor", *args], capture_output=True, text=True,
                             env=self.env, timeout=timeout, cwd=self.root)
        if check and res.returncode != 0:
            raise AssertionError(f"conveyor {' '.join(args)} exited {res.returncode}:\n{res.stdout}\n{res.stderr}")
        return res

    def cli_json(self, *args: str) -> Any:
        res = self.cli(*args, "--json", check=True)
        return json.loads(res.stdout)

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.router_port}{path}"

    def get(self, host: str, path: str = "/", client: httpx.Client | None = None) -> httpx.Response:
        c = client or httpx
        return c.get(self.url(path), headers={"Host": host}, timeout=10)  # type: ignore[attr-defined]

    def app_copy(self, name: str = "hello", version: str = "v1", **files: str) -> Path:
        """A copy of examples/hello with a VERSION and extra or replaced files."""
        dest = self.root / "src" / f"{name}-{version}-{time.monotonic_ns()}"
        shutil.copytree(EXAMPLES / "hello", dest)
        (dest / "VERSION").write_text(version + "\n")
        for fname, content in files.items():
            (dest / fname.replace("__", ".")).write_text(content)
        return dest

    def deploy(self, app: str, source: Path, *extra: str) -> dict[str, Any]:
        return self._deploy_json("deploy", app, "--source", str(source), "--wait", "--json", *extra)

    def deploy_image(self, app: str, image: str, *extra: str) -> dict[str, Any]:
        return self._deploy_json("deploy", app, "--image", image, "--wait", "--json", *extra)

    def _deploy_json(self, *args: str) -> dict[str, Any]:
        res = self.cli(*args)
        try:
            return json.loads(res.stdout) | {"_exit": res.returncode, "_stderr": res.stderr}
        except json.JSONDecodeError:
            raise AssertionError(f"deploy printed no JSON (exit {res.returncode}):\n{res.stdout}\n{res.stderr}") from None


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


@pytest.fixture
def platform_factory(tmp_path: Path) -> Iterator[Callable[[], Platform]]:
    made: list[Platform] = []

    def make() -> Platform:
        p = Platform(tmp_path / f"p{len(made)}")
        p.root.mkdir(parents=True)
        made.append(p)
        return p

    yield make
    for p in made:
        p.stop()
        _reap_instances(p.data_dir)


@pytest.fixture(scope="module")
def shared_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """One platform for the tests of a module that do not restart or kill it."""
    root = tmp_path_factory.mktemp("platform")
    p = Platform(root)
    p.start()
    yield p
    p.stop()
    _reap_instances(p.data_dir)


def _reap_instances(data_dir: Path) -> None:
    """Instances run in their own sessions (they survive an agent crash by design); end any left over."""
    state = data_dir / "agent" / "agent-state.json"
    if not state.exists():
        return
    try:
        doc = json.loads(state.read_text())
    except ValueError:
        return
    for rec in (doc.get("processes") or {}).values():
        if rec.get("pid"):
            _kill_group(int(rec["pid"]))
