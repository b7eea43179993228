"""Queries for deploy trains and their steps (tables ``trains`` and ``train_steps``).

Plain reads and writes on a connection the caller's transaction owns; the policy
(which commit to try next) is ``conveyor.domain.bisection`` and the transactions
are ``conveyor.services.trains`` / ``train_runner``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert, select, update

from conveyor.store.repo import NotFound
from conveyor.store.tables import apps, environments, train_steps, trains

#: States in which a train still needs the runner.
OPEN = ("collecting", "running")
#: States a train ends in.
ENDED = ("shipped", "blocked", "halted")


def _with_names() -> Any:
    return (
        select(trains, apps.c.name.label("app"), environments.c.name.label("env"))
        .select_from(trains.join(environments, environments.c.id == trains.c.env_id)
                     .join(apps, apps.c.id == environments.c.app_id))
    )


def get(conn: Connection, train_id: int) -> dict[str, Any]:
    row = conn.execute(_with_names().where(trains.c.id == train_id)).mappings().first()
    if row is None:
        raise NotFound(f"train {train_id} not found (see `conveyor trains APP`)")
    return dict(row)


def of_app(conn: Connection, app_id: int, env: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """An app's trains (of one environment, or all), newest first."""
    q = _with_names().where(environments.c.app_id == app_id)
    if env is not None:
        q = q.where(environments.c.name == env)
    return [dict(r) for r in conn.execute(q.order_by(trains.c.id.desc()).limit(limit)).mappings()]


def open_trains(conn: Connection) -> list[dict[str, Any]]:
    """Trains collecting or running, oldest first (the order the runner serves them)."""
    return [dict(r) for r in conn.execute(
        _with_names().where(trains.c.state.in_(OPEN)).order_by(trains.c.id)).mappings()]


def collecting(conn: Connection, env_id: int, repo_url: str) -> dict[str, Any] | None:
    """The newest train of ``env_id`` still taking commits of ``repo_url``."""
    row = conn.execute(select(trains).where(trains.c.env_id == env_id, trains.c.repo_url == repo_url,
                                            trains.c.state == "collecting")
                       .order_by(trains.c.id.desc())).mappings().first()
    return dict(row) if row else None


def running_in_env(conn: Connection, env_id: int) -> dict[str, Any] | None:
    row = conn.execute(select(trains).where(trains.c.env_id == env_id, trains.c.state == "running")).mappings().first()
    return dict(row) if row else None


def known_shas(conn: Connection, env_id: int) -> set[str]:
    """Every commit sha some train of ``env_id`` holds (a redelivered push adds nothing)."""
    return {c["sha"] for (commits,) in conn.execute(select(trains.c.commits).where(trains.c.env_id == env_id)).all()
            for c in commits}


def insert_train(conn: Connection, env_id: int, repo_url: str, commits: list[dict[str, Any]], max_commits: int,
                 trigger: str, actor: str, now: float) -> int:
    return int(conn.execute(insert(trains).values(
        env_id=env_id, repo_url=repo_url, state="collecting", commits=commits, max_commits=max_commits,
        trigger=trigger, culprit=None, shipped=-1, reason="", created_by=actor, created_at=now,
    )).inserted_primary_key[0])  # type: ignore[index]


def set_commits(conn: Connection, train_id: int, commits: list[dict[str, Any]]) -> bool:
    """Replace a collecting train's commits; False when it stopped collecting meanwhile."""
    res = conn.execute(update(trains).where(trains.c.id == train_id, trains.c.state == "collecting")
                       .values(commits=commits))
    return res.rowcount == 1


def advance(conn: Connection, train_id: int, expected_state: str, values: dict[str, Any]) -> bool:
    """Compare-and-set on the train's state (one runner pass wins)."""
    res = conn.execute(update(trains).where(trains.c.id == train_id, trains.c.state == expected_state).values(**values))
    return res.rowcount == 1


def steps(conn: Connection, train_id: int) -> list[dict[str, Any]]:
    """A train's steps in the order they were made."""
    return [dict(r) for r in conn.execute(
        select(train_steps).where(train_steps.c.train_id == train_id).order_by(train_steps.c.id)).mappings()]


def add_step(conn: Connection, train_id: int, position: int, now: float) -> int:
    return int(conn.execute(insert(train_steps).values(
        train_id=train_id, position=position, reason="", created_at=now,
    )).inserted_primary_key[0])  # type: ignore[index]


def update_step(conn: Connection, step_id: int, values: dict[str, Any]) -> None:
    conn.execute(update(train_steps).where(train_steps.c.id == step_id).values(**values))


def step_of_deployment(conn: Connection, dep_id: int) -> dict[str, Any] | None:
    """The train step whose canary is deployment ``dep_id``, if any."""
    row = conn.execute(select(train_steps).where(train_steps.c.deployment_id == dep_id)).mappings().first()
    return dict(row) if row else None
