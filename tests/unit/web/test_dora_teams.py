"""DORA keys per team: an app belongs to a team; the API, the page and its twin filter by it."""

from __future__ import annotations

from conveyor.services import apps as app_service
from web_site import ADMIN, Site

AUTH = {"Authorization": f"Bearer {ADMIN}"}


def test_dora_by_team(web: Site) -> None:
    c = web.client
    assert c.post("/api/v1/apps", json={"name": "billing", "team": "payments"}, headers=AUTH).status_code == 201
    r = c.patch("/api/v1/apps/hello", json={"team": "growth"}, headers=AUTH)
    assert r.status_code == 200 and r.json()["team"] == "growth"
    assert {a["name"]: a["team"] for a in c.get("/api/v1/apps", headers=AUTH).json()} == {"billing": "payments",
                                                                                           "hello": "growth"}
    for app, sha, n in (("hello", "a", 3), ("billing", "b", 1)):
        for i in range(n):
            dep = web.deploy(app, "production", web.add_image(app, f"{sha}{i}"))
            web.finish(dep["id"])

    def deploys(params: dict[str, str]) -> int:
        rep = c.get("/api/v1/dora", params={"since": "7d", **params}, headers=AUTH).json()
        return int(rep["keys"]["deployment_frequency"]["samples"])

    assert deploys({}) == 4
    assert deploys({"team": "growth"}) == 3 and deploys({"team": "payments"}) == 1
    r = c.get("/api/v1/dora", params={"team": "nobody"}, headers=AUTH)
    assert r.status_code == 404 and "teams: growth, payments" in r.json()["detail"]
    page = c.get("/dora", params={"team": "payments"})
    assert page.status_code == 200 and "team payments" in page.text and 'value="payments" selected' in page.text


def test_team_names_are_validated(web: Site) -> None:
    r = web.client.post("/api/v1/apps", json={"name": "x", "team": "Not A Team"}, headers=AUTH)
    assert r.status_code == 422 and "team name" in r.json()["detail"]
    with web.cp.engine.begin() as conn:
        assert app_service.create_app(conn, "y", team="ops")["team"] == "ops"
