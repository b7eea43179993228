"""Cgroup limits on real processes, on each cgroup version the host offers (conveyor.agent.cgroups).

This machine mounts v1 hierarchies for memory, cpu and pids and an empty v2: the
v1 case runs, the v2 case says why it skips. On a host with v2 controllers it is
the other way round (or both run, if it offers some of each).
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from pathlib import Path

import pytest

from conveyor.agent.cgroups import CONTROLLERS, Cgroups, cgroup_wrapper, procs_env
from conveyor.agent.process import describe_exit, spawn
from conveyor.domain.limits import Limits

pytestmark = pytest.mark.integration


def _cgroups(version: str) -> Cgroups:
    if os.geteuid() != 0:
        pytest.skip("creating cgroups needs root")
    found = Cgroups.detect()
    mine = {c: h for c, h in found.hierarchies.items() if h.v2 == (version == "v2")}
    if not set(CONTROLLERS) <= set(mine):
        have = ", ".join(f"{c} on {v}" for c, v in sorted(found.available.items())) or "none"
        pytest.skip(f"this host does not offer memory, cpu and pids on cgroup {version} (it has: {have})")
    return Cgroups(mine)


def _run(cg: Cgroups, iid: str, limits: Limits, code: str, tmp: Path) -> tuple[int | None, str]:
    procs = cg.create(iid, limits)
    p = spawn("", cwd=tmp, env={**procs_env(procs), "PATH": os.environ["PATH"]}, log_path=tmp / f"{iid}.log",
              argv=[*cgroup_wrapper(procs), sys.executable, "-c", code])
    deadline = time.monotonic() + 60
    while p.poll()[0] and time.monotonic() < deadline:
        time.sleep(0.05)
    if p.writer is not None:  # the output passes through the log writer: its last words are stored when it exits
        p.writer.wait(timeout=20)
    log = tmp / f"{iid}.log"
    return p.poll()[1], log.read_text() if log.exists() else ""  # (a process that printed nothing has no log)


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_memory_and_pids_limits_hold_and_an_oom_kill_is_named(version: str, tmp_path: Path) -> None:
    cg = _cgroups(version)
    iid = f"test-{uuid.uuid4().hex[:8]}"
    try:
        code, _ = _run(cg, iid, Limits(memory=64 * 2**20, cpu=0.5, pids=32),
                       "b = []\nwhile True: b.append(bytearray(4 << 20))", tmp_path)
        assert code == -9 and cg.oom_kills(iid) >= 1
        assert describe_exit(code, Limits(memory=64 * 2**20).memory_text()) == "killed: out of memory, limit 64M"
    finally:
        cg.remove(iid)
    iid = f"test-{uuid.uuid4().hex[:8]}"
    bomb = ("import os, time\nn = 0\ntry:\n    while True:\n        if os.fork() == 0:\n            time.sleep(20); os._exit(0)\n"
            "        n += 1\nexcept OSError:\n    print('forks', n, flush=True)\n    os.killpg(0, 9)\n")
    try:
        # The bomb kills its own process group when done: spawn gives it a session of its own.
        _, out = _run(cg, iid, Limits(memory=256 * 2**20, pids=32), bomb, tmp_path)
        forks = int(out.split("forks", 1)[1].split()[0])
        assert 0 < forks < 32, out
    finally:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and cg.usage(iid).get("pids", 0) > 0:
            time.sleep(0.05)
        cg.remove(iid)


def test_usage_is_read_from_the_instance_cgroups(tmp_path: Path) -> None:
    found = Cgroups.detect()
    if os.geteuid() != 0 or "memory" not in found.hierarchies:
        pytest.skip("needs root and a memory cgroup controller")
    iid = f"test-{uuid.uuid4().hex[:8]}"
    procs = found.create(iid, Limits(memory=128 * 2**20, pids=16))
    p = spawn("", cwd=tmp_path, env={**procs_env(procs), "PATH": os.environ["PATH"]}, log_path=tmp_path / "u.log",
              argv=[*cgroup_wrapper(procs), sys.executable, "-c", "b = bytearray(32 << 20); import time; time.sleep(30)"])
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and found.usage(iid).get("memory_bytes", 0) < 32 * 2**20:
            time.sleep(0.05)
        u = found.usage(iid)
        assert u["memory_bytes"] >= 32 * 2**20 and u["pids"] >= 1
        assert u["cpu_seconds"] > 0  # cpuacct on v1, cpu.stat on v2
    finally:
        os.killpg(p.pid, 9)
        while p.poll()[0]:
            time.sleep(0.05)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and found.usage(iid).get("pids", 0) > 0:
            time.sleep(0.05)
        found.remove(iid)
