"""The sandbox's argv and the cgroup plans (conveyor.agent.sandbox, conveyor.agent.cgroups), by direct calls."""

from __future__ import annotations

from pathlib import Path

from conveyor.agent.cgroups import cgroup_wrapper, discover, plan_limits
from conveyor.agent.sandbox import UID_BASE, SandboxSpec, allocate_uid, plan_command
from conveyor.domain.limits import Limits

# This machine's shape: v1 hierarchies for memory, cpu and pids, and an empty v2 beside them.
V1_MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
38 31 0:35 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
V1_SELF = "8:pids:/\n4:memory:/process_api/abc\n1:cpu:/\n0::/\n"
V2_MOUNTINFO = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"


def test_v1_is_used_when_the_v2_mount_has_no_controllers() -> None:
    found = discover(V1_MOUNTINFO, V1_SELF, "hugetlb\n")
    assert {c: h.v2 for c, h in found.items()} == {"memory": False, "cpu": False, "pids": False, "cpuacct": False}
    assert found["memory"].base == Path("/sys/fs/cgroup/memory/process_api/abc/conveyor")
    assert found["pids"].base == Path("/sys/fs/cgroup/pids/conveyor")


def test_v2_is_used_where_it_has_the_controllers() -> None:
    found = discover(V2_MOUNTINFO, "0::/system.slice/agent.service\n", "cpuset cpu io memory pids\n")
    assert all(h.v2 for h in found.values()) and set(found) == {"memory", "cpu", "pids"}
    assert found["cpu"].base == Path("/sys/fs/cgroup/system.slice/agent.service/conveyor")
    # Mixed: memory on v2, the rest on v1.
    mixed = discover(V1_MOUNTINFO, V1_SELF, "memory\n")
    assert mixed["memory"].v2 and not mixed["pids"].v2


