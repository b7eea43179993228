"""Routing decisions on the control-plane side: which hostnames an environment
answers to, and the routing table built from weights and ready instances.

Pure functions, so that "readiness gates traffic" is a property of one
function: an instance is in the table only when its agent reports it READY.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from conveyor.domain.wire import InstanceState, RouteEnvironment, RouteInstance, RouteRelease, RoutingTable

PRODUCTION = "production"


def hostnames(app: str, env: str, domain: str = "localhost") -> list[str]:
    """``APP.DOMAIN`` for production, ``ENV.APP.DOMAIN`` for every environment."""
    names = [f"{env}.{app}.{domain}"]
    if env == PRODUCTION:
        names.insert(0, f"{app}.{domain}")
    return names


@dataclass(frozen=True)
class EnvRoutes:
    env_id: int
    app: str
    env: str
    weights: Mapping[int, int]
    sticky: bool = False


@dataclass(frozen=True)
class LiveInstance:
    id: str
    env_id: int
    release: int
    address: str  # host address, without port
    port: int | None
    state: InstanceState


def build_table(
    envs: Iterable[EnvRoutes],
    instances: Iterable[LiveInstance],
    domain: str = "localhost",
    extra_hosts: Mapping[int, list[str]] | None = None,
) -> RoutingTable:
    """The routing table (version 0: the caller versions it by content).

    ``extra_hosts``: the domains users added, by environment id (after the default hostnames).
    """
    ready: dict[tuple[int, int], list[RouteInstance]] = {}
    for inst in instances:
        if inst.state == InstanceState.READY and inst.port:
            ready.setdefault((inst.env_id, inst.release), []).append(
                RouteInstance(id=inst.id, address=f"{inst.address}:{inst.port}")
            )
    out: list[RouteEnvironment] = []
    for env in sorted(envs, key=lambda e: (e.app, e.env)):
        releases = [
            RouteRelease(
                release=release,
                weight=weight,
                instances=sorted(ready.get((env.env_id, release), []), key=lambda i: i.id),
            )
            for release, weight in sorted(env.weights.items())
        ]
        out.append(
            RouteEnvironment(
                app=env.app,
                env=env.env,
                hosts=hostnames(env.app, env.env, domain) + sorted((extra_hosts or {}).get(env.env_id, [])),
                releases=releases,
                sticky=env.sticky,
            )
        )
    return RoutingTable(version=0, environments=out)


def content_key(table: RoutingTable) -> str:
    """A stable representation of a table's content, ignoring its version."""
    # Private keys stay out of it: the key is stored (counters.note) in plain text. The
    # certificate's fingerprint changes whenever its key does.
    return table.model_copy(update={"version": 0}).model_dump_json(exclude={"certificates": {"__all__": {"key_pem"}}})
