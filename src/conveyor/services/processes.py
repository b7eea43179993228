"""Process types: `conveyor scale` (counts without a new release) and `conveyor ps` (every instance).

Scaling writes the wanted counts (``process_counts``) and pokes the orchestrator, which holds the
current release at them between deployments (``domain/processes.scale``): instances going away
drain first (the router finishes their requests; a worker gets SIGTERM and the drain period).
Deployments queued later start at these counts too.
"""

from __future__ import annotations

from typing import Any

from conveyor.domain.processes import parse_counts
from conveyor.services.state import ControlPlane
from conveyor.store import config_vars, hosts, instances, repo
from conveyor.store.repo import Conflict


def scale(cp: ControlPlane, app: str, env: str, pairs: list[str], actor: str = "", origin: str = "") -> dict[str, Any]:
    """Set instance counts per process type (``["web=3", "worker=2"]``); nothing changes on bad input."""
    from conveyor.services.autoscale import refuse_manual_scale

    refuse_manual_scale(cp, app, env, {pair.partition("=")[0] for pair in pairs})
    with cp.engine.begin() as conn:
        env_row = repo.get_env(conn, repo.get_app(conn, app)["id"], env)
        if env_row["current_release"] is None:
            raise Conflict(f"{app}/{env} has no release yet: deploy it first, then scale")
        cfg = repo.get_release(conn, env_row["id"], env_row["current_release"])["config"] or {}
        known = set(cfg.get("processes") or {"web": cfg.get("command", "")})
        counts = parse_counts(pairs, known)
        now = repo.now()
        for name, n in counts.items():
            config_vars.set_count(conn, env_row["id"], name, n, actor, now)
        shown = " ".join(f"{k}={v}" for k, v in sorted(counts.items()))
        repo.record_event(conn, "scaled", f"{app}/{env} scaled to {shown} by {actor or 'someone'}", app=app, env=env,
                          actor=actor, origin=origin, data={"counts": counts})
    cp.notifier.poke("orchestrator", "deployments")
    return {"app": app, "env": env, "counts": counts}


def ps(cp: ControlPlane, app: str, env: str | None = None) -> list[dict[str, Any]]:
    """Every instance of every process type: host, state, restarts, uptime (seconds since it started),
    and as its agent last reported it: resource use against its limits, how it is isolated, its message."""
    now = cp.clock()
    with cp.engine.connect() as conn:
        app_row = repo.get_app(conn, app)
        status = hosts.instance_status_map(conn, now, cp.started_at)
        out = []
        for e in repo.envs_of_app(conn, app_row["id"]):
            if env is not None and e["name"] != env:
                continue
            counts = config_vars.counts_of(conn, e["id"])
            for i in instances.of_env(conn, e["id"]):
                _, st = status.get(i["id"], (None, {}))
                started = st.get("started_at")
                out.append({
                    "app": app, "env": e["name"], "id": i["id"], "process": i["process"], "release": i["release"],
                    "role": i["role"], "host": i["host"],
                    "state": "draining" if i["draining_since"] is not None else st.get("state", "pending"),
                    "restarts": int(st.get("restarts", 0)), "port": st.get("port"),
                    "uptime": round(now - float(started), 1) if started else None,
                    "scaled_to": counts.get(i["process"]),
                    "usage": st.get("usage"), "limits": st.get("limits"), "sandbox": st.get("sandbox") or None,
                    "message": st.get("message") or "",
                })
    return sorted(out, key=lambda r: (r["env"], r["process"] != "web", r["process"], r["release"], r["id"]))


def restart(cp: ControlPlane, app: str, env: str, process: str | None = None, actor: str = "",
            origin: str = "") -> dict[str, Any]:
    """A rolling restart of one process type (or all) of the current release: no new release; a new
    instance is ready before an old one drains, so no request fails (the orchestrator does it)."""
    now = cp.clock()
    with cp.engine.begin() as conn:
        env_row = repo.get_env(conn, repo.get_app(conn, app)["id"], env)
        release = env_row["current_release"]
        if release is None:
            raise Conflict(f"{app}/{env} has no release to restart: deploy it first")
        cfg = repo.get_release(conn, env_row["id"], release)["config"] or {}
        known = sorted(cfg.get("processes") or {"web": ""})
        if process is not None and process not in known:
            raise ValueError(f"process type {process!r} is unknown: this release has {', '.join(known)}")
        chosen = [process] if process is not None else known
        for name in chosen:
            count = len(instances.active_ids(conn, env_row["id"], release, "main" if name == "web" else "worker", name))
            config_vars.request_restart(conn, env_row["id"], name, count, actor, now)
        repo.record_event(conn, "restart_requested", f"rolling restart of {', '.join(chosen)} of {app}/{env} "
                          f"(release {release}) by {actor or 'someone'}", app=app, env=env, actor=actor, origin=origin,
                          data={"processes": chosen, "release": release})
    cp.notifier.poke("orchestrator", "deployments")
    return {"app": app, "env": env, "release": release, "processes": chosen}


def restarts_pending(cp: ControlPlane, app: str, env: str) -> list[str]:
    """The process types whose rolling restart is still in progress."""
    with cp.engine.connect() as conn:
        env_row = repo.get_env(conn, repo.get_app(conn, app)["id"], env)
        return sorted(config_vars.restarts_of(conn, env_row["id"]))


def process_types(cp: ControlPlane, app: str, env: str) -> list[dict[str, Any]]:
    """The current release's process types with their wanted count (set by scale, else the release's)
    and how many instances run now: what the app page's scale control shows."""
    with cp.engine.connect() as conn:
        env_row = repo.get_env(conn, repo.get_app(conn, app)["id"], env)
        release = env_row["current_release"]
        if release is None:
            return []
        cfg = repo.get_release(conn, env_row["id"], release)["config"] or {}
        scaled = config_vars.counts_of(conn, env_row["id"])
        default = {"web": int(cfg.get("instances", 1)), **{k: int(v) for k, v in (cfg.get("workers") or {}).items()}}
        out = []
        for name in sorted(cfg.get("processes") or {"web": cfg.get("command", "")}, key=lambda n: (n != "web", n)):
            role = "main" if name == "web" else "worker"
            out.append({"name": name, "command": (cfg.get("processes") or {}).get(name, cfg.get("command", "")),
                        "count": scaled.get(name, default.get(name, 1)), "scaled": name in scaled,
                        "running": len(instances.active_ids(conn, env_row["id"], release, role, name))})
    return out
