"""Instance isolation with bubblewrap: a per-app user, a read-only host, private /tmp, no privileges.

Why bubblewrap, run as root, then ``setpriv``: bubblewrap (Flatpak's sandbox) does
the namespace and mount work we must not hand-write. Run by root without a user
namespace it can bind paths that only root can reach (the image in the agent's
0700 data dir, the interpreter under ``/root``) into the sandbox's own mount
tree; ``setpriv`` then becomes the app's user, drops every capability and the
bounding set, and sets no-new-privileges before the app's shell starts. (A user
namespace would map the app's user back to root outside: not what we want.)

Inside, the app sees:

* the host's filesystem read-only, with ``/root``, ``/home``, ``/run``, ``/tmp``,
  ``/var/tmp``, the agent's data dir and every ``--hide`` path (the control
  plane's data dir in ``conveyor up``) replaced by empty tmpfs;
* its image read-only at its usual path, its own writable directory (``HOME``);
* a private ``/tmp`` of bounded size, new ``/proc`` and ``/dev``, and its own
  PID, IPC and UTS namespaces: no other process of the host is visible or signalable.

The network is the host's: the app must listen on ``HOST:PORT``. Since it runs as
its own user, it cannot take over a port another user holds (``SO_REUSEPORT``
sharing needs the same user).

``plan_*`` functions are pure (they return argv lists); tests check them
directly and the hostile-app suite runs them for real.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from conveyor.agent.cgroups import Cgroups, cgroup_wrapper, procs_env
from conveyor.domain.limits import DEFAULTS, Limits
from conveyor.domain.wire import DesiredInstance

#: Per-app users are allocated from this range (no /etc/passwd entry is needed).
UID_BASE = 61000
UID_COUNT = 4000
#: Paths always masked by an empty tmpfs (credentials and other users' files live there).
ALWAYS_HIDDEN = ("/root", "/home", "/run", "/tmp", "/var/tmp")
#: Default size of an instance's private /tmp (it is memory: the memory limit bounds it too).
DEFAULT_TMP_BYTES = 64 * 1024 * 1024


def bwrap_path() -> str | None:
    return shutil.which("bwrap")


def setpriv_path() -> str | None:
    return shutil.which("setpriv")


def sandbox_warning() -> str | None:
    """Why instances on this host would *not* be sandboxed, or None when they will be."""
    if bwrap_path() is None:
        return ("bubblewrap (bwrap) is not installed: app instances run UNSANDBOXED as the agent's user and can read "
                "its files and tokens. Install the Debian package `bubblewrap`.")
    if setpriv_path() is None:
        return "setpriv (util-linux) is missing: app instances run UNSANDBOXED. Install util-linux."
    if os.geteuid() != 0:
        return ("the agent is not root, so it cannot run each app as its own user: app instances run UNSANDBOXED as "
                "the agent's user. Run the agent as root to isolate them.")
    return _probe()


@functools.lru_cache(maxsize=1)
def _probe() -> str | None:
    """Whether bubblewrap can make a sandbox here (a container may forbid namespaces); once per process."""
    argv = [bwrap_path() or "bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-pid",
            "--unshare-ipc", "--cap-drop", "ALL", "--", "/bin/true"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bubblewrap does not run here ({exc}): app instances run UNSANDBOXED"
    if done.returncode != 0:
        return f"bubblewrap cannot make a sandbox here ({done.stderr.strip()[:200]}): app instances run UNSANDBOXED"
    return None


def allocate_uid(assigned: Mapping[str, int], app: str) -> int:
    """The uid of ``app``: its recorded one, else the lowest free uid of the range. Pure."""
    if app in assigned:
        return assigned[app]
    used = set(assigned.values())
    for uid in range(UID_BASE, UID_BASE + UID_COUNT):
        if uid not in used:
            return uid
    raise RuntimeError(f"no free app uid left in {UID_BASE}..{UID_BASE + UID_COUNT - 1}")


class AppUsers:
    """App → uid, persisted in the agent's data dir (``app-users.json``) so that an app keeps its user."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._map: dict[str, int] = {str(k): int(v) for k, v in json.loads(path.read_text()).items()}
        except (OSError, ValueError, AttributeError):
            self._map = {}

    def uid(self, app: str) -> int:
        if app not in self._map:
            self._map[app] = allocate_uid(self._map, app)
            tmp = self.path.with_name(f".{self.path.name}.tmp")
            with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
                json.dump(self._map, f)
            os.replace(tmp, self.path)
        return self._map[app]


@dataclass(frozen=True)
class SandboxSpec:
    """Everything one sandboxed instance needs; see :func:`plan_command`."""

    uid: int
    gid: int
    image_dir: Path  # bound read-only
    work_dir: Path  # bound read-write: the app's own directory (HOME)
    cwd: Path
    hide: tuple[str, ...] = ()  # more paths to mask (the agent's data dir, the control plane's)
    tmp_bytes: int = DEFAULT_TMP_BYTES
    python_prefix: str = field(default_factory=lambda: sys.base_prefix)


def _under(path: str, parents: Sequence[str]) -> bool:
    return any(path == p or path.startswith(p.rstrip("/") + "/") for p in parents)


