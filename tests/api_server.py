"""``conveyor server`` alone for tests: a real uvicorn on a free loopback port, its own data dir.

Shared by the API hardening tests (tests/integration) and the OpenAPI contract test (tests/unit/api).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from conveyor_up import free_port, wait_for

TOKEN = "hardening-token-0123"  # 16+ characters: shorter admin tokens are refused (issue 15)
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Server:
    """``conveyor server`` alone, on a free loopback port, with its own data dir."""

    token = TOKEN

    def __init__(self, root: Path, viewer_token: str | None = None) -> None:
        self.viewer_token = viewer_token
        self.data_dir = root / "data"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = root / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.api = httpx.Client(base_url=f"{self.url}/api/v1", headers=AUTH, timeout=30)

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "conveyor", "server", "--data-dir", str(self.data_dir), "--port",
                 str(self.port), "--admin-token", TOKEN,
                 *(["--viewer-token", self.viewer_token] if self.viewer_token else [])], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(self._up, 60, 0.1, "conveyor server to answer /healthz")

    def _up(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"conveyor server exited:\n{self.log_path.read_text()}")
        return httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
            self.proc = None

    @property
    def uploads(self) -> list[str]:
        d = self.data_dir / "uploads"
        return sorted(p.name for p in d.iterdir()) if d.exists() else []

    def peak_rss_mib(self) -> float:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmHWM in /proc/PID/status")
