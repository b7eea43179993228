"""The audit trail of calls: append and read. There is deliberately no update or delete here.

Why its own table and not ``events``: events are the platform's story (deploys,
rollbacks, verdicts) and the orchestrator writes most of them; the audit trail is
what *callers* asked for, including what was refused, with who and from where.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert, select

from conveyor.store.tables import audit_log

#: The most rows one read returns.
MAX_ROWS = 1000


def outcome_of(status: int) -> str:
    """``ok``, ``denied`` (401, 403, 429) or ``failed``: what the audit page filters on."""
    return "ok" if status < 400 else ("denied" if status in (401, 403, 429) else "failed")


def append(conn: Connection, *, at: float, actor: str, role: str, action: str, app: str | None, target: str,
           origin: str, status: int) -> None:
    """One row; each text is cut to its column's width (a caller controls the path)."""
    conn.execute(insert(audit_log).values(
        at=at, actor=actor[:100], role=role[:16], action=action[:200], app=app[:40] if app else None,
        target=target[:300], origin=origin[:100], status=status, outcome=outcome_of(status)))


def read(conn: Connection, *, app: str | None = None, since: float | None = None, limit: int = 200) -> list[dict[str, Any]]:
    """Newest first, at most ``MAX_ROWS``."""
    q = select(audit_log).order_by(audit_log.c.id.desc()).limit(max(1, min(limit, MAX_ROWS)))
    if app is not None:
        q = q.where(audit_log.c.app == app)
    if since is not None:
        q = q.where(audit_log.c.at >= since)
    return [dict(r) for r in conn.execute(q).mappings()]
