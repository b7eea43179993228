"""Release choice, pinning, sticky points, least-outstanding and passive health: pure functions."""

from __future__ import annotations

from conveyor.domain.wire import RouteEnvironment, RouteInstance, RouteRelease, RoutingTable
from conveyor.router import balancer
from conveyor.router.table import EnvRoute, compile_table


def env(releases: list[tuple[int, int, int]]) -> EnvRoute:
    t = RoutingTable(
        version=1,
        environments=[
            RouteEnvironment(
                app="a",
                env="e",
                hosts=["h"],
                releases=[
                    RouteRelease(release=r, weight=w, instances=[RouteInstance(id=f"r{r}i{k}", address=f"127.0.0.1:{1000 + r * 10 + k}") for k in range(n)])
                    for r, w, n in releases
                ],
            )
        ],
    )
    return compile_table(t)[0].hosts["h"]


def test_weighted_choice_by_point() -> None:
    e = env([(1, 90, 1), (2, 10, 1)])
    # Newest first: [0, 0.1) -> release 2, [0.1, 1) -> release 1.
    assert balancer.choose_release(e, 0.0).release == 2  # type: ignore[union-attr]
    assert balancer.choose_release(e, 0.099).release == 2  # type: ignore[union-attr]
    assert balancer.choose_release(e, 0.1).release == 1  # type: ignore[union-attr]
    assert balancer.choose_release(e, 0.999999).release == 1  # type: ignore[union-attr]
    counts = {1: 0, 2: 0}
    for i in range(1000):
        counts[balancer.choose_release(e, i / 1000).release] += 1  # type: ignore[union-attr]
    assert counts == {1: 900, 2: 100}


def test_growing_canary_keeps_its_sticky_clients() -> None:
    points = [i / 200 for i in range(200)]
    small = env([(1, 95, 1), (2, 5, 1)])
    big = env([(1, 50, 1), (2, 50, 1)])
    in_canary = {p for p in points if balancer.choose_release(small, p).release == 2}  # type: ignore[union-attr]
    assert in_canary and all(balancer.choose_release(big, p).release == 2 for p in in_canary)  # type: ignore[union-attr]


def test_pin_wins_when_routable_even_at_weight_zero() -> None:
    e = env([(1, 100, 1), (2, 0, 1), (3, 50, 0)])
    assert balancer.choose_release(e, 0.5, pin=2).release == 2  # type: ignore[union-attr]
    assert balancer.choose_release(e, 0.5, pin=3).release == 1  # type: ignore[union-attr]
    assert balancer.choose_release(e, 0.5, pin=9).release == 1  # type: ignore[union-attr]


def test_nothing_routable() -> None:
    assert balancer.choose_release(env([(1, 100, 0)]), 0.3) is None
    assert balancer.choose_release(env([(1, 0, 2)]), 0.3) is None
    assert balancer.choose_release(env([]), 0.3) is None


def test_parse_pin_and_cookies() -> None:
    assert balancer.parse_pin("3", None) == 3
    assert balancer.parse_pin(" 4 ", "conveyor-release=9") == 4
    assert balancer.parse_pin(None, "a=1; conveyor-release=9; b=2") == 9
    assert balancer.parse_pin("x", 'conveyor-release="5"') == 5
    assert balancer.parse_pin("-1", None) is None
    assert balancer.parse_pin(None, "xconveyor-release=5") is None
    assert balancer.cookie_value("a=1;b = 2", "b") == "2"


def test_sticky_point_is_stable_and_spread() -> None:
    assert balancer.sticky_point("abc") == balancer.sticky_point("abc")
    pts = [balancer.sticky_point(str(i)) for i in range(2000)]
    assert all(0 <= p < 1 for p in pts)
    assert 0.45 < sum(pts) / len(pts) < 0.55


def test_least_outstanding_with_rotation_and_ejection() -> None:
    e = env([(1, 100, 3)])
    rel = e.by_number[1]
    a, b, c = rel.targets
    a.outstanding, b.outstanding, c.outstanding = 2, 0, 1
    assert balancer.choose_target(rel, now=0) is b
    b.outstanding = 5
    assert balancer.choose_target(rel, now=0) is c
    # Ties rotate.
    a.outstanding = b.outstanding = c.outstanding = 0
    assert {balancer.choose_target(rel, now=0).id for _ in range(6)} == {a.id, b.id, c.id}  # type: ignore[union-attr]
    # Ejected targets are skipped until their backoff ends; draining ones always.
    assert balancer.eject(a, now=100, base=1, maximum=30) == 1
    assert balancer.eject(a, now=100, base=1, maximum=30) == 2
    b.draining = True
    assert balancer.choose_target(rel, now=101) is c
    assert balancer.choose_target(rel, now=101, exclude=c) is a  # all others out: the first to recover
    assert balancer.choose_target(rel, now=103) in (a, c)
    balancer.succeed(a)
    assert a.failures == 0 and a.ejected_until == 0
    for _ in range(40):
        period = balancer.eject(a, now=0, base=1, maximum=30)
    assert period == 30


def test_single_target_fast_path() -> None:
    rel = env([(1, 100, 1)]).by_number[1]
    (t,) = rel.targets
    assert balancer.choose_target(rel, 0) is t
    assert balancer.choose_target(rel, 0, exclude=t) is None
    t.draining = True
    assert balancer.choose_target(rel, 0) is None
