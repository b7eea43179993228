"""`conveyor autoscale`: set, show and remove an environment's autoscaling policies.

The decisions are the orchestrator's (``deploy/orchestrator._autoscale``, every second, on
``domain/autoscale.decide``); here a policy is checked and stored, and what the autoscaler
last decided is read back with the count in force and the instances ready, so that
`conveyor autoscale APP` can say "3 → 5: 14.2 in flight per instance vs target 8".
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from conveyor.domain.autoscale import Policy, PolicyError, check_policy
from conveyor.services.state import ControlPlane
from conveyor.store import autoscalers, config_vars, repo
from conveyor.store.repo import Conflict, NotFound


def set_policy(cp: ControlPlane, app: str, env: str, process: str, policy: Policy, actor: str = "",
               origin: str = "") -> dict[str, Any]:
    """Turn autoscaling on (or change it) for one process type; nothing is stored on bad input."""
    try:
        check_policy(policy)
    except PolicyError as exc:
        raise ValueError(str(exc)) from None
    with cp.engine.begin() as conn:
        env_row = repo.get_env(conn, repo.get_app(conn, app)["id"], env)
        if env_row["current_release"] is not None:
            cfg = repo.get_release(conn, env_row["id"], env_row["current_release"])["config"] or {}
            known = set(cfg.get("processes") or {"web": ""})
            if process not in known:
                raise ValueError(f"process type {process!r} is unknown: {app}/{env} runs {', '.join(sorted(known))}")
        store_policy(conn, env_row["id"], app, env, process, policy, actor, origin, cp.clock())
    cp.notifier.poke("orchestrator")
    return show(cp, app, env)


def store_policy(conn: Connection, env_id: int, app: str, env: str, process: str, policy: Policy, actor: str,
                 origin: str, now: float, source: str = "") -> None:
    """Store a checked policy and its ``autoscale_set`` event (``source``: where it was written, when
    not on the command line, e.g. conveyor.toml)."""
    autoscalers.put(conn, env_id, process, policy.to_json(), actor or "someone", now)
    where = f" from {source}" if source else ""
    repo.record_event(conn, "autoscale_set",
                      f"{app}/{env} {process} autoscaled{where} by {actor or 'someone'}: {policy.min}..{policy.max} "
                      f"instances, target {policy.target:g} {policy.metric}", app=app, env=env, actor=actor,
                      origin=origin, data={"process": process, "policy": policy.to_json(),
                                           **({"from": source} if source else {})})


def remove(cp: ControlPlane, app: str, env: str, process: str, actor: str = "", origin: str = "") -> dict[str, Any]:
    """Turn autoscaling off: the count stays where the autoscaler left it (`conveyor scale` from there)."""
    with cp.engine.begin() as conn:
        env_row = repo.get_env(conn, repo.get_app(conn, app)["id"], env)
        if not autoscalers.remove(conn, env_row["id"], process):
            raise NotFound(f"{app}/{env} {process} is not autoscaled")
        repo.record_event(conn, "autoscale_off", f"{app}/{env} {process}: autoscaling turned off by {actor or 'someone'}",
                          app=app, env=env, actor=actor, origin=origin, data={"process": process})
    return show(cp, app, env)


def show(cp: ControlPlane, app: str, env: str) -> dict[str, Any]:
    """Each autoscaled process type: its policy, the count in force, and the last decision with its reason."""
    with cp.engine.connect() as conn:
        env_row = repo.get_env(conn, repo.get_app(conn, app)["id"], env)
        counts = config_vars.counts_of(conn, env_row["id"])
        rows = autoscalers.of_env(conn, env_row["id"])
    return {"app": app, "env": env, "autoscalers": [
        {"process": r["process"], "policy": r["policy"], "count": counts.get(r["process"]),
         "decision": r["decision"], "decided_at": r["decided_at"], "updated_by": r["updated_by"]} for r in rows]}


def refuse_manual_scale(cp: ControlPlane, app: str, env: str, processes: set[str]) -> None:
    """`conveyor scale` of an autoscaled process type would be undone within a second: refuse it."""
    with cp.engine.connect() as conn:
        env_row = repo.get_env(conn, repo.get_app(conn, app)["id"], env)
        auto = sorted({r["process"] for r in autoscalers.of_env(conn, env_row["id"])} & processes)
    if auto:
        raise Conflict(f"{app}/{env} {', '.join(auto)} is autoscaled: change its bounds with `conveyor autoscale "
                       f"{app} --min N --max M`, or turn it off with `conveyor autoscale {app} --off`")
