"""Notifications out: `conveyor notify add/list/remove/test`, the delivery log, and the sender loop.

Why an outbox read by a loop: the orchestrator only writes events (``events``). This loop, a task of its
own on the control plane that leads the orchestrator, is level-triggered:

1. **fan out** — for each target, the app's events after the target's ``cursor`` that it subscribed
   to become outbox rows, and the cursor moves, in one transaction (killed at any line: both or neither);
2. **send** — due rows (``pending``, or ``retrying`` whose ``next_at`` passed) are posted with a timeout
   and no redirects followed; each attempt's outcome (status code, error, attempts, next retry) is written
   back, retried with ``domain.notifications.RETRY`` (2 s doubling to 5 min, 8 attempts), then ``failed``.

So a receiver that is down, slow or answers 500 costs this loop a timeout and never a deployment a
second. Delivery is at least once: a control plane killed between a receiver's 2xx and the write sends
that notification again (JSON receivers can drop repeats by ``X-Conveyor-Delivery``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import time
from typing import Any

import httpx

from conveyor.domain import notifications as rules
from conveyor.services.schemas import NOTIFY_URL, NotificationView, NotifyIn, NotifyTarget
from conveyor.services.state import ControlPlane
from conveyor.store import notifications as store
from conveyor.store import repo
from conveyor.store.repo import NotFound

__all__ = ["add_target", "delivery_log", "list_targets", "pass_once", "remove_target", "start", "test_target"]

log = logging.getLogger("conveyor.notifications")
#: how often the loop looks for new events and due retries when nothing pokes it
POLL_S = 0.5
#: events younger than this are left for the next pass: on PostgreSQL a transaction that took its event
#: id earlier may commit after a later one, and a cursor past it would skip it
SETTLE_S = 0.5
_URL = re.compile(NOTIFY_URL)
#: at most this many notifications in flight at once
CONCURRENCY = 8


def _target_view(row: Any, secret: str | None = None) -> NotifyTarget:
    return NotifyTarget(id=row["id"], app=row["app"], kind=row["kind"], url=row["url_shown"], events=list(row["events"] or []),
                        secret=secret, created_at=row["created_at"], created_by=row["created_by"] or "")


def add_target(cp: ControlPlane, app: str, body: NotifyIn, actor: str = "", origin: str = "") -> NotifyTarget:
    """Send ``app``'s events to ``body.url``; a json target's answer carries its signing secret, once."""
    url = rules.check_url(body.url)
    if not _URL.match(body.url):
        raise ValueError(f"{body.url[:80]!r} is not a URL this can send to: give http(s)://HOST[:PORT]/PATH "
                         "(a host name or IPv4 address, no user:password@)")
    groups = rules.parse_events(body.events)
    ring = cp.sealer()
    secret = secrets.token_urlsafe(32) if body.kind == "json" else None
    with cp.engine.begin() as conn:
        a = repo.get_app(conn, app)
        target_id = store.add_target(conn, {
            "app_id": a["id"], "kind": body.kind, "url_sealed": ring.seal(url.encode()).decode(),
            "url_shown": rules.shown_url(url), "secret_sealed": ring.seal(secret.encode()).decode() if secret else None,
            "events": groups, "created_at": cp.clock(), "created_by": actor})
        repo.record_event(conn, "notify_added", f"{body.kind} notifications of {app} to {rules.shown_url(url)}",
                          app=app, actor=actor, origin=origin, data={"target": target_id, "events": groups})
        row = store.target(conn, a["id"], target_id)
    cp.notifier.poke("notifications")
    return _target_view(row, secret)


def list_targets(cp: ControlPlane, app: str) -> list[NotifyTarget]:
    with cp.engine.connect() as conn:
        return [_target_view(r) for r in store.targets(conn, repo.get_app(conn, app)["id"])]


def remove_target(cp: ControlPlane, app: str, target_id: int, actor: str = "", origin: str = "") -> None:
    with cp.engine.begin() as conn:
        a = repo.get_app(conn, app)
        if not store.remove_target(conn, a["id"], target_id):
            raise NotFound(f"{app} has no notification target {target_id} (see `conveyor notify list {app}`)")
        repo.record_event(conn, "notify_removed", f"notification target {target_id} of {app} removed", app=app,
                          actor=actor, origin=origin, data={"target": target_id})


def _view(r: dict[str, Any]) -> NotificationView:
    return NotificationView(id=r["id"], target_id=r["target_id"], target=f"{r['target_kind']} {r['url_shown']}",
                            kind=r["kind"], event_id=r["event_id"], status=r["status"], attempts=r["attempts"],
                            status_code=r["status_code"], error=r["error"] or "",
                            next_at=r["next_at"] if r["status"] in ("pending", "retrying") else None,
                            created_at=r["created_at"], last_at=r["last_at"])


def delivery_log(cp: ControlPlane, app: str, limit: int = 50) -> list[NotificationView]:
    """The app's notifications, newest first: status code, attempts, next retry, error."""
    with cp.engine.connect() as conn:
        return [_view(r) for r in store.log(conn, repo.get_app(conn, app)["id"], limit)]


