"""What the pages show, as plain JSON-able data: the pages render it, the API twins return it.

Why one module of read functions: every page has a JSON twin, and the simplest
way to keep them saying the same thing is for both to call the same function.
Health and progress are derived here by small pure helpers (``env_health``,
``deployment_progress``) that the unit tests call directly.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Connection, func, select

from conveyor.api.apps import status_of
from conveyor.api.state import ControlPlane
from conveyor.deploy import service
from conveyor.domain import deploy_machine as dm
from conveyor.store import repo
from conveyor.store.tables import (
    apps,
    builds,
    deployments,
    environments,
    hosts,
    images,
    instances,
    metric_points,
)

#: A host whose agent has not reported for this long is shown offline.
HOST_STALE_S = repo.HOST_LOST_AFTER


def env_health(release: int | None, instances: list[dict[str, Any]]) -> str:
    """healthy (every instance of the live release ready) · degraded (some) · down (none) · idle (no release)."""
    if release is None:
        return "idle"
    mine = [i for i in instances if i["release"] == release]
    ready = sum(1 for i in mine if i["state"] == "ready")
    if mine and ready == len(mine):
        return "healthy"
    return "degraded" if ready else "down"


#: The numbers a person looks at first in a canary verdict (any judge's prefix), in this order.
HEADLINE_NUMBERS = ("canary_requests", "baseline_requests", "canary_error_rate", "baseline_error_rate",
                    "canary_p99_ms", "baseline_p99_ms")


def verdict_view(v: dict[str, Any]) -> dict[str, Any]:
    """A verdict for people: its headline numbers, and every other number grouped by judge (no empty ones)."""
    numbers = {k: x for k, x in (v.get("numbers") or {}).items() if x is not None and not k.endswith(".outcome")}
    headline: dict[str, Any] = {}
    for name in HEADLINE_NUMBERS:
        for k, x in numbers.items():
            if (k == name or k.endswith("." + name)) and name not in headline:
                headline[name] = x
    groups: dict[str, list[tuple[str, Any]]] = {}
    for k, x in sorted(numbers.items()):
        judge, _, key = k.rpartition(".")
        groups.setdefault(judge or "analysis", []).append((key, x))
    return {**v, "headline": list(headline.items()), "groups": groups}


def canary_steps(dep: dict[str, Any]) -> list[dict[str, Any]]:
    """A canary's steps as ``[{"weight": %, "for": s}]``: its own, else the strategy's defaults."""
    if dep.get("strategy") != "canary":
        return []
    steps = (dep.get("params") or {}).get("steps")
    if not steps:
        try:
            from conveyor.domain.strategies import DEFAULT_STEPS
        except ImportError:  # an older control plane without canary support
            return []
        steps = DEFAULT_STEPS
    return [{"weight": int(s["weight"]), "for": float(s.get("for", s.get("duration", 30.0)))} for s in steps]


def deployment_progress(dep: dict[str, Any], ready_new: int = 0) -> dict[str, Any]:
    """How far a deployment has come: ``{"percent": 0-100, "label": "..."}``.

    Canary and rolling deployments count their steps; blue/green counts new
    instances ready (the switch itself is the last 10 %).
    """
    state = dep["state"]
    if state in dm.TERMINAL:
        return {"percent": 100, "label": state.replace("_", " ")}
    if state == "queued":
        pos = dep.get("queue_position")
        return {"percent": 0, "label": "queued" + (f" ({pos} ahead)" if pos else "")}
    params, progress = dep.get("params") or {}, dep.get("progress") or {}
    steps = canary_steps(dep) or params.get("steps") or []
    if steps and "step" in progress:
        current = int(progress.get("step", 0))  # 0-based index of the step in progress
        pct = round(100 * (current + 0.5) / (len(steps) + 1))
        phase = progress.get("phase")
        what = "baking" if state == "baking" else ("promoting" if phase == "promoting" else f"step {current + 1} of {len(steps)}")
        return {"percent": max(5, min(95, pct)), "label": ("paused at " if state == "paused" else "") + what}
    want = max(1, int(params.get("instances", 1)))
    pct = round(90 * min(ready_new, want) / want)
    label = "paused" if state == "paused" else f"{min(ready_new, want)}/{want} new instances ready"
    return {"percent": max(5, pct), "label": label}


def _deployment_view(conn: Connection, dep_id: int) -> dict[str, Any]:
    from conveyor.api.deployments import _with_verdicts

    return _with_verdicts(conn, service.get_deployment(conn, dep_id)).model_dump(mode="json")


def in_flight(cp: ControlPlane, app: str | None = None) -> list[dict[str, Any]]:
    """Deployments queued or running, oldest first, each with its ``progress_view``."""
    with cp.engine.connect() as conn:
        q = (
            select(deployments.c.id, deployments.c.env_id)
            .where(deployments.c.state.in_(["queued", *dm.ACTIVE]))
            .order_by(deployments.c.id)
        )
        if app is not None:
            app_row = repo.get_app(conn, app)
            envs = select(environments.c.id).where(environments.c.app_id == app_row["id"])
            q = q.where(deployments.c.env_id.in_(envs))
        ids = [(r.id, r.env_id) for r in conn.execute(q)]
        status = repo.instance_status_map(conn)
        out = []
        for dep_id, env_id in ids:
            dep = _deployment_view(conn, dep_id)
            ready = sum(
                1 for inst in repo.env_instances(conn, env_id)
                if inst["release"] == dep["release"] and status.get(inst["id"], ("", {}))[1].get("state") == "ready"
            )
            dep["progress_view"] = deployment_progress(dep, ready)
            out.append(dep)
    return out


def request_rates(cp: ControlPlane, window: float = 60.0) -> dict[tuple[int, int], float]:
    """(env id, release) → requests per second over the last ``window`` seconds of 1 s points."""
    since = time.time() - window
    with cp.engine.connect() as conn:
        rows = conn.execute(
            select(metric_points.c.env_id, metric_points.c.release, func.sum(metric_points.c.requests))
            .where(metric_points.c.resolution == 1, metric_points.c.t >= since)
            .group_by(metric_points.c.env_id, metric_points.c.release)
        ).all()
    return {(r[0], r[1]): float(r[2] or 0) / window for r in rows}


def overview(cp: ControlPlane) -> dict[str, Any]:
    """Every app and environment: release, health, traffic; and the deployments in flight."""
    rates = request_rates(cp)
    with cp.engine.connect() as conn:
        app_names = [r.name for r in conn.execute(select(apps.c.name).order_by(apps.c.name))]
        env_ids = {(r.app, r.env): r.id for r in conn.execute(
            select(apps.c.name.label("app"), environments.c.name.label("env"), environments.c.id)
            .select_from(environments.join(apps, apps.c.id == environments.c.app_id)))}
    out_apps = []
    for name in app_names:
        st = status_of(cp, name).model_dump(mode="json")
        envs = []
        for e in st["environments"]:
            env_id = env_ids.get((name, e["name"]))
            rps = sum(v for (eid, _), v in rates.items() if eid == env_id)
            envs.append({
                "name": e["name"], "release": e["release"], "image": e["image"], "commit": e["commit"],
                "url": e["url"], "routes": e["routes"], "health": env_health(e["release"], e["instances"]),
                "instances_ready": sum(1 for i in e["instances"] if i["state"] == "ready"),
                "instances_total": len(e["instances"]), "requests_per_s": round(rps, 3),
                "deploying": e["deploying"]["id"] if e["deploying"] else None,
            })
        out_apps.append({"name": name, "environments": envs})
    return {"apps": out_apps, "in_flight": in_flight(cp), "time": time.time()}


def app_page(cp: ControlPlane, app: str) -> dict[str, Any]:
    """Environments side by side, recent images, release history and deployments of one app."""
    from conveyor.api.apps import list_releases
    from conveyor.api.deployments import list_deployments
    from conveyor.api.deps import Principal

    p = Principal("web", "viewer", "")
    st = status_of(cp, app).model_dump(mode="json")
    releases = [r.model_dump(mode="json") for r in list_releases(app, cp, p, env=None, limit=30)]
    by_env_release = {(r["env"], r["number"]): r for r in releases}
    for e in st["environments"]:
        e["health"] = env_health(e["release"], e["instances"])
        live = by_env_release.get((e["name"], e["release"])) if e["release"] is not None else None
        e["live_release"] = live
        if e["release"] is not None and live is None:
            with cp.engine.connect() as conn:
                row = repo.get_release(conn, repo.get_env(conn, repo.get_app(conn, app)["id"], e["name"])["id"],
                                       e["release"])
                e["live_release"] = {"created_by": row["created_by"], "live_at": row["live_at"],
                                     "number": row["number"]}
        e["rollback_target"] = _rollback_target(cp, app, e["name"], e["release"])
    deps = [d.model_dump(mode="json") for d in list_deployments(app, cp, p, env=None, limit=20)]
    from conveyor.services.domains import list_domains

    domains = [d.model_dump(mode="json") for d in list_domains(cp.engine, app)]
    for e in st["environments"]:
        e["domains"] = [d for d in domains if d["env"] == e["name"]]
    return {
        "app": app,
        "domains": domains,
        "environments": st["environments"],
        "images": recent_images(cp, app),
        "releases": releases,
        "deployments": deps,
        "builds": recent_builds(cp, app, limit=10),
    }


def _rollback_target(cp: ControlPlane, app: str, env: str, current: int | None) -> dict[str, Any] | None:
    with cp.engine.connect() as conn:
        env_row = repo.get_env(conn, repo.get_app(conn, app)["id"], env)
        target = repo.rollback_target(conn, env_row["id"], current)
        if target is None:
            return None
        rel = repo.get_release(conn, env_row["id"], target)
        return {"number": target, "image": rel["image_digest"], "created_by": rel["created_by"]}


def recent_images(cp: ControlPlane, app: str, limit: int = 10) -> list[dict[str, Any]]:
    with cp.engine.connect() as conn:
        app_row = repo.get_app(conn, app)
        rows = conn.execute(
            select(images.c.digest, images.c.size, images.c.test_status, images.c.commit, images.c.build_id,
                   images.c.created_at, images.c.app_manifest)
            .where(images.c.app_id == app_row["id"]).order_by(images.c.created_at.desc()).limit(limit)
        ).mappings()
        out = []
        for r in rows:
            d = dict(r)
            d["strategy"] = (d.pop("app_manifest") or {}).get("deploy", {}).get("strategy", "bluegreen")
            out.append(d)
        return out


def recent_builds(cp: ControlPlane, app: str, limit: int = 20) -> list[dict[str, Any]]:
    with cp.engine.connect() as conn:
        app_row = repo.get_app(conn, app)
        rows = conn.execute(
            select(builds).where(builds.c.app_id == app_row["id"]).order_by(builds.c.id.desc()).limit(limit)
        ).mappings()
        return [dict(r) | {"app": app} for r in rows]


def hosts_view(cp: ControlPlane) -> dict[str, Any]:
    """Every host that ever reported, whether it is online, and what runs on it."""
    now = time.time()
    with cp.engine.connect() as conn:
        rows = conn.execute(select(hosts).order_by(hosts.c.name)).mappings().all()
        owner = {
            r.id: (r.app, r.env, r.release, r.role)
            for r in conn.execute(
                select(
                    instances.c.id, instances.c.release, instances.c.role,
                    apps.c.name.label("app"), environments.c.name.label("env"),
                ).select_from(
                    instances.join(environments, environments.c.id == instances.c.env_id)
                    .join(apps, apps.c.id == environments.c.app_id)
                )
            )
        }
    out = []
    for h in rows:
        insts = []
        for i in (h["status"] or {}).get("instances", []):
            app, env, release, role = owner.get(i["id"], (None, None, None, None))
            insts.append({**i, "app": app, "env": env, "release": release, "role": role})
        out.append({
            "name": h["name"], "address": h["address"], "last_seen": h["last_seen"],
            "online": now - h["last_seen"] < HOST_STALE_S,
            "agent_version": (h["status"] or {}).get("agent_version", ""),
            "desired_version": h["desired_version"], "instances": insts,
        })
    routers = [
        {"id": r.id, "admin_url": r.admin_url, "table_version": r.version, "last_seen": r.last_seen,
         "online": now - r.last_seen < HOST_STALE_S + 60}
        for r in cp.routers.values()
    ]
    return {"hosts": out, "routers": routers, "time": now}
