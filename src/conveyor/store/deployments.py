"""Deployments and their verdicts: the rows the users' commands write and the orchestrator drives.

``machine`` turns a row into the pure state machine's ``domain.deploy_machine.Deployment``;
the orchestrator is the only writer of a deployment's state and progress
(``advance``, a compare-and-set on the state), the users' services only insert
queued ones and set the ``command`` column.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, RowMapping, func, insert, select, update

from conveyor.domain import deploy_machine as dm
from conveyor.store.repo import NotFound
from conveyor.store.tables import apps, deployments, environments, images, releases, verdicts

#: States of a deployment that still holds its environment's queue.
OPEN = ("queued", *dm.ACTIVE)
#: A pipeline promotion waiting for `conveyor approve`: not in the queue yet (approving queues it).
AWAITING = "awaiting_approval"


def row(conn: Connection, dep_id: int) -> dict[str, Any]:
    found = conn.execute(select(deployments).where(deployments.c.id == dep_id)).mappings().first()
    if found is None:
        raise NotFound(f"deployment {dep_id} not found; list them with `conveyor deployments list APP`")
    return dict(found)


def app_of(conn: Connection, dep_id: int) -> str | None:
    """The name of the app deployment ``dep_id`` belongs to (None: no such deployment): for scope checks."""
    found = conn.execute(
        select(apps.c.name).select_from(deployments.join(environments, deployments.c.env_id == environments.c.id)
                                        .join(apps, environments.c.app_id == apps.c.id))
        .where(deployments.c.id == dep_id)).first()
    return found.name if found is not None else None


def machine(r: dict[str, Any] | RowMapping) -> dm.Deployment:
    """A deployment row as the state machine sees it."""
    return dm.Deployment(
        id=r["id"],
        kind=r["kind"],
        strategy=r["strategy"],
        state=r["state"],
        from_release=r["from_release"],
        to_release=r["to_release"],
        params=r["params"] or {},
        progress=r["progress"] or {},
        created_at=r["created_at"],
        started_at=r["started_at"],
        created_by=r["created_by"],
        command=r.get("command"),
    )


def insert_queued(
    conn: Connection, env_id: int, kind: str, strategy: str, from_release: int | None, to_release: int,
    image: str, params: dict[str, Any], actor: str, now: float, *, approval: dict[str, Any] | None = None,
) -> int:
    """Insert a queued deployment; the orchestrator starts it when the environment's queue reaches it.

    With ``approval`` (a pipeline stage that waits for a person) it is inserted ``awaiting_approval``
    instead: outside the queue (``OPEN``) until :func:`decide_approval` queues or cancels it."""
    result = conn.execute(
        insert(deployments).values(
            env_id=env_id, kind=kind, strategy=strategy, state=AWAITING if approval else "queued",
            from_release=from_release, to_release=to_release, image_digest=image, params=params, progress={},
            reason="", created_by=actor, created_at=now, approval=approval,
        )
    )
    return int(result.inserted_primary_key[0])  # type: ignore[index]


def cancel_queued(conn: Connection, dep_id: int, state: str, now: float, reason: str) -> None:
    conn.execute(
        update(deployments)
        .where(deployments.c.id == dep_id, deployments.c.state == "queued")
        .values(state=state, finished_at=now, reason=reason)
    )


def set_command(conn: Connection, dep_id: int, command: dict[str, Any]) -> None:
    conn.execute(update(deployments).where(deployments.c.id == dep_id).values(command=command))


def queue_position(conn: Connection, env_id: int, dep_id: int) -> int:
    """How many open deployments of the environment are ahead of this one."""
    ahead = conn.execute(
        select(deployments.c.id).where(
            deployments.c.env_id == env_id, deployments.c.state.in_(OPEN), deployments.c.id < dep_id,
        )
    ).all()
    return len(ahead)


def active_id(conn: Connection, env_id: int) -> int | None:
    """The environment's running deployment, if any."""
    r = conn.execute(
        select(deployments.c.id).where(deployments.c.env_id == env_id, deployments.c.state.in_(list(dm.ACTIVE)))
    ).first()
    return int(r.id) if r else None


def ids_of_app(conn: Connection, app_id: int, env: str | None, limit: int) -> list[int]:
    """An app's deployments (of one environment, or all), newest first."""
    q = (
        select(deployments.c.id)
        .select_from(deployments.join(environments, environments.c.id == deployments.c.env_id))
        .where(environments.c.app_id == app_id)
        .order_by(deployments.c.id.desc())
        .limit(limit)
    )
    if env:
        q = q.where(environments.c.name == env)
    return [int(r.id) for r in conn.execute(q)]


