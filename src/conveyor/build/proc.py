"""Running a build step (pip, ``[build] command``, ``[test] command``) with its output streamed.

Each step runs in its own process group with stdin closed and stderr merged into
stdout; every output line goes to ``log`` as it arrives, so a slow ``pip install``
is visible live. On timeout or on an exception in the caller (Ctrl-C, a killed
worker), the whole group is killed: a build never leaves a stray process.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path


class StepTimeout(RuntimeError):
    """A build step ran longer than allowed."""


def run_streaming(
    argv: Sequence[str] | str,
    *,
    cwd: Path,
    env: Mapping[str, str],
    log: Callable[[str], None],
    timeout_s: float,
    shell: bool = False,
) -> int:
    """Run a command, send each output line to ``log``, return its exit code."""
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=dict(env),
        shell=shell,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    timed_out = threading.Event()

    def _kill() -> None:
        timed_out.set()
        _kill_group(proc)

    timer = threading.Timer(timeout_s, _kill)
    timer.daemon = True
    timer.start()
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            log(raw.decode("utf-8", "replace").rstrip("\r\n"))
        code = proc.wait()
    except BaseException:
        _kill_group(proc)
        proc.wait()
        raise
    finally:
        timer.cancel()
        if proc.stdout is not None:
            proc.stdout.close()
    # A command that exited may have left children in its group: end them too.
    _kill_group(proc)
    if timed_out.is_set():
        raise StepTimeout(f"command timed out after {timeout_s:.0f} s: {argv if isinstance(argv, str) else ' '.join(argv)}")
    return code


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    signal_group(proc.pid, signal.SIGKILL)


def signal_group(pid: int, sig: int) -> None:
    """Signal a process group (a child started in its own session); gone already is fine."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def free_port() -> int:
    """A TCP port on 127.0.0.1 free right now (for ``PORT`` in the test stage)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
