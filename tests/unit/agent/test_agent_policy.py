"""Backoff, crash-loop and liveness rules, by direct calls."""

from __future__ import annotations

from conveyor.agent import policy
from conveyor.domain.wire import InstanceState


def test_restart_delay_doubles_from_half_a_second_to_thirty() -> None:
    assert [policy.restart_delay(n) for n in range(1, 9)] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert policy.restart_delay(10_000) == 30.0


def test_streak_resets_after_being_ready_long_enough() -> None:
    assert policy.next_streak(4, ready_at=100.0, exited_at=130.0) == 1
    assert policy.next_streak(4, ready_at=100.0, exited_at=129.0) == 5
    assert policy.next_streak(0, ready_at=None, exited_at=5.0) == 1


def test_crashloop_needs_three_crashes_within_a_minute() -> None:
    assert not policy.in_crashloop([0.0, 10.0], now=10.0)
    assert policy.in_crashloop([0.0, 10.0, 20.0], now=20.0)
    assert not policy.in_crashloop([0.0, 10.0, 20.0], now=70.5)
    assert policy.recent_crashes([0.0, 10.0, 20.0], now=70.5) == [20.0]
    assert policy.recent_crashes([0.0, 10.0, 20.0], now=65.0) == [10.0, 20.0]


def test_liveness_unhealthy_after_three_failures_and_back() -> None:
    s = InstanceState.READY
    s = policy.after_liveness(s, 1)
    assert s == InstanceState.READY
    s = policy.after_liveness(s, 2)
    assert s == InstanceState.READY
    s = policy.after_liveness(s, 3)
    assert s == InstanceState.UNHEALTHY
    assert policy.after_liveness(s, 4) == InstanceState.UNHEALTHY
    assert policy.after_liveness(s, 0) == InstanceState.READY


def test_image_retry_delay_is_bounded() -> None:
    assert policy.image_retry_delay(1, rand=lambda: 0.0) == 1.0
    assert policy.image_retry_delay(2, rand=lambda: 0.0) == 2.0
    assert policy.image_retry_delay(50, rand=lambda: 0.0) == policy.IMAGE_RETRY_MAX_S


def test_image_retry_delay_is_jittered_down_to_half() -> None:
    """Agents of a fleet retry the control plane at spread-out times, never later than without jitter."""
    assert policy.image_retry_delay(2, rand=lambda: 1.0) == 1.0
    delays = {policy.image_retry_delay(3) for _ in range(50)}
    assert len(delays) > 1 and all(2.0 <= d <= 4.0 for d in delays)
