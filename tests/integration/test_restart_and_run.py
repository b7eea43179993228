"""`conveyor restart` (rolling, no new release, no failed request under load), `conveyor run`'s
Ctrl-C (forwarded as SIGINT; twice stops it) and its bad input, with real processes through the router."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from typing import IO

import pytest

from conveyor_up import ProcessDied
from cvy_platform import Platform, wait_for
from test_walking_skeleton import TrafficLoop

pytestmark = pytest.mark.integration

HOST = "hello.localhost"


def test_rolling_restart_replaces_every_instance_with_no_failed_request(shared_platform: Platform) -> None:
    p = shared_platform
    p.cli("apps", "create", "hello", check=True)
    out = p.deploy("hello", p.app_copy("hello", "v1"))
    assert out["state"] == "succeeded", out
    before = {r["id"] for r in p.cli_json("ps", "hello") if r["state"] == "ready"}
    assert len(before) == 2
    releases = len(p.api.get("/apps/hello/releases").json())
    with TrafficLoop(p, HOST) as load:
        time.sleep(0.5)
        done = p.cli_json("restart", "hello", "--wait")
        time.sleep(0.5)
    assert done["done"] and done["processes"] == ["web"]
    assert load.failures == [], load.failures[:5]
    assert len(load.served()) > 50 and set(load.served()) == {"hello from v1"}
    after = [r for r in p.cli_json("ps", "hello") if r["state"] != "draining"]
    assert len(after) == 2 and not before & {r["id"] for r in after}  # every instance is new
    assert len(p.api.get("/apps/hello/releases").json()) == releases  # no new release
    kinds = [e["kind"] for e in p.api.get("/events", params={"app": "hello"}).json()]
    assert "restart_requested" in kinds and "restarted" in kinds

    res = p.cli("restart", "hello", "--process", "mailer")
    assert res.returncode == 2 and "process type 'mailer' is unknown" in res.stderr


def test_run_bad_input(shared_platform: Platform) -> None:
    p = shared_platform
    p.cli("apps", "create", "empty", check=True)
    p.cli("config", "set", "empty", "A=1", "--no-deploy", check=True)  # the environment exists, no release
    res = p.cli("run", "empty", "--", "echo", "hi")
    assert res.returncode == 4 and "has no release to run a command in" in res.stderr
    res = p.cli("run", "nope", "--", "echo", "hi")
    assert res.returncode == 3 and "conveyor apps create nope" in res.stderr
    res = p.cli("run", "empty", "--timeout", "soon", "--", "echo")
    assert res.returncode == 2 and "--timeout" in res.stderr
    assert not [e for e in p.api.get("/events", params={"app": "empty"}).json() if e["kind"] == "run_started"]


#: A management command that cleans up on Ctrl-C (KeyboardInterrupt) and says so, or ignores it.
CLEANS_UP = """
import signal, sys, time
if sys.argv[1] == "ignore":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
print("ready", flush=True)
try:
    time.sleep(120)
except KeyboardInterrupt:
    print("interrupted: cleaning up", flush=True)
    sys.exit(3)
