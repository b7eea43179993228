"""Weighted split, pinning, sticky mode, passive health and upstream timeouts."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Callable

import pytest
from router_helpers import Backend, Router, http_get, make_table, wait_until

pytestmark = pytest.mark.integration


def _count(port: int, n: int, headers: dict[str, str] | None = None) -> dict[str, int]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    seen: dict[str, int] = {}
    for _ in range(n):
        c.request("GET", "/", headers={"Host": "hello.localhost", **(headers or {})})
        r = c.getresponse()
        body = r.read().decode().strip()
        assert r.status == 200, body
        seen[body] = seen.get(body, 0) + 1
    c.close()
    return seen


def test_weighted_split_between_releases(backend: Callable[..., Backend], router: Callable[..., Router]) -> None:
    stable, canary = backend("stable"), backend("canary")
    r = router(make_table(1, [(1, 80, [stable]), (2, 20, [canary])]))
    seen = _count(r.port, 600)
    # Binomial(600, 0.2): mean 120, sd ~9.8; +-5 sd keeps this from flaking.
    assert 70 <= seen.get("canary", 0) <= 170, seen
    m1, m2 = r.release_metrics(1), r.release_metrics(2)
    assert m1["requests"] + m2["requests"] == 600
    assert m2["requests"] == seen["canary"]


def test_release_without_instances_takes_no_share(backend: Callable[..., Backend], router: Callable[..., Router]) -> None:
    b = backend("only")
    r = router(make_table(1, [(1, 10, [b]), (2, 90, [])]))
    assert _count(r.port, 50) == {"only": 50}


def test_pinning_by_header_and_cookie(backend: Callable[..., Backend], router: Callable[..., Router]) -> None:
    stable, canary = backend("stable"), backend("canary")
    r = router(make_table(1, [(1, 100, [stable]), (2, 0, [canary])]))
    assert _count(r.port, 20) == {"stable": 20}
    assert _count(r.port, 20, {"X-Conveyor-Release": "2"}) == {"canary": 20}
    assert _count(r.port, 20, {"Cookie": "a=b; conveyor-release=2"}) == {"canary": 20}
    # Pinned to a release that is not routable: normal split.
    assert _count(r.port, 10, {"X-Conveyor-Release": "7"}) == {"stable": 10}


def test_sticky_mode_keeps_a_client_on_one_release(backend: Callable[..., Backend], router: Callable[..., Router]) -> None:
    stable, canary = backend("stable"), backend("canary")
    r = router(make_table(1, [(1, 50, [stable]), (2, 50, [canary])], sticky=True))
    status, headers, _ = http_get(r.port, "/")
    assert status == 200
    cookie = headers["set-cookie"].split(";")[0]
    assert cookie.startswith("conveyor-sticky=")
    seen = _count(r.port, 30, {"Cookie": cookie})
    assert len(seen) == 1, seen
    # Many clients spread over both releases.
    per_client = set()
    for _ in range(40):
        _, h, body = http_get(r.port, "/")
        per_client.add(body)
    assert per_client == {b"stable\n", b"canary\n"}


def _dead_address() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now: connect is refused
    return f"127.0.0.1:{port}"


def test_dead_instance_is_retried_and_ejected(backend: Callable[..., Backend], router: Callable[..., Router]) -> None:
    alive = backend("alive")
    table = make_table(1, [(1, 100, [alive])])
    table["environments"][0]["releases"][0]["instances"].append({"id": "dead", "address": _dead_address()})
    r = router(table)
    assert _count(r.port, 50) == {"alive": 50}  # no client sees the dead instance
    m = r.release_metrics(1)
    dead = m["instances"]["dead"]
    assert 1 <= dead["upstream_errors"] <= 3, m  # ejected after the first failure (backoff >= 1 s)
    assert m["status"]["2xx"] == 50 and m["status"]["5xx"] == 0


def test_only_instance_dead_gives_502(router: Callable[..., Router]) -> None:
    table = make_table(1, [(1, 100, [])])
    table["environments"][0]["releases"][0]["instances"].append({"id": "dead", "address": _dead_address()})
    r = router(table)
    status, _, body = http_get(r.port, "/")
    assert status == 502 and b"cannot connect to instance dead" in body
    m = r.release_metrics(1)
    assert m["status"]["5xx"] == 1 and m["upstream_errors"] == 1 and m["instances"]["dead"]["5xx"] == 1


def test_upstream_timeout_504_and_slow_upstream_blocks_nobody(backend: Callable[..., Backend], router: Callable[..., Router]) -> None:
    b = backend("b1")
    r = router(make_table(1, [(1, 100, [b])]), "--upstream-timeout", "3")
    result: dict[str, object] = {}

    def hang() -> None:
        result["hang"] = http_get(r.port, "/hang", timeout=20)[0]

    t = threading.Thread(target=hang)
    t0 = time.monotonic()
    t.start()
    try:
        wait_until(lambda: r.release_metrics(1)["in_flight"] == 1, what="/hang in flight")
        # While /hang waits, other requests are served at once.
        for _ in range(10):
            assert http_get(r.port, "/", timeout=5)[0] == 200
        assert "hang" not in result  # all ten answered before the stuck one timed out
    finally:
        t.join(20)
    assert result["hang"] == 504
    assert 2.5 < time.monotonic() - t0 < 15
    wait_until(lambda: r.release_metrics(1)["status"]["5xx"] == 1, what="504 counted")
