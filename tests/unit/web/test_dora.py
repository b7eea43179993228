"""DORA keys on hand-built histories with known answers (pure: no database, no clock)."""

from __future__ import annotations

import pytest

from conveyor.domain import dora
from conveyor.domain.dora import DAY, HOUR, DeployRecord, compute

T0 = 1_700_000_000.0  # the start of every period below
PERIOD = (T0, T0 + 30 * DAY)


def rec(id: int, *, at: float, kind: str = "deploy", state: str = "succeeded", release: int | None = None,
        from_release: int | None = None, sha: str | None = None, committed: float | None = None,
        took: float = 60.0, app: str = "hello") -> DeployRecord:
    return DeployRecord(id=id, app=app, kind=kind, state=state, release=release if release is not None else id,  # type: ignore[arg-type]
                        from_release=from_release, created_at=at, started_at=at, finished_at=at + took,
                        commit_sha=sha, commit_time=committed)


def test_no_deploys_gives_no_data_and_a_low_frequency() -> None:
    rep = compute([], *PERIOD)
    assert rep.deployment_frequency.value == 0.0 and rep.deployment_frequency.band == "low"
    for key in (rep.lead_time, rep.change_failure_rate, rep.time_to_restore):
        assert key.value is None and key.band is None and key.samples == 0
    assert rep.failures == []
    d = rep.to_dict()
    assert d["keys"]["lead_time"]["direction"] == "unknown"
    assert len(d["keys"]["lead_time"]["buckets"]) == 5  # 30 days in weeks: 4 full weeks and 2 days


def test_a_commit_deployed_twice_is_one_change_with_its_first_time_live() -> None:
    history = [
        rec(1, at=T0 + DAY, sha="c1", committed=T0 + DAY - 2 * HOUR, took=60),      # live 2 h 1 min after commit
        rec(2, at=T0 + 2 * DAY, sha="c2", committed=T0 + 2 * DAY - 10 * 60, took=60),  # 11 min
        rec(3, at=T0 + 5 * DAY, sha="c1", committed=T0 + DAY - 2 * HOUR, took=60),  # c1 again: not a new change
    ]
    rep = compute(history, *PERIOD)
    assert rep.lead_time.samples == 2
    assert rep.lead_time.value == pytest.approx(((2 * HOUR + 60) + (10 * 60 + 60)) / 2)
    assert rep.lead_time.band == "high"
    assert rep.deployment_frequency.samples == 3  # three deployments all the same
    assert rep.deployment_frequency.value == pytest.approx(3 / 30)
    assert rep.deployment_frequency.band == "medium"


def test_a_rollback_followed_by_a_fix() -> None:
    history = [
        rec(1, at=T0 + HOUR, release=1, sha="a", committed=T0),                               # good
        rec(2, at=T0 + 10 * HOUR, release=2, sha="b", committed=T0 + 9 * HOUR, took=60),      # bad, live at +10h1m
        rec(3, at=T0 + 10 * HOUR + 30 * 60, kind="rollback", release=1, from_release=2, took=30),  # live +10h30m30s
        rec(4, at=T0 + 12 * HOUR, release=3, sha="c", committed=T0 + 11 * HOUR),               # the fix
    ]
    rep = compute(history, *PERIOD)
    assert rep.deployment_frequency.samples == 3  # rollbacks are not deployments of a change
    assert rep.change_failure_rate.value == pytest.approx(1 / 3)
    assert rep.change_failure_rate.band == "medium"
    assert len(rep.failures) == 1
    f = rep.failures[0]
    assert f.deployment == 2 and f.how == "rolled back"
    assert f.restore_seconds == pytest.approx(30 * 60 + 30 - 60)
    assert rep.time_to_restore.value == pytest.approx(29 * 60 + 30) and rep.time_to_restore.band == "elite"


def test_automatic_rollback_and_failed_deploys_count_as_failures() -> None:
    history = [
        rec(1, at=T0 + HOUR, release=1),
        rec(2, at=T0 + 2 * HOUR, release=2, state="rolled_back", took=600),  # canary judged bad after 10 min
        rec(3, at=T0 + 3 * HOUR, release=3, state="failed", took=90),        # never became ready
        rec(4, at=T0 + 4 * HOUR, release=4, state="cancelled", took=0),      # never ran: not counted
    ]
    rep = compute(history, *PERIOD)
    assert rep.change_failure_rate.samples == 3
    assert rep.change_failure_rate.value == pytest.approx(2 / 3) and rep.change_failure_rate.band == "low"
    assert sorted(f.restore_seconds or 0 for f in rep.failures) == [90, 600]
    assert rep.time_to_restore.value == pytest.approx(345)
    assert rep.deployment_frequency.samples == 1


