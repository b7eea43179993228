"""Per-release and per-instance request metrics: the ground truth for canaries.

Why counters live in plain attribute slots: the proxy updates them on every
request, so recording is a handful of integer increments and one
:meth:`Histogram.record`; everything else (JSON, Prometheus text, merging across
workers) happens on the admin side when someone asks.

All counters are cumulative since the process started (``started_at`` lets the
scraper notice a restart), so the control plane loses no sample when it misses
a scrape: it subtracts two snapshots. Snapshots of several workers merge by
addition (:func:`merge_snapshots`), histograms included.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from conveyor.domain.histogram import MIN_INDEX, Histogram, bucket_upper

STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
#: Latency buckets counted in ReleaseStats.lat_fast: MIN_INDEX .. MIN_INDEX + 255,
#: i.e. up to GAMMA ** 111 seconds (about 10 hours); slower requests use Histogram.record.
FAST_BUCKETS = 256


class InstanceStats:
    """Counters of one instance (by id) of one release."""

    __slots__ = ("id", "release", "requests", "errors_5xx", "upstream_errors", "in_flight")

    def __init__(self, id: str, release: ReleaseStats | None = None) -> None:  # noqa: A002
        self.id = id
        self.release = release
        self.requests = 0
        self.errors_5xx = 0
        self.upstream_errors = 0
        self.in_flight = 0

    def to_json(self) -> dict[str, int]:
        return {
            "requests": self.requests,
            "5xx": self.errors_5xx,
            "upstream_errors": self.upstream_errors,
            "in_flight": self.in_flight,
        }


class ReleaseStats:
    """Counters and the latency histogram of one release of one environment."""

    __slots__ = (
        "app",
        "env",
        "release",
        "requests",
        "status",
        "upstream_errors",
        "in_flight",
        "latency",
        "instances",
        "lat_fast",
        "lat_fast_sum",
    )

    def __init__(self, app: str, env: str, release: int) -> None:
        self.app = app
        self.env = env
        self.release = release
        self.requests = 0
        self.status = [0, 0, 0, 0, 0, 0]  # index = status // 100 (1..5 used)
        self.upstream_errors = 0
        self.in_flight = 0
        self.latency = Histogram()
        #: Latencies recorded on the request path and not yet folded into ``latency``:
        #: a count per bucket (slot ``i`` is bucket ``MIN_INDEX + i``) and their sum.
        #: A list slot increment is cheaper than Histogram.record's dict update.
        self.lat_fast = [0] * FAST_BUCKETS
        self.lat_fast_sum = 0.0
        self.instances: dict[str, InstanceStats] = {}

    def fold(self) -> Histogram:
        """Move the request path's latency counts into ``latency``; returns it."""
        lat = self.latency
        fast = self.lat_fast
        n = sum(fast)
        if n:
            self.lat_fast = [0] * FAST_BUCKETS
            counts = lat.counts
            for i, c in enumerate(fast):
                if c:
                    k = MIN_INDEX + i
                    counts[k] = counts.get(k, 0) + c
            lat.count += n
            lat.total += self.lat_fast_sum
            self.lat_fast_sum = 0.0
        return lat

    def instance(self, id: str) -> InstanceStats:  # noqa: A002
        s = self.instances.get(id)
        if s is None:
            s = self.instances[id] = InstanceStats(id, self)
        return s

    def to_json(self) -> dict[str, Any]:
        st = self.status
        return {
            "app": self.app,
            "env": self.env,
            "release": self.release,
            "requests": self.requests,
            "status": {"1xx": st[1], "2xx": st[2], "3xx": st[3], "4xx": st[4], "5xx": st[5]},
            "upstream_errors": self.upstream_errors,
            "in_flight": self.in_flight,
            "latency": self.fold().to_json(),
            "instances": {i: s.to_json() for i, s in sorted(self.instances.items())},
        }


