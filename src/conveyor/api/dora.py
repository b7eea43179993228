"""``GET /api/v1/dora``: the four DORA keys of one app or of every app.

The numbers come from ``conveyor.domain.dora`` (pure); this module only reads
the production deployment history, with each image's commit time, from SQL.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Query
from sqlalchemy import Connection, select

from conveyor.api.deps import CP, Reader
from conveyor.domain import dora
from conveyor.store import repo
from conveyor.store.repo import NotFound
from conveyor.store.tables import apps, deployments, environments, images, releases

router = APIRouter(tags=["dora"])


def load_history(conn: Connection, app: str | None = None, env: str = "production",
                 since: float | None = None, team: str | None = None) -> list[dora.DeployRecord]:
    """Production deployments (of ``app``, or all apps) created at or after ``since``, with commit info."""
    q = (
        select(deployments, apps.c.name.label("app_name"), images.c.commit, releases.c.live_at.label("release_live_at"))
        .select_from(
            deployments.join(environments, environments.c.id == deployments.c.env_id)
            .join(apps, apps.c.id == environments.c.app_id)
            .outerjoin(images, (images.c.digest == deployments.c.image_digest) & (images.c.app_id == apps.c.id))
            .outerjoin(releases, (releases.c.env_id == deployments.c.env_id) & (releases.c.number == deployments.c.to_release))
        )
        .where(environments.c.name == env)
        .order_by(deployments.c.created_at, deployments.c.id)
    )
    if app is not None:
        repo.get_app(conn, app)  # 404 with a helpful message for an unknown app
        q = q.where(apps.c.name == app)
    if team is not None:
        q = q.where(apps.c.team == team)
    if since is not None:
        q = q.where(deployments.c.created_at >= since)
    out = []
    for r in conn.execute(q).mappings():
        commit = r["commit"] or {}
        ctime = commit.get("time")
        out.append(dora.DeployRecord(
            id=r["id"], app=r["app_name"], kind=r["kind"], state=r["state"], release=r["to_release"],
            from_release=r["from_release"], created_at=r["created_at"], started_at=r["started_at"],
            finished_at=r["finished_at"], commit_sha=commit.get("sha"),
            commit_time=float(ctime) if ctime is not None else None, created_by=r["created_by"],
            traffic_at=traffic_at(r["kind"], r["strategy"], r["started_at"], r["finished_at"], r["release_live_at"]),
        ))
    return out


def traffic_at(kind: str, strategy: str, started: float | None, finished: float | None,
               live_at: float | None) -> float | None:
    """When a deploy's release first took traffic, from what SQL keeps.

    A canary or rolling deploy routes to the new release as soon as its first
    new instances are ready, so its start is the closest record. A blue/green
    one switches when its release is made current (``live_at``), unless that
    was overwritten by a later return to the release (then it is after the
    deploy ended, and unknown here).
    """
    if kind != "deploy" or started is None:
        return None
    if strategy in ("canary", "rolling"):
        return started
    if live_at is not None and started <= live_at <= (finished if finished is not None else live_at):
        return live_at
    return None


def report(cp: Any, app: str | None, since: str, now: float | None = None, team: str | None = None) -> dict[str, Any]:
    """The DORA report as JSON: ``{"app", "since", "until", "days", "keys": {...}, "failures": [...]}``."""
    span = dora.parse_period(since)
    until = now if now is not None else time.time()
    start = until - span
    with cp.engine.connect() as conn:
        # Twice the span: the previous period is the trend's reference. Records that finished
        # within the span but were created before it are included by the margin below.
        if team is not None and not conn.execute(select(apps.c.id).where(apps.c.team == team)).first():
            teams = sorted({r.team for r in conn.execute(select(apps.c.team)) if r.team})
            raise NotFound(f"team {team!r} owns no app (teams: {', '.join(teams) or 'none yet'}); "
                           "set one with `conveyor apps create NAME --team TEAM` or `conveyor apps set-team`")
        history = load_history(conn, app, since=start - span - dora.DAY, team=team)
    out = dora.compute(history, start, until, app=app).to_dict()
    out["period"] = since
    out["team"] = team
    for name, key in out["keys"].items():
        key["title"] = dora.TITLES[name]
        key["text"] = dora.describe(key)
        key["previous_text"] = dora.describe({"name": name, "value": key["previous"]})
    return out


@router.get("/dora", summary="The four DORA keys for a period, for one app or every app")
def get_dora(
    cp: CP,
    _p: Reader,
    app: str | None = Query(None, description="only this app (default: every app)"),
    since: str = Query("30d", description="the period: e.g. 24h, 7d, 30d, 12w"),
    team: str | None = Query(None, description="only the apps of this team"),
) -> dict[str, Any]:
    return report(cp, app or None, since, team=team or None)
