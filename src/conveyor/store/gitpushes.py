"""The rows of `git push`: each app's deploy branch (``git_remotes``) and its pushes (``git_pushes``).

A push row is written when the pre-receive hook hands a built (or, detached, a queued)
commit range to the control plane, and moves to ``shipped`` with its deployment's id,
or ``failed`` with the reason. DORA reads the commits of the pushes that made each
deployment (:func:`commits_by_deployment`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, RowMapping, insert, select, update

from conveyor.domain.gitpush import DEFAULT_BRANCH
from conveyor.store.repo import NotFound
from conveyor.store.tables import git_pushes, git_remotes


def deploy_branch(conn: Connection, app_id: int) -> str:
    """The branch whose pushes deploy ``app_id`` (default ``main``)."""
    row = conn.execute(select(git_remotes.c.deploy_branch).where(git_remotes.c.app_id == app_id)).first()
    return row.deploy_branch if row is not None else DEFAULT_BRANCH


def set_deploy_branch(conn: Connection, app_id: int, branch: str, at: float, by: str) -> None:
    values = {"deploy_branch": branch, "updated_at": at, "updated_by": by}
    done = conn.execute(update(git_remotes).where(git_remotes.c.app_id == app_id).values(**values))
    if not done.rowcount:
        conn.execute(insert(git_remotes).values(app_id=app_id, **values))


def add(conn: Connection, app_id: int, *, ref: str, old: str, new: str, commits: list[dict[str, Any]],
        action: str, state: str, detach: bool, build_id: int | None, pushed_by: str, at: float) -> int:
    res = conn.execute(insert(git_pushes).values(
        app_id=app_id, ref=ref, old_sha=old, new_sha=new, commits=commits, action=action, state=state,
        detach=detach, build_id=build_id, pushed_by=pushed_by, detail="", created_at=at,
        finished_at=at if state == "stored" else None,
    ))
    return int(res.inserted_primary_key[0])  # type: ignore[index]


def finish(conn: Connection, push_id: int, state: str, at: float, *, deployment_id: int | None = None,
           detail: str = "") -> None:
    conn.execute(update(git_pushes).where(git_pushes.c.id == push_id).values(
        state=state, deployment_id=deployment_id, detail=detail, finished_at=at))


def get(conn: Connection, push_id: int) -> RowMapping:
    row = conn.execute(select(git_pushes).where(git_pushes.c.id == push_id)).mappings().first()
    if row is None:
        raise NotFound(f"push {push_id} not found")
    return row


def of_app(conn: Connection, app_id: int, limit: int = 50) -> list[RowMapping]:
    q = select(git_pushes).where(git_pushes.c.app_id == app_id).order_by(git_pushes.c.id.desc()).limit(limit)
    return list(conn.execute(q).mappings().all())


def commits_by_deployment(conn: Connection, deployment_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """deployment id → the commits of the push(es) that made it (in chunks: SQL's parameter limits)."""
    out: dict[int, list[dict[str, Any]]] = {}
    for i in range(0, len(deployment_ids), 500):
        chunk = deployment_ids[i:i + 500]
        q = select(git_pushes.c.deployment_id, git_pushes.c.commits).where(git_pushes.c.deployment_id.in_(chunk))
        for r in conn.execute(q):
            out.setdefault(int(r.deployment_id), []).extend(r.commits or [])
    return out


def accepted(conn: Connection, app_id: int, ref: str, new: str) -> RowMapping | None:
    """The newest push of ``ref`` to ``new`` that waits for its ref to move (state ``accepted``)."""
    q = select(git_pushes).where(git_pushes.c.app_id == app_id, git_pushes.c.ref == ref, git_pushes.c.new_sha == new,
                                 git_pushes.c.state == "accepted").order_by(git_pushes.c.id.desc()).limit(1)
    return conn.execute(q).mappings().first()
