"""What the orchestrator's pass-by-pass tests share: a clock the test moves, and host h1 reporting
every instance it was given as ready (an agent, without one)."""

from __future__ import annotations

from sqlalchemy import Engine, select

from conveyor.store import hosts
from conveyor.store.tables import instances

T0 = 1_000_000.0


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def report_ready(engine: Engine, now: float) -> None:
    """h1 reports every instance it was given as ready."""
    with engine.begin() as conn:
        ids = [r.id for r in conn.execute(select(instances.c.id))]
        hosts.save_report(conn, "h1", "127.0.0.1", 0, {"instances": [{"id": i, "state": "ready"} for i in ids]}, now)
