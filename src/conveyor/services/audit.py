"""The audit log: every change as an event, read back filtered, for the API and the audit page."""

from __future__ import annotations

from typing import Any

from conveyor.services.schemas import EventView
from conveyor.services.state import ControlPlane
from conveyor.store import repo


def events(cp: ControlPlane, *, app: str | None = None, env: str | None = None, kind: str | None = None,
           since: float | None = None, limit: int = 100) -> list[EventView]:
    """Events matching the filters, newest first."""
    with cp.engine.connect() as conn:
        return [EventView(**dict(r)) for r in repo.list_events(conn, app=app, env=env, kind=kind, since=since,
                                                               limit=limit)]


def kinds(cp: ControlPlane) -> list[str]:
    """Every kind of event recorded so far, sorted (the audit page's filter)."""
    with cp.engine.connect() as conn:
        return repo.event_kinds(conn)


def of_deployment(cp: ControlPlane, dep: dict[str, Any], limit: int = 500) -> list[dict[str, Any]]:
    """The events of one deployment (``dep`` as the API shows it), oldest first."""
    with cp.engine.connect() as conn:
        rows = repo.list_events(conn, app=dep["app"], env=dep["env"], since=dep["created_at"] - 1, limit=limit,
                                order="oldest")
    return [dict(r) for r in rows if (r["data"] or {}).get("deployment") == dep["id"]]
