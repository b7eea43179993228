"""Where new instances go: label selectors, spread, capacity and drained hosts, free of I/O.

Why a pure function: placement is a rule the orchestrator recomputes on any tick
from rows alone, and it must explain itself. A deployment that cannot be placed
does not wait out its ready timeout in silence: :func:`place` says which
constraint is unmet ("no online host has labels role=web", "hosts matching
role=web are full: a 4/4, b 4/4"), and the orchestrator puts that sentence in
the event log and in the deployment's failure.

The rule, in order (like Kubernetes' scheduler: filter, then score):

1. **Filter.** A host is a candidate when it is online (the caller passes only
   those), not drained (``conveyor hosts drain``), its labels match the
   environment's selector (``[env.NAME] hosts = "role=web"``), it has a free
   slot (``conveyor agent --capacity N``: instances of every app) and, when the
   instance has a memory limit, that much memory not yet promised to the limits
   of the instances it already runs.
2. **Score.** Spread first: the candidate running the fewest instances *of this
   release* wins, so two land on one host only when no other fits; then the
   least loaded host overall; then the name, so the choice is reproducible.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

#: A label key or value: what Kubernetes allows (letters, digits, ``-_.``, ``/`` in keys), at most 63.
_LABEL_KEY = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_./-]{0,61}[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?)?$")


class SelectorError(ValueError):
    """A label selector or label that does not parse; the message says what to write instead."""


@dataclass(frozen=True)
class Requirement:
    key: str
    value: str
    equal: bool = True

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.equal:
            return labels.get(self.key) == self.value
        return labels.get(self.key) != self.value

    def __str__(self) -> str:
        return f"{self.key}{'=' if self.equal else '!='}{self.value}"


@dataclass(frozen=True)
class Selector:
    """``key=value`` and ``key!=value`` requirements, all of which must hold (empty: every host)."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)

    def __bool__(self) -> bool:
        return bool(self.requirements)


def parse_label(text: str) -> tuple[str, str]:
    """``k=v`` (``conveyor agent --label``) → (key, value)."""
    key, sep, value = text.partition("=")
    key, value = key.strip(), value.strip()
    if not sep or not _LABEL_KEY.match(key) or not _LABEL_VALUE.match(value):
        raise SelectorError(f"label {text!r}: write key=value, e.g. role=web (letters, digits, '-', '_', '.'; "
                            "at most 63 characters each)")
    return key, value


def parse_selector(text: str) -> Selector:
    """``"role=web,zone!=b"`` → a Selector; an empty text selects every host."""
    reqs: list[Requirement] = []
    for part in (p.strip() for p in (text or "").split(",")):
        if not part:
            continue
        if "!=" in part:
            key, _, value = part.partition("!=")
            equal = False
        elif "=" in part:
            key, _, value = part.partition("=")
            equal = True
        else:
            raise SelectorError(f"host selector {text!r}: {part!r} is not key=value or key!=value "
                                "(e.g. hosts = \"role=web,zone!=b\")")
        key, value = key.strip(), value.strip()
        if not _LABEL_KEY.match(key) or not _LABEL_VALUE.match(value):
            raise SelectorError(f"host selector {text!r}: {part!r} has an invalid key or value (letters, "
                                "digits, '-', '_', '.'; at most 63 characters each)")
        reqs.append(Requirement(key, value, equal))
    return Selector(tuple(reqs))


@dataclass(frozen=True)
class Host:
    """An online host as placement sees it."""

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    #: most instances it takes (every app's); None: no limit
    capacity: int | None = None
    #: memory it offers to instance limits, in bytes; None: not counted
    memory: int | None = None
    drained: bool = False
    #: instances it runs now (every app's)
    load: int = 0
    #: the memory limits of the instances it runs, summed (bytes)
    memory_used: int = 0

    def describe(self) -> str:
        labels = ",".join(f"{k}={v}" for k, v in sorted(self.labels.items()))
        return f"{self.name} [{labels}]" if labels else self.name


