"""Instance environment, process identity and termination (real processes, no agent)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conveyor.logfile import split_stamp

from conveyor.agent.process import (
    Process,
    build_env,
    describe_exit,
    find_instances,
    free_port,
    group_members,
    proc_stat,
    same_process_alive,
    spawn,
    tail_lines,
    terminate,
)
from conveyor.domain.wire import DesiredInstance


def spec(**kw: object) -> DesiredInstance:
    base: dict[str, object] = dict(
        id="hello-production-r3-ab12", app="hello", env="production", release=3, image="sha256:" + "a" * 64, command="true"
    )
    base.update(kw)
    return DesiredInstance(**base)  # type: ignore[arg-type]


def test_env_is_minimal_and_agent_identity_wins(tmp_path: Path) -> None:
    s = spec(environment={"GREETING": "hi", "PORT": "1", "CONVEYOR_APP": "evil", "LANG": "en_US.UTF-8"})
    env = build_env(s, image_root=tmp_path, image_env={"PYTHONPATH": "/img/deps", "GREETING": "image"}, port=4242, address="10.0.0.2", home="/home/x")
    assert env["PORT"] == "4242"
    assert env["HOST"] == "10.0.0.2"
    assert env["CONVEYOR_APP"] == "hello"
    assert env["CONVEYOR_ENV"] == "production"
    assert env["CONVEYOR_RELEASE"] == "3"
    assert env["CONVEYOR_INSTANCE"] == "hello-production-r3-ab12"
    assert env["GREETING"] == "hi"  # desired environment beats the image's
    assert env["PYTHONPATH"] == "/img/deps"
    assert env["LANG"] == "en_US.UTF-8"
    assert env["HOME"] == "/home/x"
    assert env["PATH"].split(":")[0] == str(tmp_path / "bin")
    assert "/usr/bin" in env["PATH"].split(":")
    # Nothing leaks from the agent's own environment.
    assert "VIRTUAL_ENV" not in env and "PYTEST_CURRENT_TEST" not in env
    assert set(env) == {
        "HOME", "LANG", "PYTHONUNBUFFERED", "PATH", "PORT", "HOST", "GREETING", "PYTHONPATH",
        "CONVEYOR_APP", "CONVEYOR_ENV", "CONVEYOR_RELEASE", "CONVEYOR_INSTANCE",
    }  # fmt: skip


def test_agent_dir_marker_is_set_when_given(tmp_path: Path) -> None:
    env = build_env(spec(), image_root=tmp_path, image_env={}, port=1, address="127.0.0.1", home="/", agent_dir="/var/lib/agent")
    assert env["CONVEYOR_AGENT_DATA"] == "/var/lib/agent"


def test_image_path_keeps_image_bin_first(tmp_path: Path) -> None:
    env = build_env(spec(), image_root=tmp_path, image_env={"PATH": "/opt/x/bin:/usr/bin"}, port=1, address="127.0.0.1", home="/")
    assert env["PATH"] == f"{tmp_path}/bin:/opt/x/bin:/usr/bin"


def test_free_port_is_bindable() -> None:
    import socket

    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_proc_identity_of_live_and_dead_processes() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        info = proc_stat(child.pid)
        assert info is not None
        assert same_process_alive(child.pid, info[1])
        assert not same_process_alive(child.pid, info[1] + 1)  # a recycled pid has another start time
    finally:
        child.kill()
        child.wait()
    assert not same_process_alive(child.pid, info[1])
    assert proc_stat(child.pid) is None


def test_describe_exit() -> None:
    assert describe_exit(3) == "exited with code 3"
    assert describe_exit(-9) == "killed by SIGKILL"
    assert "unknown" in describe_exit(None)


def test_tail_lines(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert tail_lines(log, lines=2) == "line 98\nline 99"
    assert tail_lines(tmp_path / "missing.log") == ""


async def test_spawn_runs_in_own_session_and_terminate_kills_the_group(tmp_path: Path) -> None:
    # The shell's child ignores SIGTERM: it must be SIGKILLed after the grace.
    script = tmp_path / "stubborn.py"
    script.write_text("import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('up', flush=True)\ntime.sleep(60)\n")
    env = {"PATH": os.environ["PATH"]}
    process = spawn(f"{sys.executable} stubborn.py", cwd=tmp_path, env=env, log_path=tmp_path / "logs" / "s.log", banner="--- start\n")
    try:
        assert os.getpgid(process.pid) == process.pid
        assert os.getsid(process.pid) == process.pid
        deadline = time.monotonic() + 20
        while "up" not in (tmp_path / "logs" / "s.log").read_text() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert len(group_members(process.pid)) == 2  # sh and python
        started = time.monotonic()
        await terminate(process, grace=0.5)
        assert time.monotonic() - started >= 0.5
        assert group_members(process.pid) == []
        lines = (tmp_path / "logs" / "s.log").read_text().splitlines()
        assert [split_stamp(x)[1] for x in lines[:2]] == ["--- start", "up"]
        assert all(split_stamp(x)[0] for x in lines[:2])  # stamped by the log writer
        assert process.writer is not None and process.writer.wait(10) == 0  # it ends with the instance's output
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


async def test_terminate_waits_for_a_graceful_exit(tmp_path: Path) -> None:
    process = spawn("exec sleep 30", cwd=tmp_path, env={"PATH": "/usr/bin:/bin"}, log_path=tmp_path / "l.log")
    started = time.monotonic()
    code = await terminate(process, grace=20)
    assert time.monotonic() - started < 10
    assert code == -signal.SIGTERM
    assert process.poll() == (False, -signal.SIGTERM)


def test_find_instances_by_agent_dir_marker(tmp_path: Path) -> None:
    marker = str(tmp_path / "agent-data")
    env = {"PATH": "/usr/bin:/bin", "CONVEYOR_AGENT_DATA": marker, "CONVEYOR_INSTANCE": "web-9"}
    process = spawn("sleep 30", cwd=tmp_path, env=env, log_path=tmp_path / "l.log")
    try:
        found = find_instances(marker)
        assert found == {process.pid: ("web-9", process.start_ticks)}  # the leader only, not its child
        assert find_instances(marker + "-other") == {}
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.child.wait()  # type: ignore[union-attr]


def test_adopted_process_poll_has_no_exit_code() -> None:
    child = subprocess.Popen(["sleep", "30"])
    info = proc_stat(child.pid)
    assert info is not None
    adopted = Process(pid=child.pid, start_ticks=info[1])
    assert adopted.poll() == (True, None)
    child.kill()
    child.wait()
    assert adopted.poll() == (False, None)


async def test_interrupt_is_a_terminals_ctrl_c_and_the_command_keeps_its_exit_code(tmp_path: Path) -> None:
    """SIGINT reaches the command (it cleans up and exits 3); dash, kept as its parent, is spared, so the
    instance's exit code is the command's 3, not the shell's death by SIGINT. An exec'd command gets it too."""
    script = tmp_path / "cleanup.py"
    script.write_text("import sys, time\nprint('up', flush=True)\ntry:\n    time.sleep(60)\n"
                      "except KeyboardInterrupt:\n    print('cleaning up', flush=True)\n    sys.exit(3)\n")
    env = {"PATH": os.environ["PATH"]}
    for command, members in ((f"{sys.executable} cleanup.py", 2), (f"exec {sys.executable} cleanup.py", 1)):
        log = tmp_path / f"{members}.log"
        process = spawn(command, cwd=tmp_path, env=env, log_path=log)
        try:
            deadline = time.monotonic() + 20
            while not (log.exists() and "up" in log.read_text()) and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            assert len(group_members(process.pid)) == members
            process.interrupt()
            while process.poll()[0] and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            assert process.poll() == (False, 3), command
            await process.output_written()
            assert [split_stamp(x)[1] for x in log.read_text().splitlines()] == ["up", "cleaning up"]
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
