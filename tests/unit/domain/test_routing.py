"""Control-plane routing decisions: hostnames, readiness gating, weights."""

from __future__ import annotations

from conveyor.domain.routing import EnvRoutes, LiveInstance, build_table, content_key, hostnames
from conveyor.domain.wire import InstanceState as S


def test_hostnames() -> None:
    assert hostnames("hello", "production") == ["hello.localhost", "production.hello.localhost"]
    assert hostnames("hello", "staging", "apps.example.com") == ["staging.hello.apps.example.com"]


def _inst(iid: str, release: int, state: S, port: int | None = 4000, env_id: int = 1) -> LiveInstance:
    return LiveInstance(id=iid, env_id=env_id, release=release, address="10.0.0.5", port=port, state=state)


def test_only_ready_instances_with_a_port_are_routed() -> None:
    envs = [EnvRoutes(env_id=1, app="hello", env="production", weights={1: 95, 2: 5})]
    table = build_table(
        envs,
        [
            _inst("a", 1, S.READY, 4001),
            _inst("b", 1, S.STARTING, 4002),
            _inst("c", 2, S.READY, 4003),
            _inst("d", 2, S.UNHEALTHY, 4004),
            _inst("e", 2, S.READY, None),
            _inst("x", 1, S.READY, 4005, env_id=9),  # another environment's instance
        ],
    )
    (env,) = table.environments
    assert env.hosts == ["hello.localhost", "production.hello.localhost"]
    assert [(r.release, r.weight, [i.address for i in r.instances]) for r in env.releases] == [
        (1, 95, ["10.0.0.5:4001"]),
        (2, 5, ["10.0.0.5:4003"]),
    ]


def test_content_key_ignores_version_and_is_stable() -> None:
    envs = [EnvRoutes(env_id=1, app="a", env="production", weights={1: 100})]
    t1 = build_table(envs, [_inst("i", 1, S.READY)])
    t2 = build_table(envs, [_inst("i", 1, S.READY)]).model_copy(update={"version": 7})
    assert content_key(t1) == content_key(t2)
    t3 = build_table(envs, [_inst("i", 1, S.STARTING)])
    assert content_key(t3) != content_key(t1)
