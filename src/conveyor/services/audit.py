"""The audit log: every change as an event, and every mutating call (who, what, from where, with
what outcome) in the append-only audit trail; read back filtered, for the API and the audit pages.
"""

from __future__ import annotations

import math
from typing import Any

from conveyor.domain.access import parse_duration
from conveyor.services.schemas import AuditEntry, EventView
from conveyor.services.state import ControlPlane
from conveyor.store import audit as audit_store
from conveyor.store import repo

#: The most rows one read of the audit trail returns.
MAX_CALLS = audit_store.MAX_ROWS


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


# -- the audit trail of calls (table ``audit_log``: who asked for what, refused calls included) --


def record_call(cp: ControlPlane, *, actor: str, role: str, method: str, path: str, app: str | None, origin: str,
                status: int) -> None:
    """Append one call to the audit trail (append-only: nothing changes or deletes a row)."""
    with cp.engine.begin() as conn:
        audit_store.append(conn, at=cp.clock(), actor=actor, role=role, action=f"{method} {path}", app=app,
                           target=path, origin=origin, status=status)


def parse_since(since: str | None, now: float) -> float | None:
    """``1h`` (ago) or epoch seconds; None when not given. ValueError names the parameter."""
    if not since:
        return None
    try:
        value = float(since)
    except ValueError:
        return now - parse_duration(since, "since")
    if not math.isfinite(value):
        raise ValueError(f"since: {since!r} is not a time: give a duration (1h, 7d) or epoch seconds")
    return value


def calls(cp: ControlPlane, *, app: str | None = None, since: str | None = None,
          limit: int = 200) -> list[AuditEntry]:
    """The audit trail, newest first (``since``: ``1h``, ``7d`` or epoch seconds)."""
    start = parse_since(since, cp.clock())
    with cp.engine.connect() as conn:
        return [AuditEntry(**r) for r in audit_store.read(conn, app=app, since=start, limit=limit)]