def open_ids(conn: Connection, app_id: int | None = None) -> list[tuple[int, int]]:
    """(id, env id) of the deployments queued or running (of one app, or all), oldest first."""
    q = select(deployments.c.id, deployments.c.env_id).where(deployments.c.state.in_(OPEN)).order_by(deployments.c.id)
    if app_id is not None:
        q = q.where(deployments.c.env_id.in_(select(environments.c.id).where(environments.c.app_id == app_id)))
    return [(int(r.id), int(r.env_id)) for r in conn.execute(q)]


def verdicts_of(conn: Connection, dep_id: int) -> list[dict[str, Any]]:
    rows = conn.execute(select(verdicts).where(verdicts.c.deployment_id == dep_id).order_by(verdicts.c.id)).mappings()
    return [dict(r) for r in rows]


def last_verdict(conn: Connection, dep_id: int, step: int) -> RowMapping | None:
    """(at, outcome) of the newest verdict stored for a deployment's step."""
    return conn.execute(
        select(verdicts.c.at, verdicts.c.outcome)
        .where(verdicts.c.deployment_id == dep_id, verdicts.c.step == step)
        .order_by(verdicts.c.id.desc())
        .limit(1)
    ).mappings().first()


def newest_verdict(conn: Connection, dep_id: int) -> RowMapping | None:
    """(at, judge, reason) of the newest verdict stored for a deployment, any step."""
    return conn.execute(
        select(verdicts.c.at, verdicts.c.judge, verdicts.c.reason)
        .where(verdicts.c.deployment_id == dep_id)
        .order_by(verdicts.c.id.desc())
        .limit(1)
    ).mappings().first()


def add_verdict(conn: Connection, dep_id: int, at: float, step: int, judge: str, outcome: str, reason: str,
                numbers: dict[str, Any]) -> None:
    conn.execute(insert(verdicts).values(deployment_id=dep_id, at=at, step=step, judge=judge, outcome=outcome,
                                         reason=reason, numbers=numbers))


# --- pipelines (services/pipelines.py) ------------------------------------------


def decide_approval(conn: Connection, dep_id: int, state: str, approval: dict[str, Any], now: float,
                    reason: str = "", from_release: int | None = None) -> bool:
    """Approve (``state`` "queued") or reject ("cancelled") a deployment still awaiting approval;
    False if it no longer is (compare-and-set: two people pressing at once, one wins). Approving
    moves it from the environment's release of now (``from_release``), not of when it was created."""
    values: dict[str, Any] = {"state": state, "approval": approval}
    if state != "queued":
        values |= {"finished_at": now, "reason": reason}
    else:
        values["from_release"] = from_release
    changed = conn.execute(
        update(deployments).where(deployments.c.id == dep_id, deployments.c.state == AWAITING).values(**values)
    ).rowcount
    return bool(changed)


def awaiting_ids(conn: Connection, env_id: int) -> list[int]:
    """The environment's deployments awaiting approval, oldest first."""
    return [int(r.id) for r in conn.execute(
        select(deployments.c.id).where(deployments.c.env_id == env_id, deployments.c.state == AWAITING)
        .order_by(deployments.c.id))]


def current_makers(conn: Connection) -> list[dict[str, Any]]:
    """For every environment with a current release, the newest deployment that moved it there, with
    ``app_id`` and ``env_name``: what the pipelines' pass reads each tick, in one query."""
    q = (select(deployments, environments.c.app_id, environments.c.name.label("env_name"))
         .select_from(deployments.join(environments, (environments.c.id == deployments.c.env_id)
                                       & (environments.c.current_release == deployments.c.to_release)))
         .order_by(deployments.c.id))
    newest: dict[int, dict[str, Any]] = {}
    for r in conn.execute(q).mappings():
        newest[r["env_id"]] = dict(r)
    return list(newest.values())


def has_image(conn: Connection, app_id: int, env: str, digest: str) -> bool:
    """Has environment ``env`` of the app ever had a deployment of this image (any kind, any state)?"""
    return conn.execute(
        select(deployments.c.id).select_from(deployments.join(environments, environments.c.id == deployments.c.env_id))
        .where(environments.c.app_id == app_id, environments.c.name == env, deployments.c.image_digest == digest)
        .limit(1)
    ).first() is not None


