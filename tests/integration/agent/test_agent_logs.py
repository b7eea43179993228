"""Log shipping: every byte of every instance's output reaches the control plane, by offset."""

from __future__ import annotations

import httpx
import pytest
from agent_harness import World, wait_until

pytestmark = pytest.mark.integration


def test_logs_are_shipped_by_offset_even_through_failed_posts(world: World) -> None:
    world.cp.fail_log_posts = 3  # at-least-once: failed posts are sent again
    world.cp.set_instances([world.spec("web-1")])
    world.start_agent()
    inst = world.wait_state("web-1", "ready")
    for i in range(20):
        httpx.get(f"http://127.0.0.1:{inst.port}/req-{i}", timeout=5)
    path = world.log_path("web-1")
    wait_until(lambda: "/req-19" in path.read_text(), 20, "the app to log the last request")
    wait_until(lambda: world.cp.log_text("web-1") == path.read_bytes(), 20, "the control plane to have the whole log")
    text = world.cp.log_text("web-1").decode()
    assert "hello v1 listening on 127.0.0.1" in text
    assert text[25:].startswith("--- conveyor agent: starting web-1")  # after its timestamp
    assert world.cp.fail_log_posts == 0
    offsets = [c.offset for b in world.cp.log_posts for c in b.chunks if c.instance == "web-1"]
    assert offsets == sorted(offsets) and offsets[0] == 0
