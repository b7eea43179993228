"""Helpers for the router's integration tests: real processes on loopback ports.

``backend(name)`` starts ``backend_app.py`` (a separate process), ``router(table)``
starts ``python -m conveyor.router`` with a static table file; both listen on
port 0 and announce their port on their first stdout line. Every process is
killed at teardown, even when the test failed.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


HERE = Path(__file__).resolve().parent
PY = sys.executable
SRC = str(HERE.parents[2] / "src")



def wait_until(cond: Callable[[], Any], timeout: float = 10.0, interval: float = 0.03, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def read_first_line(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    buf = b""
    fd = proc.stdout.fileno()
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0 or proc.poll() is not None:
            raise AssertionError(f"process {proc.args} did not announce itself (exit={proc.poll()}, out={buf!r})")
        r, _, _ = select.select([fd], [], [], min(left, 0.2))
        if r:
            chunk = os.read(fd, 4096)
            if not chunk:
                continue
            buf += chunk
    return buf.split(b"\n", 1)[0].decode()


@dataclass
class Backend:
    name: str
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


@dataclass
class Router:
    port: int
    admin_port: int
    proc: subprocess.Popen[bytes]
    table_path: Path
    stderr_path: Path
    tls_port: int | None = None  # with --listen-tls

    def metrics(self) -> dict[str, Any]:
        return json.loads(http_get(self.admin_port, "/metrics.json")[2])

    def release_metrics(self, release: int, env: str = "production") -> dict[str, Any]:
        for r in self.metrics()["releases"]:
            if r["release"] == release and r["env"] == env:
                return dict(r)
        raise AssertionError(f"no metrics for release {release}")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")


class Procs:
    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def spawn(self, args: list[str], **kw: Any) -> subprocess.Popen[bytes]:
        env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), PYTHONUNBUFFERED="1")
        env.update(kw.pop("env", {}))
        # Its own process group, so that cleanup also kills what it started (router workers).
        kw.setdefault("start_new_session", True)
        p = subprocess.Popen(args, stdout=subprocess.PIPE, env=env, **kw)
        self.procs.append(p)
        return p

    def cleanup(self) -> None:
        for p in self.procs:
            try:  # before p is reaped, so its pid (the group id) cannot have been reused
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            if p.stdout:
                p.stdout.close()


def make_table(version: int, releases: list[tuple[int, int, list[Backend]]], host: str = "hello.localhost", sticky: bool = False, env: str = "production") -> dict[str, Any]:
    return {
        "version": version,
        "environments": [
            {
                "app": "hello",
                "env": env,
                "hosts": [host],
                "sticky": sticky,
                "releases": [
                    {"release": r, "weight": w, "instances": [{"id": f"{b.name}", "address": b.address} for b in bs]}
                    for r, w, bs in releases
                ],
            }
        ],
    }


# -- small HTTP clients ----------------------------------------------------


def http_get(port: int, path: str, host: str = "hello.localhost", headers: dict[str, str] | None = None, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    import http.client

    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path, headers={"Host": host, **(headers or {})})
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def raw(port: int, data: bytes, timeout: float = 5.0, until_close: bool = True) -> bytes:
    """Send raw bytes; read until the server closes (or ``timeout``)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        out = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            out += chunk
            if not until_close and b"\r\n\r\n" in out:
                break
        return out
    finally:
        s.close()


def closed_by_peer(s: socket.socket, timeout: float) -> bool:
    """True when the peer closes ``s`` within ``timeout`` (reading and discarding data)."""
    s.settimeout(timeout)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not s.recv(65536):
                return True
    except (TimeoutError, socket.timeout):
        return False
    except ConnectionResetError:
        return True
    return False
