"""Every page of the web UI and its JSON twin, in process, on a seeded history."""

from __future__ import annotations

import json
from pathlib import Path
import re
import time

import pytest

from sqlalchemy import insert, select

from conveyor.store import instance_counts, repo
from conveyor.store.tables import builds, deployments, events

from web_site import ADMIN, Site, app_id


def _seed_live(web: Site) -> tuple[str, str]:
    """hello/production: r1 (image a) then r2 (image b) live; staging r1 runs image b."""
    a = web.add_image("hello", "a", message="first version")
    b = web.add_image("hello", "b", message="second version")
    web.finish(web.deploy("hello", "production", a)["id"])
    web.finish(web.deploy("hello", "production", b)["id"])
    web.finish(web.deploy("hello", "staging", b)["id"])
    return a, b


def test_overview_page_and_twin_show_every_app_env_release_and_health(web: Site) -> None:
    _seed_live(web)
    page = web.client.get("/")
    assert page.status_code == 200
    assert "hello" in page.text and "production" in page.text and "staging" in page.text
    assert "r2" in page.text
    assert "down" in page.text  # no agent runs the instances: health says so in words, not just colour
    twin = web.client.get("/api/v1/overview").json()
    envs = {e["name"]: e for e in twin["apps"][0]["environments"]}
    assert envs["production"]["release"] == 2 and envs["production"]["routes"] == {"2": 100}
    assert envs["staging"]["release"] == 1
    assert envs["production"]["health"] == "down"
    assert twin["in_flight"] == []


def test_overview_lists_deployments_in_flight_with_progress(web: Site) -> None:
    a = web.add_image("hello", "a")
    dep = web.deploy("hello", "production", a)
    page = web.client.get("/").text
    assert f"/deployments/{dep['id']}" in page and "queued" in page
    twin = web.client.get("/api/v1/overview").json()
    assert [d["id"] for d in twin["in_flight"]] == [dep["id"]]
    assert twin["in_flight"][0]["progress_view"] == {"percent": 0, "label": "queued"}


def test_pages_need_sign_in_and_redirect_back(anon: Site) -> None:
    for path in ("/", "/apps/hello", "/hosts", "/audit", "/dora", "/deployments/1", "/apps/hello/metrics"):
        resp = anon.client.get(path)
        assert resp.status_code == 303, path
        assert resp.headers["location"].startswith("/login?next=")
    assert anon.client.get("/api/v1/overview").status_code == 401


def test_sign_in_sets_a_random_httponly_samesite_session_cookie(anon: Site) -> None:
    page = anon.client.get("/login?next=/hosts")
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text).group(1)  # type: ignore[union-attr]
    resp = anon.client.post("/login", data={"token": ADMIN, "csrf": csrf, "next": "/hosts"})
    assert resp.status_code == 303 and resp.headers["location"] == "/hosts"
    cookie = resp.headers["set-cookie"]
    assert "conveyor_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie.replace("Lax", "lax")
    sid = re.search(r"conveyor_session=([^;]+)", cookie).group(1)  # type: ignore[union-attr]
    assert len(sid) >= 40 and ADMIN not in cookie
    assert anon.cp.sessions.get(sid) == ADMIN
    assert anon.client.get("/hosts").status_code == 200


def test_sign_in_rejects_bad_tokens_and_stale_forms_with_a_reason(anon: Site) -> None:
    page = anon.client.get("/login")
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text).group(1)  # type: ignore[union-attr]
    bad = anon.client.post("/login", data={"token": "wrong", "csrf": csrf})
    assert bad.status_code == 401 and "not valid" in bad.text
    empty = anon.client.post("/login", data={"token": " ", "csrf": csrf})
    assert empty.status_code == 422 and "paste a token" in empty.text
    stale = anon.client.post("/login", data={"token": ADMIN, "csrf": "0" * 64})
    assert stale.status_code == 400 and "expired" in stale.text
    assert len(anon.cp.sessions) == 0


def test_sign_in_never_redirects_to_another_site(anon: Site) -> None:
    page = anon.client.get("/login")
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text).group(1)  # type: ignore[union-attr]
    resp = anon.client.post("/login", data={"token": ADMIN, "csrf": csrf, "next": "//evil.example/x"})
    assert resp.headers["location"] == "/"


