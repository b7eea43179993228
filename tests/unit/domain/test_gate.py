"""The deploy gate (domain/gate.py): locks, freeze windows in a time zone across DST, force."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from conveyor.domain.gate import Freeze, Lock, WindowError, gate, parse_window, rollback_lock


def utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


WEEKEND = parse_window("Fri 16:00 -> Mon 08:00", "Europe/Paris")


def test_nothing_in_the_way_allows_both_kinds() -> None:
    assert gate(0.0, [], [], automatic=True, force=False).allowed
    assert gate(0.0, [], [], automatic=False, force=False).allowed


def test_a_lock_stops_automatic_and_manual_deploys_and_force_passes_recorded() -> None:
    lock = Lock(env="production", reason="migrating the db", by="ann", since=utc("2026-12-02T10:00:00"))
    auto = gate(0.0, [lock], [], automatic=True, force=False)
    manual = gate(0.0, [lock], [], automatic=False, force=False)
    forced = gate(0.0, [lock], [], automatic=False, force=True)
    assert not auto.allowed and not manual.allowed
    assert "locked by ann since 2026-12-02 10:00 UTC: migrating the db" in manual.reason
    assert "--force" in manual.reason and "--force" not in auto.reason
    assert forced.allowed and forced.forced and "migrating the db" in forced.reason


def test_a_rollback_lock_stops_only_automatic_deploys() -> None:
    lock = Lock(env="production", reason="deployment 7 rolled back", by="conveyor", since=0.0, automatic_only=True)
    assert not gate(0.0, [lock], [], automatic=True, force=False).allowed
    decision = gate(0.0, [lock], [], automatic=False, force=False)
    assert decision.allowed and not decision.forced


def test_weekly_window_in_paris_follows_the_wall_clock_across_the_spring_change() -> None:
    # 2026-03-29: Paris goes from UTC+1 to UTC+2. Monday 30 March 08:00 Paris is 06:00 UTC.
    assert WEEKEND.active(utc("2026-03-30T05:59:00"))
    assert not WEEKEND.active(utc("2026-03-30T06:00:00"))  # with a fixed +1 it would still be 07:00: frozen
    # Friday 27 March 16:00 Paris is 15:00 UTC (still winter time)
    assert not WEEKEND.active(utc("2026-03-27T14:59:00"))
    assert WEEKEND.active(utc("2026-03-27T15:00:00"))
    # the Sunday night of the change itself is inside
    assert WEEKEND.active(utc("2026-03-29T01:30:00"))


def test_weekly_window_across_the_autumn_change() -> None:
    # 2026-10-25: Paris goes back to UTC+1. Monday 26 October 08:00 Paris is 07:00 UTC.
    assert WEEKEND.active(utc("2026-10-26T06:59:00"))
    assert not WEEKEND.active(utc("2026-10-26T07:00:00"))
    # Friday 23 October 16:00 Paris (summer time) is 14:00 UTC
    assert WEEKEND.active(utc("2026-10-23T14:00:00"))
    assert not WEEKEND.active(utc("2026-10-23T13:59:00"))


def test_a_window_starting_in_the_skipped_hour_starts_when_the_clock_passes_it() -> None:
    night = parse_window("Sun 02:30 -> Sun 04:00", "Europe/Paris")
    # 29 March 2026 Paris: 01:59 CET (00:59 UTC) then 03:00 CEST (01:00 UTC); 02:30 never shows.
    assert not night.active(utc("2026-03-29T00:59:00"))
    assert night.active(utc("2026-03-29T01:00:00"))  # 03:00 local: past 02:30
    assert not night.active(utc("2026-03-29T02:00:00"))  # 04:00 local


def test_one_off_window_in_local_time() -> None:
    xmas = parse_window("2026-12-24T00:00 -> 2027-01-02T08:00", "Europe/Paris")
    assert not xmas.active(utc("2026-12-23T22:59:00"))
    assert xmas.active(utc("2026-12-23T23:00:00"))
    assert xmas.active(utc("2027-01-02T06:59:00"))
    assert not xmas.active(utc("2027-01-02T07:00:00"))


def test_one_off_window_ending_in_the_repeated_autumn_hour_ends_at_its_first_occurrence() -> None:
    w = parse_window("2026-10-25T00:00 -> 2026-10-25T02:30", "Europe/Paris")
    assert w.active(utc("2026-10-25T00:29:00"))  # 02:29 CEST
    assert not w.active(utc("2026-10-25T00:30:00"))  # 02:30 CEST, the first 02:30


def test_an_active_freeze_gates_like_a_lock_and_an_inactive_one_does_not() -> None:
    freeze = Freeze(id=3, env="", window=WEEKEND, reason="weekend")
    saturday = utc("2026-12-05T12:00:00")
    tuesday = utc("2026-12-08T12:00:00")
    refused = gate(saturday, [], [freeze], automatic=True, force=False)
    assert not refused.allowed and "freeze #3" in refused.reason and "weekend" in refused.reason
    assert gate(tuesday, [], [freeze], automatic=True, force=False).allowed
    assert gate(saturday, [], [freeze], automatic=False, force=True).forced


@pytest.mark.parametrize(("window", "tz", "field"), [
    ("Friday afternoon", "UTC", "window:"),
    ("Fri 16:00 -> Mon 25:00", "UTC", "window:"),
    ("Fro 16:00 -> Mon 08:00", "UTC", "window:"),
    ("Fri 16:00 -> Fri 16:00", "UTC", "window:"),
    ("2026-12-24T00:00 -> 2026-12-23T00:00", "UTC", "window:"),
    ("2026-13-24T00:00 -> 2026-12-25T00:00", "UTC", "window:"),
    ("Fri 16:00 -> Mon 08:00", "Mars/Olympus", "tz:"),
])
def test_a_window_that_does_not_parse_names_the_field_and_the_form(window: str, tz: str, field: str) -> None:
    with pytest.raises(WindowError) as err:
        parse_window(window, tz)
    assert str(err.value).startswith(field)
    if "not" in window or "afternoon" in window:
        assert "DAY HH:MM -> DAY HH:MM" in str(err.value)


def test_only_an_automatic_rollback_locks() -> None:
    assert "deployment 7 was rolled back automatically (p99 too high)" in (
        rollback_lock(7, "deploy", "rolled_back", None, "p99 too high") or "")
    assert rollback_lock(7, "deploy", "rolled_back", {"action": "abort", "by": "ann"}, "aborted") is None
    assert rollback_lock(7, "deploy", "failed", None, "never ready") is None
    assert rollback_lock(7, "rollback", "rolled_back", None, "x") is None
    assert rollback_lock(7, "deploy", "succeeded", None, "") is None
