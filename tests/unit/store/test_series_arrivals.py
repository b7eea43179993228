"""``series.totals`` for the autoscaler: requests served, requests that arrived (points stored
before migration 0013 have none: they count as what was served), merged per point."""

from __future__ import annotations

from sqlalchemy import create_engine, insert

from conveyor.domain.histogram import Histogram
from conveyor.store import series
from conveyor.store.tables import metadata, metric_points


def test_arrivals_add_up_per_point_and_default_to_the_requests_served() -> None:
    engine = create_engine("sqlite://")
    metadata.create_all(engine)
    with engine.begin() as conn:
        series.add_point(conn, 1, 2, 1, 100.0, 20, 0, Histogram(), 32)  # saturated: 12 more queued
        series.add_point(conn, 1, 3, 1, 100.0, 5, 0, Histogram(), 5)  # a canary, same second
        series.add_point(conn, 1, 2, 1, 101.0, 48, 0, Histogram(), 32)
        series.add_point(conn, 1, 2, 1, 101.0, 2, 0, Histogram(), 1)  # a second router's delta, merged
        series.add_point(conn, 1, 2, 1, 102.0, 10, 0, Histogram())  # no in-flight known: as served
        conn.execute(insert(metric_points).values(env_id=1, release=2, resolution=1, t=103.0, requests=7, errors=0,
                                                  latency=Histogram().to_json()))  # a row from before 0013
        whole, _ = series.totals(conn, 1, 100.0, 104.0)
        assert (whole.requests, whole.arrivals) == (20 + 5 + 48 + 2 + 10 + 7, 32 + 5 + 32 + 1 + 10 + 7)
        whole, _ = series.totals(conn, 1, 101.0, 102.0)
        assert (whole.requests, whole.arrivals) == (50, 33)
        series.add_point(conn, 1, 2, 1, 103.0, 1, 0, Histogram(), 3)  # merged into the old row
        whole, _ = series.totals(conn, 1, 103.0, 104.0)
        assert (whole.requests, whole.arrivals) == (8, 10)
        # the last 2 s of a window, from the same rows: as if asked for on their own
        whole, last = series.totals(conn, 1, 100.0, 104.0, tail=2.0)
        alone, _ = series.totals(conn, 1, 102.0, 104.0)
        assert (last.requests, last.arrivals) == (alone.requests, alone.arrivals) == (10 + 8, 10 + 10)
        assert whole.requests == 20 + 5 + 48 + 2 + 10 + 8
        assert series.totals(conn, 1, 100.0, 104.0)[1].requests == 0  # no tail asked for
