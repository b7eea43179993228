"""``deploy --wait`` returns only once every live router holds the deployment's routing table.

A deployment ends when its routing change is committed; a router applies it
when its long-poll returns, a few milliseconds later (or longer, on a busy
host). Until then a request can still reach the previous release. Here a second
"router" (a thread that long-polls like one) takes 1.5 s to apply each new
table, and ``deploy --wait`` must not return before it has.
"""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from cvy_platform import Platform, wait_for

pytestmark = pytest.mark.integration
APPLY_DELAY = 1.5


def test_deploy_wait_returns_once_every_router_holds_the_table(shared_platform: Platform) -> None:
    p = shared_platform
    p.cli("apps", "create", "slowr", check=True)
    stop = threading.Event()
    applied: list[tuple[int, float]] = []  # (table version, when the slow router had applied it)

    # Only a router, with its own join token, may register (issue 15).
    join = p.api.post("/hosts/slow-router/join-tokens", json={"role": "router"})
    assert join.status_code == 201, join.text
    router_token = join.json()["token"]

    def slow_router() -> None:
        with httpx.Client(base_url=f"{p.api_url}/api/v1", headers={"Authorization": f"Bearer {router_token}"}, timeout=30) as c:
            version: int | None = None
            while not stop.is_set():
                params: dict[str, object] = {"router": "slow-router", "wait": 1.0}
                if version is not None:
                    params["after"] = version
                table = c.get("/routing", params=params).json()
                if table["version"] != version:
                    if version is not None:
                        time.sleep(APPLY_DELAY)  # a slow apply
                    version = table["version"]
                    applied.append((version, time.time()))

    t = threading.Thread(target=slow_router, daemon=True)
    t.start()
    try:
        wait_for(lambda: applied, 10, 0.05, "the slow router's first table")
        dep = p.deploy("slowr", p.app_copy("slowr", "v1"))
        returned = time.time()
        assert dep["state"] == "succeeded", dep
        sync = dep["routers"]
        assert sync["synced"] is True, sync
        assert {"slow-router"} < {r["id"] for r in sync["routers"]}  # and the platform's own router
        assert any(v >= sync["table_version"] and at <= returned for v, at in applied), (applied, sync)
        p.served("slowr.localhost", "hello from v1\n")
    finally:
        stop.set()
        t.join(10)
