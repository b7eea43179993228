"""A small seeded simulator of per-second router intervals for the judge tests.

Latencies are log-normal (median 50 ms, sigma 0.5) like the detection
benchmark's; each side's requests per second are Poisson.
"""

from __future__ import annotations

import math

import numpy as np

from conveyor.analysis import Interval
from conveyor.domain.histogram import MIN_INDEX, Histogram

_LOG_GAMMA = math.log(1.1)


def intervals(
    rng: np.random.Generator,
    seconds: int,
    rps: float,
    error_rate: float,
    latency_scale: float = 1.0,
    *,
    median_s: float = 0.05,
    sigma: float = 0.5,
    t0: float = 1_700_000_000.0,
) -> list[Interval]:
    n = rng.poisson(rps, seconds)
    errors = rng.binomial(n, error_rate)
    lat = rng.lognormal(math.log(median_s), sigma, int(n.sum())) * latency_scale
    idx = np.maximum(np.ceil(np.log(lat) / _LOG_GAMMA).astype(int), MIN_INDEX)
    out = []
    start = 0
    for s in range(seconds):
        k = int(n[s])
        b, c = np.unique(idx[start : start + k], return_counts=True)
        hist = Histogram(dict(zip(b.tolist(), c.tolist(), strict=True)), float(lat[start : start + k].sum()))
        start += k
        out.append(Interval(t=t0 + s, requests=k, errors=int(errors[s]), latency=hist))
    return out
