"""Builds and images: the rows of the build pipeline and what it produced.

An image row is per (app, digest): the same content may belong to several apps
or commits. Every function takes a Connection inside a transaction the caller owns.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, RowMapping, func, insert, select, update

from conveyor.store.tables import apps, builds, deployments, images, releases


def fail_unfinished(conn: Connection, error: str, now: float) -> None:
    """Mark every queued or running build failed (a previous process lost them)."""
    conn.execute(
        update(builds).where(builds.c.state.in_(["queued", "running"])).values(state="failed", error=error, finished_at=now)
    )


def add(conn: Connection, app_id: int, source: dict[str, Any], actor: str, now: float) -> int:
    """A queued build; its id."""
    result = conn.execute(
        insert(builds).values(app_id=app_id, state="queued", source=source, created_by=actor, created_at=now)
    )
    return int(result.inserted_primary_key[0])  # type: ignore[index]


def set_state(conn: Connection, build_id: int, state: str, **values: Any) -> None:
    conn.execute(update(builds).where(builds.c.id == build_id).values(state=state, **values))


def get(conn: Connection, build_id: int) -> RowMapping | None:
    return conn.execute(select(builds).where(builds.c.id == build_id)).mappings().first()


def of_app(conn: Connection, app_id: int, limit: int) -> list[RowMapping]:
    """An app's builds, newest first."""
    return list(
        conn.execute(select(builds).where(builds.c.app_id == app_id).order_by(builds.c.id.desc()).limit(limit))
        .mappings()
        .all()
    )


def record_image(conn: Connection, app_id: int, digest: str, values: dict[str, Any]) -> None:
    """Store an app's image, or (the same source again: the same image) only its newest ``test_status``."""
    mine = (images.c.digest == digest) & (images.c.app_id == app_id)
    if not conn.execute(select(images.c.id).where(mine)).first():
        conn.execute(insert(images).values(digest=digest, app_id=app_id, **values))
    else:
        conn.execute(update(images).where(mine).values(test_status=values["test_status"]))


def image_of_app(conn: Connection, app_id: int, digest: str) -> RowMapping | None:
    return conn.execute(select(images).where(images.c.digest == digest, images.c.app_id == app_id)).mappings().first()


def images_of_app(conn: Connection, app_id: int, limit: int) -> list[RowMapping]:
    """An app's images, newest first."""
    return list(
        conn.execute(
            select(images).where(images.c.app_id == app_id).order_by(images.c.created_at.desc()).limit(limit)
        ).mappings().all()
    )


def images_by_prefix(conn: Connection, ref: str) -> list[RowMapping]:
    """Image rows (of any app) whose digest starts with ``ref``, newest first."""
    return list(
        conn.execute(select(images).where(images.c.digest.startswith(ref)).order_by(images.c.created_at.desc()))
        .mappings()
        .all()
    )


def images_with_app(conn: Connection) -> list[Any]:
    """(id, digest, created_at, app name) of every image row."""
    return list(
        conn.execute(
            select(images.c.id, images.c.digest, images.c.created_at, apps.c.name)
            .select_from(images.join(apps, apps.c.id == images.c.app_id))
        ).all()
    )


def digests_in_use(conn: Connection, recent_since: float, open_states: Iterable[str]) -> set[str]:
    """Digests that a live, pending or recently retired release, or an open deployment, uses."""
    used = {
        r.image_digest
        for r in conn.execute(
            select(releases.c.image_digest).where(
                releases.c.status.in_(["live", "pending"]) | (releases.c.retired_at >= recent_since)
            )
        )
    }
    return used | {
        r.image_digest
        for r in conn.execute(select(deployments.c.image_digest).where(deployments.c.state.in_(list(open_states))))
        if r.image_digest
    }


def delete_images(conn: Connection, ids: Iterable[int]) -> None:
    conn.execute(images.delete().where(images.c.id.in_(list(ids))))


def count_by_state(conn: Connection) -> list[tuple[str, int]]:
    return [(s, int(n)) for s, n in conn.execute(select(builds.c.state, func.count()).group_by(builds.c.state))]


def count_images(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(images)).scalar_one())
