"""The orchestrator reads an autoscaled environment's load from the scraped series: the whole
window, and its last ``up_window`` seconds for a scale-up (``Policy.up_window``), from the same
rows. Pass by pass on an in-process database, with a fake clock and no agent."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, insert, select

from conveyor.deploy.notify import Notifier
from conveyor.deploy.orchestrator import Orchestrator
from conveyor.domain.histogram import Histogram
from conveyor.store import series
from conveyor.store.tables import autoscalers, process_counts
from store_world import T0, Clock, hello_world, report_ready

POLICY = {"min": 1, "max": 20, "metric": "rps", "target": 10.0, "window": 10.0, "up_sigma": 0.0}


def _world(tmp_path: Path, up_window: float) -> Engine:
    """One ready instance; over the last 10 s it served 10 requests/s, then 40/s for the last 5."""
    engine = hello_world(tmp_path, {"drain": 10.0, "bake": 0.0}, [("r1-0", "h1")])
    with engine.begin() as conn:
        conn.execute(insert(autoscalers).values(env_id=1, process="web", updated_at=T0, updated_by="t",
                                                policy={**POLICY, "up_window": up_window}))
        conn.execute(insert(process_counts).values(env_id=1, process="web", count=1, updated_at=T0, updated_by="t"))
        for second in range(10):
            n = 10 if second < 5 else 40
            series.add_point(conn, 1, 1, 1, T0 - 10 + second, n, 0, Histogram(), n)
    report_ready(engine, T0)
    return engine


def _decision(engine: Engine) -> dict[str, object]:
    with engine.connect() as conn:
        return dict(conn.execute(select(autoscalers.c.decision)).scalar_one())


def test_a_scale_up_reads_the_windows_last_seconds_when_they_say_more(tmp_path: Path) -> None:
    engine = _world(tmp_path, up_window=5.0)
    Orchestrator(engine, Notifier(), clock=Clock(T0 + 0.5), verdicts=lambda *_: None, started_at=T0 - 3600).tick()
    d = _decision(engine)
    assert d["recommendation"] == 4 and "(the last 5 s)" in str(d["reason"]), d  # 40/s on one instance


def test_without_up_window_the_whole_window_decides(tmp_path: Path) -> None:
    engine = _world(tmp_path, up_window=0.0)
    Orchestrator(engine, Notifier(), clock=Clock(T0 + 0.5), verdicts=lambda *_: None, started_at=T0 - 3600).tick()
    d = _decision(engine)
    assert d["recommendation"] == 3 and "last" not in str(d["reason"]), d  # the mean, 25/s