def latest_of_image(conn: Connection, app_id: int, digest: str) -> dict[str, dict[str, Any]]:
    """{environment name: its newest deployment of this image}."""
    q = (select(deployments, environments.c.name.label("env_name"))
         .select_from(deployments.join(environments, environments.c.id == deployments.c.env_id))
         .where(environments.c.app_id == app_id, deployments.c.image_digest == digest)
         .order_by(deployments.c.id))
    return {r["env_name"]: dict(r) for r in conn.execute(q).mappings()}


# --- the orchestrator's side --------------------------------------------------


def open_env_ids(conn: Connection) -> list[int]:
    """Environments with a deployment queued or running."""
    return [r.env_id for r in conn.execute(select(deployments.c.env_id).distinct().where(deployments.c.state.in_(OPEN))).all()]


def open_in_env(conn: Connection, env_id: int) -> list[dict[str, Any]]:
    """The environment's deployments queued or running (rows)."""
    return [
        dict(r)
        for r in conn.execute(
            select(deployments).where(deployments.c.env_id == env_id, deployments.c.state.in_(OPEN))
        ).mappings()
    ]


def mark_started(conn: Connection, dep_id: int, now: float) -> None:
    conn.execute(update(deployments).where(deployments.c.id == dep_id).values(started_at=now))


def advance(conn: Connection, dep_id: int, expected_state: str, values: dict[str, Any]) -> bool:
    """Write the machine's step only if the deployment is still in ``expected_state`` (compare-and-set:
    another replica that moved it first wins). True when written."""
    changed = conn.execute(
        update(deployments).where(deployments.c.id == dep_id, deployments.c.state == expected_state).values(**values)
    ).rowcount
    return bool(changed)


def follow_count(conn: Connection, dep_id: int, state: str, instances: int) -> bool:
    """Set a running deployment's web ``instances`` to the autoscaler's count (and mark it
    ``autoscaled``), only while it is still in ``state``. True when written."""
    row = conn.execute(select(deployments.c.params).where(deployments.c.id == dep_id,
                                                          deployments.c.state == state)).first()
    if row is None:
        return False
    params = dict(row.params or {})
    if params.get("instances") == instances and params.get("autoscaled"):
        return False
    return advance(conn, dep_id, state, {"params": {**params, "instances": instances, "autoscaled": True}})


def busy_releases(conn: Connection, env_id: int) -> set[int]:
    """Releases an open deployment of the environment moves from or to."""
    busy: set[int] = set()
    for d in conn.execute(
        select(deployments.c.from_release, deployments.c.to_release).where(
            deployments.c.env_id == env_id, deployments.c.state.in_(OPEN)
        )
    ).all():
        busy |= {r for r in (d.from_release, d.to_release) if r is not None}
    return busy


def history(conn: Connection, env: str, app: str | None = None, team: str | None = None,
            since: float | None = None) -> list[RowMapping]:
    """Deployments to environment ``env`` (of ``app``, of ``team``'s apps, or all) created at or after
    ``since``, oldest first, each with ``app_name``, its image's ``commit`` and its release's
    ``release_live_at`` (when that release was last made current)."""
    q = (
        select(deployments, apps.c.name.label("app_name"), images.c.commit, releases.c.live_at.label("release_live_at"))
        .select_from(
            deployments.join(environments, environments.c.id == deployments.c.env_id)
            .join(apps, apps.c.id == environments.c.app_id)
            .outerjoin(images, (images.c.digest == deployments.c.image_digest) & (images.c.app_id == apps.c.id))
            .outerjoin(releases, (releases.c.env_id == deployments.c.env_id) & (releases.c.number == deployments.c.to_release))
        )
        .where(environments.c.name == env)
        .order_by(deployments.c.created_at, deployments.c.id)
    )
    if app is not None:
        q = q.where(apps.c.name == app)
    if team is not None:
        q = q.where(apps.c.team == team)
    if since is not None:
        q = q.where(deployments.c.created_at >= since)
    return list(conn.execute(q).mappings().all())


def count_by_kind_state(conn: Connection) -> list[tuple[str, str, int]]:
    return [(k, s, int(n)) for k, s, n in conn.execute(
        select(deployments.c.kind, deployments.c.state, func.count()).group_by(deployments.c.kind, deployments.c.state)
    )]
