"""Bubblewrap sandboxes for code the platform runs on a user's behalf: app instances and build steps.

Why a module of its own, beside ``logfile``: the agent runs each app instance in one
(``agent/sandbox.py`` adds per-app users and cgroups), and the control plane's build
worker runs each build's own commands (``[build] command``, ``[test] command``) in
one (``build/builder.py``); both must mask the same secrets the same way. Stdlib only.

Why bubblewrap, run as root, then ``setpriv``: bubblewrap (Flatpak's sandbox) does
the namespace and mount work we must not hand-write. Run by root without a user
namespace it can bind paths that only root can reach (the image in the agent's
0700 data dir, the interpreter under ``/root``) into the sandbox's own mount
tree; ``setpriv`` then becomes the unprivileged user, drops every capability and
the bounding set, and sets no-new-privileges before the command's shell starts.
(A user namespace would map that user back to root outside: not what we want.)

Inside, the command sees:

* the host's filesystem read-only, with ``/root``, ``/home``, ``/run``, ``/tmp``,
  ``/var/tmp`` and every hidden path (the agent's and the control plane's data
  dirs) replaced by empty tmpfs;
* what it needs put back: the interpreter and its image read-only, its own
  directory writable;
* a private ``/tmp`` of bounded size, new ``/proc`` and ``/dev``, and its own
  PID, IPC and UTS namespaces: no other process of the host is visible or signalable.

The network is the host's. :func:`plan_command` is pure (it returns an argv list):
tests check it directly and the hostile-app suite runs it for real.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

#: Paths always masked by an empty tmpfs (credentials and other users' files live there).
ALWAYS_HIDDEN = ("/root", "/home", "/run", "/tmp", "/var/tmp")
#: Default size of an instance's private /tmp (it is memory: the memory limit bounds it too).
DEFAULT_TMP_BYTES = 64 * 1024 * 1024
#: The user every build step runs as (no /etc/passwd entry is needed; apps get 61000+ on agents).
BUILD_UID = 60999


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


def _closed_ancestor(path: str, hidden: Sequence[str]) -> str | None:
    """The highest ancestor of ``path`` outside ``hidden`` that other users cannot traverse, if any."""
    for ancestor in reversed(Path(path).parents):
        a = str(ancestor)
        if a == "/" or _under(a, hidden):
            continue
        try:
            if not os.stat(a).st_mode & 0o001:
                return a
        except OSError:
            return None
    return None


def _under(path: str, parents: Sequence[str]) -> bool:
    return any(path == p or path.startswith(p.rstrip("/") + "/") for p in parents)


def plan_command(spec: SandboxSpec, argv: Sequence[str], *, bwrap: str = "bwrap", setpriv: str = "setpriv",
                 unset: Sequence[str] = ()) -> list[str]:
    """The argv that runs ``argv`` inside the sandbox described by ``spec`` (reads only file modes)."""
    hidden = [*ALWAYS_HIDDEN, *spec.hide]
    # A directory others cannot enter above what is put back (a 0700 `.demo` holding the data dir)
    # would stop the app's user on its way there: mask it too (what else it holds stays unseen).
    hidden += sorted({a for p in (spec.python_prefix, str(spec.image_dir), str(spec.work_dir))
                      if (a := _closed_ancestor(p, hidden))})
    hidden.sort(key=len)  # outer masks first, so inner ones are made inside them
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
    """A sandboxed command's writable directory, owned by its user and private to it."""
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, uid, gid)
    path.chmod(0o700)
    return path


def hand_over(tree: Path, uid: int, gid: int) -> None:
    """Give every file and directory of ``tree`` to ``uid`` (links themselves, never what they point at).

    Directories become traversable by all (``| 0711``): bubblewrap enters the command's directory
    before ``setpriv`` drops to ``uid``, as a root without capabilities, which a 0700 directory of
    another user stops. (The tree lives in the control plane's 0700 data dir.)
    """
    os.chown(tree, uid, gid, follow_symlinks=False)
    tree.chmod(tree.stat().st_mode & 0o7777 | 0o711)
    for dirpath, dirs, files in os.walk(tree):
        for name in dirs:
            path = os.path.join(dirpath, name)
            os.chown(path, uid, gid, follow_symlinks=False)
            st = os.lstat(path)
            if not os.path.islink(path) and st.st_mode & 0o711 != 0o711:
                os.chmod(path, st.st_mode & 0o7777 | 0o711)
        for name in files:
            os.chown(os.path.join(dirpath, name), uid, gid, follow_symlinks=False)


@dataclass(frozen=True)
class StepSandbox:
    """How a build runs its own commands: as :data:`BUILD_UID` in bubblewrap, the control plane's
    data (database, admin token, images, other builds' logs) masked; its work directory writable."""

    hide: tuple[str, ...] = ()
    uid: int = BUILD_UID
    tmp_bytes: int = DEFAULT_TMP_BYTES

    def command(self, shell_command: str, *, work: Path, cwd: Path) -> list[str]:
        """The argv running ``shell_command`` in ``cwd``, with ``work`` (which holds ``cwd``) writable;
        ``work`` is handed to the build user first."""
        hand_over(work, self.uid, self.uid)
        spec = SandboxSpec(uid=self.uid, gid=self.uid, image_dir=work, work_dir=work, cwd=cwd, hide=self.hide,
                           tmp_bytes=self.tmp_bytes)
        return plan_command(spec, ["/bin/sh", "-c", shell_command], bwrap=bwrap_path() or "bwrap",
                            setpriv=setpriv_path() or "setpriv")


def step_sandbox(hide: Sequence[str]) -> tuple[StepSandbox | None, str]:
    """The build steps' sandbox on this host, and what to say about it (a warning when there is none)."""
    warning = sandbox_warning()
    if warning is not None:
        return None, "UNSANDBOXED: " + warning.replace("app instances", "build steps")
    return StepSandbox(hide=tuple(hide)), f"bubblewrap, uid {BUILD_UID}"
