"""A mergeable, log-bucketed latency histogram (DDSketch-style).

Why log buckets: latency spans five orders of magnitude, and what analysis needs
is a bounded *relative* error on quantiles. With bucket boundaries growing by
``GAMMA = 1.1`` and each bucket reported at ``2 * GAMMA**i / (GAMMA + 1)``, every
value is reported within ``(GAMMA - 1) / (GAMMA + 1) ≈ 4.8 %`` of itself.

Why sparse counts keyed by bucket index: histograms from several router workers,
several routers and several seconds merge by adding counts, losslessly, and a
cumulative histogram minus an earlier one is the histogram of the interval.
The router records into it on the request path, so ``record`` is kept tiny.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

GAMMA = 1.1
_LOG_GAMMA = math.log(GAMMA)
#: Values at or below this (seconds) share bucket ``MIN_INDEX``.
MIN_VALUE = 1e-6
MIN_INDEX = math.ceil(math.log(MIN_VALUE) / _LOG_GAMMA)
RELATIVE_ERROR = (GAMMA - 1) / (GAMMA + 1)


def bucket_index(value: float) -> int:
    """The bucket a value (seconds) falls in."""
    if value <= MIN_VALUE:
        return MIN_INDEX
    return math.ceil(math.log(value) / _LOG_GAMMA)


def bucket_value(index: int) -> float:
    """The representative value of a bucket (within RELATIVE_ERROR of any member)."""
    return 2.0 * GAMMA**index / (GAMMA + 1.0)


def bucket_upper(index: int) -> float:
    """The inclusive upper bound of a bucket."""
    return GAMMA**index


class Histogram:
    """Counts per log bucket, plus count and sum, mergeable by addition."""

    __slots__ = ("counts", "count", "total")

    def __init__(self, counts: Mapping[int, int] | None = None, total: float = 0.0) -> None:
        self.counts: dict[int, int] = dict(counts or {})
        self.count = sum(self.counts.values())
        self.total = total

    def record(self, value: float) -> None:
        i = MIN_INDEX if value <= MIN_VALUE else math.ceil(math.log(value) / _LOG_GAMMA)
        c = self.counts
        c[i] = c.get(i, 0) + 1
        self.count += 1
        self.total += value

    def merge(self, other: Histogram) -> None:
        for i, n in other.counts.items():
            self.counts[i] = self.counts.get(i, 0) + n
        self.count += other.count
        self.total += other.total

    def minus(self, earlier: Histogram) -> Histogram:
        """The histogram of what was recorded since ``earlier`` (both cumulative)."""
        out = {i: n - earlier.counts.get(i, 0) for i, n in self.counts.items()}
        return Histogram({i: n for i, n in out.items() if n > 0}, self.total - earlier.total)

    def quantile(self, q: float) -> float | None:
        """The q-quantile (0..1), or None when empty."""
        if self.count == 0:
            return None
        rank = q * (self.count - 1)
        seen = 0
        for i in sorted(self.counts):
            seen += self.counts[i]
            if seen > rank:
                return bucket_value(i)
        return bucket_value(max(self.counts))

    def mean(self) -> float | None:
        return self.total / self.count if self.count else None

    def values(self) -> Iterable[tuple[float, int]]:
        """(representative value, count) pairs in increasing order."""
        for i in sorted(self.counts):
            yield bucket_value(i), self.counts[i]

    def to_json(self) -> dict[str, object]:
        return {"buckets": {str(i): n for i, n in sorted(self.counts.items())}, "count": self.count, "sum": self.total}

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Histogram:
        buckets = data.get("buckets") or {}
        assert isinstance(buckets, Mapping)
        total = data.get("sum", 0.0)
        return cls({int(k): int(v) for k, v in buckets.items()}, float(total))  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"Histogram(count={self.count}, p50={self.quantile(0.5)}, p99={self.quantile(0.99)})"
