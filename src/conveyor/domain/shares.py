"""How a deployment and the autoscaler share an environment's instances, free of I/O (issue 13).

Why this exists: the best-known failure of autoscalers next to progressive delivery (Argo Rollouts'
users meet it) is the two fighting: the stable side scaled to its maximum during a canary, the
canary sized by pod count instead of by the traffic it takes. Here the autoscaler keeps deciding
the environment's *total* count from its load during a deployment (``domain/autoscale.py``, on the
load of every routed release), and each routed release is sized for its share of the traffic:

* ``share(total, weight) = ceil(total × weight / 100)``, at least 1 while the release has weight
  (a canary at 10 % of 8 gets 1 instance, at 50 % gets 4; the stable side at 90 % keeps 8, at
  50 % 4): rounding up, so a release never has fewer than its share needs;
* a release with no weight is not sized here: a new release still starting belongs to the
  deployment machine (it waits for it to be ready before any traffic moves), and the previous
  release kept warm through a bake is neither grown nor shrunk;
* a release the deployment machine sizes in this phase (``held``) is left alone, so the two never
  ask for different counts of one release in one pass;
* a release being drained (``draining``) is never sized: it is on its way out;
* start new, then drain old: a release that would shrink keeps what it has while another routed
  release has fewer instances ready than asked (the traffic that moved to it is still served by
  the instances it left), so a step from 10 % to 50 % never lowers what serves.

The deployment machine sizes the rest from the same total (the orchestrator writes the autoscaler's
count into the active deployment's ``instances``): a canary promoted to full size gets the total,
a rollback brings the stable release back to the total at once, with its traffic.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass


class ShareError(ValueError):
    """Inputs that cannot describe an environment (the caller's mistake); the message says which."""


def share(total: int, weight: int) -> int:
    """Instances a release with ``weight`` % of the traffic needs when the environment needs ``total``."""
    if total < 0:
        raise ShareError(f"the total count must be at least 0, got {total}")
    if not 0 <= weight <= 100:
        raise ShareError(f"a traffic weight is a percentage from 0 to 100, got {weight}")
    if weight == 0:
        return 0
    return max(1, -(-total * weight // 100))


@dataclass(frozen=True)
class Release:
    """What one release of the environment has now: its traffic weight, its instances (not
    draining) and how many of them are ready."""

    weight: int
    instances: int
    ready: int


def release_counts(total: int, releases: Mapping[int, Release], *, held: Set[int] = frozenset(),
                   draining: Set[int] = frozenset()) -> dict[int, int]:
    """The instance count of each release this rule sizes (see the module docstring); releases
    left out keep what the deployment machine gives them. ``releases`` are keyed by release number
    (a canary's baseline is not among them: the strategy sizes it)."""
    if sum(r.weight for r in releases.values()) > 100:
        raise ShareError(f"the weights add up to more than 100 %: {dict((k, r.weight) for k, r in releases.items())}")
    for number, r in releases.items():
        if r.instances < 0 or not 0 <= r.ready <= r.instances:
            raise ShareError(f"release {number}: {r.ready} ready of {r.instances} instances is impossible")
    wanted = {n: share(total, r.weight) for n, r in releases.items()
              if r.weight > 0 and n not in held and n not in draining}
    # what each routed release is asked to have: our count, or the machine's (its instances)
    asked = {n: wanted.get(n, r.instances) for n, r in releases.items() if r.weight > 0 and n not in draining}
    out: dict[int, int] = {}
    for n, count in wanted.items():
        others_short = any(releases[m].ready < asked[m] for m in asked if m != n)
        if count < releases[n].instances and others_short:
            count = releases[n].instances  # start new, then drain old
        out[n] = count
    return out


def held_releases(strategy: str, state: str, phase: str | None, new: int, *, baseline: bool) -> frozenset[int] | None:
    """The releases whose counts the deployment machine holds in this phase, or None when it holds
    every count (a rolling deployment: its batches are its counts, and its weights follow them).

    ``strategy`` is the one in effect (``deploy_machine.strategy_of``: a rollback or a first
    release is blue/green). A canary with a baseline keeps the strategy's canary size, the same as
    its baseline's: the analysis compares the two like for like, per instance.
    """
    if strategy == "rolling":
        return None
    held = {new}
    if strategy == "canary" and state in ("canary", "paused") and phase not in ("promoting", "sizing") and not baseline:
        held.discard(new)  # a canary in its steps is sized by its weight (growing for the next one: the machine's)
    if state == "baking":
        held.discard(new)  # live with all the traffic: the total, like between deployments
    return frozenset(held)
