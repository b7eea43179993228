"""Supervision rules as pure functions: restart backoff, crash loops, liveness.

The instance supervisor (:mod:`conveyor.agent.supervisor`) asks these
functions what to do and does the I/O itself, so the numbers below are
tested by direct calls and changed in one place.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from conveyor.domain.backoff import Backoff
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
#: A process with no health path (a worker) counts as ready once it has stayed up this long: one
#: that crashes at start never does, so it fails its deployment instead of being switched to.
WORKER_READY_AFTER_S = 2.0
#: Delays between attempts to prepare an image that failed to fetch or unpack.
IMAGE_RETRY_INITIAL_S = 1.0
IMAGE_RETRY_MAX_S = 30.0
#: Restarting a crashed process is local: no jitter (a fixed schedule reads better in a log).
RESTART_BACKOFF = Backoff(BACKOFF_INITIAL_S, BACKOFF_MAX_S)
#: Fetching an image asks the control plane: every agent of a fleet may retry at once, so jitter.
IMAGE_RETRY_BACKOFF = Backoff(IMAGE_RETRY_INITIAL_S, IMAGE_RETRY_MAX_S, jitter=0.5)
#: The agent's calls to the control plane start retrying fast (0.1 s), with jitter; the cap is configured.
CONTROL_PLANE_RETRY_INITIAL_S = 0.1


def control_plane_backoff(cap: float) -> Backoff:
    return Backoff(CONTROL_PLANE_RETRY_INITIAL_S, cap, jitter=0.5)


def restart_delay(streak: int) -> float:
    """Delay before restarting after the ``streak``-th consecutive crash (1-based)."""
    return RESTART_BACKOFF.delay(streak)


def image_retry_delay(failures: int, rand: Callable[[], float] = random.random) -> float:
    """Delay before the next attempt after ``failures`` consecutive image failures (jittered:
    between half and all of 1 s doubling, up to 30 s)."""
    return IMAGE_RETRY_BACKOFF.delay(failures, rand)


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
