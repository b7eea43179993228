"""Notifications out: which events a target wants, the message each gets, its signature and its
retry schedule. Pure (data in, data out); the sender loop is ``services/notifications.py``.

Why from the event log: the orchestrator and the services already record every step as an
``events`` row (``deploy_started``, ``deployed``, ``rolled_back``, ...). Notifications read that
log by kind, so nothing that deploys has to know they exist, and a slow or failing receiver can
never delay or fail a deployment: the deployment only ever wrote its event.

Two target kinds:

* ``json``: the event as JSON, signed ``X-Conveyor-Signature-256: sha256=<hex HMAC-SHA256 of
  "<timestamp>.<body>">`` with the target's secret, the timestamp in ``X-Conveyor-Timestamp``
  (a receiver refuses old timestamps: a captured delivery cannot be replayed later).
* ``slack``: a Slack incoming-webhook message (``text`` and ``blocks``, with link buttons). Slack's
  incoming webhooks are authenticated by their secret URL, so that URL is sealed at rest.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from conveyor.domain.backoff import Backoff

__all__ = [
    "EVENT_GROUPS", "KINDS", "MAX_ATTEMPTS", "RETRY", "after_attempt", "check_url", "group_of", "message",
    "parse_events", "shown_url", "sign", "verify_signature",
]

#: what ``--events`` names → the event kinds (``events.kind``) each covers. ``approval`` is the
#: pipelines' "approval needed" event; ``test`` is ``conveyor notify test``'s.
EVENT_GROUPS: dict[str, tuple[str, ...]] = {
    "build": ("image_built", "build_failed"),
    "deploy": ("deploy_started", "deployed", "deploy_failed"),
    "verdict": ("canary_step", "canary_promoting", "deploy_paused", "baked"),
    "rollback": ("rollback_started", "rolled_back", "rollback"),
    "approval": ("approval_needed",),
    "webhook": ("webhook_shipped",),
}
#: a target with no ``--events`` gets every group
ALL_GROUPS: tuple[str, ...] = tuple(EVENT_GROUPS)
KINDS: frozenset[str] = frozenset(k for ks in EVENT_GROUPS.values() for k in ks) | {"notification_test"}
TargetKind = Literal["json", "slack"]

#: retries: 2 s doubling to 5 min, at most 8 attempts (the last ~8.5 min after the event)
RETRY = Backoff(initial=2.0, cap=300.0)
MAX_ATTEMPTS = 8
#: a receiver has this long to answer one attempt
TIMEOUT_S = 5.0
#: how old a signed timestamp a receiver should accept (documented for receivers; tests use it)
SIGNATURE_TOLERANCE_S = 300.0
MAX_URL = 2000


def group_of(kind: str) -> str | None:
    """The ``--events`` group an event kind belongs to (None: not notified)."""
    if kind == "notification_test":
        return "test"
    return next((g for g, ks in EVENT_GROUPS.items() if kind in ks), None)


def parse_events(names: Iterable[str]) -> list[str]:
    """``--events`` as a sorted list of groups (empty = every group); ValueError naming an unknown one."""
    out: set[str] = set()
    for raw in names:
        for name in (n.strip().lower() for n in raw.split(",")):
            if not name:
                continue
            if name not in EVENT_GROUPS:
                raise ValueError(f"unknown event {name!r}: use any of {', '.join(EVENT_GROUPS)} (comma-separated)")
            out.add(name)
    return sorted(out)


def wants(groups: Iterable[str], kind: str) -> bool:
    """Does a target subscribed to ``groups`` (empty: all) get an event of ``kind``? A test always goes."""
    g = group_of(kind)
    if g is None:
        return False
    chosen = list(groups)
    return g == "test" or not chosen or g in chosen


def check_url(url: str) -> str:
    """A notification target URL, checked: http(s), a host, no credentials, no fragment. ValueError says what to fix."""
    u = url.strip()
    if len(u) > MAX_URL:
        raise ValueError(f"the URL is longer than {MAX_URL} characters")
    parts = urlsplit(u)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"the URL must start with http:// or https:// (got {parts.scheme + '://' if parts.scheme else u[:40]!r})")
    if not parts.hostname:
        raise ValueError("the URL has no host: give e.g. https://hooks.example.com/conveyor")
    if parts.username or parts.password:
        raise ValueError("the URL carries credentials (user:password@): they would be shown in listings; "
                         "use a json target (signed) or a secret path instead")
    if any(not ("!" <= c <= "~") for c in u):
        raise ValueError("the URL contains spaces, control or non-ASCII characters: percent-encode them")
    return u


def shown_url(url: str) -> str:
    """What listings show of a target's URL: scheme, host and the first path segment (a Slack URL's
    path is its secret)."""
    p = urlsplit(url)
    first = p.path.strip("/").split("/", 1)[0]
    more = "/…" if p.path.strip("/").count("/") or p.query else ""
    return f"{p.scheme}://{p.netloc}/{first}{more}" if first else f"{p.scheme}://{p.netloc}/"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """``X-Conveyor-Signature-256`` of a JSON delivery: HMAC-SHA256 of ``"<timestamp>.<body>"``."""
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(secret: str, timestamp: str, body: bytes, signature: str, now: float,
                     tolerance: float = SIGNATURE_TOLERANCE_S) -> bool:
    """What a receiver does: the signature matches (constant time) and the timestamp is recent."""
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    if abs(now - ts) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, ts, body).encode(), signature.encode())


@dataclass(frozen=True)
class Attempt:
    """What to write after an attempt: the outbox row's new status and when to try again."""

    status: Literal["delivered", "retrying", "failed"]
    next_at: float | None


