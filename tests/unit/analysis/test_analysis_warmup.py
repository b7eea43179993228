"""Warm-up: a canary step's first seconds are left out of the comparison, but a hard failure in them still fails.

The pure parts (when the warm-up ends, the guard, the combined verdict) are called directly; the
bridge (``deploy/analysis_source.verdict_for``) is run on an SQLite store holding the per-second
points the scraper would have written, so the test covers where the warm-up is actually applied.
"""

from __future__ import annotations

import math

from sqlalchemy import create_engine, select

from conveyor.analysis import AnalysisConfig, Interval, Outcome, parse_analysis_config
from conveyor.analysis.warmup import GUARD_MIN_REQUESTS, evaluate_with_warmup, guard, warmup_end
from conveyor.deploy.analysis_source import verdict_for
from conveyor.domain import deploy_machine as dm
from conveyor.domain.histogram import Histogram, bucket_index
from conveyor.store import series
from conveyor.store.tables import metadata, verdicts

T0 = 1_000.0


def _side(seconds: range, rps: int, errors: int, latency_s: float) -> list[Interval]:
    return [Interval(T0 + s, rps, errors, Histogram({bucket_index(latency_s): rps})) for s in seconds]


def test_default_warm_up_is_ten_seconds_or_a_quarter_of_a_short_step() -> None:
    cfg = AnalysisConfig()
    assert warmup_end(cfg, [], since=T0, step_duration_s=120) == T0 + 10
    assert warmup_end(cfg, [], since=T0, step_duration_s=4) == T0 + 1
    assert warmup_end(parse_analysis_config({"warmup": "3s"}), [], since=T0, step_duration_s=120) == T0 + 3


def test_a_request_count_can_lengthen_the_warm_up() -> None:
    cfg = parse_analysis_config({"warmup": "2s", "warmup_requests": 100})
    canary = _side(range(60), 10, 0, 0.02)  # 100 requests reached in second 9
    assert warmup_end(cfg, canary, since=T0, step_duration_s=60) == T0 + 10
    # Never past the step's end, even when the count is never reached.
    assert warmup_end(cfg, canary[:3], since=T0, step_duration_s=60) == T0 + 60


def test_cold_first_seconds_are_not_compared() -> None:
    # A fresh canary: its first 5 s at 8 ms, then 2 ms like the warm baseline (effect +6 ms > 5 ms floor).
    canary = _side(range(5), 50, 0, 0.008) + _side(range(5, 60), 50, 0, 0.002)
    baseline = _side(range(60), 50, 0, 0.002)
    no_warmup = parse_analysis_config({"judges": ["sequential"], "warmup": 0})
    v = evaluate_with_warmup(no_warmup, canary, baseline, since=T0, step_elapsed_s=60, step_duration_s=60)
    assert v.outcome == Outcome.FAIL and "p50 latency" in v.reason, v.reason  # what users saw: a false rollback
    cfg = parse_analysis_config({"judges": ["sequential"]})  # default warm-up: 10 s of a 60 s step (capped)
    v = evaluate_with_warmup(cfg, canary, baseline, since=T0, step_elapsed_s=60, step_duration_s=60)
    assert v.outcome == Outcome.PASS, v.reason
    assert v.numbers["warmup_s"] == 10 and v.numbers["warmup_canary_requests"] == 500
    assert v.numbers["canary_requests"] == 50 * 50


def test_during_the_warm_up_the_verdict_says_so_and_continues() -> None:
    cfg = parse_analysis_config({"judges": ["sequential"]})
    canary = _side(range(4), 50, 0, 0.008)
    v = evaluate_with_warmup(cfg, canary, _side(range(4), 50, 0, 0.002), since=T0, step_elapsed_s=4, step_duration_s=60)
    assert v.outcome == Outcome.CONTINUE and v.reason.startswith("Warming up for 10 s"), v.reason


