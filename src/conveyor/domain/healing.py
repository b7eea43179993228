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

#: A host that has not reported for this long is lost: its instances leave the routing table and
#: count as not running, and new instances go elsewhere. Agents report at least every 5 s, so this
#: is three missed reports.
HOST_LOST_AFTER = 15.0


def alive_cutoff(now: float) -> float:
    """Hosts that reported at or after this are alive: new instances may be placed on them."""
    return now - HOST_LOST_AFTER


def lost_cutoff(now: float, started_at: float) -> float:
    """Hosts whose last report is older than this are lost; none is within ``HOST_LOST_AFTER`` of
    ``started_at`` (when this control plane started: every host's last report may predate it, so
    each gets that long to report again before it can be judged lost).

    Both times come from the caller's clock (the orchestrator's injectable one, or the API's).
    """
    if now - started_at < HOST_LOST_AFTER:
        return 0.0  # (epoch seconds: every report is newer)
    return now - HOST_LOST_AFTER


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