async def test_target(cp: ControlPlane, app: str, target_id: int, actor: str = "", wait: float = 8.0) -> NotificationView:
    """Send a test notification to one target now and wait (up to ``wait`` s) for its first attempt."""
    with cp.engine.begin() as conn:
        a = repo.get_app(conn, app)
        t = store.target(conn, a["id"], target_id)
        if t is None:
            raise NotFound(f"{app} has no notification target {target_id} (see `conveyor notify list {app}`)")
        event = {"id": 0, "at": time.time(), "app": app, "env": None, "kind": "notification_test", "actor": actor,
                 "message": f"a test notification from Conveyor for {app}, sent by {actor or 'someone'}", "data": {}}
        # a test is not in the event log (other targets would get it); its row gets its own negative event id
        event_id = -int(time.time() * 1000)
        row_id = store.queue_one(conn, target_id, event_id, "notification_test",
                                 rules.message(t["kind"], event, cp.settings.base_url), cp.clock())
    cp.notifier.poke("notifications")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        view = next((v for v in delivery_log(cp, app, 200) if v.id == row_id), None)
        if view is None or view.attempts > 0 or loop.time() > deadline:
            break
        await cp.notifier.wait("notifications-sent", 0.5)
    if view is None:
        raise NotFound(f"test notification {row_id} is gone (its target was removed)")
    return view


# -- the sender loop ---------------------------------------------------------------------------


def fan_out(cp: ControlPlane) -> int:
    """Queue every target's new events; how many notifications were queued. Idempotent."""
    settled = repo.now() - SETTLE_S
    queued = 0
    with cp.engine.connect() as conn:
        targets = store.targets(conn)
    for t in targets:
        with cp.engine.begin() as conn:
            evs = store.events_after(conn, t["app"], t["cursor"])
            rows, cursor = [], t["cursor"]
            for ev in evs:
                if ev["at"] > settled:
                    break
                cursor = ev["id"]
                if rules.wants(t["events"] or [], ev["kind"]):
                    rows.append({"event_id": ev["id"], "kind": ev["kind"],
                                 "payload": rules.message(t["kind"], ev, cp.settings.base_url)})
            if cursor != t["cursor"] and store.fan_out(conn, t["id"], rows, t["cursor"], cursor, cp.clock()):
                store.trim(conn, t["id"])
                queued += len(rows)
    return queued


async def _post(client: httpx.AsyncClient, cp: ControlPlane, row: Any) -> tuple[bool, int | None, str]:
    ring = cp.sealer()
    url = ring.open(row["url_sealed"].encode()).decode()
    body = json.dumps(row["payload"], separators=(",", ":"), sort_keys=True).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "Conveyor-Notifications"}
    if row["target_kind"] == "json" and row["secret_sealed"]:
        ts = int(time.time())
        headers |= {"X-Conveyor-Event": row["kind"], "X-Conveyor-Delivery": str(row["id"]),
                    "X-Conveyor-Timestamp": str(ts),
                    "X-Conveyor-Signature-256": rules.sign(ring.open(row["secret_sealed"].encode()).decode(), ts, body)}
    try:
        resp = await client.post(url, content=body, headers=headers)
    except httpx.TimeoutException:
        return False, None, f"timed out after {rules.TIMEOUT_S:.0f} s"
    except httpx.HTTPError as exc:
        return False, None, f"{type(exc).__name__}: {exc}"[:500] or type(exc).__name__
    if 200 <= resp.status_code < 300:
        return True, resp.status_code, ""
    if resp.is_redirect:
        return False, resp.status_code, f"redirect to {resp.headers.get('location', '?')[:200]} not followed: give the final URL"
    return False, resp.status_code, f"HTTP {resp.status_code}: {resp.text[:200]}"


async def send_due(cp: ControlPlane, client: httpx.AsyncClient) -> int:
    """Attempt every due notification (at most ``CONCURRENCY`` at once); how many were attempted."""
    with cp.engine.connect() as conn:
        rows = store.due(conn, cp.clock(), limit=CONCURRENCY)
    if not rows:
        return 0
    results = await asyncio.gather(*(_post(client, cp, r) for r in rows), return_exceptions=True)
    now = cp.clock()
    with cp.engine.begin() as conn:
        for r, res in zip(rows, results, strict=True):
            ok, code, error = res if isinstance(res, tuple) else (False, None, f"internal error: {res}")
            attempts = r["attempts"] + 1
            step = rules.after_attempt(attempts, ok, now)
            store.record_attempt(conn, r["id"], attempts, step.status, step.next_at, code, error, now)
            if step.status != "delivered":
                log.info("notification %s to target %s: attempt %d failed (%s); %s", r["id"], r["target_id"], attempts,
                         error, f"next at +{step.next_at - now:.1f} s" if step.next_at else "giving up")
    cp.notifier.poke("notifications-sent")
    return len(rows)


async def pass_once(cp: ControlPlane, client: httpx.AsyncClient) -> int:
    await asyncio.to_thread(fan_out, cp)
    sent = 0
    while (n := await send_due(cp, client)) > 0:  # a backlog drains in batches
        sent += n
        if n < CONCURRENCY:
            break
    return sent


def _leading(cp: ControlPlane) -> bool:
    """Only the orchestrator's leader sends (replicas sharing a database would send twice)."""
    return cp.orchestrator is not None and bool(getattr(cp.orchestrator, "leader", False))


async def run(cp: ControlPlane) -> None:
    async with httpx.AsyncClient(timeout=rules.TIMEOUT_S, follow_redirects=False, trust_env=False) as client:
        while True:
            try:
                if _leading(cp):
                    await pass_once(cp, client)
            except asyncio.CancelledError:
                raise
            except Exception:  # the loop must outlive any one bad pass
                log.exception("notification pass failed; retrying")
            await cp.notifier.wait("notifications", POLL_S)


async def start(cp: ControlPlane) -> None:
    """Start-up hook: the sender loop."""
    cp.tasks.append(asyncio.create_task(run(cp), name="notifications"))
