"""Instance processes: environment, spawn, identity, termination.

Every instance runs as ``/bin/sh -c <command>`` in a session of its own, so
that (a) a signal to its process group reaches everything it started and
(b) it survives the agent being killed: a restarted agent finds it again by
pid *and* start time (``/proc/<pid>/stat`` field 22), which is what stops a
recycled pid from being mistaken for the instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from conveyor import logfile
from conveyor.domain.wire import DesiredInstance

#: Directories searched after the image's own ``bin``: the Python the agent was
#: installed with (its base interpreter, not a virtual environment, so the
#: instance does not see Conveyor's packages), then the usual system ones.
_SYSTEM_PATH = ("/usr/local/bin", "/usr/bin", "/bin")
#: Set in every instance's environment to the data directory of the agent that started it.
AGENT_DIR_VAR = "CONVEYOR_AGENT_DATA"


def base_python_dir() -> str:
    """The ``bin`` directory of the interpreter behind the agent's Python (venv-free)."""
    base = getattr(sys, "_base_executable", None) or sys.executable
    return str(Path(base).parent)


def build_env(
    spec: DesiredInstance,
    *,
    image_root: Path,
    image_env: Mapping[str, str],
    port: int,
    address: str,
    home: str,
    agent_dir: str = "",
) -> dict[str, str]:
    """The whole environment of an instance process (nothing is inherited).

    Later sources win: defaults, then the image's env, then the desired
    ``environment``; ``PORT``, ``HOST`` and the ``CONVEYOR_*`` identity are the
    agent's and cannot be overridden. The image's ``bin`` is always first on
    ``PATH``, even when the image sets its own ``PATH``. ``CONVEYOR_AGENT_DATA``
    (the agent's data directory) lets a restarted agent recognise its own
    instances even without its state file (see :func:`find_instances`).
    """
    search = [str(image_root / "bin"), base_python_dir(), *_SYSTEM_PATH]
    env: dict[str, str] = {
        "HOME": home,
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
    }
    env.update(image_env)
    env.update(spec.environment)
    env.update(spec.secrets)
    tail = env.get("PATH")
    path_parts = [search[0], *(tail.split(":") if tail else search[1:])]
    seen: set[str] = set()
    env["PATH"] = ":".join(p for p in path_parts if p and not (p in seen or seen.add(p)))  # type: ignore[func-returns-value]
    env.update(
        {
            "PORT": str(port),
            "HOST": address,
            "CONVEYOR_APP": spec.app,
            "CONVEYOR_ENV": spec.env,
            "CONVEYOR_RELEASE": str(spec.release),
            "CONVEYOR_INSTANCE": spec.id,
        }
    )
    if agent_dir:
        env[AGENT_DIR_VAR] = agent_dir
    return env


