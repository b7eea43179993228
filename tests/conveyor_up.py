"""A real ``conveyor up`` for tests: free loopback ports, its own data dir and client config.

Shared by the integration harness (tests/integration/cvy_platform.py) and the
browser harness (tests/e2e/e2e_platform.py), which add their own ways of using
it. Teardown stops it with SIGTERM (Ctrl-C), then kills its process group and
the app instances it left (they run in their own sessions by design).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


class ProcessDied(AssertionError):
    """A process a test waits on has exited: waiting longer cannot help."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(cond: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05, what: str = "condition") -> Any:
    """Poll ``cond`` until it returns something truthy; fail naming ``what`` after ``timeout``.

    Errors raised by ``cond`` mean "not yet" (the last one is reported), except
    :class:`ProcessDied`, which fails at once.
    """
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = cond()
            if value:
                return value
        except ProcessDied:
            raise
        except Exception as exc:  # noqa: BLE001 - keep polling, report the last error
            last = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last!r})" if last else ""))


def kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def reap_instances(data_dir: Path) -> None:
    """End the app instances the agent recorded (they outlive an agent crash by design)."""
    try:
        doc = json.loads((data_dir / "agent" / "agent-state.json").read_text())
    except (OSError, ValueError):
        return
    for rec in (doc.get("processes") or {}).values():
        if rec.get("pid"):
            kill_group(int(rec["pid"]))


class UpPlatform:
    """``conveyor up`` as a user runs it, on free ports."""

    def __init__(self, root: Path, token: str, host: str = "127.0.0.1") -> None:
        self.root = root
        self.host = host  # where the API and the router listen (``conveyor up --host``)
        self.data_dir = root / "data"
        self.api_port, self.router_port, self.admin_port = free_port(), free_port(), free_port()
        self.token = token
        self.api_url = f"http://{host}:{self.api_port}"
        self.env = {**os.environ, "CONVEYOR_CONFIG": str(root / "client.json"), "CONVEYOR_URL": self.api_url,
                    "CONVEYOR_TOKEN": token, "PYTHONUNBUFFERED": "1"}
        self.proc: subprocess.Popen[bytes] | None = None
        self.up_args: list[str] = []  # more `conveyor up` flags (e.g. --https-port)

    def start(self) -> None:
        with (self.root / "up.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "conveyor", "up", "--data-dir", str(self.data_dir),
                 "--api-port", str(self.api_port), "--router-port", str(self.router_port),
                 "--router-admin-port", str(self.admin_port), "--admin-token", self.token, "--host", self.host,
                 *self.up_args],
                stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True, cwd=self.root)
        wait_for(self._ready, 60, 0.1, "conveyor up to say it is up")

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise ProcessDied(f"conveyor up exited with {self.proc.returncode}:\n{self.log()}")
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
        kill_group(self.proc.pid)
        self.proc = None

    def stop_all(self) -> None:
        """Stop it and end whatever app instances are left (teardown)."""
        self.stop()
        reap_instances(self.data_dir)

    def cli(self, *args: str, check: bool = False, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        res = subprocess.run([sys.executable, "-m", "conveyor", *args], capture_output=True, text=True,
                             env=self.env, timeout=timeout, cwd=self.root)
        if check and res.returncode != 0:
            raise AssertionError(f"conveyor {' '.join(args)} exited {res.returncode}:\n{res.stdout}\n{res.stderr}")
        return res
