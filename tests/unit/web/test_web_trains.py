"""The deploy train pages and their JSON twins, and the train on a deployment's page (in process)."""

from __future__ import annotations

from web_site import ADMIN, Site

from conveyor.store import repo
from conveyor.store import trains as rows

AUTH = {"Authorization": f"Bearer {ADMIN}"}
SHAS = [f"{i:x}" * 40 for i in range(1, 5)]


def _blocked_train(web: Site, dep_id: int) -> int:
    """A train of 4 commits whose 3rd was found bad by deployment ``dep_id`` (as the runner leaves it)."""
    with web.cp.engine.begin() as conn:
        env = repo.get_env(conn, repo.get_app(conn, "hello")["id"], "production")
        commits = [{"sha": s, "time": 1.0, "author": "Ada", "message": f"change {i + 1}"} for i, s in enumerate(SHAS)]
        tid = rows.insert_train(conn, env["id"], "/srv/hello.git", commits, 8, "push", "ada", 10.0)
        for position, outcome, dep in ((3, "fail", None), (1, "pass", None), (2, "fail", dep_id)):
            step = rows.add_step(conn, tid, position, 11.0)
            rows.update_step(conn, step, {"outcome": outcome, "reason": f"canary {outcome}", "deployment_id": dep,
                                          "finished_at": 12.0})
        rows.advance(conn, tid, "collecting", {
            "state": "blocked", "shipped": 1, "finished_at": 13.0, "started_at": 10.5,
            "culprit": {"position": 2, "outcome": "fail", "verdict": "analysis failed at step 1: error rate 30%",
                        "deployment_id": dep_id, "build_id": None}})
    return tid


def test_train_pages_twins_and_the_deployment_page_show_the_culprit(web: Site) -> None:
    a = web.add_image("hello", "a")
    dep = web.deploy("hello", "production", a)
    tid = _blocked_train(web, dep["id"])
    c = web.client
    twin = c.get(f"/api/v1/trains/{tid}", headers=AUTH).json()
    assert twin["state"] == "blocked" and twin["culprit"]["sha"] == SHAS[2] and twin["canaries"] == 1
    assert [x["status"] for x in twin["commits"]] == ["shipped", "shipped", "culprit", "blocked"]
    assert twin["shipped_sha"] == SHAS[1]
    assert c.get("/api/v1/apps/hello/trains", headers=AUTH).json() == [twin]
    page = c.get(f"/trains/{tid}")
    assert page.status_code == 200
    assert f'data-culprit="{SHAS[2]}"' in page.text and "analysis failed at step 1" in page.text
    assert f"/deployments/{dep['id']}" in page.text and "Tries" in page.text
    listing = c.get("/apps/hello/trains")
    assert listing.status_code == 200 and f'data-train="{tid}"' in listing.text
    dep_twin = c.get(f"/api/v1/deployments/{dep['id']}", headers=AUTH).json()
    assert dep_twin["train"]["id"] == tid and dep_twin["train"]["culprit"]["sha"] == SHAS[2]
    dep_page = c.get(f"/deployments/{dep['id']}")
    assert f'data-train="{tid}"' in dep_page.text and "culprit" in dep_page.text
    assert 'href="/apps/hello/trains"' in c.get("/apps/hello").text


def test_unknown_train_or_app_is_a_404(web: Site) -> None:
    c = web.client
    assert c.get("/trains/12345").status_code == 404
    assert c.get("/apps/nope/trains").status_code == 404
    r = c.get("/api/v1/trains/12345", headers=AUTH)
    assert r.status_code == 404 and "train 12345 not found" in r.json()["detail"]
    r = c.get("/api/v1/apps/nope/trains", headers=AUTH)
    assert r.status_code == 404


def test_a_train_that_shipped_the_rest_with_the_culprit_reverted_never_shows_the_culprit_shipped(web: Site) -> None:
    a = web.add_image("hello", "a")
    dep = web.deploy("hello", "production", a)
    web.finish(dep["id"], "rolled_back", "error rate 30%")
    b = web.deploy("hello", "production", web.add_image("hello", "b"))
    with web.cp.engine.begin() as conn:
        env = repo.get_env(conn, repo.get_app(conn, "hello")["id"], "production")
        commits = [{"sha": s, "time": 1.0, "author": "Ada", "message": f"change {i + 1}"} for i, s in enumerate(SHAS)]
        tid = rows.insert_train(conn, env["id"], "/srv/hello.git", commits, 8, "push", "ada", 10.0)
        for position, outcome in ((3, "fail"), (1, "fail"), (0, "pass"), (3, "pass")):
            step = rows.add_step(conn, tid, position, 11.0)
            rows.update_step(conn, step, {"outcome": outcome, "reason": f"canary {outcome}", "finished_at": 12.0,
                                          "deployment_id": {1: dep["id"]}.get(position)})
        rows.update_step(conn, step, {"deployment_id": b["id"]})  # the reverted head's canary
        rows.advance(conn, tid, "collecting", {
            "state": "shipped", "shipped": 3, "finished_at": 13.0, "started_at": 10.5,
            "culprit": {"position": 1, "outcome": "fail", "verdict": "error rate 30%", "deployment_id": dep["id"],
                        "build_id": None, "revert_step": step, "revert": {"outcome": "pass", "reason": "promoted"}}})
    c = web.client
    twin = c.get(f"/api/v1/trains/{tid}", headers=AUTH).json()
    assert [x["status"] for x in twin["commits"]] == ["shipped", "culprit", "shipped", "shipped"]
    assert [s["reverted"] for s in twin["steps"]] == [False, False, False, True]
    assert twin["culprit"]["revert"] == "pass" and twin["culprit"]["revert_reason"] == "promoted"
    page = c.get(f"/trains/{tid}").text
    assert f'data-reverted="{SHAS[1]}"' in page and "shipped with it reverted" in page
    ref = c.get(f"/api/v1/deployments/{b['id']}", headers=AUTH).json()["train"]
    assert ref["reverted"] is True and ref["sha"] == SHAS[3] and ref["culprit"]["sha"] == SHAS[1]
    assert f"<code>{SHAS[1][:12]}</code> reverted" in c.get(f"/deployments/{b['id']}").text
    assert c.get(f"/api/v1/deployments/{dep['id']}", headers=AUTH).json()["train"]["reverted"] is False