def test_sign_out_ends_the_session(web: Site) -> None:
    csrf = web.csrf("/")
    assert web.client.post("/logout", data={"csrf": "nope"}).status_code == 403
    resp = web.client.post("/logout", data={"csrf": csrf})
    assert resp.status_code == 303
    assert len(web.cp.sessions) == 0
    assert web.client.get("/").status_code == 303


def test_sessions_expire(web: Site) -> None:
    from conveyor.store.web_sessions import SESSION_MAX_AGE

    assert len(web.cp.sessions) == 1
    web.cp.sessions.clock = lambda: time.time() + SESSION_MAX_AGE + 1
    assert web.client.get("/").status_code == 303
    assert len(web.cp.sessions) == 0
    assert web.client.get("/api/v1/overview").status_code == 401


def test_sessions_survive_a_restart_and_end_with_their_token(tmp_path: Path) -> None:
    """Sessions live in SQL, hashed: a restarted control plane keeps them; a revoked token ends them."""
    from fastapi.testclient import TestClient

    from conveyor.server import create_app
    from conveyor.config import ServerSettings
    from conveyor.store.tables import web_sessions

    def site(viewers: list[str]) -> TestClient:
        settings = ServerSettings(data_dir=tmp_path / "data", admin_token=ADMIN, viewer_tokens=viewers, build_workers=1)
        return TestClient(create_app(settings), base_url="http://testserver", follow_redirects=False)

    with site(["viewer-1"]) as first:
        cookies = {}
        for token in (ADMIN, "viewer-1"):
            first.cookies.clear()
            page = first.get("/login")
            csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text).group(1)  # type: ignore[union-attr]
            resp = first.post("/login", data={"token": token, "csrf": csrf})
            cookies[token] = re.search(r"conveyor_session=([^;]+)", resp.headers["set-cookie"]).group(1)  # type: ignore[union-attr]
        with first.app.state.cp.engine.connect() as conn:  # type: ignore[attr-defined]
            rows = [tuple(r) for r in conn.execute(select(web_sessions)).all()]
        assert len(rows) == 2
        assert not any(secret in str(rows) for secret in (ADMIN, "viewer-1", *cookies.values()))
    with site([]) as second:  # restarted, and viewer-1 is no longer accepted
        second.cookies.set("conveyor_session", cookies[ADMIN])
        assert second.get("/hosts").status_code == 200
        second.cookies.set("conveyor_session", cookies["viewer-1"])
        assert second.get("/hosts").status_code == 303


def test_one_time_login_link_signs_in_once(anon: Site) -> None:
    headers = {"Authorization": f"Bearer {ADMIN}"}
    link = anon.client.post("/api/v1/ui/login-link?next=/hosts", headers=headers).json()
    assert link["path"].startswith("/login?code=") and link["expires_in"] == 60
    first = anon.client.get(link["path"])
    assert first.status_code == 303 and first.headers["location"] == "/hosts"
    assert "conveyor_session=" in first.headers["set-cookie"]
    anon.client.cookies.clear()
    again = anon.client.get(link["path"])
    assert again.status_code == 400 and "expired or was already used" in again.text


def test_login_link_expires(anon: Site) -> None:
    from conveyor.services.auth import web_state

    link = anon.client.post("/api/v1/ui/login-link", headers={"Authorization": f"Bearer {ADMIN}"}).json()
    st = web_state(anon.cp)
    code = next(iter(st.login_codes))
    st.login_codes[code] = (st.login_codes[code][0], time.time() - 1)
    assert anon.client.get(link["path"]).status_code == 400


def test_app_page_shows_envs_images_releases_and_buttons(web: Site) -> None:
    a, b = _seed_live(web)
    failed = web.add_image("hello", "c", test_status="failed", message="broken")
    page = web.client.get("/apps/hello")
    assert page.status_code == 200
    html = page.text
    assert "production" in html and "staging" in html
    assert "bbbbbbbbbbbb" in html and "second version" in html
    assert "Rollback to r1" in html  # production can go back to r1
    assert "Promote staging → production" in html
    assert re.search(r'<option value="%s"[^>]*disabled' % failed, html), "a failed image cannot be chosen"
    assert 'data-confirm="Roll back hello/production from release 2 to release 1' in html
    twin = web.client.get("/api/v1/apps/hello/summary").json()
    assert [e["name"] for e in twin["environments"]] == ["production", "staging"]
    assert twin["environments"][0]["rollback_target"]["number"] == 1
    assert {i["test_status"] for i in twin["images"]} == {"passed", "failed"}
    assert len(twin["releases"]) == 3


