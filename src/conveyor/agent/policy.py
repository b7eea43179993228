"""Supervision rules as pure functions: restart backoff, crash loops, liveness.

The instance supervisor (:mod:`conveyor.agent.supervisor`) asks these
functions what to do and does the I/O itself, so the numbers below are
tested by direct calls and changed in one place.
"""

from __future__ import annotations

from collections.abc import Sequence

from conveyor.domain.wire import InstanceState

#: First restart delay after a crash; doubles per consecutive crash.
BACKOFF_INITIAL_S = 0.5
#: Longest restart delay.
BACKOFF_MAX_S = 30.0
#: A process that stayed ready this long before exiting resets the backoff.
STABLE_AFTER_S = 30.0
#: This many crashes within :data:`CRASHLOOP_WINDOW_S` make a crash loop.
CRASHLOOP_CRASHES = 3
CRASHLOOP_WINDOW_S = 60.0
#: Consecutive failed liveness probes before a ready instance is UNHEALTHY.
UNHEALTHY_AFTER = 3
#: Readiness is probed this often until the first success.
READINESS_PERIOD_S = 0.2
#: Delays between attempts to prepare an image that failed to fetch or unpack.
IMAGE_RETRY_INITIAL_S = 1.0
IMAGE_RETRY_MAX_S = 30.0


def restart_delay(streak: int) -> float:
    """Delay before restarting after the ``streak``-th consecutive crash (1-based)."""
    if streak <= 1:
        return BACKOFF_INITIAL_S
    return min(BACKOFF_MAX_S, BACKOFF_INITIAL_S * 2 ** min(streak - 1, 32))


def image_retry_delay(failures: int) -> float:
    """Delay before the next attempt after ``failures`` consecutive image failures."""
    return min(IMAGE_RETRY_MAX_S, IMAGE_RETRY_INITIAL_S * 2 ** max(0, min(failures - 1, 32)))


def next_streak(streak: int, ready_at: float | None, exited_at: float) -> int:
    """The crash streak after a process exits.

    A process that had been ready for :data:`STABLE_AFTER_S` counts as a fresh
    start: its crash is the first of a new streak.
    """
    if ready_at is not None and exited_at - ready_at >= STABLE_AFTER_S:
        return 1
    return streak + 1


def recent_crashes(crash_times: Sequence[float], now: float) -> list[float]:
    """The crash times still inside the crash-loop window (to keep the list bounded)."""
    return [t for t in crash_times if now - t <= CRASHLOOP_WINDOW_S]


def in_crashloop(crash_times: Sequence[float], now: float) -> bool:
    """Whether the crashes in ``crash_times`` amount to a crash loop at ``now``."""
    return len(recent_crashes(crash_times, now)) >= CRASHLOOP_CRASHES


def after_liveness(state: InstanceState, consecutive_failures: int) -> InstanceState:
    """The state of a ready-once instance after a liveness probe.

    ``consecutive_failures`` is 0 when the probe passed.
    """
    if consecutive_failures == 0:
        return InstanceState.READY
    if consecutive_failures >= UNHEALTHY_AFTER:
        return InstanceState.UNHEALTHY
    return state
