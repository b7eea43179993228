"""Replacing the instances a lost host took with it: the decision, free of I/O.

Why: a deployment ensures its own instance counts, but between deployments
nothing else would notice that a machine went away, and the environment would
run short (or not at all) until someone deployed again. Like a Kubernetes
ReplicaSet, the orchestrator keeps the count: the instances of the releases an
environment serves that sit on a lost host are drained (they already left the
routing table when the host was judged lost) and as many are started on the
hosts that are alive.

What is never replaced: instances of a release that is only kept warm (a
rollback target; it serves no traffic), baseline instances (they belong to a
running deployment, which owns its counts), and anything at all when no host is
alive (nowhere to go; and right after a control-plane restart every host looks
silent until it reports again, which the caller's grace period covers).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class PlacedInstance:
    id: str
    release: int
    role: str
    host: str


def serving_releases(current: int | None, routes: dict[int, int]) -> set[int]:
    """The releases an environment serves: the current one and any with routing weight."""
    out = {r for r, w in routes.items() if w > 0}
    if current is not None:
        out.add(current)
    return out


def lost_instances(placed: Sequence[PlacedInstance], serving: set[int], alive_hosts: Iterable[str]) -> list[PlacedInstance]:
    """The instances to replace: main instances of serving releases on hosts that are not alive."""
    alive = set(alive_hosts)
    if not alive:
        return []
    return [i for i in placed if i.release in serving and i.role == "main" and i.host not in alive]
