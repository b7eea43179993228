"""Where new instances go: the least-loaded live host, free of I/O.

Why a pure function: placement is a rule (spread instances, break ties by
name so the choice is reproducible), and the orchestrator must be able to
recompute it on any tick from rows alone. The caller reads the live hosts and
the instance count per host (``store.hosts``/``store.instances``) and writes
the rows this returns.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def place(alive: Iterable[str], load: Mapping[str, int], count: int) -> list[str]:
    """The host of each of ``count`` new instances: each goes to the live host running the fewest
    instances so far (counting the ones placed before it), ties broken by host name.

    ``load`` counts instances per host (hosts missing from it run none; hosts that are not in
    ``alive`` are ignored). No live host: nowhere to place, so an empty list.
    """
    hosts = sorted(set(alive))
    if not hosts:
        return []
    current = {h: int(load.get(h, 0)) for h in hosts}
    out: list[str] = []
    for _ in range(max(0, count)):
        host = min(hosts, key=lambda h: (current[h], h))
        current[host] += 1
        out.append(host)
    return out
