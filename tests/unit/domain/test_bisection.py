"""The deploy train's bisection policy, called directly: every culprit position in trains of 1..16
commits, good trains, build and test failures, inconclusive canaries, contradictions and bad input."""

from __future__ import annotations

import math

import pytest

from conveyor.domain import bisection as b
from conveyor.domain.bisection import Canary, Culprit, Done, Halt, Result, ShipWithout, Train, decide


def run(size: int, verdict, retries: int = 1, limit: int = 100, without=None) -> tuple[b.Action, list[int], Train]:
    """Drive :func:`decide` to its end, asking ``verdict(index, tries_so_far)`` for each tried commit. A
    :class:`ShipWithout` ends the run unless ``without(tries_so_far)`` gives the reverted try's outcome."""
    train = Train(size, (), retries)
    tried: list[int] = []
    reverted = 0
    for _ in range(limit):
        action = decide(train)
        if isinstance(action, ShipWithout) and without is not None:
            reverted += 1
            outcome, reason = without(reverted)
            train = Train(size, train.results + (Result(action.head, outcome, reason, reverted=True),), retries)
            continue
        if not isinstance(action, Canary):
            return action, tried, train
        tried.append(action.index)
        outcome, reason = verdict(action.index, tried.count(action.index))
        train = Train(size, train.results + (Result(action.index, outcome, reason),), retries)
    raise AssertionError(f"no end after {limit} actions: {train}")


def culprit_at(c: int):
    return lambda i, _n: ("fail", f"#{i} failed its canary") if i >= c else ("pass", "")


@pytest.mark.parametrize("size", range(1, 17))
def test_every_culprit_position_is_found_in_at_most_log2_canaries_after_the_batch(size: int) -> None:
    for c in range(size):
        action, tried, train = run(size, culprit_at(c))
        if c == size - 1:  # the newest commit: nothing follows it, nothing to ship without it
            assert action == Culprit(c, "fail", f"#{c} failed its canary", c - 1), (size, c, tried)
        else:
            assert action == ShipWithout(c, size - 1, "fail", f"#{c} failed its canary", c - 1), (size, c, tried)
        assert tried[0] == size - 1  # the whole batch first
        assert len(tried) - 1 <= math.ceil(math.log2(size)), (size, c, tried)
        assert len(set(tried)) == len(tried)  # no commit canaried twice
        assert b.canaries_spent(train) == len(tried)


@pytest.mark.parametrize("size", range(1, 17))
def test_a_good_batch_ships_whole_with_one_canary(size: int) -> None:
    action, tried, _ = run(size, lambda i, _n: ("pass", ""))
    assert action == Done(size - 1) and tried == [size - 1]


def test_eight_commits_with_the_bad_one_in_the_middle_take_three_bisection_canaries() -> None:
    for c in (3, 4):
        action, tried, _ = run(8, culprit_at(c))
        assert isinstance(action, ShipWithout) and action.culprit == c and action.shipped == c - 1
        assert len(tried) == 1 + 3, tried


def test_the_bisection_sequence_is_the_midpoint_each_time() -> None:
    _, tried, _ = run(8, culprit_at(4))
    assert tried == [7, 3, 5, 4]
    _, tried, _ = run(16, culprit_at(0))
    assert tried == [15, 7, 3, 1, 0]


def test_a_build_failure_of_a_midpoint_marks_that_commit_bad_without_a_canary() -> None:
    # commit 5 breaks the canary; commit 3 cannot even build (so 3 is bad too, and comes first)
    def verdict(i: int, _n: int) -> tuple[str, str]:
        if i >= 3 and i != 7 and i <= 4:
            return ("build_failed", f"build of #{i} failed")
        return culprit_at(3)(i, _n)

    action, tried, train = run(8, verdict)
    assert tried == [7, 3, 1, 2]
    assert action == ShipWithout(3, 7, "build_failed", "build of #3 failed", 2)
    assert b.canaries_spent(train) == 3  # the build failure cost no canary


def test_a_test_failure_names_the_commit_directly() -> None:
    action, tried, _ = run(2, lambda i, _n: ("test_failed", "tests failed") if i == 1 else ("pass", ""))
    assert action == Culprit(1, "test_failed", "tests failed", 0) and tried == [1, 0]


