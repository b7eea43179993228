"""Resource limits per instance through cgroups: v2 where the host has it, v1 where that is what it has.

Why both: a host may mount the unified (v2) hierarchy with its controllers, or the
legacy (v1) per-controller hierarchies — possibly with an *empty* v2 mounted
beside them, as on hosts whose kernel binds memory, cpu and pids to v1. Each
controller is looked up separately: it is used on v2 if the v2 mount lists it in
``cgroup.controllers``, else on its v1 hierarchy. An instance's cgroups nest under
the agent's own (``<agent's cgroup>/conveyor/<instance id>``), so limits set on
the agent by its supervisor still apply above them.

What is written (``plan_limits`` is pure):

==========  ===============================  =================================
limit       v1                               v2
==========  ===============================  =================================
memory      memory.limit_in_bytes (+memsw)   memory.max, memory.swap.max = 0
cpu         cpu.cfs_quota_us / period        cpu.max "quota period"
pids        pids.max                         pids.max
==========  ===============================  =================================

The process joins its cgroups before it execs bubblewrap (the spawn wrapper
writes its pid to each ``cgroup.procs``), so everything it starts is inside.
An OOM kill is read from ``memory.oom_control`` (v1, ``oom_kill``) or
``memory.events`` (v2, ``oom_kill``).
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from conveyor.domain.limits import Limits

log = logging.getLogger("conveyor.agent.cgroups")

CONTROLLERS = ("memory", "cpu", "pids")
#: v1 only: CPU time is accounted by its own controller (v2's cpu.stat has it).
ACCOUNTING = ("cpuacct",)
CPU_PERIOD_US = 100_000


@dataclass(frozen=True)
class Hierarchy:
    """Where one controller lives: its mount, whether it is v2, and the agent's own cgroup in it."""

    controller: str
    mount: Path
    v2: bool
    own: str  # the agent's cgroup path within the mount, e.g. "/" or "/process_api/ab12"

    @property
    def base(self) -> Path:
        return self.mount / self.own.lstrip("/") / "conveyor"


def _mounts(mountinfo: str) -> tuple[Path | None, dict[str, Path]]:
    """(the v2 mount, {v1 controller: mount}) from /proc/self/mountinfo text. Pure."""
    v2: Path | None = None
    v1: dict[str, Path] = {}
    for line in mountinfo.splitlines():
        left, _, right = line.partition(" - ")
        fields, rfields = left.split(), right.split()
        if len(fields) < 5 or len(rfields) < 3:
            continue
        fstype, options = rfields[0], rfields[2].split(",")
        if fstype == "cgroup2" and v2 is None:
            v2 = Path(fields[4])
        elif fstype == "cgroup":
            for opt in options:
                if opt in CONTROLLERS + ACCOUNTING and opt not in v1:
                    v1[opt] = Path(fields[4])
    return v2, v1


def _own_paths(proc_cgroup: str) -> tuple[str, dict[str, str]]:
    """(the v2 path, {v1 controller: path}) of a process, from /proc/<pid>/cgroup text. Pure."""
    v2 = "/"
    v1: dict[str, str] = {}
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if parts[0] == "0" and parts[1] == "":
            v2 = parts[2]
        for c in parts[1].split(","):
            if c in CONTROLLERS + ACCOUNTING:
                v1[c] = parts[2]
    return v2, v1


def discover(mountinfo: str, proc_cgroup: str, v2_controllers: str) -> dict[str, Hierarchy]:
    """Which hierarchy serves each controller. Pure: the caller reads the three files."""
    v2_mount, v1_mounts = _mounts(mountinfo)
    v2_path, v1_paths = _own_paths(proc_cgroup)
    available = set(v2_controllers.split())
    found: dict[str, Hierarchy] = {}
    for c in CONTROLLERS:
        if v2_mount is not None and c in available:
            found[c] = Hierarchy(c, v2_mount, True, v2_path)
        elif c in v1_mounts:
            found[c] = Hierarchy(c, v1_mounts[c], False, v1_paths.get(c, "/"))
    if "cpu" in found and not found["cpu"].v2 and "cpuacct" in v1_mounts:
        found["cpuacct"] = Hierarchy("cpuacct", v1_mounts["cpuacct"], False, v1_paths.get("cpuacct", "/"))
    return found


def plan_limits(limits: Limits, v2: bool) -> dict[str, dict[str, str]]:
    """{controller: {file: value}} to write for ``limits``. Pure."""
    plan: dict[str, dict[str, str]] = {}
    if limits.memory is not None:
        if v2:
            plan["memory"] = {"memory.max": str(limits.memory), "memory.swap.max": "0"}
        else:
            plan["memory"] = {"memory.limit_in_bytes": str(limits.memory), "memory.memsw.limit_in_bytes": str(limits.memory)}
    if limits.cpu is not None:
        quota = max(1000, int(limits.cpu * CPU_PERIOD_US))
        plan["cpu"] = {"cpu.max": f"{quota} {CPU_PERIOD_US}"} if v2 else {
            "cpu.cfs_period_us": str(CPU_PERIOD_US), "cpu.cfs_quota_us": str(quota)}
    if limits.pids is not None:
        plan["pids"] = {"pids.max": str(limits.pids)}
    return plan


