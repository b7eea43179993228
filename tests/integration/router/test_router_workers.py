"""--workers N: several processes share the port; the admin port merges their metrics."""

from __future__ import annotations

import http.client
import signal
from collections.abc import Callable

import pytest
from router_helpers import Backend, Router, http_get, make_table, wait_until

pytestmark = pytest.mark.integration


def test_two_workers_share_port_and_merge_metrics(backend: Callable[..., Backend], router: Callable[..., Router]) -> None:
    r = router(make_table(1, [(1, 100, [backend("b1")])]), workers=2)
    n = 0
    for _ in range(30):  # new connection each time: the kernel spreads them over the workers
        c = http.client.HTTPConnection("127.0.0.1", r.port, timeout=10)
        for _ in range(3):
            c.request("GET", "/", headers={"Host": "hello.localhost"})
            assert c.getresponse().read() == b"b1\n"
            n += 1
        c.close()
    snap = wait_until(lambda: (s := r.metrics()) and s.get("workers") == 2 and s, what="both workers scraped")
    (rel,) = snap["releases"]
    assert rel["requests"] == n and rel["status"]["2xx"] == n
    assert rel["latency"]["count"] == n
    assert http_get(r.admin_port, "/healthz")[0] == 200
    assert b"conveyor_router_requests_total" in http_get(r.admin_port, "/metrics")[2]
    r.proc.send_signal(signal.SIGTERM)
    assert r.proc.wait(30) == 0


def _children(pid: int) -> list[int]:
    from pathlib import Path

    return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_dead_worker_is_restarted(backend: Callable[..., Backend], router: Callable[..., Router]) -> None:
    r = router(make_table(1, [(1, 100, [backend("b1")])]), workers=2)
    before = wait_until(lambda: len(c := _children(r.proc.pid)) == 2 and c, what="two workers")
    import os

    os.kill(before[0], signal.SIGKILL)
    wait_until(lambda: len(c := _children(r.proc.pid)) == 2 and before[0] not in c, timeout=20, what="worker restarted")
    wait_until(lambda: r.metrics().get("workers") == 2, timeout=20, what="restarted worker scraped")
    for _ in range(20):
        assert http_get(r.port, "/")[0] == 200
