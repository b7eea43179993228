"""Retry delays: one small policy for every backoff in Conveyor, free of I/O.

Why one: the agent's control-plane calls, its instance restarts and image
retries, and ``conveyor up``'s child restarts all wait "twice as long as last
time, up to a cap" after a failure; writing that once keeps the numbers in one
place and tested once.

Why jitter: when a control plane comes back, every agent of a fleet retries at
the same doubling instants and they arrive together. With ``jitter = j`` a
delay is drawn uniformly from ``[d·(1−j), d]`` ("equal jitter"): the herd
spreads out, and no delay is ever longer than without jitter. Retries of
purely local things (restarting a process) keep ``jitter = 0``: there is no
herd, and a fixed schedule is easier to read in a log.

Why not ``tenacity``: these loops do not wrap one call; they log, update a
status and wait on other events between attempts, so what they need is only
the delay for attempt *n*, which is this.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Delay before retry number ``n`` (after the ``n``-th consecutive failure, 1-based):
    ``initial · factor^(n−1)``, at most ``cap``, minus up to ``jitter`` of it at random."""

    initial: float
    cap: float
    factor: float = 2.0
    jitter: float = 0.0

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        base = min(self.cap, self.initial * self.factor ** max(0, min(attempt - 1, 64)))
        if self.jitter <= 0:
            return base
        return base * (1.0 - self.jitter * rand())
