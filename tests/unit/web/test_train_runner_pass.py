"""The train runner, one pass at a time, on an in-process control plane whose background loops never
started (so nothing moves unless the test says so): the rows in, the exact effect out, including the
passes that must do nothing. Builds are rows as a finished build leaves them (the real build worker
and the real orchestrator are exercised by tests/integration/test_trains.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from web_site import ADMIN, Site

from conveyor.config import ServerSettings
from conveyor.server import create_app
from conveyor.services import apps as app_service
from conveyor.services import deployments
from conveyor.services.train_runner import TrainRunner
from conveyor.store import builds as build_rows
from conveyor.store import repo
from conveyor.store import trains as rows

SHAS = [f"{i:x}" * 40 for i in range(1, 5)]


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    app = create_app(ServerSettings(data_dir=tmp_path / "data", admin_token=ADMIN))
    s = Site(client=None, app=app)  # type: ignore[arg-type]
    with s.cp.engine.begin() as conn:
        app_service.create_app(conn, "hello", actor="admin")
    yield s


def tick(site: Site) -> bool:
    return asyncio.run(TrainRunner(site.cp).tick())


def make_train(site: Site, n: int = 4) -> int:
    with site.cp.engine.begin() as conn:
        env = repo.get_env(conn, repo.get_app(conn, "hello")["id"], "production", create=True)
        return rows.insert_train(conn, env["id"], "/r.git", [{"sha": s} for s in SHAS[:n]], 8, "test", "ada", 1.0)


def built(site: Site, tid: int, sha: str) -> str:
    """Give the train's open step a finished build of an image (as the build worker would leave it)."""
    digest = site.add_image("hello", sha[:1])
    with site.cp.engine.begin() as conn:
        (step,) = [s for s in rows.steps(conn, tid) if s["outcome"] is None]
        bid = build_rows.add(conn, repo.get_app(conn, "hello")["id"], {"kind": "git"}, "train", 1.0)
        build_rows.set_state(conn, bid, "succeeded", image_digest=digest, finished_at=2.0)
        rows.update_step(conn, step["id"], {"build_id": bid})
    return digest


def train(site: Site, tid: int) -> dict[str, Any]:
    with site.cp.engine.connect() as conn:
        return rows.get(conn, tid) | {"steps": rows.steps(conn, tid)}


def test_a_collecting_train_waits_for_the_environment_then_tries_the_whole_batch(site: Site) -> None:
    busy = site.deploy("hello", "production", site.add_image("hello", "0"))
    tid = make_train(site)
    assert tick(site) is False and train(site, tid)["state"] == "collecting"  # a deployment is open: nothing
    site.finish(busy["id"])
    assert tick(site) is True and train(site, tid)["state"] == "running"
    assert train(site, tid)["steps"] == []
    assert tick(site) is True
    (step,) = train(site, tid)["steps"]
    assert step["position"] == 3 and step["build_id"] is None and step["outcome"] is None


def test_a_try_queues_a_normal_canary_then_bisects_on_its_rollback(site: Site) -> None:
    site.finish(site.deploy("hello", "production", site.add_image("hello", "0"))["id"])
    tid = make_train(site)
    tick(site), tick(site)  # start, then Canary(3)
    digest = built(site, tid, SHAS[3])
    assert tick(site) is True
    (step,) = train(site, tid)["steps"]
    with site.cp.engine.connect() as conn:
        dep = deployments.get_deployment(conn, step["deployment_id"])
    assert dep["strategy"] == "canary" and dep["image"] == digest and dep["state"] == "queued"
    assert dep["created_by"] == f"train {tid}"
    assert tick(site) is False  # the canary runs: nothing to do (and nothing queued twice)
    assert len(train(site, tid)["steps"]) == 1
    site.finish(dep["id"], "rolled_back", "analysis failed at step 1: error rate 30%")
    assert tick(site) is True
    assert train(site, tid)["steps"][0]["outcome"] == "fail"
    assert tick(site) is True
    assert [s["position"] for s in train(site, tid)["steps"]] == [3, 1]  # the midpoint of 0..3


