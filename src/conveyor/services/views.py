"""What the pages show, as plain JSON-able data: the pages render it, the API twins return it.

Why one module of read functions: every page has a JSON twin, and the simplest
way to keep them saying the same thing is for both to call the same function
(the web pages and ``api/twins.py``; neither imports the other). Health and
progress are derived here by small pure helpers (``env_health``,
``deployment_progress``) that the unit tests call directly. The reads go
through the other services, never straight to SQL.
"""

from __future__ import annotations

from typing import Any

from conveyor.domain import deploy_machine as dm
from conveyor.services import (
    apps, audit, builds, config, deployments, domains, gitremote, hooks, metrics, notifications, processes,
)
from conveyor.services.state import ControlPlane
from conveyor.store import deployments as deployment_rows
from conveyor.store import hosts, instances, repo

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
        if phase == "sizing" and state != "paused":
            what += f", growing for step {int(progress.get('sizing_step', current)) + 1}"
        return {"percent": max(5, min(95, pct)), "label": ("paused at " if state == "paused" else "") + what}
    want = max(1, int(params.get("instances", 1)))
    pct = round(90 * min(ready_new, want) / want)
    label = "paused" if state == "paused" else f"{min(ready_new, want)}/{want} new instances ready"
    return {"percent": max(5, pct), "label": label}




def in_flight(cp: ControlPlane, app: str | None = None) -> list[dict[str, Any]]:
    """Deployments queued or running, oldest first, each with its ``progress_view``."""
    with cp.engine.connect() as conn:
        app_id = repo.get_app(conn, app)["id"] if app is not None else None
        ids = deployment_rows.open_ids(conn, app_id)
        status = hosts.instance_status_map(conn, cp.clock(), cp.started_at)
        out = []
        for dep_id, env_id in ids:
            dep = deployments.with_verdicts(conn, dep_id).model_dump(mode="json")
            ready = sum(
                1 for inst in instances.of_env(conn, env_id)
                if inst["release"] == dep["release"] and status.get(inst["id"], ("", {}))[1].get("state") == "ready"
            )
            dep["progress_view"] = deployment_progress(dep, ready)
            out.append(dep)
    return out


def overview(cp: ControlPlane) -> dict[str, Any]:
    """Every app and environment: release, health, traffic; and the deployments in flight."""
    rates = metrics.request_rates(cp)
    with cp.engine.connect() as conn:
        app_names = repo.app_names(conn)
        env_ids = repo.env_ids_by_name(conn)
    out_apps = []
    for name in app_names:
        st = apps.status_of(cp, name).model_dump(mode="json")
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
    return {"apps": out_apps, "in_flight": in_flight(cp), "time": cp.clock()}


def app_page(cp: ControlPlane, app: str, reveal: bool = False) -> dict[str, Any]:
    """Environments side by side (with their config and process types), recent images, release
    history and deployments of one app. ``reveal``: plain config values (a token that may deploy);
    a secret's value is never there."""
    st = apps.status_of(cp, app).model_dump(mode="json")
    releases = [r.model_dump(mode="json") for r in apps.releases(cp, app, env=None, limit=30)]
    by_env_release = {(r["env"], r["number"]): r for r in releases}
    for e in st["environments"]:
        e["health"] = env_health(e["release"], e["instances"])
        live = by_env_release.get((e["name"], e["release"])) if e["release"] is not None else None
        e["live_release"] = live
        if e["release"] is not None and live is None:
            e["live_release"] = apps.live_release(cp, app, e["name"], e["release"])
        e["rollback_target"] = apps.rollback_target(cp, app, e["name"], e["release"])
        e["config"] = [v.model_dump(mode="json") for v in config.list_vars(cp, app, e["name"], reveal=reveal)]
        e["processes"] = processes.process_types(cp, app, e["name"])
    deps = [d.model_dump(mode="json") for d in deployments.list_for_app(cp, app, env=None, limit=20)]
    imgs = builds.recent_images(cp, app)
    default, why = default_image(imgs, releases)
    doms = [d.model_dump(mode="json") for d in domains.list_domains(cp, app)]
    for e in st["environments"]:
        e["domains"] = [d for d in doms if d["env"] == e["name"]]
    return {
        "app": app,
        "domains": doms,
        "environments": st["environments"],
        "images": imgs,
        "default_image": default,
        "default_image_why": why,
        "releases": releases,
        "deployments": deps,
        "builds": builds.recent_builds(cp, app, limit=10),
        "repository": hooks.summary(cp, app),
        "notifications": {"targets": [t.model_dump(mode="json") for t in notifications.list_targets(cp, app)],
                          "log": [n.model_dump(mode="json") for n in notifications.delivery_log(cp, app, 20)]},
        "git": gitremote.summary(cp, app),
    }


def default_image(imgs: list[dict[str, Any]], releases: list[dict[str, Any]]) -> tuple[str | None, str]:
    """The Deploy form's pre-selected image and why: the newest whose tests passed and that no
    release ever rolled back or failed with (``imgs`` newest first). Pure."""
    bad = {r.get("image") for r in releases if r.get("status") in ("rolled_back", "failed")}
    skipped = 0
    for img in imgs:
        if img.get("test_status") != "passed":
            continue
        if img["digest"] in bad:
            skipped += 1
            continue
        why = "the newest image whose tests passed"
        if skipped:
            why += f" and that was never rolled back ({skipped} newer {'one was' if skipped == 1 else 'ones were'})"
        return img["digest"], why
    return None, "no image has passed its tests without being rolled back: pick one knowingly"


def deployment_snapshot(cp: ControlPlane, dep_id: int) -> dict[str, Any]:
    """Everything the live deployment page shows: the deployment, its progress, instances, routes and events."""
    dep = deployments.read(cp, dep_id).model_dump(mode="json")
    with cp.engine.connect() as conn:
        app_row = repo.get_app(conn, dep["app"])
        env = repo.get_env(conn, app_row["id"], dep["env"])
        status = hosts.instance_status_map(conn, cp.clock(), cp.started_at)
        insts = []
        for i in instances.of_env(conn, env["id"]):
            addr, st = status.get(i["id"], (None, {}))
            insts.append({"id": i["id"], "release": i["release"], "role": i["role"], "host": i["host"],
                          "state": st.get("state", "pending"), "port": st.get("port"), "address": addr,
                          "restarts": st.get("restarts", 0), "message": st.get("message", "")})
    evs = audit.of_deployment(cp, dep)
    ready_new = sum(1 for i in insts if i["release"] == dep["release"] and i["state"] == "ready")
    steps = canary_steps(dep)
    shown = [verdict_view(v) for v in reversed(dep["verdicts"])]  # newest first
    return {
        "deployment": dep,
        "verdicts": shown,
        "progress_view": deployment_progress(dep, ready_new),
        "routes": {str(k): v for k, v in (env["routes"] or {}).items()},
        "current_release": env["current_release"],
        "instances": [i for i in insts if i["release"] in (dep["release"], dep["from_release"])],
        "events": evs,
        "steps": steps,
        "step": dep["progress"].get("step"),
        "terminal": dep["state"] in dm.TERMINAL,
        "time": cp.clock(),
    }
