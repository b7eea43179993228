"""The scraper's ``deltas``: routers' cumulative counters → what happened since the last scrape.

Every verdict is computed from these deltas, so each way a reading can relate to
the previous one is pinned here: sums across routers, a router that restarted
(new ``started_at``), a router seen for the first time (fresh or long running),
counters that went down, a release that appears, and latency histograms.
"""

from __future__ import annotations

from typing import Any

from conveyor.deploy.scraper import FRESH, deltas
from conveyor.domain.histogram import Histogram

KEY = ("a", "production", 2)
OTHER = ("a", "production", 1)


def _hist(*values: float) -> Histogram:
    h = Histogram()
    for v in values:
        h.record(v)
    return h


def _rel(release: int, requests: int, errors: int, latency: Histogram | None = None) -> dict[str, Any]:
    return {"app": "a", "env": "production", "release": release, "requests": requests, "status": {"5xx": errors},
            "latency": (latency or Histogram()).to_json()}


def _snap(started: float, t: float, *rels: dict[str, Any]) -> dict[str, Any]:
    return {"started_at": started, "time": t, "releases": list(rels)}


def _counts(found: dict[Any, Any], key: tuple[str, str, int] = KEY) -> tuple[int, int]:
    d = found[key]
    return d.requests, d.errors


def test_deltas_sum_across_routers_per_release() -> None:
    prev: dict[str, Any] = {}
    _, prev = deltas(prev, {"r1": _snap(100.0, 101.0, _rel(2, 10, 1), _rel(1, 90, 0)),
                            "r2": _snap(100.5, 101.0, _rel(2, 4, 0), _rel(1, 40, 2))})
    found, prev = deltas(prev, {
        "r1": _snap(100.0, 101.5, _rel(2, 17, 2, _hist(0.010, 0.020)), _rel(1, 150, 0)),
        "r2": _snap(100.5, 101.5, _rel(2, 9, 3, _hist(0.030)), _rel(1, 70, 5)),
    })
    assert _counts(found) == ((17 - 10) + (9 - 4), (2 - 1) + (3 - 0))
    assert _counts(found, OTHER) == ((150 - 90) + (70 - 40), (0 - 0) + (5 - 2))
    # the histograms of both routers are merged (here the first reading had none, so all of it counts)
    assert found[KEY].latency.count == 3
    assert sorted(v for v, n in found[KEY].latency.values() for _ in range(n)) == sorted(
        v for v, n in _hist(0.010, 0.020, 0.030).values() for _ in range(n))
    assert set(prev) == {"r1", "r2"}


def test_a_router_that_restarted_counts_its_whole_new_reading() -> None:
    """A new ``started_at`` is a new process: its counters started from zero, even if they are
    already higher than the old process's last reading (a busy router restarted between scrapes)."""
    _, prev = deltas({}, {"r1": _snap(100.0, 101.0, _rel(2, 50, 5))})
    found, prev = deltas(prev, {"r1": _snap(300.0, 301.0, _rel(2, 80, 6))})
    assert _counts(found) == (80, 6)  # not 80 - 50 = 30: the old process's 50 were counted already
    # and the next scrape of the restarted router is a plain difference again
    found, _ = deltas(prev, {"r1": _snap(300.0, 301.5, _rel(2, 95, 9))})
    assert _counts(found) == (15, 3)


def test_counters_that_went_down_start_a_new_baseline() -> None:
    """Same process (same ``started_at``), counters lower than before (a worker's counters reset):
    the reading is counted whole rather than as a negative delta."""
    _, prev = deltas({}, {"r1": _snap(100.0, 101.0, _rel(2, 50, 5))})
    found, _ = deltas(prev, {"r1": _snap(100.0, 101.5, _rel(2, 12, 1))})
    assert _counts(found) == (12, 1)


def test_a_fresh_router_seen_for_the_first_time_counts_everything() -> None:
    """Started within ``FRESH`` seconds: nothing it counted is older than the scrape before."""
    found, prev = deltas({}, {"r1": _snap(100.0, 100.0 + FRESH - 0.5, _rel(2, 20, 2, _hist(0.005)))})
    assert _counts(found) == (20, 2) and found[KEY].latency.count == 1
    assert prev["r1"][0] == 100.0


def test_an_old_router_seen_for_the_first_time_is_only_a_baseline() -> None:
    """A router up for long (the control plane restarted, or the router is new to it): its counters
    hold hours of traffic, which must not land in this second's point."""
    found, prev = deltas({}, {"r1": _snap(100.0, 100.0 + FRESH + 60, _rel(2, 100_000, 900))})
    assert KEY not in found
    found, _ = deltas(prev, {"r1": _snap(100.0, 100.0 + FRESH + 60.5, _rel(2, 100_030, 901))})
    assert _counts(found) == (30, 1)


def test_a_release_new_to_a_known_router_counts_in_full_and_the_others_by_difference() -> None:
    _, prev = deltas({}, {"r1": _snap(100.0, 101.0, _rel(1, 500, 0))})
    found, _ = deltas(prev, {"r1": _snap(100.0, 101.5, _rel(1, 540, 0), _rel(2, 6, 1, _hist(0.001)))})
    assert _counts(found) == (6, 1) and _counts(found, OTHER) == (40, 0)


def test_latency_is_the_difference_of_cumulative_histograms() -> None:
    first = _hist(0.001, 0.002)
    later = _hist(0.001, 0.002, 0.050, 0.060)
    _, prev = deltas({}, {"r1": _snap(100.0, 101.0, _rel(2, 2, 0, first))})
    found, _ = deltas(prev, {"r1": _snap(100.0, 101.5, _rel(2, 4, 0, later))})
    lat = found[KEY].latency
    assert lat.count == 2 and lat.quantile(0.0) is not None and lat.quantile(0.0) > 0.04  # only the two new ones


def test_nothing_new_gives_no_delta_but_keeps_the_readings() -> None:
    _, prev = deltas({}, {"r1": _snap(100.0, 101.0, _rel(2, 7, 1))})
    found, kept = deltas(prev, {"r1": _snap(100.0, 101.5, _rel(2, 7, 1))})
    assert found == {}
    assert kept["r1"][1][KEY].requests == 7


def test_arrivals_are_completions_plus_the_change_in_flight_and_telescope_over_scrapes() -> None:
    """Routers count a request when it completes; what arrived is that plus the in-flight gauge's
    change. Saturated: 20 completed a second while the queue grew by 12 (32 arrived); draining:
    48 completed while the queue shrank by 12 (36 arrived, not 48)."""
    def rel(requests: int, in_flight: int) -> dict[str, Any]:
        return {**_rel(2, requests, 0), "in_flight": in_flight}

    _, prev = deltas({}, {"r1": _snap(100.0, 101.0, rel(1000, 0))})
    saturated, prev = deltas(prev, {"r1": _snap(100.0, 102.0, rel(1020, 12))})
    assert (saturated[KEY].requests, saturated[KEY].arrivals) == (20, 32)
    draining, prev = deltas(prev, {"r1": _snap(100.0, 103.0, rel(1068, 0))})
    assert (draining[KEY].requests, draining[KEY].arrivals) == (48, 36)
    # a second in which only the queue grew still says that requests arrived
    stuck, _ = deltas(prev, {"r1": _snap(100.0, 104.0, rel(1068, 5))})
    assert (stuck[KEY].requests, stuck[KEY].arrivals) == (0, 5)
