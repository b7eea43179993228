"""A limit on failed sign-ins per client address. No I/O: the caller passes the clock.

Why per address and on failures only: a guesser sends wrong tokens, a user sends a
right one. After ``max_failures`` wrong tokens within ``window`` seconds the address
gets 429 until the oldest failure leaves the window, so online guessing runs at a
few attempts a minute while a user who mistyped once is not bothered. Memory is
bounded: past ``max_keys`` addresses the stalest are forgotten.
"""

from __future__ import annotations

from collections import deque


class FailureLimiter:
    def __init__(self, max_failures: int = 10, window: float = 60.0, max_keys: int = 10_000) -> None:
        self.max_failures = max_failures
        self.window = window
        self.max_keys = max_keys
        self._failures: dict[str, deque[float]] = {}

    def retry_after(self, key: str, now: float) -> float:
        """Seconds ``key`` must wait before its next attempt counts (0: it may try now)."""
        q = self._failures.get(key)
        if q is None:
            return 0.0
        while q and q[0] <= now - self.window:
            q.popleft()
        if not q:
            del self._failures[key]
            return 0.0
        if len(q) < self.max_failures:
            return 0.0
        return max(0.001, q[0] + self.window - now)

    def failed(self, key: str, now: float) -> int:
        """Record a failure; returns the failures of ``key`` within the window."""
        q = self._failures.get(key)
        if q is None:
            if len(self._failures) >= self.max_keys:
                stalest = sorted(self._failures, key=lambda k: self._failures[k][-1] if self._failures[k] else 0.0)
                for k in stalest[: max(1, self.max_keys // 10)]:
                    del self._failures[k]
            q = self._failures[key] = deque()
        q.append(now)
        while len(q) > self.max_failures:
            q.popleft()
        return len(q)