def after_attempt(attempts: int, ok: bool, now: float) -> Attempt:
    """After attempt number ``attempts`` (1-based): delivered, retry after the backoff, or give up."""
    if ok:
        return Attempt("delivered", None)
    if attempts >= MAX_ATTEMPTS:
        return Attempt("failed", None)
    return Attempt("retrying", now + RETRY.delay(attempts))


def schedule() -> list[float]:
    """The delays between attempts, for the docs and the help text."""
    return [RETRY.delay(n) for n in range(1, MAX_ATTEMPTS)]


@dataclass(frozen=True)
class Links:
    deployment: str | None
    app: str
    approve: str | None
    rollback: str | None

    def as_dict(self) -> dict[str, str]:
        return {k: v for k, v in (("deployment", self.deployment), ("app", self.app),
                                  ("approve", self.approve), ("rollback", self.rollback)) if v}


def links(base_url: str, app: str | None, kind: str, data: dict[str, Any], env: str | None = None) -> Links:
    """Where a reader acts on the event: the deployment's page, the app's page, approve and roll back."""
    base = base_url.rstrip("/")
    dep = data.get("deployment")
    dep_url = f"{base}/deployments/{dep}" if isinstance(dep, int) else None
    app_url = f"{base}/apps/{app}" if app else f"{base}/"
    approve = data.get("approve_url") if isinstance(data.get("approve_url"), str) else None
    if kind == "approval_needed" and approve is None:
        approve = dep_url
    rollback = f"{app_url}#env-{env or 'production'}" if app and kind in ("deployed", "baked", "deploy_paused", "canary_step",
                                                          "canary_promoting", "approval_needed") else None
    return Links(dep_url, app_url, approve, rollback)


_TITLES = {
    "image_built": "Build succeeded", "build_failed": "Build failed",
    "deploy_started": "Deploy started", "deployed": "Deploy succeeded", "deploy_failed": "Deploy failed",
    "canary_step": "Canary step", "canary_promoting": "Canary passed: promoting", "deploy_paused": "Deploy paused",
    "baked": "Verdict: baked without regression", "rollback_started": "Rollback started",
    "rolled_back": "Rolled back", "rollback": "Rollback done", "approval_needed": "Approval needed",
    "webhook_shipped": "Push received: building",
    "notification_test": "Test notification",
}


def message(target: TargetKind, event: dict[str, Any], base_url: str) -> dict[str, Any]:
    """The body a target gets for an event row (``id, at, app, env, kind, actor, message, data``)."""
    kind = str(event["kind"])
    data = dict(event.get("data") or {})
    app, env = event.get("app"), event.get("env")
    where = f"{app}/{env}" if app and env else (app or "conveyor")
    title = _TITLES.get(kind, kind)
    lk = links(base_url, app, kind, data, env)
    if target == "json":
        return {
            "event": group_of(kind), "kind": kind, "id": event["id"], "at": event["at"], "app": app, "env": env,
            "title": title, "message": event["message"], "actor": event.get("actor") or "",
            "deployment": data.get("deployment"), "release": data.get("release"), "data": data,
            "links": lk.as_dict(),
        }
    text = f"{title} — {where}: {event['message']}"
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(event["at"])))
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*{_esc(title)}* — `{_esc(where)}`\n{_esc(event['message'])}"}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": _esc(
            f"{stamp} · by {event.get('actor') or 'conveyor'}" + (f" · deployment {data['deployment']}" if data.get("deployment") else ""))}]},
    ]
    buttons = [(label, url) for label, url in (("Open deployment", lk.deployment), ("Approve", lk.approve),
                                               ("Roll back", lk.rollback)) if url]
    if not lk.deployment:
        buttons.insert(0, ("Open app", lk.app))
    blocks.append({"type": "actions", "elements": [
        {"type": "button", "text": {"type": "plain_text", "text": label}, "url": url} for label, url in buttons]})
    return {"text": text, "blocks": blocks}


def _esc(s: str) -> str:
    """Slack mrkdwn's three control characters."""
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
