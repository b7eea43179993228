"""The routing table compiled for the request path, and its copy on disk.

The control plane sends a :class:`~conveyor.domain.wire.RoutingTable` (a whole
document). Looking a Host up in lists on every request would be slow, and
per-instance state (outstanding requests, passive-health ejection, the pool of
idle upstream connections) must survive table updates, so a table is
*compiled* into dictionaries of long-lived :class:`Target` objects. Compiling
is pure: it takes the new table and the previous compiled one and returns the
new compiled table plus the targets that disappeared (which the caller drains).
Swapping one reference then applies the whole table atomically.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from conveyor.domain.wire import RouteEnvironment, RoutingTable
from conveyor.router.metrics import InstanceStats, ReleaseStats

if TYPE_CHECKING:
    from conveyor.router.upstream import UpstreamConnection


class Target:
    """One upstream instance, with the state that outlives table versions."""

    __slots__ = (
        "id",
        "address",
        "host",
        "port",
        "outstanding",
        "ejected_until",
        "failures",
        "draining",
        "drain_deadline",
        "idle",
        "stats",
    )

    def __init__(self, id: str, address: str, stats: InstanceStats | None = None) -> None:  # noqa: A002 - wire name
        self.id = id
        self.address = address
        host, _, port = address.rpartition(":")
        self.host = host.strip("[]") or "127.0.0.1"
        self.port = int(port) if port.isdigit() else 80
        self.outstanding = 0  # requests sent and not finished (least-outstanding balancing)
        self.ejected_until = 0.0  # passive health: no new requests before this monotonic time
        self.failures = 0  # consecutive connect failures (ejection backoff)
        self.draining = False  # removed from the table: no new requests
        self.drain_deadline = 0.0
        self.idle: list[UpstreamConnection] = []  # idle keep-alive upstream connections (the pool)
        self.stats = stats  # metrics.InstanceStats, or None when metrics are off

    @property
    def key(self) -> tuple[str, str]:
        return (self.id, self.address)

    def __repr__(self) -> str:
        return f"Target({self.id!r}, {self.address!r}, outstanding={self.outstanding})"


@dataclass
class ReleaseRoute:
    """A release of an environment with its current targets."""

    app: str
    env: str
    release: int
    weight: int
    targets: list[Target]
    stats: ReleaseStats | None = None  # None when metrics are off
    rr: int = 0  # rotating tie-breaker for least-outstanding


@dataclass
class EnvRoute:
    """An environment: its releases, and the cumulative weights of the routable ones."""

    app: str
    env: str
    hosts: list[str]
    sticky: bool
    releases: list[ReleaseRoute]
    by_number: dict[int, ReleaseRoute] = field(default_factory=dict)
    #: Routable releases (>= 1 target, weight > 0), newest first, and their
    #: cumulative weights; newest first so that a growing canary share keeps the
    #: sticky clients it already had (their hash point stays inside it).
    split: list[ReleaseRoute] = field(default_factory=list)
    cumulative: list[int] = field(default_factory=list)
    total_weight: int = 0
    #: ``split`` + its last element again (see balancer.choose_release).
    split_guarded: list[ReleaseRoute] = field(default_factory=list)

    def blame_release(self) -> ReleaseRoute | None:
        """The release a 503 is counted against when nothing is routable: the heaviest."""
        if not self.releases:
            return None
        return max(self.releases, key=lambda r: (r.weight, r.release))


@dataclass
class CompiledTable:
    version: int
    table: RoutingTable
    hosts: dict[str, EnvRoute]
    targets: dict[tuple[str, str], Target]
    environments: list[EnvRoute]


StatsFactory = Callable[[str, str, int], ReleaseStats]
InstanceStatsFactory = Callable[[ReleaseStats, str], InstanceStats]


def normalise_host(value: str) -> str:
    """A Host header as the table keys it: lower case, without port or trailing dot."""
    v = value.strip().lower()
    if v.startswith("["):  # IPv6 literal
        end = v.find("]")
        return v[: end + 1] if end > 0 else v
    host, sep, port = v.rpartition(":")
    if sep and port.isdigit():
        v = host
    return v.rstrip(".")


def compile_table(
    table: RoutingTable,
    previous: CompiledTable | None = None,
    release_stats: StatsFactory | None = None,
    instance_stats: InstanceStatsFactory | None = None,
) -> tuple[CompiledTable, list[Target]]:
    """Compile ``table``, reusing ``previous``'s targets; also return removed targets.

    A target that is in both tables keeps its counters, ejection state and idle
    connections. A target that comes back while it was draining is revived.
    """
    old = previous.targets if previous else {}
    targets: dict[tuple[str, str], Target] = {}
    hosts: dict[str, EnvRoute] = {}
    envs: list[EnvRoute] = []
    for env in table.environments:
        route = _compile_env(env, old, targets, release_stats, instance_stats)
        envs.append(route)
        for h in env.hosts:
            hosts.setdefault(normalise_host(h), route)
    removed = [t for k, t in old.items() if k not in targets]
    return CompiledTable(table.version, table, hosts, targets, envs), removed


def _compile_env(
    env: RouteEnvironment,
    old: dict[tuple[str, str], Target],
    targets: dict[tuple[str, str], Target],
    release_stats: StatsFactory | None,
    instance_stats: InstanceStatsFactory | None,
) -> EnvRoute:
    releases: list[ReleaseRoute] = []
    for rel in env.releases:
        rstats = release_stats(env.app, env.env, rel.release) if release_stats else None
        rtargets: list[Target] = []
        for inst in rel.instances:
            key = (inst.id, inst.address)
            t = targets.get(key) or old.get(key)
            if t is None:
                t = Target(inst.id, inst.address)
            if t.draining:
                t.draining = False
            if instance_stats is not None and rstats is not None:
                t.stats = instance_stats(rstats, inst.id)
            if key not in targets:
                targets[key] = t
                rtargets.append(t)
        releases.append(ReleaseRoute(env.app, env.env, rel.release, rel.weight, rtargets, rstats))
    route = EnvRoute(env.app, env.env, [normalise_host(h) for h in env.hosts], env.sticky, releases)
    route.by_number = {r.release: r for r in releases}
    total = 0
    for r in sorted(releases, key=lambda r: r.release, reverse=True):
        if r.targets and r.weight > 0:
            total += r.weight
            route.split.append(r)
            route.cumulative.append(total)
    route.total_weight = total
    route.split_guarded = route.split + route.split[-1:]
    return route


# ---------------------------------------------------------------------------
# The table on disk (--state-file, --table-file)
# ---------------------------------------------------------------------------


class TableFileError(ValueError):
    """A table file that cannot be used; the message says which file and why."""


def load_table_file(path: str | os.PathLike[str]) -> RoutingTable | None:
    """The table saved at ``path``; None when the file does not exist."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as e:
        raise TableFileError(f"cannot read routing table {p}: {e}") from e
    try:
        return RoutingTable.model_validate(json.loads(text))
    except Exception as e:  # noqa: BLE001 - pydantic and json errors alike
        raise TableFileError(
            f"{p} is not a routing table (JSON of conveyor.domain.wire.RoutingTable): {e}".splitlines()[0]
        ) from e


def save_table_file(path: str | os.PathLike[str], table: RoutingTable) -> None:
    """Write ``table`` to ``path`` atomically (temp file + rename): never half a file."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", dir=p.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(table.model_dump_json(indent=1))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
