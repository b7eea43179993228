"""``[env.NAME.autoscale.PROCESS]`` in conveyor.toml: checked when the manifest is parsed (a clear
error, nothing stored), and stored as `conveyor autoscale` would when a deployment is queued."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, insert, select

from conveyor.domain.manifest import ManifestError, parse_manifest
from conveyor.services.deployments import queue_deploy
from conveyor.store.db import migrate
from conveyor.store.tables import apps, autoscalers, events, images

T0 = 1_000_000.0


def _manifest(autoscale: dict[str, Any]) -> dict[str, Any]:
    return {"app": {"name": "hello"}, "run": {"web": "python app.py", "worker": "python worker.py"},
            "env": {"production": {"instances": 2, "autoscale": autoscale}}}


def test_a_policy_in_the_manifest_is_stored_when_a_deployment_is_queued(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'c.db'}")
    migrate(engine)
    policy = {"web": {"min": 2, "max": 20, "target_inflight": 8, "down_window": "5m"}}
    with engine.begin() as conn:
        conn.execute(insert(apps).values(id=1, name="hello", created_at=T0, created_by="t"))
        for n, autoscale in ((1, policy), (2, {**policy, "worker": {"min": 1, "max": 3, "target_rps": 5}})):
            conn.execute(insert(images).values(digest="sha256:" + str(n) * 64, app_id=1, manifest={}, size=0,
                                               app_manifest=_manifest(autoscale), test_status="passed", created_at=T0))
        queue_deploy(conn, "hello", "production", "sha256:" + "1" * 64, actor="ann")
        stored = {r.process: r.policy for r in conn.execute(select(autoscalers))}
        assert stored == {"web": {"min": 2, "max": 20, "metric": "inflight", "target": 8.0, "tolerance": 0.1,
                                  "window": 10.0, "up_step": 4, "up_percent": 100.0, "up_period": 5.0,
                                  "down_window": 300.0, "down_step": 1, "down_period": 10.0, "period": 1.0,
                                  "up_sigma": 2.0, "up_window": 5.0}}
        # the same policy again: nothing stored, no event; a new process type's: stored, one event
        queue_deploy(conn, "hello", "production", "sha256:" + "2" * 64, actor="ann")
        stored = {r.process: r.policy for r in conn.execute(select(autoscalers))}
        assert sorted(stored) == ["web", "worker"] and stored["worker"]["metric"] == "rps"
        said = [r.message for r in conn.execute(select(events).where(events.c.kind == "autoscale_set"))]
        assert len(said) == 2 and all("from conveyor.toml by ann" in m for m in said), said


@pytest.mark.parametrize(("policy", "message"), [
    ({"min": 5, "max": 2, "target_rps": 3}, "[env.production] autoscale.web: min 5 is above max 2"),
    ({"min": 1, "max": 2}, "give exactly one of target_inflight, target_rps or target_p95"),
    ({"min": 1, "max": 2, "target_rps": 3, "target_p95": 200}, "give exactly one of"),
    ({"min": 1, "max": 2, "target_inflight": 0}, "the target must be a positive number, got 0"),
    ({"min": 1, "max": 2, "target_rps": 1, "down_window": "soon"}, 'autoscale.web.down_window: expected a duration'),
    ({"min": 1, "max": 2, "target_rps": 1, "maximum": 3}, "autoscale.web.maximum: unknown key"),
])
def test_a_policy_that_cannot_work_is_a_manifest_error_naming_the_key(policy: dict[str, Any], message: str) -> None:
    with pytest.raises(ManifestError) as err:
        parse_manifest(_manifest({"web": policy}))
    assert message in str(err.value)


def test_a_policy_for_a_process_type_the_app_does_not_run_is_refused() -> None:
    with pytest.raises(ManifestError, match=r"\[env.production.autoscale.cron\]: no process type 'cron' in \[run\]"):
        parse_manifest(_manifest({"cron": {"min": 1, "max": 2, "target_rps": 1}}))