def test_a_flaky_inconclusive_verdict_is_retried_once_then_counts() -> None:
    def verdict(i: int, n: int) -> tuple[str, str]:
        if i == 3 and n == 1:
            return ("inconclusive", "too few requests")
        return culprit_at(5)(i, n)

    action, tried, _ = run(8, verdict)
    assert action == ShipWithout(5, 7, "fail", "#5 failed its canary", 4)
    assert tried == [7, 3, 3, 5, 4]


def test_a_commit_inconclusive_beyond_its_retries_halts_with_the_candidate_range() -> None:
    action, tried, _ = run(8, lambda i, n: ("inconclusive", "paused") if i == 3 else culprit_at(5)(i, n))
    assert isinstance(action, Halt)
    assert (action.low, action.high, action.shipped) == (0, 7, -1)
    assert "inconclusive 2 times" in action.reason and "#0..#7" in action.reason
    assert tried == [7, 3, 3]
    action, tried, _ = run(8, lambda i, n: ("inconclusive", "paused") if i == 3 else culprit_at(5)(i, n), retries=0)
    assert isinstance(action, Halt) and tried == [7, 3]


def test_an_inconclusive_whole_batch_halts_without_shipping() -> None:
    action, tried, _ = run(4, lambda i, n: ("inconclusive", "paused"))
    assert isinstance(action, Halt) and (action.low, action.high, action.shipped) == (0, 3, -1)
    assert tried == [3, 3]


def test_results_that_contradict_each_other_halt() -> None:
    train = Train(4, (Result(3, "fail"), Result(1, "fail"), Result(2, "pass")))
    action = decide(train)
    assert isinstance(action, Halt) and "contradict" in action.reason


def test_the_same_results_give_the_same_action() -> None:
    train = Train(8, (Result(7, "fail"), Result(3, "pass")))
    assert decide(train) == decide(train) == Canary(5)
    assert b.bounds(train) == (3, 7)


def test_nothing_tried_yet_means_the_whole_batch() -> None:
    assert decide(Train(1)) == Canary(0)
    assert decide(Train(5)) == Canary(4)


@pytest.mark.parametrize("train, message", [
    (Train(0), "at least one commit"),
    (Train(3, (Result(3, "pass"),)), "outside the train's 0..2"),
    (Train(3, (Result(-1, "pass"),)), "outside"),
    (Train(3, (Result(0, "maybe"),)), "unknown outcome 'maybe'"),  # type: ignore[arg-type]
    (Train(3, (), -1), "retries"),
])
def test_impossible_input_is_refused_saying_why(train: Train, message: str) -> None:
    with pytest.raises(b.BisectionError, match=message):
        decide(train)


@pytest.mark.parametrize("value", [0, 65, -3, 2.5, "8", True, None])
def test_max_commits_out_of_range_is_refused(value: object) -> None:
    with pytest.raises(ValueError, match="max_commits must be a whole number from 1 to 64"):
        b.check_max_commits(value)


def test_max_commits_in_range() -> None:
    assert b.check_max_commits(1) == 1 and b.check_max_commits(64) == 64


def test_new_commits_fill_the_collecting_train_then_full_trains() -> None:
    assert b.batches(5, 3, 8) == [3, 2]
    assert b.batches(20, 0, 8) == [0, 8, 8, 4]
    assert b.batches(2, 6, 8) == [2]
    assert b.batches(0, 6, 8) == [0]
    assert b.batches(3, -1, 2) == [0, 2, 1]


def test_max_commits_in_conveyor_toml_is_checked_and_env_overrides_it() -> None:
    from conveyor.domain.manifest import ManifestError, parse_manifest

    base = {"run": {"web": "python app.py"}}
    assert parse_manifest(base).environment("production").max_commits == b.DEFAULT_MAX_COMMITS
    m = parse_manifest(base | {"deploy": {"max_commits": 3}, "env": {"staging": {"max_commits": 1}}})
    assert m.environment("production").max_commits == 3 and m.environment("staging").max_commits == 1
    for bad in (0, 65, "x"):
        with pytest.raises(ManifestError, match="max_commits"):
            parse_manifest(base | {"deploy": {"max_commits": bad}})
    with pytest.raises(ManifestError, match="max_commits"):
        parse_manifest(base | {"env": {"staging": {"max_commits": 100}}})


