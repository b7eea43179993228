"""Request series per release, with deploy markers, for charts and scripts.

``window`` picks the resolution: 1 s points up to an hour, 60 s points beyond;
the answer is merged into at most ~300 steps so a 30-day chart stays light
(``conveyor.services.metrics``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from conveyor.api.deps import CP, Reader
from conveyor.services import metrics

router = APIRouter(tags=["metrics"])


@router.get("/apps/{app}/metrics", summary="Request rate, errors and latency per release, instance counts, with deploy markers")
def app_metrics(
    app: str,
    cp: CP,
    _p: Reader,
    env: str = Query("production"),
    window: int = Query(900, ge=60, le=30 * 86400, description="seconds back from now"),
) -> dict[str, Any]:
    return metrics.app_metrics(cp, app, env, window)
