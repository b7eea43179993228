"""Webhook deliveries and the notification outbox on SQLite and PostgreSQL (the API in process, a
throwaway PostgreSQL cluster: the fixtures of test_store_backends)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from conveyor.domain.webhooks import github_signature
from conveyor.services import notifications
from conveyor.store import repo
from test_store_backends import TOKEN, client, postgres_url  # noqa: F401  (fixtures)


def test_deliveries_replays_and_the_outbox_on_each_backend(client: TestClient) -> None:  # noqa: F811
    c = client
    cp = c.app.state.cp  # type: ignore[attr-defined]
    assert c.post("/api/v1/apps", json={"name": "hooked"}, headers=TOKEN).status_code == 201
    reg = c.put("/api/v1/apps/hooked/repo", json={"url": "https://github.com/o/hooked.git"}, headers=TOKEN).json()
    body = b'{"zen": "ok"}'
    headers = {"X-GitHub-Event": "ping", "X-GitHub-Delivery": "d-1", "X-Hub-Signature-256": github_signature(reg["secret"], body)}
    assert c.post("/api/v1/hooks/hooked", content=body, headers=headers).json()["outcome"] == "pong"
    again = c.post("/api/v1/hooks/hooked", content=body, headers=headers)  # no token needed, and a replay
    assert again.status_code == 409
    assert [d["delivery"] for d in c.get("/api/v1/apps/hooked/repo", headers=TOKEN).json()["deliveries"]] == ["d-1"]

    t = c.post("/api/v1/apps/hooked/notifications/targets", json={"url": "http://127.0.0.1:9/x", "events": ["deploy"]},
               headers=TOKEN)
    assert t.status_code == 201, t.text
    with cp.engine.begin() as conn:
        for kind in ("deploy_started", "image_built", "deployed"):
            repo.record_event(conn, kind, kind, app="hooked", env="production")
    with cp.engine.begin() as conn:  # settle: age the events past the fan-out's window
        conn.exec_driver_sql("UPDATE events SET at = at - 5 WHERE app = 'hooked'")
    notifications.fan_out(cp)
    notifications.fan_out(cp)
    log = c.get("/api/v1/apps/hooked/notifications", headers=TOKEN).json()
    assert sorted(n["kind"] for n in log) == ["deploy_started", "deployed"]
