"""Do the live routers hold the current routing table? (what ``deploy --wait`` waits for)."""

from __future__ import annotations

import time
from pathlib import Path

from fastapi.testclient import TestClient

from conveyor.server import create_app
from conveyor.services.state import ROUTER_LIVE_WINDOW, RouterInfo, router_sync
from conveyor.config import ServerSettings

ADMIN = {"Authorization": "Bearer adm"}


def test_router_sync_counts_live_routers_only() -> None:
    now = 1000.0
    routers = {
        "a": RouterInfo("a", None, 7, now - 1),
        "b": RouterInfo("b", None, 6, now - 2),
        "gone": RouterInfo("gone", None, 1, now - ROUTER_LIVE_WINDOW - 1),  # stopped polling: not waited for
    }
    sync = router_sync(routers, 7, now)
    assert [r[0] for r in sync.routers] == ["a", "b"]
    assert sync.behind == ["b"] and not sync.synced
    routers["b"].version = 8  # newer than asked also counts
    assert router_sync(routers, 7, now).synced
    assert router_sync({}, 3, now).synced  # no router at all: nothing to wait for


def test_routers_endpoint_waits_then_reports(tmp_path: Path) -> None:
    app = create_app(ServerSettings(data_dir=tmp_path, admin_token="adm"))
    with TestClient(app) as client:
        current = client.get("/api/v1/routing", headers=ADMIN).json()["version"]
        cp = app.state.cp
        cp.saw_router("r1", None, current)
        cp.saw_router("r2", None, current - 1)
        t0 = time.monotonic()
        view = client.get("/api/v1/routers", params={"wait": 0.4}, headers=ADMIN).json()
        assert time.monotonic() - t0 >= 0.4  # r2 never caught up: the wait ran out
        assert view["table_version"] == current and view["synced"] is False
        assert {r["id"]: r["synced"] for r in view["routers"]} == {"r1": True, "r2": False}
        cp.saw_router("r2", None, current)
        view = client.get("/api/v1/routers", params={"wait": 5}, headers=ADMIN).json()
        assert view["synced"] is True and all(r["synced"] for r in view["routers"])
        assert client.get("/api/v1/routers").status_code == 401