def test_limit_files_per_version() -> None:
    lim = Limits(memory=512 * 2**20, cpu=0.5, pids=256)
    assert plan_limits(lim, v2=False) == {
        "memory": {"memory.limit_in_bytes": "536870912", "memory.memsw.limit_in_bytes": "536870912"},
        "cpu": {"cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "50000"},
        "pids": {"pids.max": "256"},
    }
    assert plan_limits(lim, v2=True) == {
        "memory": {"memory.max": "536870912", "memory.swap.max": "0"},
        "cpu": {"cpu.max": "50000 100000"},
        "pids": {"pids.max": "256"},
    }
    assert plan_limits(Limits(), v2=True) == {}


def test_the_spawn_wrapper_joins_cgroups_before_exec() -> None:
    argv = cgroup_wrapper([Path("/x/cgroup.procs")])
    assert argv[:2] == ["/bin/sh", "-c"] and 'echo $$ > "$f"' in argv[2] and argv[2].endswith('exec "$@"')


def test_sandbox_argv(tmp_path: Path) -> None:
    data = tmp_path / "agent-data"
    image = data / "images" / "abc"
    (image / "app").mkdir(parents=True)
    spec = SandboxSpec(uid=61000, gid=61000, image_dir=image, work_dir=data / "work" / "i1", cwd=image / "app",
                       hide=(str(data),), python_prefix="/root/.pyenv/versions/3.11.7")
    argv = plan_command(spec, ["/bin/sh", "-c", "python app.py"], unset=("CONVEYOR_AGENT_DATA",))
    joined = " ".join(argv)
    assert argv[:4] == ["bwrap", "--ro-bind", "/", "/"]  # the host, read-only
    for masked in ("/root", "/home", "/run", "/var/tmp", str(data)):
        assert f"--tmpfs {masked}" in joined
    assert "--perms 1777 --size 67108864 --tmpfs /tmp" in joined  # a private, bounded /tmp
    assert f"--ro-bind {image} {image}" in joined and "--ro-bind /root/.pyenv/versions/3.11.7" in joined
    assert f"--perms 0755 --dir {data / 'images'}" in joined  # traversable down to the image
    assert f"--bind {data / 'work' / 'i1'} {data / 'work' / 'i1'}" in joined  # its own writable dir
    for flag in ("--unshare-pid", "--unshare-ipc", "--unshare-uts", "--cap-drop ALL", "--unsetenv CONVEYOR_AGENT_DATA"):
        assert flag in joined
    tail = argv[argv.index("setpriv"):]
    assert tail[:7] == ["setpriv", "--reuid=61000", "--regid=61000", "--clear-groups", "--no-new-privs",
                        "--inh-caps=-all", "--bounding-set=-all"]
    assert tail[-3:] == ["/bin/sh", "-c", "python app.py"]
    # The masks come before the binds that put things back (bwrap applies them in order).
    assert argv.index(str(data)) < argv.index(str(image))


def test_each_app_gets_its_own_user() -> None:
    assert allocate_uid({}, "a") == UID_BASE
    assert allocate_uid({"a": UID_BASE}, "a") == UID_BASE
    assert allocate_uid({"a": UID_BASE, "c": UID_BASE + 2}, "b") == UID_BASE + 1


def test_a_host_without_the_sandbox_says_so(monkeypatch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from conveyor import sandbox as shared
    from conveyor.agent import sandbox
    from conveyor.agent.cgroups import Cgroups
    from conveyor.domain.wire import DesiredInstance

    monkeypatch.setattr(shared, "bwrap_path", lambda: None)
    assert "bubblewrap (bwrap) is not installed" in (sandbox.sandbox_warning() or "")
    iso = sandbox.Isolation(tmp_path, cgroups=Cgroups({}))
    spec = DesiredInstance(id="i1", app="a", env="e", release=1, image="sha256:" + "0" * 64, command="true")
    launch = iso.launch(spec, "true", tmp_path)
    assert launch.note.startswith("UNSANDBOXED: bubblewrap (bwrap) is not installed")
    assert launch.argv == ["/bin/sh", "-c", "true"]  # and it runs all the same, said loudly
    off = sandbox.Isolation(tmp_path, sandbox=False, cgroups=Cgroups({}))
    assert off.launch(spec, "true", tmp_path).note == "UNSANDBOXED: the agent was started with --no-sandbox"


def test_a_closed_directory_above_what_is_put_back_is_masked_too(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """`make demo` keeps its data dir in a 0700 `.demo`: the build user could not get through it to its
    own (bound-back) work dir ("python: Permission denied"). Such a directory is masked as well, so the
    way down is made of traversable mount points, and what else it holds (client.json) stays unseen."""
    import os
    import stat as st

    import conveyor.sandbox as sandbox

    modes = {"/srv": 0o755, "/srv/repo": 0o755, "/srv/repo/.demo": 0o700, "/srv/repo/.demo/data": 0o700}
    real_stat = os.stat

    def fake_stat(path, *a, **k):  # type: ignore[no-untyped-def]
        if str(path) in modes:
            return os.stat_result((st.S_IFDIR | modes[str(path)], 0, 0, 0, 0, 0, 0, 0, 0, 0))
        return real_stat(path, *a, **k)

    monkeypatch.setattr(sandbox.os, "stat", fake_stat)
    data = Path("/srv/repo/.demo/data")
    work = data / "cache" / "tmp" / "build-1"
    spec = SandboxSpec(uid=60999, gid=60999, image_dir=work, work_dir=work, cwd=work, hide=(str(data),),
                       python_prefix="/root/.pyenv/versions/3.11.7")
    argv = plan_command(spec, ["/bin/sh", "-c", "python -V"])
    joined = " ".join(argv)
    assert "--tmpfs /srv/repo/.demo" in joined and f"--tmpfs {data}" in joined
    assert argv.index("/srv/repo/.demo") < argv.index(str(data)) < argv.index(str(work))  # outer mask first
    assert "--tmpfs /srv/repo " not in joined + " "  # an open directory is left as it is
    assert sandbox._closed_ancestor("/srv/repo/app", ()) is None