def test_unknown_app_page_is_a_404_page(web: Site) -> None:
    resp = web.client.get("/apps/nope")
    assert resp.status_code == 404 and "not found" in resp.text and "<html" in resp.text


def test_deploy_button_queues_a_deployment_and_goes_to_its_page(web: Site) -> None:
    a = web.add_image("hello", "a")
    csrf = web.csrf("/apps/hello")
    resp = web.client.post("/apps/hello/deploy", data={"csrf": csrf, "image": a, "env": "production",
                                                       "strategy": "rolling"})
    assert resp.status_code == 303
    dep_id = int(resp.headers["location"].rsplit("/", 1)[1])
    dep = web.client.get(f"/api/v1/deployments/{dep_id}").json()
    assert dep["image"] == a and dep["strategy"] == "rolling" and dep["created_by"] == "admin"
    with web.cp.engine.connect() as conn:
        ev = conn.execute(select(events).where(events.c.kind == "deploy_queued")).mappings().one()
    assert ev["actor"] == "admin" and ev["origin"]


def test_deploy_button_errors_come_back_on_the_app_page(web: Site) -> None:
    bad = web.add_image("hello", "c", test_status="failed")
    csrf = web.csrf("/apps/hello")
    resp = web.client.post("/apps/hello/deploy", data={"csrf": csrf, "image": bad, "env": "production"})
    assert resp.status_code == 409 and "failed its tests" in resp.text
    resp = web.client.post("/apps/hello/deploy", data={"csrf": csrf, "image": "", "env": "production"})
    assert resp.status_code == 422 and "choose an image" in resp.text
    resp = web.client.post("/apps/hello/deploy", data={"csrf": csrf, "image": bad, "env": "Bad Env"})
    assert resp.status_code in (409, 422)
    with web.cp.engine.connect() as conn:
        assert conn.execute(select(deployments)).first() is None  # nothing was queued


def test_forms_need_the_csrf_token(web: Site) -> None:
    a = web.add_image("hello", "a")
    resp = web.client.post("/apps/hello/deploy", data={"image": a, "env": "production"})
    assert resp.status_code == 403 and "CSRF" in resp.text
    assert resp.headers["content-type"].startswith("text/html") and "Not allowed" in resp.text
    resp = web.client.post("/apps/hello/deploy", data={"csrf": "f" * 64, "image": a})
    assert resp.status_code == 403


def test_promote_deploys_the_image_staging_runs_to_production(web: Site) -> None:
    a, b = _seed_live(web)
    web.finish(web.deploy("hello", "staging", a)["id"])  # staging now runs a (r2)
    csrf = web.csrf("/apps/hello")
    resp = web.client.post("/apps/hello/promote", data={"csrf": csrf, "from_env": "staging", "env": "production"})
    assert resp.status_code == 303
    dep = web.client.get("/api/v1" + resp.headers["location"]).json()
    assert dep["env"] == "production" and dep["image"] == a and dep["release"] == 3


def test_rollback_button_and_its_refusal(web: Site) -> None:
    a = web.add_image("hello", "a")
    web.finish(web.deploy("hello", "production", a)["id"])
    csrf = web.csrf("/apps/hello")
    nothing = web.client.post("/apps/hello/rollback", data={"csrf": csrf, "env": "production"})
    assert nothing.status_code == 409 and "no previous release" in nothing.text
    b = web.add_image("hello", "b")
    web.finish(web.deploy("hello", "production", b)["id"])
    resp = web.client.post("/apps/hello/rollback", data={"csrf": csrf, "env": "production"})
    assert resp.status_code == 303
    dep = web.client.get("/api/v1" + resp.headers["location"]).json()
    assert dep["kind"] == "rollback" and dep["from_release"] == 2 and dep["release"] == 1


