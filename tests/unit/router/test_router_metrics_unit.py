"""Metrics snapshot shape, merging across workers, Prometheus text."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from conveyor.domain.histogram import Histogram
from conveyor.router.metrics import Metrics, merge_snapshots, prometheus_text


def filled(n2xx: int, n5xx: int) -> Metrics:
    m = Metrics()
    rs = m.release("hello", "production", 3)
    inst = rs.instance("hello-production-r3-ab12")
    for i in range(n2xx + n5xx):
        rs.requests += 1
        rs.status[2 if i < n2xx else 5] += 1
        rs.latency.record(0.001 * (i + 1))
        inst.requests += 1
        if i >= n2xx:
            inst.errors_5xx += 1
    rs.upstream_errors = 1
    inst.upstream_errors = 1
    m.count_unrouted(404)
    return m


def test_snapshot_shape_matches_architecture_doc() -> None:
    snap = filled(117, 2).snapshot("r-1", 12)
    assert set(snap) >= {"router", "started_at", "time", "table_version", "releases"}
    assert snap["router"] == "r-1" and snap["table_version"] == 12
    (rel,) = snap["releases"]
    assert rel["app"] == "hello" and rel["env"] == "production" and rel["release"] == 3
    assert rel["requests"] == 119 and rel["status"] == {"1xx": 0, "2xx": 117, "3xx": 0, "4xx": 0, "5xx": 2}
    assert rel["upstream_errors"] == 1 and rel["in_flight"] == 0
    assert set(rel["latency"]) == {"buckets", "count", "sum"} and rel["latency"]["count"] == 119
    assert rel["instances"] == {"hello-production-r3-ab12": {"requests": 119, "5xx": 2, "upstream_errors": 1, "in_flight": 0}}


def test_merge_adds_everything() -> None:
    a, b = filled(10, 1).snapshot("w", 5), filled(20, 3).snapshot("w", 6)
    m = merge_snapshots([a, b], "r-1")
    (rel,) = m["releases"]
    assert rel["requests"] == 34 and rel["status"]["2xx"] == 30 and rel["status"]["5xx"] == 4
    assert rel["instances"]["hello-production-r3-ab12"]["requests"] == 34
    h = Histogram.from_json(rel["latency"])
    ha, hb = Histogram.from_json(a["releases"][0]["latency"]), Histogram.from_json(b["releases"][0]["latency"])
    ha.merge(hb)
    assert h.counts == ha.counts and h.count == 34
    assert m["table_version"] == 5 and m["router"] == "r-1" and m["unrouted"] == {"404": 2}
    assert merge_snapshots([], "x")["releases"] == []


def test_prometheus_text_parses() -> None:
    text = prometheus_text(filled(5, 1).snapshot("r", 2))
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    reqs = {s.labels["code"]: s.value for s in fams["conveyor_router_requests"].samples}
    assert reqs["2xx"] == 5 and reqs["5xx"] == 1
    buckets = [s for s in fams["conveyor_router_request_duration_seconds"].samples if s.name.endswith("_bucket")]
    values = [s.value for s in buckets]
    assert values == sorted(values) and values[-1] == 6 and buckets[-1].labels["le"] == "+Inf"
    assert fams["conveyor_router_table_version"].samples[0].value == 2
    assert [s.value for s in fams["conveyor_router_instance_5xx"].samples] == [1]


def test_label_values_are_escaped() -> None:
    m = Metrics()
    m.release('we"ird\\app', "p\nrod", 1).requests = 1
    text = prometheus_text(m.snapshot("r", 1))
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    assert fams["conveyor_router_requests"].samples[0].labels["app"] == 'we"ird\\app'


def test_in_flight_is_read_from_target_outstanding() -> None:
    from conveyor.router.table import Target

    m = Metrics()
    rs = m.release("a", "e", 1)
    t1, t2 = Target("i1", "127.0.0.1:1", rs.instance("i1")), Target("i2", "127.0.0.1:2", rs.instance("i2"))
    t1.outstanding, t2.outstanding = 2, 1
    snap = m.snapshot("r", 1, [t1, t2])
    rel = snap["releases"][0]
    assert rel["in_flight"] == 3 and rel["instances"]["i1"]["in_flight"] == 2 and rel["instances"]["i2"]["in_flight"] == 1
    t1.outstanding = t2.outstanding = 0
    assert m.snapshot("r", 1, [t1, t2])["releases"][0]["in_flight"] == 0


def test_request_path_latency_slots_fold_into_the_histogram() -> None:
    """Exchange._record counts latencies in ReleaseStats.lat_fast (slot = bucket - MIN_INDEX);
    snapshots fold them into the histogram: same buckets as Histogram.record, counted once."""
    from conveyor.domain.histogram import MIN_INDEX, bucket_index

    m = Metrics()
    rs = m.release("a", "e", 1)
    ref = Histogram()
    for v in (0.0000005, 0.00042, 0.0031, 0.0031, 0.25, 7.5):
        ref.record(v)
        rs.lat_fast[bucket_index(v) - MIN_INDEX] += 1
        rs.lat_fast_sum += v
    rs.latency.record(0.5)  # recorded directly (a latency past the slots): still counted
    ref.record(0.5)
    h = Histogram.from_json(m.snapshot("r", 1)["releases"][0]["latency"])
    assert h.counts == ref.counts and h.count == 7 and abs(h.total - ref.total) < 1e-9
    assert sum(rs.lat_fast) == 0 and rs.lat_fast_sum == 0.0
    again = Histogram.from_json(m.snapshot("r", 1)["releases"][0]["latency"])
    assert again.counts == ref.counts and again.count == 7
