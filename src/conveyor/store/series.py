"""Per-release request series: writing scraped points, reading windows of them.

A point is (environment, release, resolution, second) → requests, errors and a
latency histogram. Points at the same key are *added*, so the scraper can
write a second's delta in pieces and the 60 s roll-up is maintained on write.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Connection, delete, func, insert, select, update

from conveyor.domain.histogram import Histogram
from conveyor.store.tables import metric_points


@dataclass(frozen=True)
class Point:
    t: float
    requests: int
    errors: int
    latency: Histogram


def add_point(
    conn: Connection, env_id: int, release: int, resolution: int, t: float, requests: int, errors: int, latency: Histogram,
    arrivals: int | None = None,
) -> None:
    """Add to the point (env, release, resolution, t). ``arrivals`` (requests that arrived, see
    ``scraper.Delta``) defaults to ``requests``."""
    arrivals = requests if arrivals is None else arrivals
    key = (
        (metric_points.c.env_id == env_id)
        & (metric_points.c.release == release)
        & (metric_points.c.resolution == resolution)
        & (metric_points.c.t == t)
    )
    row = conn.execute(select(metric_points.c.id, metric_points.c.requests, metric_points.c.errors,
                              metric_points.c.latency, metric_points.c.arrivals).where(key)).first()
    if row is None:
        conn.execute(
            insert(metric_points).values(
                env_id=env_id, release=release, resolution=resolution, t=t,
                requests=requests, errors=errors, latency=latency.to_json(), arrivals=arrivals,
            )
        )
        return
    merged = Histogram.from_json(row.latency)
    merged.merge(latency)
    conn.execute(
        update(metric_points)
        .where(metric_points.c.id == row.id)
        .values(requests=row.requests + requests, errors=row.errors + errors, latency=merged.to_json(),
                arrivals=(row.requests if row.arrivals is None else row.arrivals) + arrivals)
    )


def points(
    conn: Connection, env_id: int, release: int, since: float, until: float | None = None, resolution: int = 1
) -> list[Point]:
    """The points of one release in [since, until), oldest first."""
    q = select(metric_points).where(
        metric_points.c.env_id == env_id,
        metric_points.c.release == release,
        metric_points.c.resolution == resolution,
        metric_points.c.t >= since,
    )
    if until is not None:
        q = q.where(metric_points.c.t < until)
    return [  # (Row.t is SQLAlchemy's tuple accessor, hence mappings)
        Point(r["t"], r["requests"], r["errors"], Histogram.from_json(r["latency"]))
        for r in conn.execute(q.order_by(metric_points.c.t)).mappings()
    ]


def window(conn: Connection, env_id: int, since: float, *, resolution: int, bucket: float) -> dict[int, list[dict[str, float | int | None]]]:
    """Every release's series since ``since``, merged into ``bucket``-second steps for charts."""
    rows = conn.execute(
        select(metric_points)
        .where(metric_points.c.env_id == env_id, metric_points.c.resolution == resolution, metric_points.c.t >= since)
        .order_by(metric_points.c.release, metric_points.c.t)
    ).mappings()
    merged: dict[int, dict[float, list]] = {}  # type: ignore[type-arg]
    for r in rows:
        t = r["t"] - (r["t"] % bucket)
        acc = merged.setdefault(r["release"], {}).setdefault(t, [0, 0, Histogram()])
        acc[0] += r["requests"]
        acc[1] += r["errors"]
        acc[2].merge(Histogram.from_json(r["latency"]))
    out: dict[int, list[dict[str, float | int | None]]] = {}
    for release, by_t in merged.items():
        out[release] = [
            {
                "t": t,
                "requests": req,
                "errors": err,
                "rps": req / bucket,
                "error_rate": (err / req) if req else None,
                "p50": hist.quantile(0.5),
                "p99": hist.quantile(0.99),
            }
            for t, (req, err, hist) in sorted(by_t.items())
        ]
    return out


def request_totals(conn: Connection, since: float) -> dict[tuple[int, int], int]:
    """(env id, release) → requests in the 1 s points at or after ``since``."""
    rows = conn.execute(
        select(metric_points.c.env_id, metric_points.c.release, func.sum(metric_points.c.requests))
        .where(metric_points.c.resolution == 1, metric_points.c.t >= since)
        .group_by(metric_points.c.env_id, metric_points.c.release)
    ).all()
    return {(r[0], r[1]): int(r[2] or 0) for r in rows}


def newest_second(conn: Connection, env_id: int) -> float | None:
    """The time of the newest 1 s point stored for an environment (None before the first)."""
    newest = conn.execute(
        select(func.max(metric_points.c.t)).where(metric_points.c.env_id == env_id, metric_points.c.resolution == 1)
    ).scalar()
    return None if newest is None else float(newest)


def prune(conn: Connection, resolution: int, before: float) -> None:
    """Delete the points of ``resolution`` older than ``before``."""
    conn.execute(delete(metric_points).where(metric_points.c.resolution == resolution, metric_points.c.t < before))


@dataclass
class Totals:
    """What an environment's releases served in a span: requests, requests that arrived (see
    ``scraper.Delta``), and the served ones' latency histogram."""

    requests: int = 0
    arrivals: int = 0
    latency: Histogram = field(default_factory=Histogram)

    def add(self, requests: int, arrivals: int, latency: Histogram) -> None:
        self.requests += requests
        self.arrivals += arrivals
        self.latency.merge(latency)


def totals(conn: Connection, env_id: int, since: float, until: float, tail: float = 0.0) -> tuple[Totals, Totals]:
    """The :class:`Totals` of every release of an environment in [since, until) (1 s points), and
    of its last ``tail`` seconds, [until - tail, until), from the same rows: for the autoscaler
    (``Policy.up_window``). Points stored before migration 0013 count their requests as arrivals."""
    whole, last = Totals(), Totals()
    q = select(metric_points.c.t.label("second"), metric_points.c.requests, metric_points.c.latency,
               metric_points.c.arrivals).where(
        metric_points.c.env_id == env_id, metric_points.c.resolution == 1,
        metric_points.c.t >= since, metric_points.c.t < until)
    for r in conn.execute(q):
        arrivals = int(r.requests if r.arrivals is None else r.arrivals)
        latency = Histogram.from_json(r.latency)
        whole.add(int(r.requests), arrivals, latency)
        if r.second >= until - tail:  # (not ``r.t``: a Row's own attribute)
            last.add(int(r.requests), arrivals, latency)
    for t in (whole, last):
        t.arrivals = max(t.arrivals, 0)  # the gauge's change can make a span's sum negative
    return whole, last