def test_a_failure_fixed_forward_is_restored_by_the_fix_and_an_open_one_is_not_restored() -> None:
    history = [
        rec(1, at=T0 + HOUR, release=1),
        rec(2, at=T0 + 2 * HOUR, release=2, took=60),
        rec(3, at=T0 + 3 * HOUR, release=3, took=60),  # a fix went live before the rollback of r2 was even asked
        rec(4, at=T0 + 5 * HOUR, kind="rollback", release=1, from_release=2, state="failed", took=5),
    ]
    rep = compute(history, *PERIOD)
    [f] = rep.failures
    assert f.how == "fixed by a new deploy" and f.restore_seconds == pytest.approx(HOUR)
    open_failure = compute([rec(1, at=T0 + HOUR, release=1), rec(2, at=T0 + 2 * HOUR, release=2),
                            rec(3, at=T0 + 3 * HOUR, kind="rollback", release=1, from_release=2, state="starting")],
                           *PERIOD)
    [g] = open_failure.failures
    assert g.restored_at is None and g.how == "not yet restored"
    assert open_failure.time_to_restore.value is None


def test_other_apps_and_the_previous_period_make_the_trend() -> None:
    history = [rec(i, at=T0 - 20 * DAY + i * HOUR) for i in range(1, 3)]            # previous period: 2 deploys
    history += [rec(10 + i, at=T0 + i * DAY) for i in range(1, 7)]                  # this period: 6
    history += [rec(100, at=T0 + DAY, app="other")]
    rep = compute(history, *PERIOD, app="hello")
    assert rep.deployment_frequency.samples == 6
    assert rep.deployment_frequency.previous == pytest.approx(2 / 30)
    assert rep.deployment_frequency.direction == "improving"
    assert sum(b["samples"] for b in rep.deployment_frequency.buckets) == 6
    everyone = compute(history, *PERIOD)
    assert everyone.deployment_frequency.samples == 7


@pytest.mark.parametrize(("fn", "value", "band"), [
    (dora.band_frequency, 3.0, "elite"), (dora.band_frequency, 1.0, "elite"), (dora.band_frequency, 0.5, "high"),
    (dora.band_frequency, 1 / 7, "high"), (dora.band_frequency, 0.1, "medium"), (dora.band_frequency, 0.01, "low"),
    (dora.band_lead_time, 59 * 60, "elite"), (dora.band_lead_time, HOUR, "high"), (dora.band_lead_time, 8 * DAY, "medium"),
    (dora.band_lead_time, 200 * DAY, "low"),
    (dora.band_failure_rate, 0.0, "elite"), (dora.band_failure_rate, 0.15, "elite"), (dora.band_failure_rate, 0.2, "high"),
    (dora.band_failure_rate, 0.4, "medium"), (dora.band_failure_rate, 0.5, "low"),
    (dora.band_restore, 10 * 60, "elite"), (dora.band_restore, 5 * HOUR, "high"), (dora.band_restore, 3 * DAY, "medium"),
    (dora.band_restore, 8 * DAY, "low"),
])
def test_bands(fn, value: float, band: str) -> None:  # type: ignore[no-untyped-def]
    assert fn(value) == band
    assert fn(None) is None


def test_periods() -> None:
    assert dora.parse_period("30d") == 30 * DAY
    assert dora.parse_period("24h") == DAY
    assert dora.parse_period("90m") == 90 * 60
    assert dora.parse_period("2w") == 14 * DAY
    assert dora.parse_period("7") == 7 * DAY
    for bad in ("", "soon", "0d", "-3d", "5y", "9999d"):
        with pytest.raises(ValueError, match="period"):
            dora.parse_period(bad)
    with pytest.raises(ValueError, match="end after"):
        compute([], T0, T0)


def test_describe_reads_like_a_person() -> None:
    assert dora.describe({"name": "deployment_frequency", "value": 2.5}) == "2.5 per day"
    assert dora.describe({"name": "deployment_frequency", "value": 2 / 7}) == "2.0 per week"
    assert dora.describe({"name": "change_failure_rate", "value": 0.125}) == "12 %"
    assert dora.describe({"name": "lead_time", "value": 5400}) == "1.5 h"
    assert dora.describe({"name": "time_to_restore", "value": None}) == "no data"