def test_viewer_can_look_but_not_press(viewer: Site) -> None:
    a = viewer.add_image("hello", "a")
    b = viewer.add_image("hello", "b")
    viewer.finish(viewer.deploy("hello", "production", a)["id"])
    viewer.finish(viewer.deploy("hello", "production", b)["id"])
    page = viewer.client.get("/apps/hello").text
    assert "viewer" in page
    assert re.search(r"disabled title=\"viewers cannot roll back\"", page)
    csrf = viewer.csrf("/apps/hello")
    resp = viewer.client.post("/apps/hello/rollback", data={"csrf": csrf, "env": "production"})
    assert resp.status_code == 403 and "viewer" in resp.text
    api = viewer.client.post("/api/v1/apps/hello/rollback", json={"env": "production"},
                             headers={"X-CSRF-Token": csrf})
    assert api.status_code == 403
    assert viewer.client.get("/api/v1/apps/hello").status_code == 200


def test_api_calls_with_the_session_cookie_need_the_csrf_header(web: Site) -> None:
    a = web.add_image("hello", "a")
    dep = web.deploy("hello", "production", a)
    url = f"/api/v1/deployments/{dep['id']}/cancel"
    refused = web.client.post(url)
    assert refused.status_code == 403 and "X-CSRF-Token" in refused.json()["detail"]
    ok = web.client.post(url, headers={"X-CSRF-Token": web.csrf("/")})
    assert ok.status_code == 200 and ok.json()["state"] == "cancelled"
    # bearer clients (the CLI) are unaffected
    other = web.deploy("hello", "production", a)
    web.client.cookies.clear()
    bearer = web.client.post(f"/api/v1/deployments/{other['id']}/cancel", headers={"Authorization": f"Bearer {ADMIN}"})
    assert bearer.status_code == 200


def test_deployment_page_shows_state_weights_instances_and_controls(web: Site) -> None:
    a = web.add_image("hello", "a")
    dep = web.deploy("hello", "production", a)
    page = web.client.get(f"/deployments/{dep['id']}")
    assert page.status_code == 200
    assert f'data-stream="/deployments/{dep["id"]}/stream"' in page.text
    assert "queued" in page.text
    assert 'data-action="cancel"' in page.text  # the API has cancel; a queued deployment offers it
    assert 'data-action="abort"' not in page.text  # not offered for a queued one
    twin = web.client.get(f"/api/v1/deployments/{dep['id']}/view").json()
    assert twin["deployment"]["state"] == "queued" and twin["terminal"] is False
    assert [e["kind"] for e in twin["events"]] == ["deploy_queued"]
    web.finish(dep["id"])
    page = web.client.get(f"/deployments/{dep['id']}").text
    assert "succeeded" in page and "r1 100%" in page and 'data-action=' not in page


def test_deployment_page_of_unknown_id_is_404(web: Site) -> None:
    assert web.client.get("/deployments/999").status_code == 404
    assert web.client.get("/api/v1/deployments/999/view").status_code == 404


def _events(lines: list[str]) -> list[tuple[str, str]]:
    out, kind = [], ""
    for line in lines:
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            out.append((kind, line[6:]))
    return out


def test_deployment_stream_sends_updates_until_the_end(web: Site) -> None:
    a = web.add_image("hello", "a")
    dep = web.deploy("hello", "production", a)
    seen: list[str] = []
    with web.client.stream("GET", f"/deployments/{dep['id']}/stream") as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        finished = False
        for line in resp.iter_lines():
            seen.append(line)
            evs = _events(seen)
            if len(evs) == 1 and not finished:
                first = json.loads(evs[0][1])
                assert first["state"] == "queued" and "<section" in first["html"]
                web.finish(dep["id"])  # the stream must notice within its re-check period
                finished = True
            if evs and evs[-1][0] == "end":
                break
    kinds = [k for k, _ in _events(seen)]
    assert kinds[0] == "update" and kinds[-1] == "end"
    last_update = json.loads([d for k, d in _events(seen) if k == "update"][-1])
    assert last_update["state"] == "succeeded" and last_update["terminal"] is True


