"""``GET /api/v1/dora``: the four DORA keys of one app or of every app.

The numbers come from ``conveyor.domain.dora`` (pure), the production
deployment history from ``conveyor.services.metrics``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from conveyor.api.deps import CP, Reader
from conveyor.services import metrics

router = APIRouter(tags=["dora"])


@router.get("/dora", summary="The four DORA keys for a period, for one app or every app")
def get_dora(
    cp: CP,
    _p: Reader,
    app: str | None = Query(None, description="only this app (default: every app)"),
    since: str = Query("30d", description="the period: e.g. 24h, 7d, 30d, 12w (at most 3 years)",
                       pattern=r"^([1-9][0-9]{0,3}(m|min|h)|[1-9][0-9]{0,2}d|[1-9][0-9]?w)$"),
    team: str | None = Query(None, description="only the apps of this team"),
) -> dict[str, Any]:
    return metrics.dora_report(cp, app or None, since, team=team or None)
