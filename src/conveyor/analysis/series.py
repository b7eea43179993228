"""Intervals to aligned arrays, and quantiles of dense histogram arrays.

Why arrays: every judge's arithmetic is written once, on numpy arrays whose
last axes are (time) or (time, bucket), so that the judge on one deployment
and the detection benchmark on a thousand simulated runs execute the same
code. This module is the only place that turns :class:`Interval` objects
into those arrays.

Why align on whole seconds: the comparative judges compare canary and
baseline second by second (the sequential judge conditions on each second's
totals), so a second missing on one side must appear as zeros there, not shift
the rest, and two scrapes a fraction of a second apart must meet in one second.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from conveyor.analysis.model import Interval
from conveyor.domain.histogram import GAMMA, Histogram, bucket_value

IntArray = np.ndarray


@dataclass(frozen=True)
class Aligned:
    """Canary and baseline on a common time axis.

    ``hist_*`` are dense per-interval bucket counts of shape (T, B) whose
    column ``j`` is histogram bucket ``offset + j``.
    """

    t: np.ndarray
    canary_requests: IntArray
    canary_errors: IntArray
    baseline_requests: IntArray
    baseline_errors: IntArray
    canary_hist: IntArray
    baseline_hist: IntArray
    offset: int

    @property
    def length(self) -> int:
        return int(self.t.shape[0])


def _key(t: float) -> int:
    # Whole seconds: canary and baseline scraped a few milliseconds (or half a
    # second) apart still land in the same second instead of alternating.
    return math.floor(float(t) + 1e-6)


def align(canary: Sequence[Interval], baseline: Sequence[Interval]) -> Aligned:
    """Put both sides on the union of their interval times (sorted); absent = zero."""
    times = sorted({_key(i.t) for i in canary} | {_key(i.t) for i in baseline})
    pos = {t: k for k, t in enumerate(times)}
    indices = [b for i in (*canary, *baseline) for b in i.latency.counts]
    lo = min(indices) if indices else 0
    width = (max(indices) - lo + 1) if indices else 1
    n = len(times)

    def side(intervals: Sequence[Interval]) -> tuple[IntArray, IntArray, IntArray]:
        req = np.zeros(n, dtype=np.int64)
        err = np.zeros(n, dtype=np.int64)
        hist = np.zeros((n, width), dtype=np.int64)
        for i in intervals:
            k = pos[_key(i.t)]
            req[k] += i.requests
            err[k] += i.errors
            for b, c in i.latency.counts.items():
                hist[k, b - lo] += c
        return req, err, hist

    cr, ce, ch = side(canary)
    br, be, bh = side(baseline)
    return Aligned(np.asarray(times, dtype=float), cr, ce, br, be, ch, bh, lo)


def quantile_column(counts: np.ndarray, q: float | np.ndarray) -> np.ndarray:
    """Column index of the q-quantile of dense bucket counts along the last axis (-1 when empty).

    ``q`` is a number or an array broadcastable to ``counts.shape[:-1]``.

    Same rank rule as :meth:`Histogram.quantile`: the first bucket whose
    cumulative count exceeds ``q * (count - 1)``.
    """
    cum = np.cumsum(counts, axis=-1)
    total = cum[..., -1:]
    rank = np.asarray(q, dtype=float)[..., None] * (total - 1)
    idx = np.argmax(cum > rank, axis=-1)
    return np.where(total[..., 0] > 0, idx, -1)


def column_value(col: np.ndarray | int, offset: int) -> np.ndarray:
    """Representative latency (seconds) of dense column ``col``; NaN where ``col`` is -1."""
    col = np.asarray(col)
    vals = 2.0 * np.power(GAMMA, (col + offset).astype(float)) / (GAMMA + 1.0)
    return np.where(col >= 0, vals, np.nan)


def merged(intervals: Sequence[Interval]) -> Histogram:
    out = Histogram()
    for i in intervals:
        out.merge(i.latency)
    return out


def ms(seconds: float | None) -> float | None:
    """Seconds to milliseconds, rounded for display; None stays None."""
    return None if seconds is None or not np.isfinite(seconds) else round(seconds * 1000.0, 1)


def pct(rate: float | None) -> str:
    return "n/a" if rate is None or not np.isfinite(rate) else f"{rate * 100:.2f}%"


def fmt_ms(seconds: float | None) -> str:
    v = ms(seconds)
    return "n/a" if v is None else f"{v:g} ms"


__all__ = ["Aligned", "align", "bucket_value", "column_value", "fmt_ms", "merged", "ms", "pct", "quantile_column"]