def free_port(address: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``address`` right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


# ---------------------------------------------------------------------------
# Identity of a live process
# ---------------------------------------------------------------------------


def proc_stat(pid: int) -> tuple[str, int] | None:
    """``(state letter, start time in clock ticks since boot)`` of ``pid``, or ``None`` if gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError, OSError):
        return None
    # The command name (field 2) is in parentheses and may contain spaces.
    rest = raw[raw.rfind(")") + 2 :].split()
    try:
        return rest[0], int(rest[19])
    except (IndexError, ValueError):
        return None


def _exe(pid: int) -> Path | None:
    try:
        return Path(f"/proc/{pid}/exe").resolve()
    except OSError:
        return None


def _parent(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat[stat.rindex(")") + 2:].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _is_wrapper(pid: int, leader: int) -> bool:
    """Whether ``pid`` is one of the processes we put around an instance's command: bubblewrap, or the
    ``/bin/sh -c`` running it (the group's leader, or bubblewrap's child in a sandbox)."""
    exe = _exe(pid)
    if exe is None:
        return False
    if exe.name == "bwrap":
        return True
    if exe != Path("/bin/sh").resolve():
        return False
    parent = _parent(pid)
    return pid == leader or (parent is not None and (_exe(parent) or Path()).name == "bwrap")


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is ``pgid``.

    The instance's shell is the group leader, but the app is often its child
    (dash does not ``exec`` the last command), so "stopped" means the whole
    group is gone, not just the leader.

    A group with no process at all (the usual case once an instance stopped) is answered by one
    ``killpg(pgid, 0)`` instead of reading every process's ``/proc/PID/stat`` (a thousand files on
    a busy host, each poll of :func:`terminate`).
    """
    members: list[int] = []
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return members  # no process, not even a zombie, is in the group
    except PermissionError:
        pass  # some member is another user's: look at each
    try:
        entries = os.listdir("/proc")
    except OSError:
        return members
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        rest = raw[raw.rfind(")") + 2 :].split()
        try:
            if int(rest[2]) == pgid and rest[0] not in ("Z", "X"):
                members.append(int(entry))
        except (IndexError, ValueError):
            continue
    return members


def find_instances(agent_dir: str) -> dict[int, tuple[str, int]]:
    """Live instance session leaders started by the agent of ``agent_dir``: ``{pid: (instance id, start ticks)}``.

    Found through ``/proc/<pid>/environ``, so this works even when the state
    file is lost or was not written yet (an agent killed right after a spawn).
    """
    marker = f"{AGENT_DIR_VAR}={agent_dir}".encode()
    found: dict[int, tuple[str, int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return found
    for entry in entries:
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker not in environ:
            continue
        try:
            if os.getpgid(pid) != pid:
                continue  # not the session leader: its group is found through the leader
        except OSError:
            continue
        info = proc_stat(pid)
        instance = next((e[len(b"CONVEYOR_INSTANCE=") :].decode(errors="replace") for e in environ if e.startswith(b"CONVEYOR_INSTANCE=")), "")
        if info is not None and info[0] not in ("Z", "X"):
            found[pid] = (instance, info[1])
    return found


def same_process_alive(pid: int, start_ticks: int) -> bool:
    """Whether ``pid`` is still the process that started at ``start_ticks`` and not a zombie."""
    info = proc_stat(pid)
    return info is not None and info[1] == start_ticks and info[0] not in ("Z", "X")


@dataclass
class Process:
    """A running instance process: a child of this agent, or adopted from an earlier one.

    For a child, the exit code is known; for an adopted process (whose parent
    died) only that it is gone.
    """

    pid: int
    start_ticks: int
    child: subprocess.Popen[bytes] | None = None
    writer: subprocess.Popen[bytes] | None = None  # the log writer (reaped once it exits)

    def poll(self) -> tuple[bool, int | None]:
        """``(alive, exit_code)``; the exit code is ``None`` when unknown or still running."""
        if self.writer is not None:
            self.writer.poll()  # reap it once the instance's output has ended
        if self.child is not None:
            code = self.child.poll()
            return (code is None, code)
        return (same_process_alive(self.pid, self.start_ticks), None)

    async def output_written(self, timeout: float = 2.0) -> None:
        """Wait (up to ``timeout``) for the log writer to store the last output of an instance that ended."""
        deadline = time.monotonic() + timeout
        while self.writer is not None and self.writer.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    def interrupt(self) -> None:
        """Ctrl-C as a terminal delivers it: SIGINT to every process of the instance's group except our
        own wrappers, which then report the command's exit status (``conveyor run`` exits with it).

        The wrappers: bubblewrap (the sandbox: outside and as the namespace's init it does not pass
        SIGINT on, and the outer one, interrupted, dies at once with 130 while the command still
        cleans up) and the ``/bin/sh -c`` that dash keeps as the command's parent (an interactive
        shell waits for the command; dash, interrupted too, would die of SIGINT and hide the
        command's code). A command dash did ``exec`` is not a wrapper and gets the signal."""
        if not same_process_alive(self.pid, self.start_ticks):
            return
        targets = [m for m in group_members(self.pid) if not _is_wrapper(m, self.pid)]
        if not targets:
            self.signal_group(signal.SIGINT)
            return
        for pid in targets:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGINT)

    def signal_group(self, sig: int) -> None:
        """Send ``sig`` to the process group (the instance's session); ignore it being gone."""
        if self.child is None and not same_process_alive(self.pid, self.start_ticks) and not group_members(self.pid):
            # Nothing of an adopted instance is left; its pid may have been recycled: never signal it.
            return
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def spawn(
    command: str,
    *,
    cwd: Path,
    env: Mapping[str, str],
    log_path: Path,
    banner: str = "",
    log_max_bytes: int = logfile.DEFAULT_MAX_BYTES,
    argv: list[str] | None = None,
) -> Process:
    """Start ``command`` through ``/bin/sh -c`` in a new session; its output goes to ``log_path``.

    The output passes through a pipe to a log writer process
    (``python -m conveyor.logfile``) that stamps each line with its time and
    keeps the log within ``log_max_bytes`` (see :mod:`conveyor.logfile`). The
    writer has its own session: it outlives an agent restart like the instance
    does, and exits when the instance's last process closes the pipe.

    ``argv`` replaces ``/bin/sh -c command`` when the instance is sandboxed or limited
    (:class:`conveyor.agent.sandbox.Isolation` builds it around the same shell command).
    The session leader is then bubblewrap; the app stays in its process group, so
    signalling the group still reaches it. The log writer stays outside the sandbox,
    as the agent's user: the app cannot rewrite or remove its own log.
    """
    log = logfile.SegmentedLog(log_path, log_max_bytes)
    if banner:
        log.append(logfile.stamp_lines(banner.encode("utf-8", "replace"), True, time.time())[0])
    read_end, write_end = os.pipe()
    try:
        child = subprocess.Popen(  # noqa: S603 - running the app's command is the point
            argv or ["/bin/sh", "-c", command],
            cwd=str(cwd),
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=write_end,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
        os.close(write_end)
        write_end = -1
        try:
            writer = subprocess.Popen(  # noqa: S603 - our own module
                [sys.executable, "-m", "conveyor.logfile", str(log_path), str(log.max_bytes)],
                stdin=read_end,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                close_fds=True,
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
            )
        except OSError:  # no writer, no instance: one without a reader would die of SIGPIPE unseen
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.pid, signal.SIGKILL)
            child.wait()
            raise
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)
    info = proc_stat(child.pid)
    return Process(pid=child.pid, start_ticks=info[1] if info else 0, child=child, writer=writer)


def append_line(log_path: Path, text: str, max_bytes: int = logfile.DEFAULT_MAX_BYTES) -> None:
    """Append one agent line (stamped) to an instance's log."""
    line = text if text.endswith("\n") else text + "\n"
    logfile.SegmentedLog(log_path, max_bytes).append(logfile.stamp_lines(line.encode("utf-8", "replace"), True, time.time())[0])


def describe_exit(code: int | None, oom_limit: str | None = None) -> str:
    """A human phrase for an exit code (negative: killed by a signal).

    ``oom_limit``: the instance's memory cgroup recorded an OOM kill since it started.
    """
    if oom_limit is not None:
        return f"killed: out of memory, limit {oom_limit}"
    if code is None:
        return "exited (exit code unknown: the process was adopted from an earlier agent)"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"killed by {name}"
    return f"exited with code {code}"


def tail_lines(path: Path, lines: int = 8, max_bytes: int = 2048) -> str:
    """The last ``lines`` lines of a log (at most ``max_bytes`` read), without timestamps, for status messages."""
    try:
        found = logfile.SegmentedLog(path).tail(lines, max_bytes=max_bytes)
    except OSError:
        return ""
    return "\n".join(logfile.split_stamp(line)[1] for line in found)


async def terminate(process: Process, grace: float, *, poll_every: float = 0.05) -> int | None:
    """SIGTERM the process group, wait up to ``grace`` seconds, then SIGKILL it.

    Returns the exit code when known. Stragglers left in the group after the
    leader exits are killed too, so the instance's port is free afterwards.
    """
    def running() -> bool:
        nonlocal code
        alive, exit_code = process.poll()
        if exit_code is not None:
            code = exit_code
        return alive or bool(group_members(process.pid))

    code: int | None = None
    process.signal_group(signal.SIGTERM)
    deadline = time.monotonic() + max(0.0, grace)
    while running() and time.monotonic() < deadline:
        await asyncio.sleep(poll_every)
    if running():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        kill_deadline = time.monotonic() + 10.0  # a process stuck in the kernel: give up waiting
        while running() and time.monotonic() < kill_deadline:
            await asyncio.sleep(poll_every)
    return code
