"""Metrics are the ground truth: counts equal what the client sent, in JSON and Prometheus text."""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable

import pytest
from prometheus_client.parser import text_string_to_metric_families
from router_helpers import Backend, Router, http_get, make_table, wait_until

from conveyor.domain.histogram import Histogram

pytestmark = pytest.mark.integration


def test_counts_match_what_the_client_sent(backend: Callable[..., Backend], router: Callable[..., Router]) -> None:
    b1, b2 = backend("b1"), backend("b2")
    r = router(make_table(1, [(1, 100, [b1, b2])]))
    sent = {"200": 37, "404": 5, "500": 11, "302": 3}
    c = http.client.HTTPConnection("127.0.0.1", r.port, timeout=10)
    for code, n in sent.items():
        for _ in range(n):
            c.request("GET", f"/status?code={code}", headers={"Host": "hello.localhost"})
            resp = c.getresponse()
            resp.read()
            assert resp.status == int(code)
    c.close()
    for _ in range(4):
        assert http_get(r.port, "/", host="unknown.example")[0] == 404
    snap = r.metrics()
    assert snap["router"] == "r-test" and snap["table_version"] == 1
    assert snap["time"] >= snap["started_at"] > 0
    (rel,) = snap["releases"]
    assert rel["app"] == "hello" and rel["env"] == "production" and rel["release"] == 1
    assert rel["requests"] == 56
    assert rel["status"] == {"1xx": 0, "2xx": 37, "3xx": 3, "4xx": 5, "5xx": 11}
    assert rel["upstream_errors"] == 0 and rel["in_flight"] == 0
    hist = Histogram.from_json(rel["latency"])
    assert hist.count == 56 and 0 < hist.total < 56 * 5
    inst = rel["instances"]
    assert set(inst) == {"b1", "b2"}
    assert inst["b1"]["requests"] + inst["b2"]["requests"] == 56
    assert inst["b1"]["5xx"] + inst["b2"]["5xx"] == 11
    assert snap["unrouted"] == {"404": 4}
    # Cumulative: a second scrape only grows.
    assert http_get(r.port, "/")[0] == 200
    wait_until(lambda: r.release_metrics(1)["requests"] == 57, what="cumulative count")

    status, headers, text = http_get(r.admin_port, "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
    fams = {f.name: f for f in text_string_to_metric_families(text.decode())}
    reqs = {s.labels["code"]: s.value for s in fams["conveyor_router_requests"].samples if s.labels["release"] == "1"}
    assert reqs == {"1xx": 0, "2xx": 38, "3xx": 3, "4xx": 5, "5xx": 11}
    hsamples = fams["conveyor_router_request_duration_seconds"].samples
    count = [s.value for s in hsamples if s.name.endswith("_count")][0]
    inf = [s.value for s in hsamples if s.labels.get("le") == "+Inf"][0]
    assert count == inf == 57
    assert json.loads(http_get(r.admin_port, "/healthz")[2])["ok"] is True
    assert http_get(r.admin_port, "/nope")[0] == 404


def test_metrics_off_records_nothing(backend: Callable[..., Backend], router: Callable[..., Router]) -> None:
    r = router(make_table(1, [(1, 100, [backend("b1")])]), "--no-metrics")
    for _ in range(5):
        assert http_get(r.port, "/")[0] == 200
    assert r.metrics()["releases"] == []