def test_build_image_and_logs_pages(web: Site) -> None:
    a = web.add_image("hello", "a", message="with a build")
    with web.cp.engine.begin() as conn:
        build_id = conn.execute(insert(builds).values(
            app_id=app_id(web), state="succeeded", source={"kind": "upload", "bytes": 1470, "app": "hello"},
            image_digest=a, created_by="admin", created_at=time.time() - 5, finished_at=time.time())
        ).inserted_primary_key[0]
    log_dir = web.cp.settings.data_dir / "builds"
    log_dir.mkdir(parents=True, exist_ok=True)
    (log_dir / f"{build_id}.log").write_text("==> tests passed\n")
    page = web.client.get(f"/builds/{build_id}")
    assert page.status_code == 200 and "Build #" in page.text and "Layers" in page.text and "2.0 KiB" in page.text
    assert f'data-log-src="/api/v1/builds/{build_id}/log"' in page.text  # finished: no follow
    assert web.client.get(f"/api/v1/builds/{build_id}/log").text == "==> tests passed\n"
    img = web.client.get(f"/images/{a[7:20]}")
    assert img.status_code == 200 and "tests passed" in img.text and "with a build" in img.text
    assert web.client.get("/images/0000000").status_code == 404
    assert web.client.get("/builds/999").status_code == 404
    twin = web.client.get("/api/v1/apps/hello/builds").json()
    assert [b["id"] for b in twin] == [build_id]
    logs = web.client.get("/apps/hello/logs?env=production&grep=GET")
    assert logs.status_code == 200
    assert 'data-log-src="/api/v1/apps/hello/logs?lines=200&amp;follow=true&amp;env=production&amp;grep=GET"' in logs.text


def test_hosts_page_and_twin(web: Site) -> None:
    report = {"host": "h1", "address": "127.0.0.1", "desired_version": 3, "agent_version": "0.1.0",
              "instances": [{"id": "ghost-1", "state": "ready", "port": 5000, "restarts": 1}]}
    resp = web.client.put("/api/v1/agents/h1/status", json=report, headers={"Authorization": f"Bearer {ADMIN}"})
    assert resp.status_code == 200, resp.text
    page = web.client.get("/hosts").text
    assert "h1" in page and "ghost-1" in page and "online" in page and "(removed)" in page
    twin = web.client.get("/api/v1/hosts").json()
    assert twin["hosts"][0]["online"] is True and twin["hosts"][0]["instances"][0]["port"] == 5000


def test_audit_page_filters_and_twin(web: Site) -> None:
    a = web.add_image("hello", "a")
    web.deploy("hello", "production", a)
    page = web.client.get("/audit?kind=deploy_queued").text
    assert "deploy_queued" in page and "app_created" not in page.split("<tbody>")[1]
    full = web.client.get("/audit").text
    assert "app_created" in full
    twin = web.client.get("/api/v1/events?kind=deploy_queued").json()
    assert [e["kind"] for e in twin] == ["deploy_queued"]


def test_metrics_page_is_a_chart_shell_for_the_metrics_api(web: Site) -> None:
    page = web.client.get("/apps/hello/metrics?window=86400")
    assert page.status_code == 200
    assert 'data-metrics-app="hello"' in page.text and 'data-window="86400"' in page.text
    assert "/static/charts.js" in page.text
    odd = web.client.get("/apps/hello/metrics?window=17")
    assert 'data-window="3600"' in odd.text  # unknown windows fall back to an hour
    assert 'data-charts="capacity,' in page.text  # instance count against load comes first


def test_metrics_twin_has_the_instance_counts_the_capacity_chart_draws(web: Site) -> None:
    web.finish(web.deploy("hello", "production", web.add_image("hello", "a"))["id"])
    now = web.cp.clock()
    with web.cp.engine.begin() as conn:
        env_id = repo.get_env(conn, app_id(web), "production")["id"]
        instance_counts.record(conn, env_id, "web", float(int(now)) - 7200, 2, 2)  # in force when the window opens
        instance_counts.record(conn, env_id, "web", float(int(now)) - 60, 3, 4)
    twin = web.client.get("/api/v1/apps/hello/metrics?env=production&window=900").json()
    since = twin["instances"]["web"][0]["t"]
    assert abs(since - (now - 900)) < 5
    assert [(p["ready"], p["count"]) for p in twin["instances"]["web"]] == [(2, 2), (3, 4)]


def test_dora_page_and_twin_agree(web: Site) -> None:
    a = web.add_image("hello", "a", commit_time=time.time() - 7200)
    web.finish(web.deploy("hello", "production", a)["id"])
    twin = web.client.get("/api/v1/dora?app=hello&since=7d").json()
    assert twin["keys"]["deployment_frequency"]["samples"] == 1
    assert twin["keys"]["lead_time"]["band"] == "high"
    page = web.client.get("/dora?app=hello&since=7d")
    assert page.status_code == 200
    assert twin["keys"]["lead_time"]["text"] in page.text and "Lead time for changes" in page.text
    assert "<svg class=\"trend\"" in page.text
    bad = web.client.get("/dora?since=soon")
    assert bad.status_code == 422 and "not understood" in bad.text
    assert web.client.get("/api/v1/dora?since=soon").status_code == 422
    assert web.client.get("/api/v1/dora?app=nope").status_code == 404