def test_a_release_failing_hard_during_the_warm_up_fails_at_once() -> None:
    cfg = AnalysisConfig()
    canary = _side(range(3), 10, 8, 0.002)  # 80 % errors, 30 requests, 3 s into a 10 s warm-up
    baseline = _side(range(3), 10, 0, 0.002)
    v = evaluate_with_warmup(cfg, canary, baseline, since=T0, step_elapsed_s=3, step_duration_s=60)
    assert v.outcome == Outcome.FAIL and v.reason.startswith("Failed by warmup: Failing hard during the warm-up"), v.reason
    assert "80.00% (24/30)" in v.reason


def test_the_guard_needs_enough_requests_and_a_rate_well_above_the_baseline() -> None:
    cfg = AnalysisConfig()
    few = _side(range(1), GUARD_MIN_REQUESTS - 1, GUARD_MIN_REQUESTS - 1, 0.002)
    assert guard(cfg, few, []).outcome == Outcome.CONTINUE
    enough = _side(range(1), GUARD_MIN_REQUESTS, GUARD_MIN_REQUESTS // 2, 0.002)  # exactly 50 %
    assert guard(cfg, enough, []).outcome == Outcome.FAIL
    # An incident failing both sides is not the canary's fault.
    assert guard(cfg, enough, _side(range(1), 20, 6, 0.002)).outcome == Outcome.CONTINUE
    # Below the configured share: continue.
    assert guard(parse_analysis_config({"warmup_max_error_rate": 0.6}), enough, []).outcome == Outcome.CONTINUE


# --- the bridge: verdict_for on stored points -------------------------------------------------


def _store(canary: list[Interval], baseline: list[Interval]):  # type: ignore[no-untyped-def]
    engine = create_engine("sqlite://")
    metadata.create_all(engine)
    conn = engine.connect()
    for release, side in ((2, canary), (1, baseline)):
        for i in side:
            series.add_point(conn, 1, release, 1, i.t, i.requests, i.errors, i.latency)
    return conn


def _deployment(analysis: dict[str, object], state: str = "canary") -> dm.Deployment:
    progress = {"phase": "step", "step": 0, "step_started": T0, "steps": 1}
    if state == "paused":
        progress["paused_at"] = T0
    return dm.Deployment(
        id=7, kind="deploy", strategy="canary", state=state, from_release=1, to_release=2,
        params={"steps": [{"weight": 10, "for": 60.0}], "analysis": analysis}, progress=progress, created_at=T0 - 5,
    )


def test_the_bridge_leaves_the_warm_up_out_of_canary_steps() -> None:
    canary = _side(range(5), 50, 0, 0.008) + _side(range(5, 60), 50, 0, 0.002)
    baseline = _side(range(60), 50, 0, 0.002)
    conn = _store(canary, baseline)
    got = verdict_for(conn, 1, _deployment({"judges": ["sequential"]}), T0 + 60)
    assert got is not None and got["outcome"] == "pass", got
    assert got["numbers"]["warmup_s"] == 10
    got = verdict_for(conn, 1, _deployment({"judges": ["sequential"], "warmup": 0}), T0 + 60)
    assert got is not None and got["outcome"] == "fail", got
    # A paused canary is warm: no warm-up there.
    got = verdict_for(conn, 1, _deployment({"judges": ["sequential"]}, state="paused"), T0 + 60)
    assert got is not None and got["outcome"] == "fail" and "warmup_s" not in got["numbers"], got
    stored = conn.execute(select(verdicts.c.outcome)).scalars().all()
    assert stored == ["pass", "fail", "fail"]


def test_the_bridge_fails_a_release_broken_from_its_first_second() -> None:
    conn = _store(_side(range(3), 20, 18, 0.002), _side(range(3), 20, 0, 0.002))
    got = verdict_for(conn, 1, _deployment({}), T0 + 3)
    assert got is not None and got["outcome"] == "fail" and "warm-up" in got["reason"], got
    assert math.isclose(got["numbers"]["warmup.canary_error_rate"], 0.9)
