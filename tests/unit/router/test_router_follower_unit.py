"""The follower's poll against canned HTTP answers (httpx.MockTransport), and its backoff."""

from __future__ import annotations

import httpx
import pytest

from conveyor.domain.wire import RoutingTable
from conveyor.router.follower import Follower, jittered, next_backoff


def test_backoff_doubles_and_caps() -> None:
    d = 0.0
    seq = []
    for _ in range(8):
        d = next_backoff(d, 10.0)
        seq.append(d)
    assert seq == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert jittered(4.0, lambda: 0.0) == 2.0 and jittered(4.0, lambda: 1.0) == 4.0


async def test_poll_applies_new_versions_only() -> None:
    applied: list[RoutingTable] = []
    seen: list[httpx.Request] = []
    answers = [RoutingTable(version=3), RoutingTable(version=3), RoutingTable(version=4)]

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        return httpx.Response(200, content=answers.pop(0).model_dump_json())

    f = Follower("http://cp:1/", "tok", "r-1", "http://127.0.0.1:9/", lambda: applied[-1].version if applied else 0, applied.append, wait=7)
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler), headers={"Authorization": "Bearer tok"}) as c:
        assert await f.poll_once(c) is True
        assert await f.poll_once(c) is False
        assert await f.poll_once(c) is True
    assert [t.version for t in applied] == [3, 4]
    q = seen[1].url.params
    assert seen[1].url.path == "/api/v1/routing"
    assert q["after"] == "3" and q["wait"] == "7" and q["router"] == "r-1" and q["admin"] == "http://127.0.0.1:9/"
    assert seen[0].headers["Authorization"] == "Bearer tok"


@pytest.mark.parametrize(
    ("status", "body", "match"),
    [(401, b"{}", "token"), (500, b"boom", "HTTP 500"), (200, b"[1, 2]", "not a RoutingTable"), (200, b"{\"version\": \"x\"}", "not a RoutingTable")],
)
async def test_poll_errors_say_what_to_fix(status: int, body: bytes, match: str) -> None:
    applied: list[RoutingTable] = []
    f = Follower("http://cp:1", None, "r", None, lambda: 0, applied.append)
    async with httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(status, content=body))) as c:
        with pytest.raises(RuntimeError, match=match):
            await f.poll_once(c)
    assert applied == []
