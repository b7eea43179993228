"""What the in-process database tests share: a clock the test moves, and the smallest world the
orchestrator and the stores act on (app ``hello``, its ``production`` environment serving release 1,
instances on named hosts), built in SQL so each test says only what is particular to it."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, insert, select

from conveyor.store import hosts
from conveyor.store.db import migrate
from conveyor.store.tables import apps, environments, instances, releases

#: Far from the wall clock on purpose: a rule that read time.time() anywhere would see every host
#: as silent for decades, or as reporting from the future.
T0 = 1_000_000.0


class Clock:
    """A clock the test moves by hand (``clock.t += 5``); pass it where code takes ``clock=``."""

    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def add_release(conn: Connection, number: int, config: dict[str, Any], *, live: bool = True) -> None:
    conn.execute(insert(releases).values(env_id=1, number=number, image_digest="sha256:" + str(number) * 64,
                                         config=config, status="live" if live else "new", created_at=T0,
                                         live_at=T0 if live else None))


def hello_world(tmp_path: Path, config: dict[str, Any], placed: Iterable[tuple[str, str]] = (),
                routes: dict[str, int] | None = None) -> Engine:
    """A migrated SQLite database: hello/production serves release 1 (``config``), with an instance
    of it for each (id, host) in ``placed``. Environment and app ids are 1."""
    engine = create_engine(f"sqlite:///{tmp_path / 'c.db'}")
    migrate(engine)
    with engine.begin() as conn:
        conn.execute(insert(apps).values(id=1, name="hello", created_at=T0, created_by="t"))
        conn.execute(insert(environments).values(id=1, app_id=1, name="production", routes=routes or {"1": 100},
                                                 current_release=1, created_at=T0))
        add_release(conn, 1, config)
        for iid, host in placed:
            conn.execute(insert(instances).values(id=iid, env_id=1, release=1, host=host, role="main",
                                                  created_at=T0))
    return engine


def report_ready(engine: Engine, now: float) -> None:
    """h1 reports every instance it was given as ready (an agent, without one)."""
    with engine.begin() as conn:
        ids = [r.id for r in conn.execute(select(instances.c.id))]
        hosts.save_report(conn, "h1", "127.0.0.1", 0, {"instances": [{"id": i, "state": "ready"} for i in ids]}, now)
