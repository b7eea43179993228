"""Metrics and DORA: request series per release with deploy markers, request rates, the four
DORA keys, and the control plane's own numbers for Prometheus.

The numbers are computed by pure code (``store.series`` merging, ``domain.dora``);
this service picks the window and reads the rows. Time windows end at
``cp.clock()`` (or a ``now`` given by the caller).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from conveyor.deploy.scraper import Scraper
from conveyor.domain import dora
from conveyor.services.hosts import scrape_targets
from conveyor.services.state import ControlPlane
from conveyor.store import builds, deployments, gitpushes, hosts, instance_counts, repo, series
from conveyor.store.repo import NotFound

MARKER_KINDS = ("deployed", "rollback", "rolled_back", "deploy_failed")
MAX_STEPS = 300


async def start(cp: ControlPlane) -> None:
    """Start-up hook: scrape every router that long-polls us (every 0.5 s, see ``deploy.scraper``)."""
    cp.scraper = Scraper(cp.engine, cp.notifier, lambda: scrape_targets(cp))
    cp.tasks.append(asyncio.create_task(cp.scraper.run(), name="scraper"))


def app_metrics(cp: ControlPlane, app: str, env: str = "production", window: int = 900) -> dict[str, Any]:
    """Request rate, errors and latency per release over ``window`` seconds, with deploy markers:
    1 s points up to an hour, 60 s beyond, merged into at most ~``MAX_STEPS`` steps. ``instances``:
    per process type, the ready instances and the count in force as a step function (``{t, ready,
    count}`` from the value at the window's start), to graph against the load."""
    now = cp.clock()
    since = now - window
    resolution = 1 if window <= 3600 else 60
    bucket = max(resolution, -(-window // MAX_STEPS))
    if resolution == 60:
        bucket = max(60, bucket - bucket % 60)
    with cp.engine.connect() as conn:
        app_row = repo.get_app(conn, app)
        env_row = repo.get_env(conn, app_row["id"], env)
        data = series.window(conn, env_row["id"], since, resolution=resolution, bucket=bucket)
        counts = instance_counts.window(conn, env_row["id"], since)
        markers = [
            {"t": e["at"], "kind": e["kind"], "release": (e["data"] or {}).get("release"), "actor": e["actor"],
             "message": e["message"], "deployment": (e["data"] or {}).get("deployment")}
            for e in repo.list_events(conn, app=app, env=env, since=since, kinds=MARKER_KINDS, order="time")
        ]
    return {"app": app, "env": env, "window": window, "resolution": resolution, "step": bucket,
            "series": {str(k): v for k, v in data.items()}, "markers": markers, "instances": counts}


def request_rates(cp: ControlPlane, window: float = 60.0) -> dict[tuple[int, int], float]:
    """(env id, release) → requests per second over the last ``window`` seconds of 1 s points."""
    with cp.engine.connect() as conn:
        totals = series.request_totals(conn, cp.clock() - window)
    return {k: float(n) / window for k, n in totals.items()}


def load_history(cp: ControlPlane, app: str | None = None, env: str = "production", since: float | None = None,
                 team: str | None = None) -> list[dora.DeployRecord]:
    """Production deployments (of ``app``, or all apps) created at or after ``since``, with commit info."""
    with cp.engine.connect() as conn:
        if app is not None:
            repo.get_app(conn, app)  # 404 with a helpful message for an unknown app
        rows = deployments.history(conn, env, app=app, team=team, since=since)
        pushed = gitpushes.commits_by_deployment(conn, [int(r["id"]) for r in rows])
    out = []
    for r in rows:
        commit = r["commit"] or {}
        ctime = commit.get("time")
        out.append(dora.DeployRecord(
            id=r["id"], app=r["app_name"], kind=r["kind"], state=r["state"], release=r["to_release"],
            from_release=r["from_release"], created_at=r["created_at"], started_at=r["started_at"],
            finished_at=r["finished_at"], commit_sha=commit.get("sha"),
            commit_time=float(ctime) if ctime is not None else None, created_by=r["created_by"],
            traffic_at=traffic_at(r["kind"], r["strategy"], r["started_at"], r["finished_at"], r["release_live_at"]),
            commits=tuple((c["sha"], float(c["time"])) for c in pushed.get(int(r["id"]), [])),
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


def dora_report(cp: ControlPlane, app: str | None, since: str, now: float | None = None,
                team: str | None = None) -> dict[str, Any]:
    """The DORA report as JSON: ``{"app", "since", "until", "days", "keys": {...}, "failures": [...]}``."""
    span = dora.parse_period(since)
    until = now if now is not None else cp.clock()
    start = until - span
    if team is not None:
        with cp.engine.connect() as conn:
            if not repo.team_has_apps(conn, team):
                teams = repo.teams(conn)
                raise NotFound(f"team {team!r} owns no app (teams: {', '.join(teams) or 'none yet'}); "
                               "set one with `conveyor apps create NAME --team TEAM` or `conveyor apps set-team`")
    # Twice the span: the previous period is the trend's reference. Records that finished
    # within the span but were created before it are included by the margin below.
    history = load_history(cp, app, since=start - span - dora.DAY, team=team)
    out = dora.compute(history, start, until, app=app).to_dict()
    out["period"] = since
    out["team"] = team
    for name, key in out["keys"].items():
        key["title"] = dora.TITLES[name]
        key["text"] = dora.describe(key)
        key["previous_text"] = dora.describe({"name": name, "value": key["previous"]})
    return out


@dataclass(frozen=True)
class ControlPlaneNumbers:
    """What ``/metrics`` reports about the control plane itself, read at scrape time."""

    deployments: list[tuple[str, str, int]]  # (kind, state, count)
    builds: list[tuple[str, int]]  # (state, count)
    apps: int
    images: int
    hosts_alive: int
    instances: dict[str, int]  # state -> count, as the agents report them
    routers_connected: int
    orchestrator_ticks: int


def control_plane_numbers(cp: ControlPlane) -> ControlPlaneNumbers:
    now = cp.clock()
    with cp.engine.connect() as conn:
        counts: dict[str, int] = {}
        for _addr, st in hosts.instance_status_map(conn, now, cp.started_at).values():
            counts[st.get("state", "pending")] = counts.get(st.get("state", "pending"), 0) + 1
        numbers = ControlPlaneNumbers(
            deployments=deployments.count_by_kind_state(conn),
            builds=builds.count_by_state(conn),
            apps=repo.count_apps(conn),
            images=builds.count_images(conn),
            hosts_alive=hosts.alive_count(conn, now),
            instances=dict(sorted(counts.items())),
            routers_connected=sum(1 for r in cp.routers.values() if now - r.last_seen < 90),
            orchestrator_ticks=cp.orchestrator.ticks if cp.orchestrator else 0,
        )
    return numbers
