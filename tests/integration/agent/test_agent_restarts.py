"""The agent's own life: adoption after SIGKILL, graceful SIGTERM, control plane outages."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import httpx
import pytest
from agent_harness import STUBBORN, World, marked_processes, wait_until
from agent_stubcp import StubControlPlane

pytestmark = pytest.mark.integration


def leaders(world: World, instance_id: str) -> list[dict[str, object]]:
    return [p for p in marked_processes(world.marker) if p["instance"] == instance_id and p["pid"] == p["pgid"]]


def test_restarted_agent_adopts_running_instances_without_duplicates(world: World) -> None:
    world.cp.set_instances([world.spec("web-1")])
    first = world.start_agent()
    before = world.wait_state("web-1", "ready")
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    # The instance outlives its agent.
    assert httpx.get(f"http://127.0.0.1:{before.port}/", timeout=5).status_code == 200
    seen = len(world.cp.statuses)
    world.start_agent()
    assert "adopted 1 running instance" in world.agent_output().decode()
    after = world.wait_state("web-1", "ready", since=seen)
    assert (after.pid, after.port, after.started_at) == (before.pid, before.port, before.started_at)
    # Several reports later, still exactly one process group for the instance.
    wait_until(lambda: len(world.cp.statuses) >= seen + 2, 15, "two more reports")
    assert len(leaders(world, "web-1")) == 1
    states_after = [i.state.value for _, s in world.cp.statuses[seen:] for i in s.instances if i.id == "web-1"]
    assert set(states_after) == {"ready"}  # no blip: it stayed routable


def test_instances_missing_from_a_lost_state_file_are_not_duplicated(world: World) -> None:
    world.cp.set_instances([world.spec("web-1")])
    first = world.start_agent()
    before = world.wait_state("web-1", "ready")
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    (world.data_dir / "agent-state.json").unlink()  # as if the agent died before writing it
    seen = len(world.cp.statuses)
    world.start_agent()
    after = world.wait_state("web-1", "ready", since=seen)
    assert after.pid != before.pid
    assert b"is not in agent-state.json: stopping it" in world.agent_output()
    wait_until(lambda: [p["pid"] for p in leaders(world, "web-1")] == [after.pid], 20, "the orphan to be stopped")


def test_adopted_instance_that_dies_is_restarted(world: World) -> None:
    world.cp.set_instances([world.spec("web-1")])
    first = world.start_agent()
    before = world.wait_state("web-1", "ready")
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    seen = len(world.cp.statuses)
    world.start_agent()
    world.wait_state("web-1", "ready", since=seen)
    import os

    os.killpg(before.pid, signal.SIGKILL)
    after = wait_until(
        lambda: (i := world.cp.instance("web-1")) is not None and i.state.value == "ready" and i.pid != before.pid and i,
        20,
        "a new web-1 process",
    )
    assert after.restarts == 1
    assert len(leaders(world, "web-1")) == 1


def test_sigterm_stops_every_instance_and_exits_zero(world: World) -> None:
    world.cp.set_instances([world.spec("web-1"), world.spec("stubborn-1", image=STUBBORN, health="/")])
    agent = world.start_agent(stop_grace=1.0)
    world.wait_state("web-1", "ready")
    world.wait_state("stubborn-1", "ready")
    # Per instance: a shell and a python, plus bubblewrap's two processes when sandboxed.
    per_instance = 4 if world.sandboxed else 2
    assert len(marked_processes(world.marker)) == 2 * per_instance
    started = time.monotonic()
    agent.send_signal(signal.SIGTERM)
    assert agent.wait(timeout=30) == 0
    took = time.monotonic() - started
    assert marked_processes(world.marker) == []
    assert took >= 1.0  # the stubborn one needed the SIGKILL after the grace period
    last = world.cp.last_status()
    assert last is not None and last.instances == []


def test_control_plane_down_then_back(world: World) -> None:
    # Start with the control plane down: the agent waits and retries.
    world.cp.stop()
    agent = world.start_agent()
    wait_until(lambda: b"fetching the desired state failed" in world.agent_output(), 20, "the agent to notice the outage")
    world.cp.set_instances([world.spec("web-1")])
    world.cp.start()  # same port
    up = world.wait_state("web-1", "ready", timeout=30)
    # Down again: the instance keeps serving, the agent keeps running.
    seen = len(world.agent_output())
    world.cp.stop()
    wait_until(lambda: b"reporting status failed" in world.agent_output()[seen:], 20, "the agent to notice the second outage")
    assert httpx.get(f"http://127.0.0.1:{up.port}/", timeout=5).status_code == 200
    assert agent.poll() is None
    # Back: a new control plane process on the same port, the same desired state.
    back = StubControlPlane(host=world.cp.host, token=world.cp.token, port=world.cp.port)
    back.desired = world.cp.desired
    world.cp = back.start()
    reconnected = time.monotonic()
    inst = world.wait_state("web-1", "ready", timeout=15)
    print(f"status again {time.monotonic() - reconnected:.2f}s after the control plane came back")
    assert inst.pid == up.pid and inst.restarts == 0
    assert time.monotonic() - reconnected < 8.0  # backoff is capped at 2 s


def test_wrong_token_is_reported_and_harms_nothing(world: World) -> None:
    world.cp.set_instances([world.spec("web-1")])
    agent = world.start_agent(token="wrong-token")
    wait_until(lambda: b"rejected the agent's token" in world.agent_output(), 20, "a clear token error")
    assert world.cp.statuses == [] and agent.poll() is None


def test_second_agent_on_the_same_data_dir_is_refused(world: World) -> None:
    world.cp.set_instances([world.spec("web-1")])
    world.start_agent()
    world.wait_state("web-1", "ready")
    second = subprocess.run(
        [sys.executable, "-m", "conveyor.agent", "--control-plane", world.cp.url, "--token", "t", "--data-dir", str(world.data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.returncode == 2
    assert "another agent is already running" in second.stderr
    assert len(leaders(world, "web-1")) == 1
