"""Deploy locks and freeze windows: `conveyor lock/unlock`, `conveyor freeze add/list/remove`, and the
one gate every path that queues a deployment asks (:func:`check`, :func:`check_in`).

The decision is pure (``domain/gate.py``); this module loads the rows, refuses bad input before
anything is written, and records every change (and every forced deploy) as an event, which is the
audit log (``services/audit.py``) the CLI, the API and the audit page read.

Refusal is a :class:`Locked` error, a ``Conflict``: the API answers **409** (the request contradicts
the environment's state: it is locked or frozen), with the lock's who/why/since in ``detail``. Not 423:
409 is already every write's documented "not now" status, so clients and the OpenAPI contract need
nothing new.

For the others' automatic deployers (pushes, webhooks, trains)::

    from conveyor.services import locks
    locks.check(cp, app, env, automatic=True, force=False)   # raises locks.Locked, else returns
    # or, inside a transaction: locks.check_in(conn, app, env, now, automatic=True, force=False)
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from conveyor.domain.gate import Decision, WindowError, gate, parse_window
from conveyor.domain.manifest import ENV_NAME_RE
from conveyor.services.schemas import FreezeIn, FreezeView, LockIn, LockView
from conveyor.services.state import ControlPlane
from conveyor.store import locks as store
from conveyor.store import repo
from conveyor.store.repo import Conflict, NotFound

__all__ = ["Locked", "add_freeze", "check", "check_in", "freezes", "lock", "locks", "remove_freeze", "unlock"]


class Locked(Conflict):
    """A deploy refused by a lock or a freeze window (409); the message says which, who, why and since when."""


def check_in(conn: Connection, app: str, env: str, now: float, *, automatic: bool, force: bool) -> Decision:
    """The gate for a deployment of ``app`` to ``env``, inside the caller's transaction.

    Raises :class:`Locked` when refused; returns the decision when allowed (``forced``: only because of
    ``force``: the caller records it on the deployment). Never ask it for a rollback: always allowed."""
    app_row = repo.get_app(conn, app)
    found_locks, found_freezes = store.gate_inputs(conn, app_row["id"], env)
    decision = gate(now, found_locks, found_freezes, automatic, force)
    if not decision.allowed:
        raise Locked(f"{app}/{env} does not take {'automatic ' if automatic else ''}deploys now: {decision.reason}")
    return decision


def check(cp: ControlPlane, app: str, env: str, *, automatic: bool, force: bool) -> None:
    """:func:`check_in` in its own transaction: raises :class:`Locked`, or returns if a deploy may go."""
    with cp.engine.connect() as conn:
        check_in(conn, app, env, cp.clock(), automatic=automatic, force=force)


def _env_name(env: str | None) -> str:
    if env is None or env == "":
        return ""
    if not ENV_NAME_RE.match(env):
        raise ValueError(f"env: {env!r} is not an environment name (lower-case letters, digits and '-', "
                         "starting with a letter)")
    return env


def _known_env(conn: Connection, app_id: int, app: str, env: str) -> None:
    """A lock or freeze on an environment the app does not have is a typo: refuse it, saying which exist."""
    if env and env not in {e["name"] for e in repo.envs_of_app(conn, app_id)}:
        have = ", ".join(sorted(e["name"] for e in repo.envs_of_app(conn, app_id))) or "none yet"
        raise NotFound(f"{app} has no environment {env!r} (it has: {have}); omit --env to cover every environment")


def _lock_view(app: str, row: dict[str, Any]) -> LockView:
    return LockView(app=app, env=row["env"] or None, kind=row["kind"], reason=row["reason"], by=row["created_by"],
                    since=row["created_at"], deployment=row["deployment_id"])


def lock(cp: ControlPlane, app: str, body: LockIn, actor: str = "", origin: str = "") -> LockView:
    """Lock ``body.env`` (or every environment) of ``app``: automatic deploys stop, manual ones need --force."""
    env = _env_name(body.env)
    reason = body.reason.strip()
    if not reason:
        raise ValueError("reason: say why (it is shown to everyone whose deploy the lock stops)")
    now = cp.clock()
    with cp.engine.begin() as conn:
        app_row = repo.get_app(conn, app)
        _known_env(conn, app_row["id"], app, env)
        if not store.add_lock(conn, app_row["id"], env, "manual", reason, actor, now):
            held = next(r for r in store.locks_of(conn, app_row["id"]) if r["env"] == env and r["kind"] == "manual")
            raise Conflict(f"{app}/{env or '*'} is already locked by {held['created_by'] or 'someone'}: {held['reason']}; "
                           f"`conveyor unlock {app}{' --env ' + env if env else ''}` first")
        repo.record_event(conn, "locked", f"{app}/{env or '*'} locked by {actor or 'someone'}: {reason}", app=app,
                          env=env or None, actor=actor, origin=origin, data={"reason": reason})
        row = next(r for r in store.locks_of(conn, app_row["id"]) if r["env"] == env and r["kind"] == "manual")
    cp.notifier.poke("orchestrator", "deployments")
    return _lock_view(app, row)


def unlock(cp: ControlPlane, app: str, env: str | None, actor: str = "", origin: str = "") -> list[LockView]:
    """Remove the locks of ``env`` (or the app-wide ones), the automatic-rollback lock included; what went."""
    name = _env_name(env)
    with cp.engine.begin() as conn:
        app_row = repo.get_app(conn, app)
        _known_env(conn, app_row["id"], app, name)
        gone = [r for r in store.locks_of(conn, app_row["id"]) if r["env"] == name]
        if not gone:
            raise NotFound(f"{app}/{name or '*'} is not locked" + (
                "" if name else " app-wide (give --env ENV to unlock one environment)"))
        store.remove_locks(conn, app_row["id"], name)
        repo.record_event(conn, "unlocked", f"{app}/{name or '*'} unlocked by {actor or 'someone'}", app=app,
                          env=name or None, actor=actor, origin=origin,
                          data={"removed": [{"kind": r["kind"], "reason": r["reason"]} for r in gone]})
    cp.notifier.poke("orchestrator", "deployments")
    return [_lock_view(app, r) for r in gone]


def locks(cp: ControlPlane, app: str) -> list[LockView]:
    with cp.engine.connect() as conn:
        return locks_in(conn, app)


def locks_in(conn: Connection, app: str) -> list[LockView]:
    app_row = repo.get_app(conn, app)
    return [_lock_view(app, r) for r in store.locks_of(conn, app_row["id"])]


def _freeze_view(app: str, row: dict[str, Any], now: float) -> FreezeView:
    return FreezeView(id=row["id"], app=app, env=row["env"] or None, window=row["spec"], tz=row["tz"],
                      reason=row["reason"], by=row["created_by"], created_at=row["created_at"],
                      active=store.as_freeze(row).window.active(now))


def add_freeze(cp: ControlPlane, app: str, body: FreezeIn, actor: str = "", origin: str = "") -> FreezeView:
    """Add a freeze window; refused (nothing stored) unless it parses."""
    env = _env_name(body.env)
    try:
        parsed = parse_window(body.window, body.tz)
    except WindowError as exc:
        raise ValueError(str(exc)) from None
    now = cp.clock()
    with cp.engine.begin() as conn:
        app_row = repo.get_app(conn, app)
        _known_env(conn, app_row["id"], app, env)
        fid = store.add_freeze(conn, app_row["id"], env, parsed.text, parsed.tz, body.reason.strip(), actor, now)
        repo.record_event(conn, "freeze_added", f"{app}/{env or '*'} frozen {parsed.describe()} by {actor or 'someone'}",
                          app=app, env=env or None, actor=actor, origin=origin,
                          data={"freeze": fid, "window": parsed.text, "tz": parsed.tz})
        row = next(r for r in store.freezes_of(conn, app_row["id"]) if r["id"] == fid)
    cp.notifier.poke("orchestrator", "deployments")
    return _freeze_view(app, row, now)


def freezes(cp: ControlPlane, app: str) -> list[FreezeView]:
    with cp.engine.connect() as conn:
        return freezes_in(conn, app, cp.clock())


def freezes_in(conn: Connection, app: str, now: float) -> list[FreezeView]:
    app_row = repo.get_app(conn, app)
    return [_freeze_view(app, r, now) for r in store.freezes_of(conn, app_row["id"])]


def remove_freeze(cp: ControlPlane, app: str, freeze_id: int, actor: str = "", origin: str = "") -> None:
    with cp.engine.begin() as conn:
        app_row = repo.get_app(conn, app)
        if not store.remove_freeze(conn, app_row["id"], freeze_id):
            raise NotFound(f"{app} has no freeze #{freeze_id}; list them with `conveyor freeze list {app}`")
        repo.record_event(conn, "freeze_removed", f"freeze #{freeze_id} of {app} removed by {actor or 'someone'}",
                          app=app, actor=actor, origin=origin, data={"freeze": freeze_id})
    cp.notifier.poke("orchestrator", "deployments")
