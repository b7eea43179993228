"""Hosts join with a one-time token and are removed by revoking their credential (issue 13), in
process against the real app: every refusal says what to do and changes nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from conveyor.config import ServerSettings
from conveyor.domain.wire import AgentStatus
from conveyor.server import create_app
from store_world import Clock

ADMIN = {"Authorization": "Bearer adm-token-0123456789"}
VIEWER = {"Authorization": "Bearer view-token-0123456789"}




@pytest.fixture
def clock() -> Clock:
    return Clock(2_000_000_000.0)


@pytest.fixture
def client(tmp_path: Path, clock: Clock):  # type: ignore[no-untyped-def]
    app = create_app(ServerSettings(data_dir=tmp_path, admin_token="adm-token-0123456789",
                                    viewer_tokens=["view-token-0123456789"]))
    app.state.cp.clock = clock
    with TestClient(app, client=("127.0.0.1", 50000)) as c:
        yield c


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def one_time(client: TestClient, **body: Any) -> str:
    r = client.post("/api/v1/join-tokens", json=body, headers=ADMIN)
    assert r.status_code == 201, r.text
    assert r.json()["role"] == "enrol" and r.json()["host"] is None
    return r.json()["token"]  # type: ignore[no-any-return]


def report(client: TestClient, host: str, token: str) -> int:
    doc = AgentStatus(host=host, address="127.0.0.1", desired_version=0, labels={"role": "web"}, capacity=3)
    return client.put(f"/api/v1/agents/{host}/status", json=doc.model_dump(mode="json"), headers=bearer(token)).status_code


def test_a_join_token_is_traded_once_for_the_hosts_own_credential(client: TestClient) -> None:
    token = one_time(client)
    # before its use, it reaches nothing but the join (not even reads, nor an agent's endpoints)
    assert client.get("/api/v1/apps", headers=bearer(token)).status_code == 403
    assert report(client, "web-1", token) == 403
    r = client.post("/api/v1/hosts/join", json={"host": "web-1"}, headers=bearer(token))
    assert r.status_code == 201, r.text
    own = r.json()
    assert own["role"] == "agent" and own["host"] == "web-1" and own["token"] != token
    assert report(client, "web-1", own["token"]) in (200, 204)
    [h] = [h for h in client.get("/api/v1/hosts", headers=ADMIN).json()["hosts"] if h["name"] == "web-1"]
    assert h["labels"] == {"role": "web"} and h["capacity"] == 3
    # the join token is spent
    assert client.get("/api/v1/apps", headers=bearer(token)).status_code == 401
    again = client.post("/api/v1/hosts/join", json={"host": "web-2"}, headers=bearer(token))
    assert again.status_code == 401 and "already used" in again.json()["detail"]
    events = client.get("/api/v1/events", headers=ADMIN).json()
    assert any(e["kind"] == "host_joined" and "web-1" in e["message"] for e in events)


def test_refusals_say_what_to_do_and_change_nothing(client: TestClient, clock: Clock) -> None:
    token = one_time(client, expires="10m")
    bad = client.post("/api/v1/hosts/join", json={"host": "web-1"}, headers=bearer("cvt_abc_nope"))
    assert bad.status_code == 401 and "invalid join token" in bad.json()["detail"]
    none = client.post("/api/v1/hosts/join", json={"host": "web-1"})
    assert none.status_code == 401 and "no join token" in none.json()["detail"]
    admin = client.post("/api/v1/hosts/join", json={"host": "web-1"}, headers=ADMIN)
    assert admin.status_code == 401  # the admin token is not a join token either (not even a cvt_ one)
    name = client.post("/api/v1/hosts/join", json={"host": "bad name"}, headers=bearer(token))
    assert name.status_code == 422
    # a host named like another: refused, and the token is not spent
    first = client.post("/api/v1/hosts/join", json={"host": "web-1"}, headers=bearer(one_time(client)))
    assert first.status_code == 201
    clash = client.post("/api/v1/hosts/join", json={"host": "web-1"}, headers=bearer(token))
    assert clash.status_code == 409 and "already joined" in clash.json()["detail"]
    clock.t += 11 * 60
    late = client.post("/api/v1/hosts/join", json={"host": "web-3"}, headers=bearer(token))
    assert late.status_code == 401 and "expired" in late.json()["detail"]
    hosts = {h["name"] for h in client.get("/api/v1/hosts", headers=ADMIN).json()["hosts"]}
    assert "web-3" not in hosts
    # only an admin makes join tokens
    assert client.post("/api/v1/join-tokens", json={}, headers=VIEWER).status_code == 403


def test_a_removed_host_is_refused_and_its_name_can_join_again(client: TestClient) -> None:
    own = client.post("/api/v1/hosts/join", json={"host": "web-1"}, headers=bearer(one_time(client))).json()["token"]
    assert report(client, "web-1", own) in (200, 204)
    assert client.delete("/api/v1/hosts/web-1", headers=VIEWER).status_code == 403
    gone = client.delete("/api/v1/hosts/web-1", headers=ADMIN)
    assert gone.status_code == 200 and len(gone.json()["revoked_tokens"]) == 1
    assert report(client, "web-1", own) == 401
    assert "web-1" not in {h["name"] for h in client.get("/api/v1/hosts", headers=ADMIN).json()["hosts"]}
    assert client.delete("/api/v1/hosts/web-1", headers=ADMIN).status_code == 404
    again = client.post("/api/v1/hosts/join", json={"host": "web-1"}, headers=bearer(one_time(client)))
    assert again.status_code == 201


def test_drain_and_undrain_an_unknown_or_known_host(client: TestClient) -> None:
    missing = client.post("/api/v1/hosts/nosuch/drain", headers=ADMIN)
    assert missing.status_code == 404 and "never reported" in missing.json()["detail"]
    own = client.post("/api/v1/hosts/join", json={"host": "web-1"}, headers=bearer(one_time(client))).json()["token"]
    report(client, "web-1", own)
    assert client.post("/api/v1/hosts/web-1/drain", headers=VIEWER).status_code == 403
    d = client.post("/api/v1/hosts/web-1/drain", headers=ADMIN).json()
    assert d["drained"] is True and d["drained_by"] == "admin"
    u = client.delete("/api/v1/hosts/web-1/drain", headers=ADMIN).json()
    assert u["drained"] is False