class Metrics:
    """The registry of one router process."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.started_at = time.time()
        self.releases: dict[tuple[str, str, int], ReleaseStats] = {}
        #: Requests that matched no release (unknown host, malformed), by status.
        self.unrouted: dict[int, int] = {}

    def release(self, app: str, env: str, release: int) -> ReleaseStats:
        key = (app, env, release)
        s = self.releases.get(key)
        if s is None:
            s = self.releases[key] = ReleaseStats(app, env, release)
        return s

    @staticmethod
    def instance(release: ReleaseStats, id: str) -> InstanceStats:  # noqa: A002
        return release.instance(id)

    def count_unrouted(self, status: int) -> None:
        self.unrouted[status] = self.unrouted.get(status, 0) + 1

    def snapshot(self, router_id: str, table_version: int, targets: Iterable[Any] = ()) -> dict[str, Any]:
        """The ``/metrics.json`` document (shape in docs/ARCHITECTURE.md).

        In-flight gauges are not counted on the request path: they are read here
        from the balancer's own ``outstanding`` count of each target (``targets``:
        the table's and the draining ones), which the proxy keeps anyway.
        """
        for rs in self.releases.values():
            rs.in_flight = 0
            for ist in rs.instances.values():
                ist.in_flight = 0
        for t in targets:
            st = t.stats
            if st is not None and t.outstanding:
                st.in_flight += t.outstanding
                if st.release is not None:
                    st.release.in_flight += t.outstanding
        return {
            "router": router_id,
            "started_at": self.started_at,
            "time": time.time(),
            "table_version": table_version,
            "releases": [s.to_json() for _, s in sorted(self.releases.items())],
            "unrouted": {str(k): v for k, v in sorted(self.unrouted.items())},
        }


def merge_snapshots(snapshots: Iterable[Mapping[str, Any]], router_id: str) -> dict[str, Any]:
    """Add up snapshots of several workers into one (the same shape)."""
    snaps = list(snapshots)
    merged: dict[tuple[str, str, int], dict[str, Any]] = {}
    hists: dict[tuple[str, str, int], Histogram] = {}
    unrouted: dict[str, int] = {}
    for snap in snaps:
        for k, v in (snap.get("unrouted") or {}).items():
            unrouted[k] = unrouted.get(k, 0) + int(v)
        for rel in snap.get("releases", []):
            key = (rel["app"], rel["env"], int(rel["release"]))
            m = merged.get(key)
            if m is None:
                m = merged[key] = {
                    "app": rel["app"],
                    "env": rel["env"],
                    "release": key[2],
                    "requests": 0,
                    "status": dict.fromkeys(STATUS_CLASSES, 0),
                    "upstream_errors": 0,
                    "in_flight": 0,
                    "latency": None,
                    "instances": {},
                }
                hists[key] = Histogram()
            for f in ("requests", "upstream_errors", "in_flight"):
                m[f] += int(rel.get(f, 0))
            for c in STATUS_CLASSES:
                m["status"][c] += int(rel.get("status", {}).get(c, 0))
            hists[key].merge(Histogram.from_json(rel.get("latency") or {}))
            for iid, ist in (rel.get("instances") or {}).items():
                mi = m["instances"].setdefault(iid, {"requests": 0, "5xx": 0, "upstream_errors": 0, "in_flight": 0})
                for f in mi:
                    mi[f] += int(ist.get(f, 0))
    releases = []
    for key in sorted(merged):
        m = merged[key]
        m["latency"] = hists[key].to_json()
        m["instances"] = dict(sorted(m["instances"].items()))
        releases.append(m)
    return {
        "router": router_id,
        "started_at": min((float(s.get("started_at", 0.0)) for s in snaps), default=time.time()),
        "time": time.time(),
        "table_version": min((int(s.get("table_version", 0)) for s in snaps), default=0),
        "releases": releases,
        "unrouted": dict(sorted(unrouted.items())),
    }


def _label(v: object) -> str:
    return str(v).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def prometheus_text(snapshot: Mapping[str, Any]) -> str:
    """The snapshot in Prometheus text exposition format 0.0.4."""
    out: list[str] = []
    add = out.append
    add("# HELP conveyor_router_table_version Version of the routing table in force.")
    add("# TYPE conveyor_router_table_version gauge")
    add(f"conveyor_router_table_version {int(snapshot.get('table_version', 0))}")
    add("# HELP conveyor_router_start_time_seconds Unix time the router started.")
    add("# TYPE conveyor_router_start_time_seconds gauge")
    add(f"conveyor_router_start_time_seconds {float(snapshot.get('started_at', 0.0))}")
    rels = list(snapshot.get("releases", []))

    def lbl(r: Mapping[str, Any]) -> str:
        return f'app="{_label(r["app"])}",env="{_label(r["env"])}",release="{r["release"]}"'

    add("# HELP conveyor_router_requests_total Responses sent to clients, by status class.")
    add("# TYPE conveyor_router_requests_total counter")
    for r in rels:
        for c in STATUS_CLASSES:
            add(f'conveyor_router_requests_total{{{lbl(r)},code="{c}"}} {r["status"][c]}')
    add("# HELP conveyor_router_upstream_errors_total Failed upstream connects, resets and timeouts.")
    add("# TYPE conveyor_router_upstream_errors_total counter")
    for r in rels:
        add(f"conveyor_router_upstream_errors_total{{{lbl(r)}}} {r['upstream_errors']}")
    add("# HELP conveyor_router_in_flight Requests in progress.")
    add("# TYPE conveyor_router_in_flight gauge")
    for r in rels:
        add(f"conveyor_router_in_flight{{{lbl(r)}}} {r['in_flight']}")
    add("# HELP conveyor_router_request_duration_seconds First request byte to last response byte.")
    add("# TYPE conveyor_router_request_duration_seconds histogram")
    for r in rels:
        lat = r["latency"]
        cum = 0
        for k, n in sorted(((int(k), int(n)) for k, n in lat["buckets"].items())):
            cum += n
            add(f'conveyor_router_request_duration_seconds_bucket{{{lbl(r)},le="{bucket_upper(k):.6g}"}} {cum}')
        add(f'conveyor_router_request_duration_seconds_bucket{{{lbl(r)},le="+Inf"}} {lat["count"]}')
        add(f"conveyor_router_request_duration_seconds_sum{{{lbl(r)}}} {float(lat['sum'])}")
        add(f"conveyor_router_request_duration_seconds_count{{{lbl(r)}}} {lat['count']}")
    for name, field, kind, help_ in (
        ("instance_requests_total", "requests", "counter", "Responses per instance."),
        ("instance_5xx_total", "5xx", "counter", "5xx responses per instance."),
        ("instance_upstream_errors_total", "upstream_errors", "counter", "Upstream errors per instance."),
        ("instance_in_flight", "in_flight", "gauge", "Requests in progress per instance."),
    ):
        add(f"# HELP conveyor_router_{name} {help_}")
        add(f"# TYPE conveyor_router_{name} {kind}")
        for r in rels:
            for iid, ist in r["instances"].items():
                add(f'conveyor_router_{name}{{{lbl(r)},instance="{_label(iid)}"}} {ist[field]}')
    add("# HELP conveyor_router_unrouted_requests_total Requests matching no release, by status.")
    add("# TYPE conveyor_router_unrouted_requests_total counter")
    for code, n in (snapshot.get("unrouted") or {}).items():
        add(f'conveyor_router_unrouted_requests_total{{code="{_label(code)}"}} {n}')
    return "\n".join(out) + "\n"
