"""Config vars and secrets through the API, in process: staging, masking, bad input, rotation.

The deploy side (a change ships as a release, rollback restores it, the value reaches the
instance) runs with real processes in tests/integration/test_config_secrets.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from conveyor.config import ServerSettings
from conveyor.server import create_app
from conveyor.store.sealing import ENV_VAR, KEY_FILE

ADMIN = {"Authorization": "Bearer adm"}
VIEWER = {"Authorization": "Bearer view"}
SECRET = "pw-9f8e7d6c5b4a-never-shown"


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.delenv(ENV_VAR, raising=False)
    app = create_app(ServerSettings(data_dir=tmp_path, admin_token="adm", viewer_tokens=["view"]))
    with TestClient(app) as c:
        c.post("/api/v1/apps", json={"name": "shop"}, headers=ADMIN)
        yield c


def _set(c: TestClient, values: dict[str, str], secret: bool = False, headers: dict[str, str] = ADMIN, env: str = "production"):  # type: ignore[no-untyped-def]
    return c.put("/api/v1/apps/shop/config", json={"env": env, "values": values, "secret": secret}, headers=headers)


def test_set_before_any_release_is_staged_and_secrets_never_come_back(client: TestClient, tmp_path: Path) -> None:
    r = _set(client, {"DB_PASSWORD": SECRET}, secret=True)
    assert r.status_code == 200, r.text
    assert r.json() == {"app": "shop", "env": "production", "set": ["DB_PASSWORD"], "unset": [], "deployment": None,
                        "release": None, "staged": True}
    assert _set(client, {"LOG_LEVEL": "debug"}).status_code == 200
    rows = {v["key"]: v for v in client.get("/api/v1/apps/shop/config", headers=ADMIN).json()}
    assert rows["DB_PASSWORD"]["secret"] and rows["DB_PASSWORD"]["value"] is None and rows["DB_PASSWORD"]["updated_by"] == "admin"
    assert rows["LOG_LEVEL"]["value"] == "debug"
    r = client.get("/api/v1/apps/shop/config/DB_PASSWORD", headers=ADMIN)
    assert r.status_code == 409 and "cannot be read back" in r.json()["detail"]
    # a viewer sees names, never values (plain values may be private too)
    viewed = {v["key"]: v["value"] for v in client.get("/api/v1/apps/shop/config", headers=VIEWER).json()}
    assert viewed == {"DB_PASSWORD": None, "LOG_LEVEL": None}
    assert _set(client, {"X": "1"}, headers=VIEWER).status_code == 403
    # the value is nowhere: no response (events included), not in the database file in clear
    pages = [client.get(p, headers=ADMIN).text for p in
             ("/api/v1/events", "/api/v1/apps/shop", "/api/v1/apps/shop/summary", "/api/v1/apps/shop/releases",
              "/api/v1/apps/shop/config", "/api/v1/openapi.json")]
    assert all(SECRET not in t for t in pages)
    assert "DB_PASSWORD" in client.get("/api/v1/events", headers=ADMIN).text  # the key is recorded
    for f in tmp_path.rglob("*"):
        if f.is_file():
            assert SECRET.encode() not in f.read_bytes(), f
    assert (tmp_path / KEY_FILE).stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(("values", "needle"), [
    ({"1BAD": "x"}, "not a valid environment variable name"),
    ({"BAD-NAME": "x"}, "not a valid environment variable name"),
    ({"PORT": "1"}, "set by Conveyor itself"),
    ({"CONVEYOR_APP": "1"}, "set by Conveyor itself"),
    ({"BIG": "x" * (32 * 1024 + 1)}, "the limit is 32768"),
])
def test_bad_input_is_refused_and_changes_nothing(client: TestClient, values: dict[str, str], needle: str) -> None:
    assert _set(client, {"KEEP": "1"}).status_code == 200
    r = _set(client, {"OK_TOO": "2", **values}, secret=True)
    assert r.status_code == 422 and needle in r.json()["detail"]
    assert all(v not in r.text for v in values.values() if len(v) > 1)
    assert [v["key"] for v in client.get("/api/v1/apps/shop/config", headers=ADMIN).json()] == ["KEEP"]


def test_unset_of_an_unknown_key_changes_nothing(client: TestClient) -> None:
    _set(client, {"A": "1", "B": "2"})
    r = client.post("/api/v1/apps/shop/config/unset", json={"env": "production", "keys": ["A", "NOPE"]}, headers=ADMIN)
    assert r.status_code == 404 and "NOPE not set" in r.json()["detail"]
    assert [v["key"] for v in client.get("/api/v1/apps/shop/config", headers=ADMIN).json()] == ["A", "B"]
    r = client.post("/api/v1/apps/shop/config/unset", json={"env": "production", "keys": ["A"]}, headers=ADMIN)
    assert r.status_code == 200 and r.json()["unset"] == ["A"]
    assert [v["key"] for v in client.get("/api/v1/apps/shop/config", headers=ADMIN).json()] == ["B"]


def test_rotate_key_reseals_and_the_old_key_is_gone(client: TestClient, tmp_path: Path) -> None:
    _set(client, {"API_TOKEN": SECRET}, secret=True)
    old_key = (tmp_path / KEY_FILE).read_text()
    r = client.post("/api/v1/secrets/rotate-key", headers=ADMIN)
    assert r.status_code == 200 and r.json() == {"resealed": 1, "keys": 1}
    new_key = (tmp_path / KEY_FILE).read_text()
    assert new_key != old_key and old_key.strip() not in new_key
    # still opens with the new key: what an agent would receive
    from conveyor.services import config
    from conveyor.store import config_vars
    cp = client.app.state.cp  # type: ignore[attr-defined]
    with cp.engine.connect() as conn:
        (row,) = config_vars.all_sealed(conn)
    assert cp.sealer().open(row["sealed"].encode()).decode() == SECRET
    assert client.post("/api/v1/secrets/rotate-key", headers=VIEWER).status_code == 403


def test_layer_blobs_need_a_token_that_may_deploy(client: TestClient) -> None:
    r = client.get("/api/v1/blobs/sha256:" + "0" * 64, headers=VIEWER)
    assert r.status_code == 403
    assert client.get("/api/v1/blobs/sha256:" + "0" * 64, headers=ADMIN).status_code == 404
