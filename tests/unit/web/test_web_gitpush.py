"""The pushes API (the pre-receive hook's hand-over), `continuous.ship`, the app page's git section
and DORA from pushed commits, in process (the real git client is in tests/integration/test_git_push.py)."""

from __future__ import annotations

import time

from web_site import ADMIN, VIEWER, Site, app_id

from conveyor.store import builds as build_rows

AUTH = {"Authorization": f"Bearer {ADMIN}"}
OLD, NEW = "1" * 40, "2" * 40


def _build(web: Site, digest: str | None, state: str = "succeeded") -> int:
    with web.cp.engine.begin() as conn:
        bid = build_rows.add(conn, app_id(web), {"kind": "upload", "app": "hello"}, "admin", time.time())
        build_rows.set_state(conn, bid, state, image_digest=digest, finished_at=time.time(),
                             error=None if state == "succeeded" else "test: exit 1")
    return bid


def _commits(n: int, at: float) -> list[dict[str, object]]:
    return [{"sha": f"{i:x}" * 40 if i < 16 else "f" * 40, "time": at - 60 * i, "author": "Ada", "message": f"c{i}"}
            for i in range(1, n + 1)]


def test_a_deploy_push_ships_its_build_and_dora_counts_every_commit(web: Site) -> None:
    digest = web.add_image("hello", "a")
    bid = _build(web, digest)
    now = time.time()
    body = {"ref": "refs/heads/main", "old": OLD, "new": NEW, "action": "deploy", "build": bid,
            "commits": _commits(3, now - 600)}
    r = web.client.post("/api/v1/apps/hello/pushes", json=body, headers=AUTH)
    assert r.status_code == 201, r.text
    push = r.json()
    assert push["state"] == "shipped" and push["commits"] == 3 and push["pushed_by"] == "admin"
    dep = web.client.get(f"/api/v1/deployments/{push['deployment']}", headers=AUTH).json()
    assert dep["env"] == "production" and dep["image"] == digest and dep["created_by"] == "admin"
    events = web.client.get("/api/v1/events", params={"app": "hello"}, headers=AUTH).json()
    assert any(e["kind"] == "continuous_ship" and "git push by admin: 3 commit(s)" in e["message"] for e in events)
    web.finish(push["deployment"])
    dora = web.client.get("/api/v1/dora", params={"app": "hello", "since": "1d"}, headers=AUTH).json()
    assert dora["keys"]["lead_time"]["samples"] == 3  # the image alone has one commit
    # the page and its twin show the push
    html = web.client.get("/apps/hello").text
    assert "http://testserver/git/hello.git" in html and f"deployment #{push['deployment']}" in html
    twin = web.client.get("/api/v1/apps/hello/summary", headers=AUTH).json()
    assert twin["git"]["deploy_branch"] == "main" and twin["git"]["pushes"][0]["id"] == push["id"]


def test_a_push_of_a_failed_build_is_recorded_failed_and_ships_nothing(web: Site) -> None:
    bid = _build(web, None, state="failed")
    body = {"ref": "refs/heads/main", "old": OLD, "new": NEW, "action": "deploy", "build": bid, "commits": []}
    push = web.client.post("/api/v1/apps/hello/pushes", json=body, headers=AUTH).json()
    assert push["state"] == "failed" and push["deployment"] is None and "test: exit 1" in push["detail"]
    tested = web.add_image("hello", "b", test_status="failed")
    push = web.client.post("/api/v1/apps/hello/pushes", json=body | {"build": _build(web, tested)}, headers=AUTH).json()
    assert push["state"] == "failed" and "failed its tests" in push["detail"]
    assert web.client.get("/api/v1/apps/hello/deployments", headers=AUTH).json() == []


def test_pushes_api_refuses_bad_input_and_readers(web: Site) -> None:
    c = web.client
    store = {"ref": "refs/heads/feature", "old": OLD, "new": NEW, "action": "store"}
    r = c.post("/api/v1/apps/hello/pushes", json=store, headers=AUTH)
    assert r.status_code == 201 and r.json()["state"] == "stored"
    assert c.post("/api/v1/apps/hello/pushes", json=store | {"old": "xyz"}, headers=AUTH).status_code == 422
    assert c.post("/api/v1/apps/hello/pushes", json=store | {"action": "deploy"}, headers=AUTH).status_code == 422
    r = c.post("/api/v1/apps/hello/pushes", json=store | {"action": "deploy", "build": 999}, headers=AUTH)
    assert r.status_code == 409 and "not a build of app 'hello'" in r.json()["detail"]
    assert c.post("/api/v1/apps/nope/pushes", json=store, headers=AUTH).status_code == 404
    viewer = {"Authorization": f"Bearer {VIEWER}"}
    r = c.post("/api/v1/apps/hello/pushes", json=store, headers=viewer)
    assert r.status_code == 403 and "may only read" in r.json()["detail"]
    assert c.get("/api/v1/apps/hello/git", headers=viewer).json()["url"] == "http://testserver/git/hello.git"
    r = c.put("/api/v1/apps/hello/git", json={"deploy_branch": "a..b"}, headers=AUTH)
    assert r.status_code == 422 and "deploy branch 'a..b' is invalid" in r.json()["detail"]
    assert c.put("/api/v1/apps/hello/git", json={"deploy_branch": "release"}, headers=viewer).status_code == 403
    r = c.put("/api/v1/apps/hello/git", json={"deploy_branch": "release"}, headers=AUTH)
    assert r.status_code == 200 and r.json()["deploy_branch"] == "release"