def test_static_files_are_served_and_nothing_else(web: Site) -> None:
    css = web.client.get("/static/app.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert web.client.get("/static/app.js").headers["content-type"].startswith("text/javascript")
    assert web.client.get("/static/nope.js").status_code == 404
    assert web.client.get("/static/..%2Fsession.py").status_code == 404


def test_pages_reference_nothing_off_site(web: Site) -> None:
    _seed_live(web)
    for path in ("/", "/apps/hello", "/hosts", "/audit", "/dora", "/apps/hello/metrics", "/deployments/1"):
        resp = web.client.get(path)
        assert resp.status_code == 200, path
        assert "default-src 'self'" in resp.headers["content-security-policy"]
        for ref in re.findall(r'(?:src|href)="([^"]+)"', resp.text):
            assert ref.startswith(("/", "#", "http://hello.", "http://staging.hello.")), (path, ref)


def test_dora_api_reads_rollbacks_and_commit_times_from_the_database(web: Site) -> None:
    now = time.time()
    a = web.add_image("hello", "a", commit_time=now - 3 * 3600)
    b = web.add_image("hello", "b", commit_time=now - 2 * 3600)
    web.finish(web.deploy("hello", "production", a)["id"])
    web.finish(web.deploy("hello", "production", b)["id"])
    csrf = web.csrf("/apps/hello")
    rollback = web.client.post("/apps/hello/rollback", data={"csrf": csrf, "env": "production"})
    web.finish(int(rollback.headers["location"].rsplit("/", 1)[1]))
    web.finish(web.deploy("hello", "staging", b)["id"])  # staging is not production: not counted
    rep = web.client.get("/api/v1/dora?app=hello&since=1d").json()
    keys = rep["keys"]
    assert keys["deployment_frequency"]["samples"] == 2
    assert keys["change_failure_rate"]["value"] == 0.5
    assert [f["release"] for f in rep["failures"]] == [2] and rep["failures"][0]["how"] == "rolled back"
    assert keys["time_to_restore"]["band"] == "elite"
    assert keys["lead_time"]["samples"] == 2 and keys["lead_time"]["band"] == "high"
    all_apps = web.client.get("/api/v1/dora").json()
    assert all_apps["app"] is None and all_apps["period"] == "30d"


def test_deployment_controls_follow_the_api_routes_and_the_state(web: Site) -> None:
    from types import SimpleNamespace

    from sqlalchemy import update

    from conveyor.web.deploy_pages import available_actions

    offered = available_actions(SimpleNamespace(app=web.app))  # type: ignore[arg-type]
    assert offered == {"cancel", "promote", "pause", "resume", "abort", "approve", "reject"}
    a = web.add_image("hello", "a")
    dep = web.deploy("hello", "production", a)
    with web.cp.engine.begin() as conn:
        conn.execute(update(deployments).where(deployments.c.id == dep["id"]).values(state="canary"))
    page = web.client.get(f"/deployments/{dep['id']}").text
    for action in ("promote", "promote-full", "pause", "abort"):
        assert f'data-action="{action}"' in page, action
    assert 'data-action="resume"' not in page and "move all traffic back" in page
    bare = SimpleNamespace(app=SimpleNamespace(openapi=lambda: {"paths": {
        "/api/v1/deployments/{dep_id}/cancel": {"post": {}}}}))
    assert available_actions(bare) == {"cancel"}  # type: ignore[arg-type]


def test_a_fresh_install_has_friendly_empty_pages(anon: Site) -> None:
    from web_site import sign_in

    sign_in(anon, ADMIN)
    overview = anon.client.get("/")
    assert overview.status_code == 200 and "No apps yet" in overview.text and "conveyor apps create" in overview.text
    assert anon.client.get("/api/v1/overview").json() == {"apps": [], "in_flight": [], "time": pytest.approx(time.time(), abs=60)}
    hosts = anon.client.get("/hosts")
    assert "No agent has reported yet" in hosts.text
    dora_page = anon.client.get("/dora")
    assert dora_page.status_code == 200 and "no data" in dora_page.text
    assert anon.client.get("/audit").status_code == 200
