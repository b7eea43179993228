"""Pipelines, approvals and locks in process: the promotion pass run by hand with a chosen clock (so
the bake is exact, and running it twice is seen to change nothing), the deployment page's approval
buttons and pipeline, its JSON twin, and locks on the app page and in the deploy form."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import insert, select

from conveyor.domain.manifest import parse_manifest
from conveyor.services import pipelines
from conveyor.store import repo
from conveyor.store.tables import deployments, images
from web_site import ADMIN, Site

PIPELINE = {"app": {"name": "hello"}, "run": {"web": "python app.py"}, "deploy": {"bake": "60s"},
            "env": {"staging": {"instances": 1},
                    "production": {"instances": 1, "after": "staging", "approval": True}}}
BEARER = {"Authorization": f"Bearer {ADMIN}"}


def add_image(site: Site, sha: str, manifest: dict[str, Any]) -> str:
    digest = "sha256:" + (sha * 64)[:64]
    with site.cp.engine.begin() as conn:
        conn.execute(insert(images).values(
            digest=digest, app_id=repo.get_app(conn, "hello")["id"], manifest={"schema_version": 1, "layers": [],
                                                                              "config": {}},
            app_manifest=parse_manifest(manifest).model_dump(mode="json", by_alias=True), size=1,
            test_status="passed", commit=None, build_id=None, created_at=time.time()))
    return digest


def reconcile(site: Site, now: float) -> None:
    with site.cp.engine.begin() as conn:
        pipelines.reconcile(conn, now)


def production(site: Site) -> list[dict[str, Any]]:
    with site.cp.engine.connect() as conn:
        rows = conn.execute(select(deployments).order_by(deployments.c.id)).mappings().all()
        return [dict(r) for r in rows if repo.app_env_names(conn, r["env_id"])[1] == "production"]


def test_a_stage_is_promoted_once_after_the_bake_and_waits_for_approval(web: Site) -> None:
    digest = add_image(web, "c", PIPELINE)
    staged = web.deploy("hello", "staging", digest)
    web.finish(staged["id"])
    finished = web.client.get(f"/api/v1/deployments/{staged['id']}", headers=BEARER).json()
    reconcile(web, finished["finished_at"] + 59)
    assert production(web) == []  # still baking
    twin = web.client.get(f"/api/v1/deployments/{staged['id']}", headers=BEARER).json()
    prod = next(s for s in twin["pipeline"] if s["env"] == "production")
    assert "bake" in prod["waiting"] and prod["deployment"] is None and prod["approval"]

    reconcile(web, finished["finished_at"] + 61)
    reconcile(web, finished["finished_at"] + 62)  # level-triggered: a second pass changes nothing
    (waiting,) = production(web)
    assert waiting["state"] == "awaiting_approval" and waiting["image_digest"] == digest
    assert waiting["approval"] == {"state": "pending", "from_env": "staging", "from_deployment": staged["id"]}

    page = web.client.get(f"/deployments/{waiting['id']}").text
    assert 'data-action="approve"' in page and 'data-action="reject"' in page and "data-pipeline" in page
    assert "waits for approval" in page
    twin = web.client.get(f"/api/v1/deployments/{waiting['id']}", headers=BEARER).json()
    assert twin["approval"]["state"] == "pending"
    assert [s["env"] for s in twin["pipeline"]] == ["staging", "production"]
    assert "conveyor approve hello" in twin["pipeline"][1]["waiting"]

    r = web.client.post(f"/api/v1/deployments/{waiting['id']}/approve", json={"reason": "ok"}, headers=BEARER)
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "queued" and r.json()["approval"]["state"] == "approved"
    again = web.client.post(f"/api/v1/deployments/{waiting['id']}/approve", json={}, headers=BEARER)
    assert again.status_code == 409 and "waits for no approval" in again.json()["detail"]


def test_a_lock_holds_the_promotion_until_unlocked(web: Site) -> None:
    digest = add_image(web, "d", {**PIPELINE, "deploy": {"bake": "0s"},
                                  "env": {"staging": {}, "production": {"after": "staging"}}})
    staged = web.deploy("hello", "staging", digest)
    web.finish(staged["id"])
    r = web.client.post("/api/v1/apps/hello/locks", json={"env": "staging", "reason": "tests flaky"}, headers=BEARER)
    assert r.status_code == 201, r.text
    r = web.client.post("/api/v1/apps/hello/locks", json={"reason": "incident 42"}, headers=BEARER)  # every env
    assert r.status_code == 201, r.text
    dup = web.client.post("/api/v1/apps/hello/locks", json={"reason": "again"}, headers=BEARER)
    assert dup.status_code == 409 and "already locked" in dup.json()["detail"]
    later = time.time() + 3600
    reconcile(web, later)
    assert production(web) == []
    twin = web.client.get(f"/api/v1/deployments/{staged['id']}", headers=BEARER).json()
    assert "held" in twin["pipeline"][1]["waiting"] and "incident 42" in twin["pipeline"][1]["waiting"]
    page = web.client.get("/apps/hello").text
    assert "incident 42" in page and "tests flaky" in page and 'data-lock="manual"' in page
    assert 'name="force"' in page
    r = web.client.delete("/api/v1/apps/hello/locks", headers=BEARER)
    assert r.status_code == 200 and [lk["reason"] for lk in r.json()] == ["incident 42"]
    reconcile(web, later)
    (promoted,) = production(web)
    assert promoted["state"] == "queued" and promoted["created_by"] == "pipeline"


def test_bad_lock_and_freeze_input_changes_nothing(web: Site) -> None:
    for body, status, words in (
        ({"env": "nope", "reason": "x"}, 404, "has no environment 'nope'"),
        ({"reason": "   "}, 422, "reason"),
    ):
        r = web.client.post("/api/v1/apps/hello/locks", json=body, headers=BEARER)
        assert r.status_code == status and words in str(r.json()["detail"]), r.text
    assert web.client.post("/api/v1/apps/ghost/locks", json={"reason": "x"}, headers=BEARER).status_code == 404
    r = web.client.post("/api/v1/apps/hello/freezes", json={"window": "Fri 16:00 - Mon", "tz": "UTC"}, headers=BEARER)
    assert r.status_code == 422 and r.json()["detail"].startswith("window: expected"), r.text
    assert web.client.get("/api/v1/apps/hello/locks", headers=BEARER).json() == []
    assert web.client.get("/api/v1/apps/hello/freezes", headers=BEARER).json() == []
    assert web.client.delete("/api/v1/apps/hello/locks", headers=BEARER).status_code == 404


def test_a_viewer_sees_the_approval_buttons_disabled(viewer: Site) -> None:
    digest = add_image(viewer, "e", PIPELINE)
    staged = viewer.deploy("hello", "staging", digest)
    viewer.finish(staged["id"])
    reconcile(viewer, time.time() + 3600)
    (waiting,) = production(viewer)
    page = viewer.client.get(f"/deployments/{waiting['id']}").text
    assert 'data-action="approve"' in page and "viewers cannot press" in page


def test_a_rollback_lock_holds_promotions_but_not_a_person(web: Site) -> None:
    from conveyor.services import deployments as deploy_service
    from conveyor.store import locks as lock_rows

    digest = add_image(web, "f", {**PIPELINE, "deploy": {"bake": "0s"},
                                  "env": {"staging": {}, "production": {"after": "staging"}}})
    with web.cp.engine.begin() as conn:
        app_id = repo.get_app(conn, "hello")["id"]
        lock_rows.add_lock(conn, app_id, "production", "rollback",
                           "deployment 3 was rolled back automatically (crash loop)", "conveyor", time.time(), 3)
    staged = web.deploy("hello", "staging", digest)
    web.finish(staged["id"])
    reconcile(web, time.time() + 10)
    assert production(web) == []
    twin = web.client.get(f"/api/v1/deployments/{staged['id']}", headers=BEARER).json()
    assert "rolled back automatically" in twin["pipeline"][1]["waiting"]
    dep_id = deploy_service.deploy(web.cp, "hello", "production", digest, actor="ann")  # a person: allowed
    assert web.client.get(f"/api/v1/deployments/{dep_id}", headers=BEARER).json()["params"].get("forced") is None


def test_an_approved_promotion_joins_the_queue_behind_a_running_deployment(web: Site) -> None:
    digest = add_image(web, "a1", PIPELINE)
    other = add_image(web, "b2", PIPELINE)
    staged = web.deploy("hello", "staging", digest)
    web.finish(staged["id"])
    running = web.deploy("hello", "production", other)  # a manual deploy holds production
    reconcile(web, time.time() + 3600)
    waiting = next(d for d in production(web) if d["state"] == "awaiting_approval")
    r = web.client.post(f"/api/v1/deployments/{waiting['id']}/approve", json={}, headers=BEARER)
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "queued" and r.json()["queue_position"] == 1, r.json()
    assert running["id"] < waiting["id"]
