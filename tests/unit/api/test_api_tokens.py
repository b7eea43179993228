"""Scoped tokens, join tokens, router registration, sign-in limits and the audit log, in process.

The attacks of issue 15 are replayed here against the real app (through Starlette's
test client, from a loopback address): each must fail, and say why.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from conveyor.server import create_app
from conveyor.config import ServerSettings
from conveyor.domain.wire import AgentStatus

ADMIN = {"Authorization": "Bearer adm-token-0123456789"}
VIEWER = {"Authorization": "Bearer view-token-0123456789"}


@pytest.fixture
def client(tmp_path: Path):  # type: ignore[no-untyped-def]
    app = create_app(ServerSettings(data_dir=tmp_path, admin_token="adm-token-0123456789",
                                    viewer_tokens=["view-token-0123456789"]))
    with TestClient(app, client=("127.0.0.1", 50000)) as c:
        yield c


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def make(client: TestClient, **body: Any) -> dict[str, Any]:
    r = client.post("/api/v1/tokens", json=body, headers=ADMIN)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def join(client: TestClient, host: str, role: str) -> str:
    r = client.post(f"/api/v1/hosts/{host}/join-tokens", json={"role": role}, headers=ADMIN)
    assert r.status_code == 201, r.text
    return r.json()["token"]  # type: ignore[no-any-return]


def test_tokens_are_shown_once_and_stored_as_hashes(client: TestClient, tmp_path: Path) -> None:
    made = make(client, role="deployer", name="ci", expires="30d")
    token = made["token"]
    assert token.startswith("cvt_") and made["expires_at"] > time.time() + 29 * 86400
    listed = client.get("/api/v1/tokens", headers=ADMIN).json()
    assert [t["name"] for t in listed] == ["ci"] and all("token" not in t and "secret_hash" not in t for t in listed)
    db = sqlite3.connect(tmp_path / "conveyor.db").execute("select * from api_tokens").fetchall()
    dump = repr(db)
    secret = token.split("_", 2)[2]
    assert secret not in dump and hashlib.sha256(secret.encode()).hexdigest() in dump
    assert client.get("/api/v1/whoami", headers=bearer(token)).json()["role"] == "deployer"
    # Only an admin manages tokens.
    assert client.post("/api/v1/tokens", json={"role": "admin", "name": "x"}, headers=bearer(token)).status_code == 403
    assert client.get("/api/v1/tokens", headers=VIEWER).status_code == 403


def test_bad_token_requests_say_what_to_fix_and_change_nothing(client: TestClient) -> None:
    client.post("/api/v1/apps", json={"name": "a"}, headers=ADMIN)
    for body, words in [({"role": "root", "name": "x"}, "unknown role 'root'"),
                        ({"role": "viewer", "name": "x", "app": "a", "team": "t"}, "not both"),
                        ({"role": "viewer", "name": "x", "expires": "soon"}, "expires: 'soon' is not a duration"),
                        ({"role": "admin", "name": "x", "app": "a"}, "cannot be scoped"),
                        ({"role": "agent", "name": "x"}, "join tokens")]:
        r = client.post("/api/v1/tokens", json=body, headers=ADMIN)
        assert r.status_code == 422 and words in r.json()["detail"], (body, r.text)
    r = client.post("/api/v1/tokens", json={"role": "viewer", "name": "x", "app": "nope"}, headers=ADMIN)
    assert r.status_code == 404 and "no app named 'nope'" in r.json()["detail"]
    assert client.get("/api/v1/tokens", headers=ADMIN).json() == []


def test_revoked_and_expired_tokens_get_401_with_the_reason(client: TestClient) -> None:
    gone = make(client, role="viewer", name="laptop")
    assert client.get("/api/v1/apps", headers=bearer(gone["token"])).status_code == 200
    assert client.delete("/api/v1/tokens/laptop", headers=ADMIN).status_code == 200
    r = client.get("/api/v1/apps", headers=bearer(gone["token"]))
    assert r.status_code == 401 and "revoked" in r.json()["detail"]
    assert client.delete("/api/v1/tokens/laptop", headers=ADMIN).status_code == 404
    short = make(client, role="viewer", name="brief", expires="1s")
    time.sleep(1.2)  # the token's own lifetime, not a race: nothing else is awaited
    r = client.get("/api/v1/apps", headers=bearer(short["token"]))
    assert r.status_code == 401 and "expired" in r.json()["detail"]
    # A right id with a wrong secret, and a token far too long, are refused the same plain way.
    forged = gone["token"].rsplit("_", 1)[0] + "_AAAA"
    assert client.get("/api/v1/apps", headers=bearer(forged)).json()["detail"] == "invalid token"
    r = client.get("/api/v1/apps", headers=bearer("x" * 5000))
    assert r.status_code == 401 and "too long" in r.json()["detail"]


def test_a_deployer_of_app_a_cannot_touch_b(client: TestClient) -> None:
    for name in ("a", "b"):
        assert client.post("/api/v1/apps", json={"name": name}, headers=ADMIN).status_code == 201
    a = bearer(make(client, role="deployer", name="ci-a", app="a")["token"])
    assert client.patch("/api/v1/apps/a", json={"team": "web"}, headers=a).status_code == 200
    r = client.patch("/api/v1/apps/b", json={"team": "web"}, headers=a)
    assert r.status_code == 403 and "may not change app 'b'" in r.json()["detail"]
    r = client.post("/api/v1/apps/b/rollback", json={"env": "production"}, headers=a)
    assert r.status_code == 403
    assert client.post("/api/v1/apps", json={"name": "c"}, headers=a).status_code == 403
    assert client.get("/api/v1/apps/b", headers=a).status_code == 200  # reading is not touching
    team = bearer(make(client, role="deployer", name="web-team", team="web")["token"])
    assert client.patch("/api/v1/apps/a", json={"team": "web"}, headers=team).status_code == 200
    r = client.patch("/api/v1/apps/b", json={"team": "web"}, headers=team)
    assert r.status_code == 403 and "belongs to no team" in r.json()["detail"]
    assert client.patch("/api/v1/apps/b", json={"team": "web"}, headers=ADMIN).status_code == 200
    assert client.patch("/api/v1/apps/b", json={"team": "x"}, headers=team).status_code == 200  # b was web's
    assert client.patch("/api/v1/apps/b", json={"team": "y"}, headers=team).status_code == 403  # and is x's now


def test_only_a_router_with_its_own_token_registers_and_only_on_its_host(client: TestClient) -> None:
    # The attack: a viewer registers a "router" whose admin URL serves forged metrics.
    r = client.get("/api/v1/routing", params={"router": "evil", "admin": "http://127.0.0.1:9/"}, headers=VIEWER)
    assert r.status_code == 403 and "only a router" in r.json()["detail"]
    r = client.get("/api/v1/routing", params={"router": "evil", "admin": "http://127.0.0.1:9/"}, headers=ADMIN)
    assert r.status_code == 403
    assert client.get("/api/v1/routers", headers=ADMIN).json()["routers"] == []
    r1 = bearer(join(client, "r1", "router"))
    r = client.get("/api/v1/routing", params={"router": "r2", "admin": "http://127.0.0.1:7781"}, headers=r1)
    assert r.status_code == 403 and "belongs to router 'r1'" in r.json()["detail"]
    r = client.get("/api/v1/routing", params={"router": "r1", "admin": "http://10.9.9.9:7781"}, headers=r1)
    assert r.status_code == 403 and "not on the router's host" in r.json()["detail"]
    r = client.get("/api/v1/routing", params={"router": "r1", "admin": "http://127.0.0.1:7781"}, headers=r1)
    assert r.status_code == 200
    assert [x["id"] for x in client.get("/api/v1/routers", headers=ADMIN).json()["routers"]] == ["r1"]
    # A router's token reaches the routing table and nothing else.
    assert client.get("/api/v1/apps", headers=r1).status_code == 403
    assert client.get("/api/v1/agents/r1/desired", headers=r1).status_code == 403
    assert client.get("/api/v1/routing", headers=VIEWER).status_code == 200  # reading it stays open to people


def test_registrations_are_bounded_and_expire(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from conveyor.services import state

    cp = client.app.state.cp  # type: ignore[attr-defined]
    monkeypatch.setattr(state, "MAX_ROUTERS", 3)
    assert all(cp.saw_router(f"r{i}", None, 0) for i in range(3))
    assert cp.saw_router("r3", None, 0) is False  # full
    for r in cp.routers.values():
        r.last_seen -= state.ROUTER_LIVE_WINDOW + 1  # all silent for longer than the live window
    assert cp.saw_router("r3", None, 0) is True and list(cp.routers) == ["r3"]


def test_an_agent_token_reaches_only_its_own_hosts_endpoints(client: TestClient) -> None:
    h1 = bearer(join(client, "h1", "agent"))
    assert client.get("/api/v1/agents/h1/desired", headers=h1).status_code == 200
    report = AgentStatus(host="h2", address="127.0.0.1", desired_version=0).model_dump(mode="json")
    r = client.put("/api/v1/agents/h2/status", json=report, headers=h1)
    assert r.status_code == 403 and "belongs to host 'h1'" in r.json()["detail"]
    assert client.get("/api/v1/apps", headers=h1).status_code == 403
    assert client.get("/api/v1/routing", headers=h1).status_code == 403
    assert client.get("/api/v1/agents/h1/desired", headers=VIEWER).status_code == 403  # viewers neither


def test_metrics_need_a_credential(client: TestClient) -> None:
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=VIEWER).status_code == 200


def test_sign_in_is_rate_limited_and_failures_are_logged(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    good = bearer(make(client, role="viewer", name="dashboard")["token"])
    assert client.get("/api/v1/apps", headers=good).status_code == 200  # proven before the attack
    codes = [client.get("/api/v1/apps", headers=bearer(f"guess-{i:04d}-abcdefgh")).status_code for i in range(30)]
    assert codes[:10] == [401] * 10 and set(codes[10:]) == {429}
    assert "failed sign-in from 127.0.0.1" in caplog.text and "guess-" not in caplog.text  # never the token
    assert client.get("/api/v1/apps", headers=good).status_code == 200  # not locked out by the guesser
    # The right token not yet proven from anywhere is not even checked while the address is blocked:
    fresh = make(client, role="viewer", name="late")["token"]  # made by the admin token (already proven)
    r = client.get("/api/v1/apps", headers=bearer(fresh))
    assert r.status_code == 429 and "Retry-After" in r.headers


def test_every_mutating_call_is_audited_and_the_log_is_append_only(client: TestClient) -> None:
    client.post("/api/v1/apps", json={"name": "a"}, headers=ADMIN)
    client.post("/api/v1/apps", json={"name": "b"}, headers=VIEWER)  # refused: audited too
    ci = make(client, role="deployer", name="ci", app="a")
    client.patch("/api/v1/apps/a", json={"team": "t"}, headers=bearer(ci["token"]))
    rows = client.get("/api/v1/audit", headers=VIEWER).json()
    got = [(r["actor"], r["role"], r["action"], r["app"], r["status"], r["outcome"]) for r in rows]
    assert ("admin", "admin", "POST /api/v1/apps", None, 201, "ok") in got
    assert ("viewer", "viewer", "POST /api/v1/apps", None, 403, "denied") in got
    assert ("ci", "deployer", "PATCH /api/v1/apps/a", "a", 200, "ok") in got
    assert ("admin", "admin", "POST /api/v1/tokens", None, 201, "ok") in got
    assert all(r["origin"] == "127.0.0.1" for r in rows)
    assert [r["action"] for r in client.get("/api/v1/audit", params={"app": "a"}, headers=VIEWER).json()] == ["PATCH /api/v1/apps/a"]
    assert client.get("/api/v1/audit", params={"since": "1h"}, headers=VIEWER).json() == rows
    assert client.get("/api/v1/audit", params={"since": str(time.time() + 60)}, headers=VIEWER).json() == []
    r = client.get("/api/v1/audit", params={"since": "lately"}, headers=VIEWER)
    assert r.status_code == 422 and "since" in r.json()["detail"]
    for method in ("DELETE", "PUT", "PATCH", "POST"):
        assert client.request(method, "/api/v1/audit", headers=ADMIN).status_code == 405
    assert len(client.get("/api/v1/audit", headers=VIEWER).json()) >= len(rows)  # nothing was removed


def test_the_audit_trail_page_renders_what_its_twin_returns(client: TestClient) -> None:
    client.post("/api/v1/apps", json={"name": "a"}, headers=ADMIN)
    client.post("/api/v1/apps", json={"name": "b"}, headers=VIEWER)
    assert client.get("/audit/calls", follow_redirects=False).status_code == 303  # sign in first
    page = client.get("/login")
    csrf = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    assert client.post("/login", data={"token": "view-token-0123456789", "csrf": csrf, "next": "/"}).status_code == 200
    html = client.get("/audit/calls").text
    assert "POST /api/v1/apps" in html and "denied" in html and "/api/v1/audit" in html
    assert "POST /login" in client.get("/audit/calls").text  # the sign-in itself is a mutating call
    assert client.get("/audit/calls", params={"since": "whenever"}).status_code == 422


def _sign_in(client: TestClient, token: str) -> None:
    page = client.get("/login")
    csrf = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    r = client.post("/login", data={"token": token, "csrf": csrf, "next": "/"}, follow_redirects=False)
    assert r.status_code == 303, r.text


def test_a_scoped_tokens_web_session_survives_a_restart_and_ends_when_revoked(client: TestClient) -> None:
    from conveyor.store.web_sessions import SessionStore

    assert client.post("/api/v1/apps", json={"name": "a"}, headers=ADMIN).status_code == 201
    made = make(client, role="deployer", name="ci-web", app="a")
    _sign_in(client, made["token"])
    assert client.get("/audit/calls", follow_redirects=False).status_code == 200
    cp = client.app.state.cp  # type: ignore[attr-defined]
    cp.sessions = SessionStore(cp.engine, lambda: [cp.settings.admin_token, *cp.viewer_tokens])  # a restart: no cache
    assert client.get("/audit/calls", follow_redirects=False).status_code == 200
    rows = sqlite3.connect(Path(cp.settings.data_dir) / "conveyor.db").execute("select * from web_sessions").fetchall()
    assert made["token"] not in repr(rows)  # sealed, not stored
    assert client.delete("/api/v1/tokens/ci-web", headers=ADMIN).status_code == 200
    assert client.get("/audit/calls", follow_redirects=False).status_code == 303  # signed out: sign in again


def test_an_agent_writes_only_its_own_hosts_instance_logs(tmp_path: Path) -> None:
    # The service itself, on a control plane whose orchestrator does not run (it would remove
    # these instances, which no deployment owns); the API passes the agent's host (test above).
    from conveyor.domain.wire import LogBatch, LogChunk
    from conveyor.services import logs
    from conveyor.services.state import ControlPlane
    from conveyor.store import instances, repo
    from conveyor.store.db import make_engine, migrate

    settings = ServerSettings(data_dir=tmp_path, admin_token="adm-token-0123456789")
    engine = make_engine(settings.db_url)
    migrate(engine)
    cp = ControlPlane(settings=settings, engine=engine)
    with engine.begin() as conn:
        repo.create_app(conn, "a", None, "admin", time.time())
        env = repo.get_env(conn, repo.get_app(conn, "a")["id"], "production", create=True)
        instances.add(conn, "a-on-h2", env["id"], 1, "h2", "main", time.time())
        instances.add(conn, "a-on-h1", env["id"], 1, "h1", "main", time.time())

    def post(instance: str, host: str | None = "h1") -> int:
        return logs.store_batch(cp, LogBatch(host="h1", chunks=[LogChunk(instance=instance, offset=0, data="line\n")]), host)

    assert post("a-on-h2") == 0  # another host's instance: not this agent's to write
    assert not (settings.logs_dir / "a-on-h2.log").exists()
    assert post("a-on-h1") > 0 and post("gone-1") > 0  # its own, and one already removed (its last words)
    assert post("a-on-h2", host=None) > 0  # an admin (host None) may
