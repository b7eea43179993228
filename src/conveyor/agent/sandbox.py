"""Instance isolation: a per-app user in a bubblewrap sandbox (``conveyor.sandbox``), in its cgroups.

The sandbox itself (what is masked, what is bound back, how privileges are dropped)
is ``conveyor.sandbox``'s, shared with the build worker. Here: each app gets its own
uid (61000+, recorded in ``app-users.json``, so an app keeps its user), its own
writable directory (``HOME``), and the instance joins its cgroups (limits) before
bubblewrap starts. The network is the host's: the app must listen on ``HOST:PORT``.
Since it runs as its own user, it cannot take over a port another user holds
(``SO_REUSEPORT`` sharing needs the same user).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from conveyor.agent.cgroups import Cgroups, cgroup_wrapper, procs_env
from conveyor.domain.limits import DEFAULTS, Limits
from conveyor.domain.wire import DesiredInstance
from conveyor.sandbox import (
    ALWAYS_HIDDEN,
    DEFAULT_TMP_BYTES,
    SandboxSpec,
    bwrap_path,
    plan_command,
    prepare_work_dir,
    sandbox_warning,
    setpriv_path,
)

__all__ = ["ALWAYS_HIDDEN", "UID_BASE", "UID_COUNT", "AppUsers", "Isolation", "Launch", "SandboxSpec",
           "allocate_uid", "plan_command", "sandbox_warning"]

#: Per-app users are allocated from this range (no /etc/passwd entry is needed).
UID_BASE = 61000
UID_COUNT = 4000


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
