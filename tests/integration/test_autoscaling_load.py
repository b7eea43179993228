"""Autoscaling with real processes through the router (issue 13): a bounded load ramp up and down.

The app answers every request after 100 ms (``extra_latency_ms``), so its load in flight is
requests/s × 0.1 s: 60 requests/s hold 6 in flight, which at a target of 2 per instance
wants 3 instances; 8 requests/s want 1 again. Every request of both phases is counted,
transport errors too: scaling down drains, so none fails.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from cvy_platform import Platform, Traffic, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOML = """[app]
name = "elastic"

[run]
web = "python app.py"

[health]
path = "/healthz"
timeout = "2s"

[env.production]
instances = 1
drain_timeout = "2s"
"""


def _ready(p: Platform) -> int:
    return sum(1 for i in p.cli_json("ps", "elastic") if i["state"] == "ready" and i["process"] == "web")


def _auto(p: Platform) -> dict:  # type: ignore[type-arg]
    [a] = p.cli_json("autoscale", "elastic")["autoscalers"]
    return a  # type: ignore[no-any-return]


def test_autoscaling_follows_a_load_ramp_up_and_down_without_a_failed_request(
        platform_factory: Callable[[], Platform]) -> None:
    p = platform_factory()
    p.start()
    p.cli("apps", "create", "elastic", check=True)
    dep = p.deploy("elastic", p.app_copy("elastic", "v1", conveyor__toml=TOML,
                                         behaviour__json=json.dumps({"extra_latency_ms": 100})))
    assert dep["state"] == "succeeded", dep

    bad = p.cli("autoscale", "elastic", "--min", "5", "--max", "2", "--target-inflight", "2")
    assert bad.returncode == 2 and "--min 5 is above --max 2" in bad.stderr, bad.stderr
    bad = p.cli("autoscale", "elastic", "--min", "1", "--max", "2", "--target-inflight", "0")
    assert bad.returncode == 2 and "target" in bad.stderr, bad.stderr
    assert p.cli_json("autoscale", "elastic")["autoscalers"] == []  # nothing was stored

    on = p.cli_json("autoscale", "elastic", "--min", "1", "--max", "4", "--target-inflight", "2", "--window", "3s",
                    "--up-period", "2s", "--down-window", "8s", "--down-period", "2s")
    assert on["autoscalers"][0]["policy"]["max"] == 4
    refused = p.cli("scale", "elastic", "web=2")
    assert refused.returncode == 4 and "is autoscaled" in refused.stderr, refused.stderr

    with Traffic(p, "elastic", rate=60, threads=12, max_s=90) as up:
        wait_for(lambda: _ready(p) >= 3, 60, 0.5, "3 ready instances under 60 requests/s (6 in flight, target 2)")
    peak = _auto(p)
    assert 3 <= peak["count"] <= 4, peak
    events = [e for e in p.api.get("/events", params={"app": "elastic"}).json() if e["kind"] == "autoscaled"]
    assert events and "in flight per instance vs target 2" in events[-1]["message"], events
    assert up.failures() == [], up.failures()[:5]

    with Traffic(p, "elastic", rate=8, threads=2, max_s=90) as down:
        wait_for(lambda: _auto(p)["count"] == 1 and _ready(p) == 1, 75, 0.5, "back to 1 instance at 8 requests/s")
    assert down.failures() == [], down.failures()[:5]
    assert down.count() >= 40
    shown = p.cli("autoscale", "elastic", check=True).stdout
    assert "1..4" in shown and "in flight" in shown
    assert all(1 <= e["data"]["desired"] <= 4 for e in p.api.get("/events", params={"app": "elastic"}).json()
               if e["kind"] == "autoscaled")
    off = p.cli_json("autoscale", "elastic", "--off")
    assert off["autoscalers"] == []
    assert p.cli("scale", "elastic", "web=2").returncode == 0
