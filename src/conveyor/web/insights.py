"""Metrics and DORA pages: how releases behave, and how well the team delivers.

The metrics page is a shell: ``static/charts.js`` fetches
``GET /api/v1/apps/{app}/metrics?env=&window=`` and draws request rate, error
rate and p50/p99 latency per release as SVG, with a vertical line at every
deploy and rollback. The DORA page is rendered here, trend bars included
(``trend_svg``), from the same report ``GET /api/v1/dora`` returns.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from markupsafe import Markup, escape
from starlette.concurrency import run_in_threadpool

from conveyor.domain import dora
from conveyor.services import apps
from conveyor.services.metrics import dora_report as report
from conveyor.services.errors import NotFound
from conveyor.web.app_pages import not_found
from conveyor.web.render import render
from conveyor.web.session import PageUser

router = APIRouter(include_in_schema=False)

#: The metrics windows a person can choose: label → seconds.
WINDOWS = {"15 min": 900, "1 hour": 3600, "6 hours": 21600, "24 hours": 86400, "7 days": 604800, "30 days": 2592000}
PERIODS = ("24h", "7d", "30d", "90d")


@router.get("/apps/{app}/metrics", response_class=HTMLResponse)
def metrics_page(request: Request, app: str, user: PageUser, env: str | None = None,
                 window: int = 3600) -> HTMLResponse:
    cp = request.app.state.cp
    try:
        envs = apps.env_names(cp, app)
    except NotFound as exc:
        return not_found(request, str(exc))
    if env is None:
        env = "production" if "production" in envs or not envs else envs[0]
    if window not in WINDOWS.values():
        window = 3600
    return render(request, "metrics.html", app=app, envs=envs, env=env, window=window, windows=WINDOWS)


def trend_svg(key: dict[str, Any], width: int = 240, height: int = 56) -> Markup:
    """A bar per sub-period, labelled for screen readers and with a hover title per bar."""
    buckets = key.get("buckets") or []
    vals = [b["value"] for b in buckets]
    top = max((v for v in vals if v is not None), default=0) or 1
    n = max(1, len(buckets))
    bw = width / n
    parts = [f'<svg class="trend" viewBox="0 0 {width} {height + 14}" width="100%" role="img" '
             f'aria-label="{escape(dora.TITLES[key["name"]])} per period">']
    for i, b in enumerate(buckets):
        day = dt.datetime.fromtimestamp(b["start"], dt.UTC).strftime("%b %d %H:%M")
        text = dora.describe({"name": key["name"], "value": b["value"]})
        x = i * bw + 1
        if b["value"] is None:
            parts.append(f'<rect class="none" x="{x:.1f}" y="{height - 2}" width="{max(1, bw - 2):.1f}" height="2">'
                         f'<title>{escape(day)}: no data</title></rect>')
            continue
        h = max(2.0, (height - 4) * b["value"] / top)
        parts.append(f'<rect x="{x:.1f}" y="{height - h:.1f}" width="{max(1, bw - 2):.1f}" height="{h:.1f}">'
                     f'<title>{escape(day)}: {escape(text)} ({b["samples"]} samples)</title></rect>')
    if buckets:
        first = dt.datetime.fromtimestamp(buckets[0]["start"], dt.UTC).strftime("%b %d")
        last = dt.datetime.fromtimestamp(buckets[-1]["start"], dt.UTC).strftime("%b %d")
        parts.append(f'<text x="0" y="{height + 12}" class="axis">{first}</text>'
                     f'<text x="{width}" y="{height + 12}" text-anchor="end" class="axis">{last}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


@router.get("/dora", response_class=HTMLResponse)
async def dora_page(request: Request, user: PageUser, app: str | None = None, since: str = "30d",
                    team: str | None = None) -> HTMLResponse:
    cp = request.app.state.cp
    app_names = apps.names(cp)
    teams = apps.teams(cp)
    try:
        data = await run_in_threadpool(lambda: report(cp, app or None, since, team=team or None))
    except NotFound as exc:
        return not_found(request, str(exc))
    except ValueError as exc:
        data = await run_in_threadpool(report, cp, app or None, "30d")
        return render(request, "dora.html", status_code=422, data=data, apps=app_names, app=app, since="30d",
                      periods=PERIODS, trend_svg=trend_svg, error=str(exc), teams=teams, team=team)
    return render(request, "dora.html", data=data, apps=app_names, app=app, since=since, periods=PERIODS,
                  trend_svg=trend_svg, teams=teams, team=team)
