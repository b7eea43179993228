"""Harness for the agent's integration tests: a stub control plane, real agent processes, test apps."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from conveyor.domain.wire import DesiredInstance, HealthCheck

from agent_stubcp import StubControlPlane

REPO = Path(__file__).resolve().parents[3]
T = TypeVar("T")

HELLO = "sha256:" + "1" * 64
NEVER_READY = "sha256:" + "2" * 64
STUBBORN = "sha256:" + "3" * 64
PLAIN = "sha256:" + "4" * 64
LATE = "sha256:" + "5" * 64
FLAKY = "sha256:" + "6" * 64

NEVER_READY_APP = '''
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class H(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, fmt, *args):
        print("probe", self.path, flush=True)

ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
'''

STUBBORN_APP = '''
import os, signal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
signal.signal(signal.SIGTERM, signal.SIG_IGN)

class H(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, fmt, *args):
        pass

ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
'''

FLAKY_APP = '''
import os
from pathlib import Path
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class H(BaseHTTPRequestHandler):
    def do_GET(self):
        sick = Path("sick").exists()
        self.send_response(500 if sick else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, fmt, *args):
        pass

ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
'''


def wait_until(condition: Callable[[], T], timeout: float = 20.0, what: str = "condition", interval: float = 0.03) -> T:
    """Poll ``condition`` until it returns something truthy; fail with ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def marked_processes(marker: str) -> list[dict[str, Any]]:
    """Live processes whose environment carries this test's marker."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if f"CONVEYOR_TEST_MARKER={marker}".encode() not in environ:
            continue
        rest = stat[stat.rfind(")") + 2 :].split()
        if rest[0] in ("Z", "X"):
            continue
        env = dict(e.decode(errors="replace").split("=", 1) for e in environ if b"=" in e)
        found.append({"pid": int(entry), "pgid": int(rest[2]), "instance": env.get("CONVEYOR_INSTANCE"), "port": env.get("PORT")})
    return found


@dataclass
class World:
    """One test's world: a stub control plane, image directories, agent processes."""

    tmp: Path
    cp: StubControlPlane
    marker: str = field(default_factory=lambda: uuid.uuid4().hex)
    agents: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def data_dir(self) -> Path:
        return self.tmp / "agent-data"

    @property
    def sandboxed(self) -> bool:
        """Whether this host runs instances in bubblewrap (root, bwrap and setpriv present)."""
        from conveyor.agent.sandbox import sandbox_warning

        return sandbox_warning() is None

    def spec(self, instance_id: str, image: str = HELLO, command: str = "python app.py", health: str = "/healthz", **kw: Any) -> DesiredInstance:
        env = {"CONVEYOR_TEST_MARKER": self.marker, **kw.pop("environment", {})}
        return DesiredInstance(
            id=instance_id,
            app="hello",
            env="test",
            release=kw.pop("release", 1),
            image=image,
            command=command,
            environment=env,
            health=kw.pop("health_check", None) or HealthCheck(path=health, timeout_s=2.0, interval_s=0.5),
        )

    def start_agent(
        self, *extra: str, stop_grace: float = 2.0, token: str | None = None, use_image_map: bool = True
    ) -> subprocess.Popen[bytes]:
        n = len(self.agents)
        out = open(self.tmp / f"agent-{n}.out", "wb")  # noqa: SIM115 - kept open for the process
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "conveyor.agent",
                "--control-plane", self.cp.url,
                "--token", token or self.cp.token,
                "--host", self.cp.host,
                "--data-dir", str(self.data_dir),
                "--stop-grace", str(stop_grace),
                *(["--image-map", str(self.tmp / "images.json")] if use_image_map else []),
                *extra,
            ],  # fmt: skip
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(REPO / "src")},
        )
        out.close()
        self.agents.append(proc)
        wait_until(lambda: b"conveyor agent:" in self.agent_output(n) or proc.poll() is not None, 30, "the agent's start line")
        assert proc.poll() is None, self.agent_output(n).decode()
        return proc

    def agent_output(self, n: int = -1) -> bytes:
        n = n if n >= 0 else len(self.agents) - 1
        try:
            return (self.tmp / f"agent-{n}.out").read_bytes()
        except FileNotFoundError:
            return b""

    def log_path(self, instance_id: str) -> Path:
        return self.data_dir / "logs" / f"{instance_id}.log"

    def wait_state(self, instance_id: str, state: str, timeout: float = 30.0, since: int = 0) -> Any:
        def check() -> Any:
            with self.cp._cond:
                statuses = [s for _, s in self.cp.statuses[since:]]
            for status in reversed(statuses):
                inst = next((i for i in status.instances if i.id == instance_id), None)
                if inst is not None:
                    return inst if inst.state.value == state else None
            return None

        try:
            return wait_until(check, timeout, f"{instance_id} to be {state}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nlast statuses: {self.cp.dump()}\nagent output:\n{self.agent_output().decode()[-3000:]}") from None

    def cleanup(self) -> None:
        for proc in self.agents:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        for p in marked_processes(self.marker):
            try:
                os.killpg(p["pgid"], signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.cp.stop()


def make_world(tmp_path: Path) -> World:
    images = tmp_path / "images"
    hello = images / "hello"
    shutil.copytree(REPO / "examples" / "hello", hello)
    for name, source in (("never", NEVER_READY_APP), ("stubborn", STUBBORN_APP), ("flaky", FLAKY_APP)):
        (images / name).mkdir(parents=True)
        (images / name / "app.py").write_text(source)
    (images / "plain").mkdir()
    (tmp_path / "images.json").write_text(
        json.dumps(
            {
                HELLO: str(hello),
                NEVER_READY: str(images / "never"),
                STUBBORN: str(images / "stubborn"),
                PLAIN: str(images / "plain"),
                LATE: str(images / "late"),  # created by the test that needs it
                FLAKY: str(images / "flaky"),
            }
        )
    )
    cp = StubControlPlane(host=f"host-{uuid.uuid4().hex[:8]}").start()
    return World(tmp=tmp_path, cp=cp)