# --- shipping the good commits after the culprit: the newest commit with the culprit reverted -----------


@pytest.mark.parametrize("size", range(1, 17))
def test_after_the_culprit_the_newest_commit_ships_without_it_at_every_position(size: int) -> None:
    for c in range(size):
        action, tried, train = run(size, culprit_at(c), without=lambda _n: ("pass", "canary passed"))
        assert isinstance(action, Culprit) and action.index == c and action.shipped == c - 1, (size, c, action)
        if c == size - 1:
            assert action.without is None and not action.rest_shipped  # nothing after it
            assert not any(r.reverted for r in train.results)
        else:
            assert action.without == Result(size - 1, "pass", "canary passed", reverted=True)
            assert action.rest_shipped
            assert b.canaries_spent(train) == len(tried) + 1  # the bisection's + the reverted head's
        assert len(tried) - 1 <= math.ceil(math.log2(size))


@pytest.mark.parametrize("size", range(2, 17))
@pytest.mark.parametrize("outcome", ["build_failed", "test_failed"])
def test_a_revert_that_conflicts_or_does_not_build_leaves_the_rest_blocked(size: int, outcome: str) -> None:
    for c in range(size - 1):
        action, _, _ = run(size, culprit_at(c), without=lambda _n: (outcome, "the revert conflicts: app.py"))
        assert isinstance(action, Culprit) and action.index == c and action.shipped == c - 1
        assert action.without is not None and action.without.outcome == outcome
        assert not action.rest_shipped
        assert action.reason == f"#{c} failed its canary"  # the culprit's own verdict, not the revert's


def test_eight_commits_the_fifth_bad_three_canaries_to_find_it_and_seven_good_shipped() -> None:
    action, tried, train = run(8, culprit_at(4), without=lambda _n: ("pass", ""))
    assert tried == [7, 3, 5, 4]  # the batch, then 3 bisection canaries
    assert isinstance(action, Culprit) and action.index == 4 and action.rest_shipped
    assert b.canaries_spent(train) == 5  # + the reverted head's canary
    shipped = [i for i in range(8) if i <= action.shipped or (action.rest_shipped and i > action.index)]
    assert shipped == [0, 1, 2, 3, 5, 6, 7]


def test_a_failing_canary_of_the_reverted_head_halts_with_the_prefix_live() -> None:
    action, _, _ = run(8, culprit_at(4), without=lambda _n: ("fail", "error rate 12 % > 5 %"))
    assert isinstance(action, Halt) and (action.low, action.high, action.shipped) == (4, 4, 3)
    assert "failed its canary too" in action.reason and "error rate 12 %" in action.reason


def test_an_inconclusive_reverted_head_is_retried_once_then_halts() -> None:
    once = run(8, culprit_at(2), without=lambda n: ("inconclusive", "paused") if n == 1 else ("pass", ""))[0]
    assert isinstance(once, Culprit) and once.rest_shipped
    always = run(8, culprit_at(2), without=lambda _n: ("inconclusive", "paused"))[0]
    assert isinstance(always, Halt) and "inconclusive 2 times" in always.reason and always.shipped == 1


def test_the_reverted_try_takes_no_part_in_the_bisection() -> None:
    # a passing reverted head is not "a pass above a fail": no contradiction
    results = (Result(3, "fail", "x"), Result(1, "pass"), Result(2, "fail", "y"), Result(3, "pass", reverted=True))
    assert b.bounds(Train(4, results)) == (1, 2)
    assert decide(Train(4, results)) == Culprit(2, "fail", "y", 1, Result(3, "pass", reverted=True))


def test_a_reverted_try_without_a_culprit_is_refused() -> None:
    with pytest.raises(b.BisectionError, match="reverted try"):
        decide(Train(3, (Result(2, "pass", reverted=True),)))