class Cgroups:
    """The host's cgroups as the agent uses them. ``available`` is empty where none can be used."""

    def __init__(self, hierarchies: dict[str, Hierarchy]) -> None:
        self.hierarchies = hierarchies

    @classmethod
    def detect(cls) -> Cgroups:
        try:
            mountinfo = Path("/proc/self/mountinfo").read_text()
            own = Path("/proc/self/cgroup").read_text()
        except OSError:
            return cls({})
        v2_mount, _ = _mounts(mountinfo)
        controllers = ""
        if v2_mount is not None:
            with contextlib.suppress(OSError):
                controllers = (v2_mount / "cgroup.controllers").read_text()
        found = discover(mountinfo, own, controllers)
        usable = {}
        for c, h in found.items():
            try:
                _prepare_base(h)
                usable[c] = h
            except OSError as exc:
                log.warning("cgroup controller %s at %s is not usable: %s", c, h.base, exc)
        return cls(usable)

    @property
    def available(self) -> dict[str, str]:
        return {c: ("v2" if h.v2 else "v1") for c, h in self.hierarchies.items()}

    def missing(self) -> list[str]:
        """Limit controllers this host does not give us (their limits are not enforced)."""
        return [c for c in CONTROLLERS if c not in self.hierarchies]

    def create(self, instance_id: str, limits: Limits) -> list[Path]:
        """Make the instance's cgroups with ``limits``; returns their ``cgroup.procs`` files."""
        procs: list[Path] = []
        seen: set[Path] = set()
        for c, h in self.hierarchies.items():
            d = h.base / instance_id
            d.mkdir(exist_ok=True)
            for name, value in plan_limits(limits, h.v2).get(c, {}).items():
                try:
                    (d / name).write_text(value)
                except OSError as exc:
                    if "memsw" in name or "swap" in name:
                        continue  # no swap accounting on this kernel: the memory limit alone holds
                    raise OSError(f"cannot set {d / name} = {value}: {exc}") from exc
            if d not in seen:  # on v2 every controller is the same directory
                seen.add(d)
                procs.append(d / "cgroup.procs")
        return procs

    def _dir(self, controller: str, instance_id: str) -> Path | None:
        h = self.hierarchies.get(controller)
        return None if h is None else h.base / instance_id

    def oom_kills(self, instance_id: str) -> int:
        d = self._dir("memory", instance_id)
        if d is None:
            return 0
        name = "memory.events" if self.hierarchies["memory"].v2 else "memory.oom_control"
        try:
            for line in (d / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except (OSError, ValueError):
            pass
        return 0

    def usage(self, instance_id: str) -> dict[str, float]:
        """{"memory_bytes", "cpu_seconds", "pids"}: what is known of them."""
        out: dict[str, float] = {}
        d = self._dir("memory", instance_id)
        if d is not None:
            name = "memory.current" if self.hierarchies["memory"].v2 else "memory.usage_in_bytes"
            with contextlib.suppress(OSError, ValueError):
                out["memory_bytes"] = float((d / name).read_text().strip())
        d = self._dir("pids", instance_id)
        if d is not None:
            with contextlib.suppress(OSError, ValueError):
                out["pids"] = float((d / "pids.current").read_text().strip())
        d = self._dir("cpu", instance_id)
        if d is not None and self.hierarchies["cpu"].v2:
            with contextlib.suppress(OSError, ValueError, KeyError):
                stat = dict(line.split(" ", 1) for line in (d / "cpu.stat").read_text().splitlines() if " " in line)
                out["cpu_seconds"] = int(stat["usage_usec"]) / 1e6
        d = self._dir("cpuacct", instance_id)
        if d is not None:
            with contextlib.suppress(OSError, ValueError):
                out["cpu_seconds"] = int((d / "cpuacct.usage").read_text().strip()) / 1e9
        return out

    def remove(self, instance_id: str) -> None:
        """Remove the instance's cgroups (only empty ones can go: a live process keeps its own)."""
        for c in self.hierarchies:
            d = self._dir(c, instance_id)
            if d is not None:
                with contextlib.suppress(OSError):
                    d.rmdir()


def _prepare_base(h: Hierarchy) -> None:
    """Create ``<own>/conveyor``; on v2, delegate the controllers down to it."""
    if not h.v2:
        h.base.mkdir(parents=True, exist_ok=True)
        return
    own = h.base.parent
    # v2's "no internal processes" rule: controllers can be enabled for children only of a cgroup
    # without processes of its own. If the agent sits in ``own``, it moves into ``own/agent`` first.
    procs = (own / "cgroup.procs").read_text().split()
    if procs and own != h.mount:
        leaf = own / "agent"
        leaf.mkdir(exist_ok=True)
        for pid in procs:
            with contextlib.suppress(OSError):
                (leaf / "cgroup.procs").write_text(pid)
    for d in (own, h.base):
        d.mkdir(exist_ok=True)
        enabled = (d / "cgroup.subtree_control").read_text().split()
        if h.controller not in enabled:
            (d / "cgroup.subtree_control").write_text(f"+{h.controller}")


def cgroup_wrapper(procs: list[Path], unset: str = "CONVEYOR_CGROUP_PROCS") -> list[str]:
    """argv prefix: join the cgroups listed in ``$CONVEYOR_CGROUP_PROCS``, then exec the rest. Pure.

    A shell, not a ``preexec_fn``: the agent has threads, and running Python between
    fork and exec in a threaded process can deadlock.
    """
    del procs  # the paths travel in the environment, so no quoting is involved
    script = f'for f in ${unset}; do echo $$ > "$f" || exit 125; done; unset {unset}; exec "$@"'
    return ["/bin/sh", "-c", script, "conveyor-spawn"]


def procs_env(procs: list[Path]) -> dict[str, str]:
    return {"CONVEYOR_CGROUP_PROCS": " ".join(str(p) for p in procs)} if procs else {}


def describe_oom(limits: Limits) -> str:
    return f"killed: out of memory, limit {limits.memory_text()}"


def is_root() -> bool:
    return os.geteuid() == 0
