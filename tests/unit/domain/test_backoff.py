"""The one retry policy: doubling from ``initial`` up to ``cap``, optionally jittered downwards."""

from __future__ import annotations

from conveyor.domain.backoff import Backoff


def test_doubles_from_initial_up_to_the_cap() -> None:
    b = Backoff(0.1, 1.0)
    assert [b.delay(n) for n in range(1, 7)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert b.delay(0) == 0.1 and b.delay(10**9) == 1.0  # no overflow on a long outage


def test_jitter_draws_between_the_fraction_and_the_full_delay() -> None:
    b = Backoff(1.0, 30.0, jitter=0.5)
    assert b.delay(3, rand=lambda: 0.0) == 4.0
    assert b.delay(3, rand=lambda: 1.0) == 2.0
    assert b.delay(3, rand=lambda: 0.5) == 3.0
    assert b.delay(10, rand=lambda: 1.0) == 15.0  # the cap is jittered too: a herd at the cap spreads out


def test_no_jitter_ignores_the_random_source() -> None:
    assert Backoff(0.5, 30.0).delay(2, rand=lambda: 1.0) == 1.0


def test_the_callers_schedules_are_unchanged_without_jitter() -> None:
    from conveyor.agent import policy
    from conveyor.cli.up import CHILD_RESTART

    assert [CHILD_RESTART.delay(n) for n in range(1, 8)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert policy.control_plane_backoff(5.0).delay(1, rand=lambda: 0.0) == 0.1
    assert policy.control_plane_backoff(5.0).delay(20, rand=lambda: 0.0) == 5.0