def test_a_paused_canary_is_aborted_and_counts_inconclusive(site: Site) -> None:
    tid = make_train(site, 1)
    tick(site), tick(site)
    built(site, tid, SHAS[0])
    tick(site)
    dep_id = train(site, tid)["steps"][0]["deployment_id"]
    site.finish(dep_id, "paused", "inconclusive: too few requests")
    assert tick(site) is True
    step = train(site, tid)["steps"][0]
    assert step["outcome"] == "inconclusive" and "too few requests" in step["reason"]
    with site.cp.engine.connect() as conn:
        assert deployments.get_deployment(conn, dep_id)["command"]["action"] == "abort"
    assert tick(site) is True
    assert [s["position"] for s in train(site, tid)["steps"]] == [0, 0]  # tried once more


def test_a_failed_build_names_its_commit_and_a_lost_build_is_built_again(site: Site) -> None:
    tid = make_train(site, 1)
    tick(site), tick(site)
    with site.cp.engine.begin() as conn:
        (step,) = rows.steps(conn, tid)
        lost = build_rows.add(conn, repo.get_app(conn, "hello")["id"], {"kind": "git"}, "train", 1.0)
        build_rows.set_state(conn, lost, "failed", error="interrupted by a control-plane restart; build again")
        rows.update_step(conn, step["id"], {"build_id": lost})
    assert tick(site) is True
    assert train(site, tid)["steps"][0]["build_id"] is None and train(site, tid)["steps"][0]["outcome"] is None
    with site.cp.engine.begin() as conn:
        broken = build_rows.add(conn, repo.get_app(conn, "hello")["id"], {"kind": "git"}, "train", 1.0)
        build_rows.set_state(conn, broken, "failed", error="build: pip install failed")
        rows.update_step(conn, step["id"], {"build_id": broken})
    assert tick(site) is True and tick(site) is True
    t = train(site, tid)
    assert t["state"] == "blocked" and t["shipped"] == -1
    assert t["culprit"]["outcome"] == "build_failed" and "pip install failed" in t["culprit"]["verdict"]
    assert tick(site) is False  # an ended train: nothing more


def fail_build(site: Site, tid: int, error: str) -> None:
    with site.cp.engine.begin() as conn:
        (step,) = [s for s in rows.steps(conn, tid) if s["outcome"] is None]
        bid = build_rows.add(conn, repo.get_app(conn, "hello")["id"], {"kind": "git"}, "train", 1.0)
        build_rows.set_state(conn, bid, "failed", error=error)
        rows.update_step(conn, step["id"], {"build_id": bid})


def to_ship_without(site: Site, monkeypatch: pytest.MonkeyPatch) -> tuple[int, list[Any]]:
    """A train of 3 whose first commit does not build: after the bisection, the runner opens the try of
    commit #2 with #0 reverted and submits its build with ``git_revert`` (the submit is captured)."""
    from conveyor.services import train_runner

    submitted: list[Any] = []

    def submit(cp: Any, app_id: int, req: Any, source: dict[str, Any], actor: str, upload: Any) -> dict[str, Any]:
        submitted.append((req, source))
        with cp.engine.begin() as conn:
            return {"id": build_rows.add(conn, app_id, source, actor, 1.0)}

    monkeypatch.setattr(train_runner.builds, "submit", submit)
    site.finish(site.deploy("hello", "production", site.add_image("hello", "0"))["id"])
    tid = make_train(site, 3)
    tick(site), tick(site)  # start, Canary(2)
    fail_build(site, tid, "build: boom")
    tick(site), tick(site)  # build_failed; Canary(0) (the midpoint of -1..2)
    assert [s["position"] for s in train(site, tid)["steps"]] == [2, 0]
    fail_build(site, tid, "build: boom")
    assert tick(site) is True  # #0: build_failed
    assert tick(site) is True  # ShipWithout(0, 2)
    t = train(site, tid)
    assert t["state"] == "running" and t["culprit"]["position"] == 0
    assert t["culprit"]["revert_step"] == t["steps"][-1]["id"] and t["steps"][-1]["position"] == 2
    assert tick(site) is True  # the reverted build submitted
    ((req, source),) = submitted
    assert req.git_ref == SHAS[2] and req.git_revert == SHAS[0] and source["revert"] == SHAS[0]
    assert train(site, tid)["steps"][-1]["build_id"] is not None
    return tid, submitted


