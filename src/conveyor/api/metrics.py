"""Request series per release, with deploy markers, for charts and scripts.

``window`` picks the resolution: 1 s points up to an hour, 60 s points beyond;
the answer is merged into at most ~300 steps so a 30-day chart stays light.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Query
from sqlalchemy import select

from conveyor.api.deps import CP, Reader
from conveyor.api.state import ControlPlane
from conveyor.store import repo, series
from conveyor.store.tables import events

router = APIRouter(tags=["metrics"])
MARKER_KINDS = ("deployed", "rollback", "rolled_back", "deploy_failed")
MAX_STEPS = 300


async def start(cp: ControlPlane) -> None:
    """Start-up hook: scrape every router that long-polls us, every second."""
    import asyncio

    from conveyor.deploy.scraper import Scraper

    def targets() -> dict[str, str]:
        now = time.time()
        return {r.id: r.admin_url for r in cp.routers.values() if r.admin_url and now - r.last_seen < 90}

    cp.scraper = Scraper(cp.engine, cp.notifier, targets)
    cp.tasks.append(asyncio.create_task(cp.scraper.run(), name="scraper"))


@router.get("/apps/{app}/metrics", summary="Request rate, errors and latency per release, with deploy markers")
def app_metrics(
    app: str,
    cp: CP,
    _p: Reader,
    env: str = Query("production"),
    window: int = Query(900, ge=60, le=30 * 86400, description="seconds back from now"),
) -> dict[str, Any]:
    now = time.time()
    since = now - window
    resolution = 1 if window <= 3600 else 60
    bucket = max(resolution, -(-window // MAX_STEPS))
    if resolution == 60:
        bucket = max(60, bucket - bucket % 60)
    with cp.engine.connect() as conn:
        app_row = repo.get_app(conn, app)
        env_row = repo.get_env(conn, app_row["id"], env)
        data = series.window(conn, env_row["id"], since, resolution=resolution, bucket=bucket)
        markers = [
            {"t": e.at, "kind": e.kind, "release": (e.data or {}).get("release"), "actor": e.actor,
             "message": e.message, "deployment": (e.data or {}).get("deployment")}
            for e in conn.execute(
                select(events).where(events.c.app == app, events.c.env == env, events.c.at >= since,
                                     events.c.kind.in_(MARKER_KINDS)).order_by(events.c.at)
            )
        ]
    return {"app": app, "env": env, "window": window, "resolution": resolution, "step": bucket,
            "series": {str(k): v for k, v in data.items()}, "markers": markers}