@dataclass(frozen=True)
class Placement:
    """The host of each placed instance, in order; ``reason`` says why fewer than asked were placed."""

    hosts: list[str]
    wanted: int
    reason: str = ""
    #: no host is online at all: nothing to say about the constraints, a host may be joining
    waiting: bool = False

    @property
    def short(self) -> int:
        return self.wanted - len(self.hosts)


def place(hosts: Sequence[Host], count: int, *, selector: Selector = Selector(),
          release_load: Mapping[str, int] | None = None, memory: int | None = None) -> Placement:
    """Place ``count`` new instances of one release (see the module's docstring for the rule).

    ``release_load``: instances of this release per host now (the spread counts them);
    ``memory``: each new instance's memory limit in bytes (None: no limit, not counted).
    """
    count = max(0, count)
    if count == 0:
        return Placement([], 0)
    if not hosts:
        return Placement([], count, "no host is online (start an agent: conveyor agent --join URL TOKEN)",
                         waiting=True)
    matching = [h for h in hosts if selector.matches(h.labels)]
    if not matching:
        online = ", ".join(h.describe() for h in sorted(hosts, key=lambda h: h.name))
        return Placement([], count, f"no online host has labels {selector} (online: {online})")
    open_hosts = [h for h in matching if not h.drained]
    if not open_hosts:
        which = f" matching {selector}" if selector else ""
        drained = ", ".join(sorted(h.name for h in matching))
        return Placement([], count, f"every online host{which} is drained ({drained}): "
                                    "conveyor hosts undrain HOST, or add a host")
    spread = {h.name: int((release_load or {}).get(h.name, 0)) for h in open_hosts}
    load = {h.name: h.load for h in open_hosts}
    mem_used = {h.name: h.memory_used for h in open_hosts}
    chosen: list[str] = []
    for _ in range(count):
        fits = [h for h in open_hosts if _fits(h, load[h.name], mem_used[h.name], memory)]
        if not fits:
            reason = _full_reason(open_hosts, load, mem_used, memory, selector, len(chosen), count)
            drained = sorted(h.name for h in matching if h.drained)
            if drained:
                reason += f" ({', '.join(drained)} drained)"
            return Placement(chosen, count, reason)
        best = min(fits, key=lambda h: (spread[h.name], load[h.name], h.name))
        chosen.append(best.name)
        spread[best.name] += 1
        load[best.name] += 1
        mem_used[best.name] += memory or 0
    return Placement(chosen, count)


def _fits(host: Host, load: int, mem_used: int, memory: int | None) -> bool:
    if host.capacity is not None and load >= host.capacity:
        return False
    if memory and host.memory is not None and mem_used + memory > host.memory:
        return False
    return True


def _full_reason(hosts: Sequence[Host], load: Mapping[str, int], mem_used: Mapping[str, int],
                 memory: int | None, selector: Selector, placed: int, wanted: int) -> str:
    which = f"hosts matching {selector}" if selector else "the online hosts"
    slots_full = [h for h in hosts if h.capacity is not None and load[h.name] >= h.capacity]
    head = f"placed {placed} of {wanted} instance(s): "
    if len(slots_full) == len(hosts):
        detail = ", ".join(f"{h.name} {load[h.name]}/{h.capacity}" for h in sorted(hosts, key=lambda h: h.name))
        return head + f"{which} are full ({detail} instances): raise --capacity or add a host"
    mib = 1024 * 1024
    detail = ", ".join(
        f"{h.name} {max(0, (h.memory or 0) - mem_used[h.name]) // mib} MiB free"
        for h in sorted(hosts, key=lambda h: h.name) if h not in slots_full
    )
    need = (memory or 0) // mib
    return head + f"{which} lack memory for a {need} MiB instance ({detail}): lower [limits] memory or add a host"

