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

#: The deadline in force (``conveyor up --host-lost-after``, ``ServerSettings.host_lost_after``).
#: One value per process on purpose: the orchestrator, the routing table, the views and the metrics
#: must agree on which hosts are lost, and a control plane is one process.
_lost_after = HOST_LOST_AFTER


#: The shortest deadline allowed: two agent reports (every 5 s). At one report period a healthy
#: host is judged lost whenever its next report is a moment late (seen: both hosts of a test "lost"
#: together, their instances drained with nowhere to go).
MIN_LOST_AFTER = 10.0


def set_lost_after(seconds: float) -> None:
    """Set the lost-host deadline of this process (the server does, from its settings, at start).
    Kubernetes waits 40 s before a node is NotReady; 15 s suits loopback and a LAN."""
    global _lost_after
    if not MIN_LOST_AFTER <= seconds <= 3600.0:
        raise ValueError(f"the lost-host deadline must be between {MIN_LOST_AFTER:g} s (two agent reports, "
                         f"every 5 s) and 3600 s, got {seconds:g}")
    _lost_after = float(seconds)


def lost_after() -> float:
    return _lost_after


def alive_cutoff(now: float) -> float:
    """Hosts that reported at or after this are alive: new instances may be placed on them."""
    return now - _lost_after


def lost_cutoff(now: float, started_at: float) -> float:
    """Hosts whose last report is older than this are lost; none is within ``HOST_LOST_AFTER`` of
    ``started_at`` (when this control plane started: every host's last report may predate it, so
    each gets that long to report again before it can be judged lost).

    Both times come from the caller's clock (the orchestrator's injectable one, or the API's).
    """
    if now - started_at < _lost_after:
        return 0.0  # (epoch seconds: every report is newer)
    return now - _lost_after


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