"""


class Follow:
    """`conveyor run` as a terminal would run it: its stdout and stderr read line by line as they arrive."""

    def __init__(self, p: Platform, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "conveyor", "run", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=p.env, cwd=p.root)
        self.lines: list[str] = []
        self.errors: list[str] = []
        self.readers = [threading.Thread(target=self._read, args=(self.proc.stdout, self.lines), daemon=True),
                        threading.Thread(target=self._read, args=(self.proc.stderr, self.errors), daemon=True)]
        for t in self.readers:
            t.start()

    @staticmethod
    def _read(stream: IO[str] | None, into: list[str]) -> None:
        assert stream is not None
        for line in stream:
            into.append(line.rstrip("\n"))

    def ready(self) -> bool:
        """The command printed its first line (fails at once, with what it said, if the CLI has exited)."""
        if self.proc.poll() is not None:
            for t in self.readers:
                t.join(5)
            raise ProcessDied(f"conveyor run exited {self.proc.returncode}: {self.lines} {self.errors}")
        return "ready" in self.lines

    def wait_ready(self, timeout: float = 60) -> None:
        try:
            wait_for(self.ready, timeout, 0.05, "the command's first line")
        except ProcessDied:
            raise
        except AssertionError as exc:
            self.proc.kill()
            raise AssertionError(f"{exc}; it printed {self.lines}, said {self.errors}") from None

    def finish(self, timeout: float = 60) -> tuple[int, str]:
        try:
            code = self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        for t in self.readers:
            t.join(5)
        return code, "\n".join(self.errors)


def test_run_forwards_ctrl_c_and_a_second_one_stops_it(shared_platform: Platform) -> None:
    p = shared_platform
    p.cli("apps", "create", "ctrlc", check=True)
    assert p.deploy("ctrlc", p.app_copy("ctrlc", "v1", cleanup__py=CLEANS_UP))["state"] == "succeeded"

    # one Ctrl-C: the command gets SIGINT, cleans up, and its own exit code is ours
    run = Follow(p, "ctrlc", "--", "python", "cleanup.py", "handle")
    run.wait_ready()
    run.proc.send_signal(signal.SIGINT)
    code, err = run.finish()
    assert code == 3 and run.lines == ["ready", "interrupted: cleaning up"], (code, run.lines, err)
    assert "interrupt sent to the command" in err, err
    events = p.api.get("/events", params={"app": "ctrlc"}).json()
    assert [e["kind"] for e in events].count("run_interrupted") == 1

    # a command that ignores SIGINT goes on; a second Ctrl-C stops it (SIGTERM) and the run is gone
    run = Follow(p, "ctrlc", "--", "python", "cleanup.py", "ignore")
    run.wait_ready()
    run.proc.send_signal(signal.SIGINT)
    wait_for(lambda: [e["kind"] for e in p.api.get("/events", params={"app": "ctrlc"}).json()].count("run_interrupted") == 2,
             30, 0.05, "the second run's interrupt")
    time.sleep(0.5)  # not a race: the assertion is that nothing happens (the command ignores SIGINT)
    assert run.proc.poll() is None  # still following: the command ignored it
    run.proc.send_signal(signal.SIGINT)
    code, err = run.finish()
    assert code == 130 and "stopped" in err and "cleaning up" not in run.lines, (code, run.lines, err)
    stopped = [e for e in p.api.get("/events", params={"app": "ctrlc"}).json() if e["kind"] == "run_stopped"]
    assert len(stopped) == 1 and "Ctrl-C twice" in stopped[0]["message"]
    assert p.api.get(f"/runs/{stopped[0]['data']['run']}").status_code == 404


#: A release command that says where it is, then waits for the test to open a gate: its first line can
#: only be on the deployer's terminal before it ends if the output is streamed live. The gate is a
#: loopback port the test starts listening on (the sandbox gives the command its own /tmp, so a file
#: the test creates would never appear to it; the network is shared).
GATED_RELEASE = """
import os, socket, sys, time

def is_open():
    try:
        socket.create_connection(("127.0.0.1", int(os.environ["GATE"])), timeout=0.2).close()
        return True
    except OSError:
        return False

print("migrating: step 1", flush=True)
deadline = time.monotonic() + 60
while not is_open() and time.monotonic() < deadline:
    time.sleep(0.05)
print("migrating: step 2", flush=True)
sys.exit(0 if is_open() else 1)
"""

GATED_TOML = """
[app]
name = "gated"
[run]
web = "python app.py"
[release]
command = "python release.py"
timeout = "90s"
[health]
path = "/healthz"
[env.production]
instances = 1
"""


def test_deploy_wait_streams_the_release_commands_output_live(shared_platform: Platform) -> None:
    p = shared_platform
    p.cli("apps", "create", "gated", check=True)
    gate = socket.socket()
    gate.bind(("127.0.0.1", 0))  # bound, not listening: the command's connections are refused until gate.listen()
    p.cli("config", "set", "gated", f"GATE={gate.getsockname()[1]}", "--no-deploy", check=True)
    src = p.app_copy("gated", "v1", release__py=GATED_RELEASE, conveyor__toml=GATED_TOML)
    deploy = subprocess.Popen([sys.executable, "-m", "conveyor", "deploy", "gated", "--source", str(src), "--wait"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=p.env, cwd=p.root)
    errors: list[str] = []
    reader = threading.Thread(target=Follow._read, args=(deploy.stderr, errors), daemon=True)
    reader.start()
    try:
        # step 1 reaches the terminal while the command still waits: streamed, not printed at the end
        wait_for(lambda: any("release> migrating: step 1" in e for e in errors), 120, 0.05, "the release's first line")
        assert deploy.poll() is None and not any("step 2" in e for e in errors)
        dep = p.api.get("/apps/gated/deployments").json()[0]
        assert dep["state"] == "releasing", dep
        gate.listen()
        assert deploy.wait(timeout=120) == 0, errors
    finally:
        gate.close()
        if deploy.poll() is None:
            deploy.kill()
    reader.join(5)
    lines = [e for e in errors if "release>" in e]
    assert [e.split("release> ", 1)[1] for e in lines] == ["migrating: step 1", "migrating: step 2"], errors
    assert sum("release command" in e for e in errors) == 1  # shown live, not again at the end
    assert p.api.get(f"/deployments/{dep['id']}").json()["release_output"].count("migrating: step 2") == 1
