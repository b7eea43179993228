"""Process types beside ``web`` (workers, schedulers) and `conveyor scale`: pure decisions.

Why apart from the deploy machine: scaling is not a deployment. Between
deployments the orchestrator holds the current release at the counts users set
(``process_counts``); during one, the deployment's own counts (frozen in its
params) rule, and ``deploy_machine.with_workers`` ships the workers with it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from conveyor.domain.deploy_machine import EnsureInstances

#: A process type's name (a Procfile's left-hand side): also part of instance ids.
PROCESS_RE = re.compile(r"^[a-z][a-z0-9_-]{0,19}$")
#: The most instances of one process type `conveyor scale` accepts (as the manifest's ``instances``).
MAX_COUNT = 100


def scale(release: int, counts: dict[str, int], known: set[str]) -> list[EnsureInstances]:
    """What holds ``release`` at ``counts``: web as ``main`` instances, others as ``worker`` ones.
    Counts of process types the release does not have are ignored (a later release may have them)."""
    return [
        EnsureInstances(release, n, role="main" if name == "web" else "worker", process=name)
        for name, n in sorted(counts.items())
        if name in known
    ]


def parse_counts(pairs: list[str], known: set[str]) -> dict[str, int]:
    """``["web=3", "worker=2"]`` → counts; ``ValueError`` naming what to fix (unknown type, bad count)."""
    out: dict[str, int] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not raw.strip().lstrip("-").isdigit():
            raise ValueError(f"{pair!r} is not TYPE=COUNT (e.g. web=3 worker=2)")
        count = int(raw)
        if name not in known:
            kinds = ", ".join(sorted(known)) or "none"
            raise ValueError(f"process type {name!r} is unknown: this release has {kinds} ([run] in conveyor.toml, or the Procfile)")
        if count < 0 or count > MAX_COUNT:
            raise ValueError(f"{name}={count}: a count is between 0 and {MAX_COUNT}")
        out[name] = count
    if not out:
        raise ValueError("give at least one TYPE=COUNT, e.g. web=3")
    return out


@dataclass(frozen=True)
class Running:
    """One instance of the process type being restarted, as the orchestrator sees it."""

    id: str
    created_at: float
    ready: bool


@dataclass(frozen=True)
class RestartPlan:
    grow_to: int | None  # make this many instances exist (one more than ``count``: the surge)
    drain: list[str]  # drain these (old) instances now
    done: bool  # nothing old is left: forget the restart


def restart_plan(requested_at: float, count: int, have: list[Running]) -> RestartPlan:
    """One step of a rolling restart with a surge of one: while old instances (created before the
    request) remain, keep ``count + 1`` instances; each time every new one is ready, drain one old
    one (the oldest). Web instances leave the routing table as they drain, so no request fails;
    the level-triggered caller just repeats this until ``done``."""
    old = sorted((i for i in have if i.created_at < requested_at), key=lambda i: (i.created_at, i.id))
    new = [i for i in have if i.created_at >= requested_at]
    if not old:
        return RestartPlan(None, [], True)
    if len(old) + len(new) < count + 1:
        return RestartPlan(count + 1, [], False)
    if all(i.ready for i in new) and new:
        return RestartPlan(None, [old[0].id], False)
    return RestartPlan(None, [], False)
