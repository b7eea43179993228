"""The metrics scraper: routers' cumulative counters → per-second series in SQL.

Twice a second the control plane reads ``/metrics.json`` from each router that
long-polls it, subtracts the previous reading (counters are cumulative, so a
missed scrape loses nothing: the next delta simply covers more time), sums
across routers, and adds it to the point of its (environment, release) and
second (points at one key add up). Why twice a second although points are per
second: a canary's errors reach the judges, and a failed one its rollback,
half a second sooner on average (benchmarks/rollback.py: median time to all
traffic back 1.0 s instead of 1.7-2.7 s at 1 s scrapes).
A router that restarted (new ``started_at``) or whose counter went down starts
a new baseline: its whole reading is the delta.

Points are kept at 1 s for an hour and rolled up into 60 s points kept for 30
days. The canary analysis and the UI read them through ``store.series``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import Engine

from conveyor.deploy.notify import Notifier
from conveyor.domain.histogram import Histogram
from conveyor.store import instance_counts, repo, series

log = logging.getLogger("conveyor.scraper")

HOUR = 3600.0
#: A router first seen within this many seconds of its start counts everything it has (nothing is older).
FRESH = 5.0
MONTH = 30 * 86400.0


@dataclass
class Reading:
    """One release's cumulative counters in one router's snapshot."""

    requests: int
    errors: int
    latency: Histogram
    #: requests sent and not yet answered at the snapshot (a gauge)
    in_flight: int = 0

    @classmethod
    def of(cls, rel: dict[str, Any]) -> Reading:
        status = rel.get("status") or {}
        return cls(int(rel.get("requests", 0)), int(status.get("5xx", 0)), Histogram.from_json(rel.get("latency") or {}),
                   int(rel.get("in_flight", 0)))


@dataclass
class Delta:
    requests: int = 0
    errors: int = 0
    latency: Histogram = field(default_factory=Histogram)
    #: requests that arrived: completions plus the in-flight gauge's change. Why: a router counts a
    #: request when it completes, so completions are capped by what saturated instances can serve
    #: (the load looks smaller than it is) and, once new instances drain the backlog, exceed what
    #: arrives (it looks larger: the autoscaler overshot a load step by 1-2 instances on that).
    #: Summed over seconds the gauge telescopes: the arrivals of a window, exactly.
    arrivals: int = 0

    def add(self, now: Reading, before: Reading | None) -> None:
        if before is None or now.requests < before.requests or now.errors < before.errors:
            before = None  # new baseline (router restarted, or a worker's counters reset)
        self.requests += now.requests - (before.requests if before else 0)
        self.arrivals += (now.requests + now.in_flight) - ((before.requests + before.in_flight) if before else 0)
        self.errors += now.errors - (before.errors if before else 0)
        self.latency.merge(now.latency.minus(before.latency) if before else now.latency)


Key = tuple[str, str, int]  # (app, env, release)


def deltas(previous: dict[str, tuple[float, dict[Key, Reading]]], snapshots: dict[str, dict[str, Any]]) -> tuple[
    dict[Key, Delta], dict[str, tuple[float, dict[Key, Reading]]]
]:
    """Pure: per-release deltas since the previous readings, and the new readings to keep."""
    out: dict[Key, Delta] = {}
    kept: dict[str, tuple[float, dict[Key, Reading]]] = {}
    for router_id, snap in snapshots.items():
        started = float(snap.get("started_at", 0.0))
        readings = {
            (r["app"], r["env"], int(r["release"])): Reading.of(r) for r in snap.get("releases", [])
        }
        prev_started, prev = previous.get(router_id, (None, {}))
        first_sight = prev_started is None
        if prev_started != started:
            prev = {}
        for key, reading in readings.items():
            if first_sight and float(snap.get("time", started)) - started > FRESH:
                continue  # an old router seen for the first time: its reading is only a baseline
            d = out.setdefault(key, Delta())
            d.add(reading, prev.get(key))
        kept[router_id] = (started, readings)
    return {k: d for k, d in out.items() if d.requests or d.errors or d.arrivals}, kept


class Scraper:
    def __init__(
        self,
        engine: Engine,
        notifier: Notifier,
        routers: Callable[[], dict[str, str]],
        *,
        interval: float = 0.5,
    ) -> None:
        self.engine = engine
        self.notifier = notifier
        self.routers = routers  # router id -> admin URL
        self.interval = interval
        self.previous: dict[str, tuple[float, dict[Key, Reading]]] = {}
        self._last_prune = 0.0

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=0.8) as client:
            next_tick = time.time()
            while True:
                next_tick += self.interval
                try:
                    await self.scrape_once(client)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("metrics scrape failed; continuing")
                await asyncio.sleep(max(0.0, next_tick - time.time()))

    async def scrape_once(self, client: httpx.AsyncClient) -> int:
        targets = self.routers()
        results = await asyncio.gather(*(self._fetch(client, url) for url in targets.values()), return_exceptions=True)
        snaps = {rid: r for rid, r in zip(targets, results, strict=True) if isinstance(r, dict)}
        # A router we could not read keeps its previous baseline (its next delta covers the gap).
        carry = {rid: v for rid, v in self.previous.items() if rid not in snaps}
        found, kept = deltas(self.previous, snaps)
        self.previous = {**carry, **kept}
        now = time.time()
        if found:
            await asyncio.to_thread(self._store, found, now)
            self.notifier.poke("metrics", "orchestrator")
        if now - self._last_prune > 60:
            self._last_prune = now
            await asyncio.to_thread(self._prune, now)
        return len(found)

    @staticmethod
    async def _fetch(client: httpx.AsyncClient, url: str) -> dict[str, Any]:
        resp = await client.get(url.rstrip("/") + "/metrics.json")
        resp.raise_for_status()
        return resp.json()  # type: ignore[no-any-return]

    def _store(self, found: dict[Key, Delta], now: float) -> None:
        second = float(int(now))
        with self.engine.begin() as conn:
            env_ids = repo.env_ids_by_name(conn)
            for (app, env, release), d in found.items():
                env_id = env_ids.get((app, env))
                if env_id is None:
                    continue
                for resolution in (1, 60):
                    t = second - (second % resolution)
                    series.add_point(conn, env_id, release, resolution, t, d.requests, d.errors, d.latency, d.arrivals)

    def _prune(self, now: float) -> None:
        with self.engine.begin() as conn:
            series.prune(conn, 1, now - HOUR)
            series.prune(conn, 60, now - MONTH)
            instance_counts.prune(conn, now - MONTH)  # the orchestrator's samples, kept as long as the 60 s points
