"""DORA keys on one scripted day, each answer worked out by hand (issue 17, item 8).

The day (seconds after T0; commits c1 at 0, c2 at 1000, c3 at 5000, c4 at 9000):

  #1 deploy r1  bluegreen  c1  started 600, switched (live_at) 630, finished 630   succeeded
  #2 deploy r2  canary     c2  started 2000 (first step: traffic), its bake ended by
                               the manual rollback at 2400                         succeeded
  #3 rollback r2 → r1          created 2399.9, started 2400, finished 2400.5      succeeded
  #4 deploy r3  bluegreen  c3  started 5990, switched 6000, judged bad, all
                               traffic back on r1 at 6000.48                       rolled_back
  #5 deploy r4  rolling    c4  started 10000, finished 10060                       succeeded
  #6 deploy r5  bluegreen  c4  started 12000, never ready, finished 12090          failed

By hand:
* frequency: #1, #2, #5 went live → 3 per day (elite).
* lead time: c1 630 − 0 = 630; c2 2400 − 1000 = 1400; c4 10060 − 9000 = 1060 (c3 never
  went live) → median 1060 s = "18 min" (elite).
* change failure rate: 5 finished deploys (#1 #2 #4 #5 #6), 3 failed (#2 rolled back by
  hand, #4 automatically, #6 failed) → 60 % (low).
* time to restore: #2 from its first traffic (2000) to r1 having it all back (2400.5) =
  400.5 s — not 0.5 s, which is what counting from #2's end (the rollback's start) gave;
  #4 6000.48 − 6000 = 0.48 s, printed "0.5 s", not "0 s"; #6 12090 − 12000 = 90 s →
  median 90 s = "2 min" (elite).
"""

from __future__ import annotations

import pytest

from conveyor.services.metrics import traffic_at
from conveyor.domain import dora
from conveyor.domain.dora import DAY, DeployRecord, compute

T0 = 1_700_000_000.0
COMMITS = {"c1": T0, "c2": T0 + 1000, "c3": T0 + 5000, "c4": T0 + 9000}


def rec(id: int, kind: str, strategy: str, state: str, release: int, started: float, finished: float,
        live_at: float | None = None, sha: str | None = None, from_release: int | None = None,
        created: float | None = None) -> DeployRecord:
    """A record as services/metrics.load_history builds it from the deployment and release rows."""
    s, f = T0 + started, T0 + finished
    live = T0 + live_at if live_at is not None else None
    return DeployRecord(
        id=id, app="hello", kind=kind, state=state, release=release, from_release=from_release,  # type: ignore[arg-type]
        created_at=T0 + (created if created is not None else started), started_at=s, finished_at=f,
        commit_sha=sha, commit_time=COMMITS.get(sha or ""), traffic_at=traffic_at(kind, strategy, s, f, live),
    )


HISTORY = [
    rec(1, "deploy", "bluegreen", "succeeded", 1, 600, 630, live_at=630, sha="c1"),
    rec(2, "deploy", "canary", "succeeded", 2, 2000, 2400, live_at=2200, sha="c2", from_release=1),
    rec(3, "rollback", "bluegreen", "succeeded", 1, 2400, 2400.5, live_at=2400.5, from_release=2, created=2399.9),
    rec(4, "deploy", "bluegreen", "rolled_back", 3, 5990, 6000.48, live_at=6000, sha="c3", from_release=1),
    rec(5, "deploy", "rolling", "succeeded", 4, 10000, 10060, live_at=10060, sha="c4", from_release=1),
    rec(6, "deploy", "bluegreen", "failed", 5, 12000, 12090, sha="c4", from_release=4),
]


@pytest.fixture
def report() -> dict:  # type: ignore[type-arg]
    return compute(HISTORY, T0, T0 + DAY, app="hello").to_dict()


def test_deployment_frequency(report: dict) -> None:  # type: ignore[type-arg]
    key = report["keys"]["deployment_frequency"]
    assert key["value"] == pytest.approx(3.0) and key["samples"] == 3 and key["band"] == "elite"


def test_lead_time(report: dict) -> None:  # type: ignore[type-arg]
    key = report["keys"]["lead_time"]
    assert key["value"] == pytest.approx(1060) and key["samples"] == 3 and key["band"] == "elite"
    assert dora.describe(key) == "18 min"


def test_change_failure_rate(report: dict) -> None:  # type: ignore[type-arg]
    key = report["keys"]["change_failure_rate"]
    assert key["value"] == pytest.approx(0.6) and key["samples"] == 5 and key["band"] == "low"
    assert dora.describe(key) == "60 %"


def test_time_to_restore(report: dict) -> None:  # type: ignore[type-arg]
    by_id = {f["deployment"]: f for f in report["failures"]}
    assert set(by_id) == {2, 4, 6}
    assert by_id[2]["restore_seconds"] == pytest.approx(400.5) and by_id[2]["how"] == "rolled back"
    assert by_id[4]["restore_seconds"] == pytest.approx(0.48) and by_id[4]["how"] == "rolled back automatically"
    assert by_id[6]["restore_seconds"] == pytest.approx(90) and by_id[6]["how"] == "failed before going live"
    key = report["keys"]["time_to_restore"]
    assert key["value"] == pytest.approx(90) and key["samples"] == 3 and key["band"] == "elite"
    assert dora.describe(key) == "2 min"
    assert dora.describe({"name": "time_to_restore", "value": 0.48}) == "0.5 s"
    assert dora.describe({"name": "time_to_restore", "value": 0.01}) == "10 ms"


def test_traffic_at_from_the_rows() -> None:
    assert traffic_at("deploy", "canary", 10.0, 50.0, 40.0) == 10.0  # first step routes at once
    assert traffic_at("deploy", "bluegreen", 10.0, 50.0, 40.0) == 40.0  # the switch
    assert traffic_at("deploy", "bluegreen", 10.0, 50.0, 90.0) is None  # live_at overwritten by a later return
    assert traffic_at("rollback", "bluegreen", 10.0, 50.0, 40.0) is None
    assert traffic_at("deploy", "bluegreen", None, None, None) is None
