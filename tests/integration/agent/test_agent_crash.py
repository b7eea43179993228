"""Crashing instances: restarted with exponential backoff, reported CRASHED then CRASHLOOP."""

from __future__ import annotations

import pytest
from agent_harness import PLAIN, World, wait_until

pytestmark = pytest.mark.integration


def test_crash_restarts_with_backoff_then_crashloop(world: World) -> None:
    world.cp.set_instances([world.spec("crash-1", image=PLAIN, command="echo boom-$CONVEYOR_INSTANCE; exit 3")])
    world.start_agent()
    crashed = world.wait_state("crash-1", "crashed")
    assert crashed.exit_code == 3
    assert "exited with code 3" in crashed.message and "boom-crash-1" in crashed.message
    loop = world.wait_state("crash-1", "crashloop", timeout=30)
    assert loop.restarts >= 2 and loop.exit_code == 3
    # Backoff: distinct start times spaced by at least 0.5 s, 1 s, 2 s...
    wait_until(lambda: len({i.started_at for _, s in world.cp.statuses for i in s.instances if i.id == "crash-1" and i.started_at}) >= 4, 30, "4 starts")
    starts = sorted({i.started_at for _, s in world.cp.statuses for i in s.instances if i.id == "crash-1" and i.started_at})
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert gaps[0] >= 0.5 and gaps[1] >= 1.0 and gaps[2] >= 2.0, gaps
    # The output passes through the log writer: wait for it rather than read the instant the 4th start is seen.
    wait_until(lambda: world.log_path("crash-1").read_text().count("boom-crash-1") >= 4, 20, "4 starts' output in the log")