def test_smart_http_refusals_are_plain_text_git_shows(web: Site) -> None:
    c = web.client
    r = c.get("/git/hello.git/info/refs", params={"service": "git-receive-pack"})
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic")
    assert r.headers["content-type"].startswith("text/plain") and "needs a token" in r.text
    basic = {"Authorization": "Basic " + __import__("base64").b64encode(f"x:{VIEWER}".encode()).decode()}
    r = c.get("/git/hello.git/info/refs", params={"service": "git-receive-pack"}, headers=basic)
    assert r.status_code == 403 and "may only read" in r.text
    r = c.get("/git/hello.git/info/refs", params={"service": "git-upload-pack"}, headers=basic)
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-git-upload-pack-advertisement"
    r = c.get("/git/nope.git/info/refs", params={"service": "git-upload-pack"}, headers=basic)
    assert r.status_code == 404 and "app 'nope' not found" in r.text
    assert c.get("/git/hello.git/HEAD", headers=basic).status_code == 404
    assert c.get("/git/hello.git/config", headers=basic).status_code == 404
    assert c.get("/git/hello.git/info/refs", headers=basic).status_code == 404  # the dumb protocol


def test_a_deployer_scoped_to_another_app_may_fetch_but_not_push(web: Site) -> None:
    import base64

    c = web.client
    assert c.post("/api/v1/apps", json={"name": "other"}, headers=AUTH).status_code == 201
    r = c.post("/api/v1/tokens", json={"role": "deployer", "name": "ci-other", "app": "other"}, headers=AUTH)
    assert r.status_code == 201, r.text
    scoped = {"Authorization": "Basic " + base64.b64encode(f"ci:{r.json()['token']}".encode()).decode()}
    r = c.get("/git/hello.git/info/refs", params={"service": "git-receive-pack"}, headers=scoped)
    assert r.status_code == 403 and "scoped to app 'other'" in r.text
    r = c.get("/git/other.git/info/refs", params={"service": "git-receive-pack"}, headers=scoped)
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-git-receive-pack-advertisement"
    assert b"push-options" in r.content  # receive.advertisePushOptions: `git push -o detach` works
    assert c.get("/git/hello.git/info/refs", params={"service": "git-upload-pack"}, headers=scoped).status_code == 200


def test_a_locked_environment_refuses_a_pushed_build_with_the_locks_reason(web: Site) -> None:
    """A push is an automatic deploy: a lock (or a rollback's lock, or a freeze window) holds it, says
    why, and nothing is deployed; after `unlock` the next push ships."""
    r = web.client.post("/api/v1/apps/hello/locks", json={"reason": "release freeze for the audit"}, headers=AUTH)
    assert r.status_code in (200, 201), r.text
    body = {"ref": "refs/heads/main", "old": OLD, "new": NEW, "action": "deploy",
            "build": _build(web, web.add_image("hello", "c")), "commits": _commits(1, time.time())}
    push = web.client.post("/api/v1/apps/hello/pushes", json=body, headers=AUTH).json()
    assert push["state"] == "failed" and push["deployment"] is None
    assert "release freeze for the audit" in push["detail"], push["detail"]
    assert web.client.get("/api/v1/apps/hello/deployments", headers=AUTH).json() == []
    assert web.client.delete("/api/v1/apps/hello/locks", headers=AUTH).status_code == 200
    push = web.client.post("/api/v1/apps/hello/pushes", json=body, headers=AUTH).json()
    assert push["state"] == "shipped", push


def test_a_push_enters_the_pipeline_at_its_first_stage(web: Site) -> None:
    """With `[env.production] after = "staging"`, a pushed build goes to staging; the pipeline
    promotes it from there (tests/integration/test_pipelines.py)."""
    from sqlalchemy import update

    from conveyor.store.tables import images

    digest = web.add_image("hello", "d")
    manifest = {"run": {"web": "python app.py"}, "env": {"staging": {}, "production": {"after": "staging"}}}
    with web.cp.engine.begin() as conn:
        conn.execute(update(images).where(images.c.digest == digest).values(app_manifest=manifest))
    body = {"ref": "refs/heads/main", "old": OLD, "new": NEW, "action": "deploy", "build": _build(web, digest),
            "commits": _commits(1, time.time())}
    push = web.client.post("/api/v1/apps/hello/pushes", json=body, headers=AUTH).json()
    assert push["state"] == "shipped", push
    dep = web.client.get(f"/api/v1/deployments/{push['deployment']}", headers=AUTH).json()
    assert dep["env"] == "staging"
