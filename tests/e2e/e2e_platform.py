"""A real ``conveyor up`` on free loopback ports and a real headless Chromium (Debian's package).

The fixtures using these are in this directory's conftest.py.

Skips with the package to install when /usr/bin/chromium is missing, except
under CI=true where a missing browser is a failure.
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = REPO / "artifacts" / "screenshots"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(cond: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = cond()
            if value:
                return value
        except AssertionError:
            raise  # a definite failure (a process exited): no point in waiting longer
        except Exception as exc:  # noqa: BLE001 - keep polling; report the last error
            last = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last!r})" if last else ""))


class Platform:
    """``conveyor up`` with its own data dir and client config, stopped (and its group killed) at the end."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data_dir = root / "data"
        self.api_port, self.router_port, self.admin_port = free_port(), free_port(), free_port()
        self.token = "e2e-admin-token"
        self.url = f"http://127.0.0.1:{self.api_port}"
        self.env = {**os.environ, "CONVEYOR_CONFIG": str(root / "client.json"), "CONVEYOR_URL": self.url,
                    "CONVEYOR_TOKEN": self.token, "PYTHONUNBUFFERED": "1"}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with (self.root / "up.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "conveyor", "up", "--data-dir", str(self.data_dir),
                 "--api-port", str(self.api_port), "--router-port", str(self.router_port),
                 "--router-admin-port", str(self.admin_port), "--admin-token", self.token],
                stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True, cwd=self.root)
        wait_for(self._ready, 60, "conveyor up to say it is up", 0.1)

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"conveyor up exited with {self.proc.returncode}:\n{self.log()}")
        return "Conveyor is up" in self.log()

    def log(self) -> str:
        path = self.root / "up.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        res = subprocess.run([sys.executable, "-m", "conveyor", *args], capture_output=True, text=True,
                             env=self.env, timeout=180, cwd=self.root)
        if check and res.returncode != 0:
            raise AssertionError(f"conveyor {' '.join(args)} exited {res.returncode}:\n{res.stdout}\n{res.stderr}")
        return res

    def api(self, method: str, path: str, **kw: Any) -> Any:
        import httpx

        headers = {"Authorization": f"Bearer {self.token}", **kw.pop("headers", {})}
        resp = httpx.request(method, f"{self.url}/api/v1{path}", headers=headers, timeout=60, **kw)
        assert resp.status_code < 400, f"{method} {path}: {resp.status_code} {resp.text}"
        return resp.json()

    def build(self, app: str, source: Path, committed_ago: float = 600.0) -> str:
        """Upload a source (as a commit made ``committed_ago`` seconds ago), wait for its build, return the digest."""
        import hashlib

        from conveyor.build.archive import pack_directory

        data = pack_directory(source)
        commit = {"sha": hashlib.sha1(data).hexdigest(), "author": "E2E <e2e@example.com>",
                  "message": f"{source.name}: a change", "time": time.time() - committed_ago, "dirty": False}
        build = self.api("POST", f"/apps/{app}/builds", content=data, params={"commit": json.dumps(commit)},
                         headers={"Content-Type": "application/gzip"})
        done = wait_for(lambda: (b := self.api("GET", f"/builds/{build['id']}"))["state"] in ("succeeded", "failed")
                        and b, 120, f"build {build['id']}", 0.1)
        assert done["state"] == "succeeded", done
        return str(done["image_digest"])

    def deploy(self, app: str, image: str, env: str) -> dict[str, Any]:
        """Deploy through the API and wait for the deployment to end."""
        dep = self.api("POST", f"/apps/{app}/deployments", json={"env": env, "image": image})
        final = wait_for(lambda: (d := self.api("GET", f"/deployments/{dep['id']}"))["state"]
                         in ("succeeded", "failed", "rolled_back", "cancelled") and d, 120, f"deployment {dep['id']}", 0.1)
        assert final["state"] == "succeeded", final
        return dict(final)

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
        self._reap_instances()
        self.proc = None

    def _reap_instances(self) -> None:
        """Instances run in their own sessions (they outlive an agent crash by design): end any left."""
        state = self.data_dir / "agent" / "agent-state.json"
        try:
            doc = json.loads(state.read_text())
        except (OSError, ValueError):
            return
        for rec in (doc.get("processes") or {}).values():
            if rec.get("pid"):
                _kill_group(int(rec["pid"]))


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def need_chromium() -> None:
    if not CHROMIUM.exists():
        if os.environ.get("CI") == "true":
            pytest.fail("needs chromium (apt-get install chromium): /usr/bin/chromium is missing")
        pytest.skip("needs chromium (apt-get install chromium)")


def app_source(root: Path, version: str) -> Path:
    dest = root / f"hello-{version}"
    if not dest.exists():
        shutil.copytree(REPO / "examples" / "hello", dest)
        (dest / "VERSION").write_text(version + "\n")
    return dest