def plan_command(spec: SandboxSpec, argv: Sequence[str], *, bwrap: str = "bwrap", setpriv: str = "setpriv",
                 unset: Sequence[str] = ()) -> list[str]:
    """The argv that runs ``argv`` inside the sandbox described by ``spec``. Pure."""
    hidden = [*ALWAYS_HIDDEN, *spec.hide]
    out = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    for path in hidden:
        if os.path.isdir(path) or path in ALWAYS_HIDDEN:
            if path == "/tmp":  # the app's private, bounded, world-writable-sticky /tmp
                out += ["--perms", "1777", "--size", str(spec.tmp_bytes)]
            out += ["--tmpfs", path]
    # Put back, read-only, what the app needs from masked places: the interpreter, its image.
    # Put back what the app needs from masked places: the interpreter and its image read-only,
    # its own directory writable.
    for path, how in ((spec.python_prefix, "--ro-bind"), (str(spec.image_dir), "--ro-bind"), (str(spec.work_dir), "--bind")):
        if _under(path, hidden):
            # The directories between the mask and the bound path: traversable by the app's user
            # (bwrap would make them 0700).
            top = max((h for h in hidden if _under(path, [h])), key=len)
            parts = Path(path).relative_to(top).parts[:-1]
            for i in range(1, len(parts) + 1):
                out += ["--perms", "0755", "--dir", str(Path(top, *parts[:i]))]
            out += [how, path, path]
        elif how == "--bind":
            out += [how, path, path]
    out += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try", "--hostname", "conveyor-app"]
    # Root keeps capabilities in bwrap by default: keep only what setpriv needs to drop to the app's user.
    out += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add", "CAP_SETPCAP"]
    for name in unset:
        out += ["--unsetenv", name]
    out += ["--chdir", str(spec.cwd), "--", setpriv, f"--reuid={spec.uid}", f"--regid={spec.gid}", "--clear-groups",
            "--no-new-privs", "--inh-caps=-all", "--bounding-set=-all", "--", *argv]
    return out


def prepare_work_dir(path: Path, uid: int, gid: int) -> Path:
    """The instance's writable directory, owned by the app's user and private to it."""
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, uid, gid)
    path.chmod(0o700)
    return path


@dataclass
class Launch:
    """How to start one instance: argv, environment additions, its writable dir, what to report."""

    argv: list[str]
    env: dict[str, str]
    work_dir: Path | None
    note: str  # "bubblewrap, uid 61000" or "UNSANDBOXED: <why>"
    cgroup_procs: list[Path] = field(default_factory=list)


class Isolation:
    """The agent's way of starting instances: sandbox (when available) and cgroup limits.

    ``sandbox=False`` (the agent's ``--no-sandbox``, or a host without bubblewrap) still
    applies limits; the reason is reported with every instance and at start, loudly.
    """

    def __init__(self, data_dir: Path, *, hide: Sequence[str] = (), sandbox: bool = True,
                 cgroups: Cgroups | None = None, default_limits: Limits | None = None) -> None:
        self.data_dir = data_dir
        self.hide = tuple(dict.fromkeys([str(data_dir), *hide]))
        warning = sandbox_warning() if sandbox else "the agent was started with --no-sandbox"
        self.warning = warning
        self.users = AppUsers(data_dir / "app-users.json")
        self.cgroups = cgroups if cgroups is not None else Cgroups.detect()
        self.default_limits = default_limits or DEFAULTS

    def limits_of(self, spec: DesiredInstance) -> Limits:
        if spec.limits is None:
            return self.default_limits
        return Limits(memory=spec.limits.memory, cpu=spec.limits.cpu, pids=spec.limits.pids)

    def launch(self, spec: DesiredInstance, command: str, image_root: Path) -> Launch:
        limits = self.limits_of(spec)
        procs = self.cgroups.create(spec.id, limits) if self.cgroups.hierarchies else []
        inner = ["/bin/sh", "-c", command]
        wrapper = cgroup_wrapper(procs) if procs else []
        if self.warning is not None:
            return Launch([*wrapper, *inner], procs_env(procs), None, f"UNSANDBOXED: {self.warning}", procs)
        uid = self.users.uid(spec.app)
        work = prepare_work_dir(self.data_dir / "work" / spec.id, uid, uid)
        image_dir = image_root.parent if image_root.name == "app" and (image_root.parent / "venv").is_dir() else image_root
        tmp_bytes = min(DEFAULT_TMP_BYTES, limits.memory) if limits.memory else DEFAULT_TMP_BYTES
        sandbox = SandboxSpec(uid=uid, gid=uid, image_dir=image_dir, work_dir=work, cwd=image_root, hide=self.hide,
                              tmp_bytes=tmp_bytes)
        argv = plan_command(sandbox, inner, bwrap=bwrap_path() or "bwrap", setpriv=setpriv_path() or "setpriv",
                            unset=("CONVEYOR_AGENT_DATA", "CONVEYOR_CGROUP_PROCS"))
        env = {**procs_env(procs), "HOME": str(work), "TMPDIR": "/tmp"}
        return Launch([*wrapper, *argv], env, work, f"bubblewrap, uid {uid}", procs)

    def finished(self, spec: DesiredInstance, launch_dir: Path | None = None) -> None:
        """The instance is stopped for good: remove its cgroups and writable directory
        (also of an instance adopted from an earlier agent, which never told us its dir)."""
        self.cgroups.remove(spec.id)
        shutil.rmtree(launch_dir or self.data_dir / "work" / spec.id, ignore_errors=True)
