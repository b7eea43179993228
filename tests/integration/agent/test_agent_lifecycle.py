"""A real agent process against the stub control plane: start, readiness, liveness, stop, bad input."""

from __future__ import annotations

import os
import shutil
import time

import httpx
import pytest
from agent_harness import FLAKY, LATE, NEVER_READY, REPO, World, marked_processes, wait_until

from conveyor.domain.wire import HealthCheck

pytestmark = pytest.mark.integration


def test_starts_desired_instances_and_stops_undesired_ones(world: World) -> None:
    world.cp.set_instances([world.spec("web-1"), world.spec("web-2")])
    world.start_agent()
    one = world.wait_state("web-1", "ready")
    two = world.wait_state("web-2", "ready")
    assert one.port != two.port
    for inst in (one, two):
        r = httpx.get(f"http://127.0.0.1:{inst.port}/", timeout=5)
        assert r.text == "hello from v1\n"
    status = world.cp.last_status()
    assert status is not None and status.address == "127.0.0.1" and status.desired_version == world.cp.desired.version
    assert {p["instance"] for p in marked_processes(world.marker)} == {"web-1", "web-2"}

    version = world.cp.set_instances([world.spec("web-2")])
    wait_until(
        lambda: (s := world.cp.last_status()) is not None and s.desired_version == version and [i.id for i in s.instances] == ["web-2"],
        20,
        "web-1 to leave the status",
    )
    wait_until(lambda: {p["instance"] for p in marked_processes(world.marker)} == {"web-2"}, 20, "web-1's processes to exit")
    # web-2 was left alone: same process, still serving.
    last = world.cp.instance("web-2")
    assert last.pid == two.pid and last.state.value == "ready" and last.restarts == 0
    assert httpx.get(f"http://127.0.0.1:{two.port}/", timeout=5).status_code == 200
    assert "STOPPING" not in world.agent_output().decode()


def test_never_ready_instance_is_never_reported_ready(world: World) -> None:
    never = world.spec("never-1", image=NEVER_READY, health="/healthz")
    world.cp.set_instances([never, world.spec("web-1")])
    world.start_agent()
    world.wait_state("web-1", "ready")
    # Let the never-ready app be probed a good number of times (its log lists each probe).
    wait_until(lambda: world.log_path("never-1").exists() and world.log_path("never-1").read_text().count("probe /healthz") >= 10, 20, "10 probes")
    world.cp.set_instances([never, world.spec("web-1"), world.spec("web-2")])  # one more change: one more report
    world.wait_state("web-2", "ready")
    states = world.cp.all_states("never-1")
    assert states and "ready" not in states
    inst = world.cp.instance("never-1")
    assert inst.state.value == "starting"
    assert "HTTP 503" in inst.message and inst.ready_at is None


def test_liveness_failures_make_unhealthy_and_recovery_makes_ready(world: World) -> None:
    spec = world.spec("flaky-1", image=FLAKY, health_check=HealthCheck(path="/", timeout_s=1.0, interval_s=0.1))
    world.cp.set_instances([spec])
    world.start_agent()
    ready = world.wait_state("flaky-1", "ready")
    sick = world.tmp / "images" / "flaky" / "sick"
    sick.touch()
    unhealthy = world.wait_state("flaky-1", "unhealthy")
    assert "HTTP 500" in unhealthy.message and unhealthy.pid == ready.pid
    sick.unlink()
    again = world.wait_state("flaky-1", "ready")
    assert again.pid == ready.pid and again.restarts == 0


def test_image_failure_is_reported_and_retried(world: World) -> None:
    world.cp.set_instances([world.spec("late-1", image=LATE), world.spec("bad/../id")])
    world.start_agent()
    failed = world.wait_state("late-1", "failed")
    assert "does not exist" in failed.message and "retrying" in failed.message
    rejected = world.wait_state("bad/../id", "failed")
    assert "file name" in rejected.message
    shutil.copytree(REPO / "examples" / "hello", world.tmp / "images" / "late")
    ready = world.wait_state("late-1", "ready", timeout=30)
    assert httpx.get(f"http://127.0.0.1:{ready.port}/healthz", timeout=5).status_code == 200


def test_instance_environment_is_minimal(world: World) -> None:
    spec = world.spec("env-1", environment={"GREETING": "hi"})
    world.cp.set_instances([spec])
    world.start_agent()
    inst = world.wait_state("env-1", "ready")
    environ = dict(
        e.split("=", 1) for e in open(f"/proc/{inst.pid}/environ", "rb").read().decode().split("\0") if "=" in e  # noqa: SIM115
    )
    assert environ["PORT"] == str(inst.port)
    assert environ["CONVEYOR_INSTANCE"] == "env-1" and environ["CONVEYOR_APP"] == "hello"
    assert environ["CONVEYOR_ENV"] == "test" and environ["CONVEYOR_RELEASE"] == "1"
    assert environ["GREETING"] == "hi"
    assert "PYTHONPATH" not in environ and "VIRTUAL_ENV" not in environ  # the agent's test env does not leak
    assert os.readlink(f"/proc/{inst.pid}/cwd") == str(world.tmp / "images" / "hello")


def test_readiness_is_reported_promptly(world: World) -> None:
    """From the probe passing (the agent's ready_at) to the status arriving at the control plane."""
    world.start_agent()
    wait_until(lambda: world.cp.statuses, 20, "a first report")
    asked = time.time()
    world.cp.set_instances([world.spec("web-1")])
    inst = world.wait_state("web-1", "ready")
    arrived = next(t for t, s in world.cp.statuses for i in s.instances if i.id == "web-1" and i.state.value == "ready")
    latency = arrived - inst.ready_at
    print(f"readiness report latency: {latency * 1000:.1f} ms; desired change to READY reported: {arrived - asked:.2f} s")
    assert latency < 1.0  # typically a few ms; loose for a loaded machine
    assert asked <= inst.started_at <= inst.ready_at <= arrived
