"""Deploy trains: which commit of a batch to try next, and when the culprit is known.

A train is an ordered batch of commits (oldest first) on one line of history, so
commit ``i``'s image contains every commit ``0..i``: a canary of commit ``i`` that
passes proves the prefix ``0..i`` good, one that fails (or a build or test failure
of commit ``i``) proves the first bad commit is at ``i`` or before it. The train
first tries its newest commit (the whole batch); when that fails, it bisects the
candidates between the last known-good index and the first known-bad one,
always trying the midpoint, so a culprit among ``n`` candidates costs at most
``ceil(log2(n))`` more canaries.

:func:`decide` is the whole policy: data in (the train's size and the results so
far), one action out. It does no I/O; the train runner (``services/train_runner.py``)
reads the results from SQL, calls it and applies the action, so a runner killed at
any line recomputes the same action on its next pass.

Shipping is part of trying: a bisection canary is a normal canary deployment,
and a passing canary is promoted by the orchestrator like any other. The last
passing canary is therefore the good prefix, already live when the culprit is
named; :class:`Culprit` and :class:`Done` say up to which commit that is.

The good commits *after* the culprit contain it, so once it is named (and it is
not the newest commit) the train tries one more image: its newest commit with the
culprit's change reverted (:class:`ShipWithout`), built, tested and canaried like
any try. That try's result is marked ``reverted`` and takes no part in the
bisection. It passes: every good commit is live and the culprit is not. Its
build or tests fail (the revert conflicts with later commits, or the tree does
not build without the culprit): the later commits stay blocked, as before. Its
canary fails: the train halts, the good prefix stays live.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

#: How one try of a commit ended. ``build_failed`` / ``test_failed``: its image could not be built or
#: failed its tests (no canary was spent); ``inconclusive``: the canary's verdict was neither (paused,
#: cancelled, too little traffic), so the commit may be tried again.
Outcome = Literal["pass", "fail", "build_failed", "test_failed", "inconclusive"]
OUTCOMES: tuple[Outcome, ...] = ("pass", "fail", "build_failed", "test_failed", "inconclusive")
BAD: frozenset[str] = frozenset({"fail", "build_failed", "test_failed"})
#: Outcomes that cost a canary deployment (a build or test failure does not).
CANARIED: frozenset[str] = frozenset({"pass", "fail", "inconclusive"})

#: Bounds of ``[deploy] max_commits`` (commits per train).
MIN_COMMITS, MAX_COMMITS, DEFAULT_MAX_COMMITS = 1, 64, 8


class BisectionError(ValueError):
    """The caller handed :func:`decide` results that cannot belong to the train (an index out of range,
    an unknown outcome): a bug in the caller, not a verdict."""


@dataclass(frozen=True)
class Result:
    """One try of the commit at ``index`` (0 = the train's oldest commit)."""

    index: int
    outcome: Outcome
    reason: str = ""
    reverted: bool = False  # a try of the newest commit with the culprit's change reverted (ShipWithout)


@dataclass(frozen=True)
class Train:
    """What :func:`decide` needs: how many commits, every try so far (in the order they ended), and how
    many inconclusive tries of one commit are retried before the train gives up."""

    size: int
    results: tuple[Result, ...] = ()
    retries: int = 1


@dataclass(frozen=True)
class Canary:
    """Build commit ``index`` and canary its image (a normal canary deployment)."""

    index: int


@dataclass(frozen=True)
class Done:
    """Every commit is good: the train is live up to ``shipped`` (its newest commit)."""

    shipped: int


@dataclass(frozen=True)
class ShipWithout:
    """Commit ``culprit`` is the first bad one and newer commits follow it: build commit ``head`` (the
    newest) with the culprit's change reverted and canary that image, so the good commits after the
    culprit ship without it. The culprit's own try said ``outcome``, ``reason``; ``0..shipped`` are live."""

    culprit: int
    head: int
    outcome: Outcome
    reason: str
    shipped: int


@dataclass(frozen=True)
class Culprit:
    """Commit ``index`` is the first bad one (``outcome``, ``reason``: its own try). Commits ``0..shipped``
    are good and live (``shipped`` = -1: none of the train's). ``without`` is the try of the newest commit
    with the culprit reverted (None: the culprit is the newest commit, nothing follows it): when it passed,
    every commit but the culprit is live; when its build or tests failed (a revert that conflicts with later
    commits), the commits after the culprit stay blocked."""

    index: int
    outcome: Outcome
    reason: str
    shipped: int
    without: Result | None = None

    @property
    def rest_shipped(self) -> bool:
        """The commits after the culprit are live (through the reverted image)."""
        return self.without is not None and self.without.outcome == "pass"


@dataclass(frozen=True)
class Halt:
    """No answer: the first bad commit is somewhere in ``low..high`` (indexes) but ``reason`` stops the
    bisection (a commit stayed inconclusive, or the results contradict each other). Commits ``0..shipped``
    are live."""

    low: int
    high: int
    reason: str
    shipped: int


Action = Canary | ShipWithout | Done | Culprit | Halt


def bounds(train: Train) -> tuple[int, int | None]:
    """(last known-good index or -1, first known-bad index or None) from the decisive bisection results
    (the reverted tries are not commits of the line: they take no part)."""
    results = [r for r in train.results if not r.reverted]
    bad = min((r.index for r in results if r.outcome in BAD), default=None)
    good = max((r.index for r in results if r.outcome == "pass" and (bad is None or r.index < bad)), default=-1)
    return good, bad


def _check(train: Train) -> None:
    if train.size < 1:
        raise BisectionError(f"a train has at least one commit, not {train.size}")
    if train.retries < 0:
        raise BisectionError(f"retries must be 0 or more, not {train.retries}")
    for r in train.results:
        if not 0 <= r.index < train.size:
            raise BisectionError(f"result for commit index {r.index} outside the train's 0..{train.size - 1}")
        if r.outcome not in OUTCOMES:
            raise BisectionError(f"unknown outcome {r.outcome!r} for commit index {r.index}: use one of {OUTCOMES}")


def decide(train: Train) -> Action:
    """The next action of a train given every result so far (pure; the same input, the same action)."""
    _check(train)
    found = _bisect(train)
    if not isinstance(found, Culprit) or found.index == train.size - 1:
        if any(r.reverted for r in train.results):
            raise BisectionError("a reverted try without a culprit followed by newer commits: a bug in the caller")
        return found
    head = train.size - 1
    tries = [r for r in train.results if r.reverted]
    decisive = next((r for r in tries if r.outcome != "inconclusive"), None)
    if decisive is None:
        if len(tries) > train.retries:
            return Halt(found.index, found.index,
                        f"commit #{found.index} is the culprit ({found.reason}), but the canary of commit #{head} with "
                        f"it reverted was inconclusive {len(tries)} times ({tries[-1].reason or 'no reason given'}): "
                        f"the commits after it stay blocked", found.shipped)
        return ShipWithout(found.index, head, found.outcome, found.reason, found.shipped)
    if decisive.outcome == "fail":
        return Halt(found.index, found.index,
                    f"commit #{found.index} is the culprit ({found.reason}), but commit #{head} with it reverted "
                    f"failed its canary too ({decisive.reason}): the commits after it stay blocked", found.shipped)
    return Culprit(found.index, found.outcome, found.reason, found.shipped, decisive)


def _bisect(train: Train) -> Action:
    """The bisection alone (the reverted tries left out)."""
    good, bad = bounds(train)
    contradicted = [r for r in train.results
                    if not r.reverted and r.outcome == "pass" and bad is not None and r.index >= bad]
    if contradicted:
        return Halt(good + 1, bad if bad is not None else train.size - 1,
                    f"commit #{contradicted[0].index} passed after commit #{bad} failed: the results contradict "
                    "each other (a flaky canary?); canary a fix or deploy by hand", good)
    if bad is None:
        if good == train.size - 1:
            return Done(good)
        probe = train.size - 1  # the whole batch first
    elif bad == good + 1:
        own = [r for r in train.results if not r.reverted and r.index == bad and r.outcome in BAD]
        first = own[0]
        return Culprit(bad, first.outcome, first.reason, good)
    else:
        probe = (good + bad) // 2  # the midpoint of the candidates good+1 .. bad
    tries = [r for r in train.results if not r.reverted and r.index == probe and r.outcome == "inconclusive"]
    if len(tries) > train.retries:
        high = bad if bad is not None else train.size - 1
        return Halt(good + 1, high, f"commit #{probe}'s canary was inconclusive {len(tries)} times "
                    f"({tries[-1].reason or 'no reason given'}); the first bad commit, if any, is in "
                    f"#{good + 1}..#{high}", good)
    return Canary(probe)


def canaries_spent(train: Train) -> int:
    """How many canary deployments the results cost (build and test failures cost none)."""
    return sum(1 for r in train.results if r.outcome in CANARIED)


def check_max_commits(value: object) -> int:
    """``[deploy] max_commits`` as an int in range, or ``ValueError`` saying what to write."""
    if isinstance(value, bool) or not isinstance(value, int) or not MIN_COMMITS <= value <= MAX_COMMITS:
        raise ValueError(f"max_commits must be a whole number from {MIN_COMMITS} to {MAX_COMMITS} "
                         f"(commits per deploy train), not {value!r}")
    return value


def batches(pending: int, room: int, max_commits: int) -> list[int]:
    """How ``pending`` new commits split into trains: first the ``room`` left in the train still collecting
    (0 if none), then full trains of ``max_commits``; the sizes, in order (0 for the first = none added)."""
    check_max_commits(max_commits)
    first = min(pending, max(room, 0))
    sizes = [first]
    rest = pending - first
    while rest > 0:
        sizes.append(min(rest, max_commits))
        rest -= sizes[-1]
    return sizes
