"""A step's verdict waits for the metrics of its last second (found by the real-process benchmark).

On a loaded machine the scraper can fall seconds behind (a router's admin endpoint
answers late, a scrape times out and the next one covers the gap). A canary step
judged the moment its clock ran out then saw a fraction of its traffic: "Not
enough traffic: the canary served 14 requests in 10 s" while the clients had
sent it ~300, and a healthy canary paused. The orchestrator now holds a step's
concluding verdict until a metric point at or after the step's end is stored, for
at most ``METRICS_GRACE`` seconds. Real orchestrator, real SQLite and PostgreSQL;
the judge is injected and records when it is asked.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, insert

from conveyor.deploy.notify import Notifier
from conveyor.deploy.orchestrator import METRICS_GRACE, Orchestrator, metrics_pending
from conveyor.domain import deploy_machine as dm
from conveyor.domain.histogram import Histogram
from conveyor.store.tables import metric_points

from store_world import Clock
from test_judge_errors import _canary, _row, engine, postgres_url  # noqa: F401  (fixtures)

pytestmark = pytest.mark.integration




def test_metrics_pending_is_pure_and_bounded() -> None:
    assert not metrics_pending(100.0, None, 99.9)  # the step is not over: judge as usual (a fail acts at once)
    assert metrics_pending(100.0, None, 100.0)  # over, nothing stored since
    assert metrics_pending(100.0, 99.0, 103.0)  # the newest point is from before the end
    assert not metrics_pending(100.0, 100.0, 100.5)  # a scrape after the end is stored
    assert not metrics_pending(100.0, 99.0, 100.0 + METRICS_GRACE)  # waited long enough (no traffic at all)


def _point(engine: Engine, env_id: int, release: int, t: float) -> None:
    h = Histogram()
    h.record(0.001)
    with engine.begin() as conn:
        conn.execute(insert(metric_points).values(env_id=env_id, release=release, resolution=1, t=t, requests=1,
                                                  errors=0, latency=h.to_json()))


def test_a_steps_verdict_waits_for_its_last_seconds_metrics(engine: Engine) -> None:
    clock = Clock(1_900_000_000.0)
    dep_id = _canary(engine, "late", clock.t)  # step 1 of 30 s started 1 s ago
    env_id = _row(engine, dep_id)["env_id"]
    asked: list[float] = []

    def judge(conn: Any, env: int, dep: dm.Deployment, now: float) -> dict[str, Any]:
        asked.append(now)
        over = now >= float(dep.progress["step_started"]) + 30.0
        return {"outcome": "pass" if over else "continue", "reason": "r", "numbers": {}}

    orch = Orchestrator(engine, Notifier(), clock=clock, verdicts=judge)
    _point(engine, env_id, 2, clock.t - 1)
    orch.tick()
    assert len(asked) == 1  # during the step the judge runs on every pass
    end = clock.t - 1 + 30.0
    clock.t = end + 2.0  # the step is over, but the scraper is behind: its newest point is from long ago
    orch.tick()
    assert len(asked) == 1 and _row(engine, dep_id)["progress"]["step"] == 0
    _point(engine, env_id, 1, float(int(end) + 1))  # a scrape after the end lands
    orch.tick()
    assert len(asked) == 2 and _row(engine, dep_id)["progress"]["step"] == 1  # judged, passed, next step


def test_with_no_metrics_at_all_the_verdict_waits_only_the_grace(engine: Engine) -> None:
    clock = Clock(1_900_000_000.0)
    dep_id = _canary(engine, "quiet", clock.t)
    calls: list[float] = []

    def judge(conn: Any, env: int, dep: dm.Deployment, now: float) -> dict[str, Any]:
        calls.append(now)
        return {"outcome": "inconclusive", "reason": "Not enough traffic", "numbers": {}}

    orch = Orchestrator(engine, Notifier(), clock=clock, verdicts=judge)
    clock.t += 29.0 + METRICS_GRACE - 0.5  # over, within the grace
    orch.tick()
    assert calls == [] and _row(engine, dep_id)["state"] == "canary"
    clock.t += 1.0  # the grace is over: judged on what there is
    orch.tick()
    assert len(calls) == 1 and _row(engine, dep_id)["state"] == "paused"
