"""The notification sender's two steps on a real SQLite store, with a fake receiver (httpx.MockTransport):
fan-out is idempotent and skips nothing, attempts follow the backoff, and a receiver's answer is logged."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from conveyor.config import ServerSettings
from conveyor.domain.notifications import verify_signature
from conveyor.services import notifications
from conveyor.services.schemas import NotifyIn
from conveyor.services.state import ControlPlane
from conveyor.store import repo
from conveyor.store.db import make_engine, migrate
from store_world import Clock




@pytest.fixture
def cp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ControlPlane:
    monkeypatch.setattr(notifications, "SETTLE_S", 0.0)
    settings = ServerSettings(data_dir=tmp_path, admin_token="adm-token-0123456789", public_url="https://cvy.test")
    engine = make_engine(settings.db_url)
    migrate(engine)
    plane = ControlPlane(settings=settings, engine=engine, clock=Clock(1_000_000.0))
    with engine.begin() as conn:
        repo.create_app(conn, "shop", None, "admin", time.time())
        repo.record_event(conn, "deployed", "an old event", app="shop", env="production")  # before the target
    return plane


def _event(cp: ControlPlane, kind: str, app: str = "shop") -> None:
    with cp.engine.begin() as conn:
        repo.record_event(conn, kind, f"{kind} happened", app=app, env="production", data={"deployment": 4})


def _send(cp: ControlPlane, handler: Any) -> int:
    async def go() -> int:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            return await notifications.send_due(cp, client)
    return asyncio.run(go())


def test_fan_out_takes_new_subscribed_events_once(cp: ControlPlane) -> None:
    t = notifications.add_target(cp, "shop", NotifyIn(url="http://rx.test/hook", events=["deploy"]))
    assert t.secret and t.events == ["deploy"]
    _event(cp, "deploy_started")
    _event(cp, "image_built")  # not subscribed
    _event(cp, "deployed", app="other")  # another app's
    assert notifications.fan_out(cp) == 1
    assert notifications.fan_out(cp) == 0  # idempotent: the cursor moved with the rows
    _event(cp, "deployed")
    assert notifications.fan_out(cp) == 1
    assert [n.kind for n in notifications.delivery_log(cp, "shop")] == ["deployed", "deploy_started"]


def test_attempts_back_off_then_deliver_signed(cp: ControlPlane) -> None:
    t = notifications.add_target(cp, "shop", NotifyIn(url="http://rx.test/hook"))
    _event(cp, "deployed")
    notifications.fan_out(cp)
    answers = iter([httpx.Response(500, text="boom"), httpx.Response(302, headers={"location": "http://elsewhere/"}),
                    httpx.Response(204)])
    got: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        got.append(request)
        return next(answers)

    assert _send(cp, handler) == 1
    [n] = notifications.delivery_log(cp, "shop")
    assert (n.status, n.attempts, n.status_code, n.error) == ("retrying", 1, 500, "HTTP 500: boom")
    assert n.next_at == cp.clock() + 2.0
    assert _send(cp, handler) == 0  # not due yet
    cp.clock.t += 2.0  # type: ignore[attr-defined]
    assert _send(cp, handler) == 1
    [n] = notifications.delivery_log(cp, "shop")
    assert (n.status, n.attempts, n.status_code) == ("retrying", 2, 302) and "not followed" in n.error
    assert n.next_at == cp.clock() + 4.0
    cp.clock.t += 4.0  # type: ignore[attr-defined]
    assert _send(cp, handler) == 1
    [n] = notifications.delivery_log(cp, "shop")
    assert (n.status, n.attempts, n.status_code, n.next_at) == ("delivered", 3, 204, None)
    h = got[-1].headers
    assert verify_signature(t.secret or "", h["x-conveyor-timestamp"], got[-1].content, h["x-conveyor-signature-256"],
                            now=time.time())
    assert h["x-conveyor-event"] == "deployed" and h["x-conveyor-delivery"] == str(n.id)


def test_a_receiver_that_never_answers_is_given_up_after_the_last_attempt(cp: ControlPlane) -> None:
    notifications.add_target(cp, "shop", NotifyIn(url="http://rx.test/hook", kind="slack"))
    _event(cp, "rolled_back")
    notifications.fan_out(cp)

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    for _ in range(8):
        assert _send(cp, down) == 1
        cp.clock.t += 400  # type: ignore[attr-defined]
    [n] = notifications.delivery_log(cp, "shop")
    assert (n.status, n.attempts, n.next_at) == ("failed", 8, None) and "connection refused" in n.error
    assert _send(cp, down) == 0


def test_bad_targets_change_nothing(cp: ControlPlane) -> None:
    for body, words in [(NotifyIn(url="ftp://rx.test/x"), "http:// or https://"),
                        (NotifyIn(url="http://rx.test/x", events=["deploys"]), "unknown event"),
                        (NotifyIn(url="http://[::1]/x"), "is not a URL this can send to")]:
        with pytest.raises(ValueError, match=words):
            notifications.add_target(cp, "shop", body)
    assert notifications.list_targets(cp, "shop") == []


def test_a_key_rotation_reseals_targets_and_webhook_secrets(cp: ControlPlane) -> None:
    from conveyor.domain.webhooks import github_signature
    from conveyor.services import config, hooks
    from conveyor.services.schemas import RepoIn

    t = notifications.add_target(cp, "shop", NotifyIn(url="http://rx.test/hook"))
    reg = hooks.set_repo(cp, "shop", RepoIn(url="/srv/git/shop.git"))
    assert config.rotate_key(cp)["resealed"] >= 2
    _event(cp, "deployed")
    notifications.fan_out(cp)
    got: list[httpx.Request] = []
    assert _send(cp, lambda r: got.append(r) or httpx.Response(200)) == 1  # the URL and secret open with the new key
    h = got[0].headers
    assert verify_signature(t.secret or "", h["x-conveyor-timestamp"], got[0].content, h["x-conveyor-signature-256"],
                            now=time.time())
    ping = {"X-GitHub-Event": "ping", "X-GitHub-Delivery": "p-1",
            "X-Hub-Signature-256": github_signature(reg.secret or "", b"{}")}
    status, answer = hooks.receive(cp, "shop", ping, b"{}")
    assert (status, answer.outcome) == (200, "pong")
    with pytest.raises(hooks.HookRefused) as refused:
        hooks.receive(cp, "shop", ping | {"X-GitHub-Delivery": "p-2", "X-Hub-Signature-256": github_signature("x", b"{}")}, b"{}")
    assert refused.value.status == 401


def test_a_pass_that_read_an_old_cursor_writes_nothing(cp: ControlPlane) -> None:
    """Two passes at once (a slow one and a new leader's): the one whose cursor moved under it queues nothing."""
    from conveyor.store import notifications as rows

    t = notifications.add_target(cp, "shop", NotifyIn(url="http://rx.test/hook"))
    _event(cp, "deployed")
    with cp.engine.connect() as conn:
        stale = rows.target(conn, repo.get_app(conn, "shop")["id"], t.id)["cursor"]  # type: ignore[index]
    assert notifications.fan_out(cp) == 1
    with cp.engine.begin() as conn:
        assert not rows.fan_out(conn, t.id, [{"event_id": 999, "kind": "deployed", "payload": {}}], stale, stale + 1, 0.0)
    assert len(notifications.delivery_log(cp, "shop")) == 1


def test_a_slow_receiver_is_cut_at_the_timeout_and_retried(cp: ControlPlane) -> None:
    notifications.add_target(cp, "shop", NotifyIn(url="http://rx.test/hook"))
    _event(cp, "deploy_started")
    notifications.fan_out(cp)

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("no answer", request=request)

    assert _send(cp, slow) == 1
    [n] = notifications.delivery_log(cp, "shop")
    assert (n.status, n.attempts, n.status_code, n.error) == ("retrying", 1, None, "timed out after 5 s")