def test_after_the_culprit_the_newest_commit_is_built_without_it_canaried_and_shipped(
        site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    from conveyor.services import trains as train_service

    tid, _ = to_ship_without(site, monkeypatch)
    with site.cp.engine.begin() as conn:  # the reverted build ends (as the worker leaves it)
        step = rows.steps(conn, tid)[-1]
        build_rows.set_state(conn, step["build_id"], "succeeded", image_digest=site.add_image("hello", "r"),
                             finished_at=2.0)
    assert tick(site) is True
    dep_id = train(site, tid)["steps"][-1]["deployment_id"]
    with site.cp.engine.connect() as conn:
        view = train_service.view(conn, tid)
        assert deployments.get_deployment(conn, dep_id)["strategy"] == "canary"
    assert view.steps[-1].reverted and not any(s.reverted for s in view.steps[:-1])
    assert [c.status for c in view.commits] == ["culprit", "in train", "in train"]
    site.finish(dep_id)
    assert tick(site) is True and tick(site) is True  # pass; then Culprit with the rest shipped
    t = train(site, tid)
    assert t["state"] == "shipped" and t["shipped"] == 2 and t["culprit"]["revert"]["outcome"] == "pass"
    with site.cp.engine.connect() as conn:
        view = train_service.view(conn, tid)
    assert [c.status for c in view.commits] == ["culprit", "shipped", "shipped"]  # the culprit is not shipped
    assert view.culprit is not None and view.culprit.revert == "pass" and view.canaries == 1
    assert tick(site) is False


def test_a_revert_that_conflicts_leaves_the_rest_blocked_and_says_so(
        site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    tid, _ = to_ship_without(site, monkeypatch)
    with site.cp.engine.begin() as conn:
        step = rows.steps(conn, tid)[-1]
        build_rows.set_state(conn, step["build_id"], "failed", error=f"the revert of {SHAS[0][:12]} conflicts "
                             f"with the commits after it up to {SHAS[2][:12]} (in app.py): it cannot be built")
    assert tick(site) is True and tick(site) is True
    t = train(site, tid)
    assert t["state"] == "blocked" and t["shipped"] == -1, t
    assert t["reason"].startswith(f"the culprit's revert conflicts with later commits: {SHAS[1][:12]}, "
                                  f"{SHAS[2][:12]} stay blocked until a fix is pushed"), t["reason"]
    assert t["culprit"]["verdict"] == "build: boom" and t["culprit"]["revert"]["outcome"] == "build_failed"
    assert tick(site) is False


def test_a_failing_canary_of_the_reverted_head_halts_the_train_with_the_prefix_live(
        site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    from conveyor.services import trains as train_service

    tid, _ = to_ship_without(site, monkeypatch)
    with site.cp.engine.begin() as conn:
        step = rows.steps(conn, tid)[-1]
        build_rows.set_state(conn, step["build_id"], "succeeded", image_digest=site.add_image("hello", "r"),
                             finished_at=2.0)
    assert tick(site) is True
    site.finish(train(site, tid)["steps"][-1]["deployment_id"], "rolled_back", "analysis failed: error rate 12%")
    assert tick(site) is True and tick(site) is True
    t = train(site, tid)
    assert t["state"] == "halted" and t["shipped"] == -1, t
    assert "failed its canary too (analysis failed: error rate 12%)" in t["reason"], t["reason"]
    with site.cp.engine.connect() as conn:
        view = train_service.view(conn, tid)
    assert [c.status for c in view.commits] == ["culprit", "blocked", "blocked"]
    assert view.culprit is not None and view.culprit.revert == "fail" and view.culprit.verdict == "build: boom"
    assert tick(site) is False
