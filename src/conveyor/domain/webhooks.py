"""Push webhooks from GitHub and GitLab: who signed it, what it asks for, and whether to ship it. Pure.

Why a module of its own with no I/O: the webhook endpoint is the one door of the control plane
that takes no token, so everything it decides (is the signature right, is this a push of the
registered repository's deploy branch, is it a ping) must be exact and tested by direct calls.
The service (``services/hooks.py``) only reads the request, looks up the app's registration and
acts on the :class:`Decision` returned here.

Signatures:

* GitHub: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body with the shared secret>``;
  delivery id ``X-GitHub-Delivery``; event ``X-GitHub-Event`` (``push``, ``ping``).
* GitLab: ``X-Gitlab-Token: <the shared secret>`` (GitLab sends the secret itself, not an HMAC);
  delivery id ``X-Gitlab-Event-UUID``; event ``X-Gitlab-Event`` (``Push Hook``).

Both are compared in constant time (``hmac.compare_digest``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

__all__ = [
    "Decision", "Push", "WebhookError", "decide", "github_signature", "normalize_repository", "parse",
    "provider_of", "verify",
]

#: the largest body the endpoint reads (GitHub caps payloads at 25 MB, but a push's is kilobytes;
#: a body this big is refused before its signature is computed)
MAX_BODY = 1024 * 1024
#: a delivery id longer than this is not one GitHub or GitLab sends
MAX_DELIVERY_ID = 100
_ZERO_SHA = re.compile(r"^0+$")
_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")

Provider = Literal["github", "gitlab"]


class WebhookError(ValueError):
    """A signed delivery that cannot be acted on; ``status`` is the HTTP answer, the message says why."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


def _header(headers: Mapping[str, str], name: str) -> str:
    """A header by case-insensitive name ('' when absent)."""
    low = name.lower()
    for k, v in headers.items():
        if k.lower() == low:
            return v
    return ""


def provider_of(headers: Mapping[str, str]) -> Provider | None:
    """Which forge sent it, from its event header; None for anything else."""
    if _header(headers, "X-GitHub-Event"):
        return "github"
    if _header(headers, "X-Gitlab-Event"):
        return "gitlab"
    return None


def github_signature(secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value GitHub sends for ``body`` (what a test signs with, too)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(headers: Mapping[str, str], body: bytes, secret: str) -> bool:
    """Is the delivery signed with ``secret``? Constant time in the secret; False when unsigned."""
    provider = provider_of(headers)
    if provider == "github":
        sent = _header(headers, "X-Hub-Signature-256")
        return bool(sent) and hmac.compare_digest(sent.encode(), github_signature(secret, body).encode())
    if provider == "gitlab":
        sent = _header(headers, "X-Gitlab-Token")
        return bool(sent) and hmac.compare_digest(sent.encode(), secret.encode())
    return False


@dataclass(frozen=True)
class Push:
    """What a signed delivery says: its id, its event, and for a push the branch, commit and repository."""

    provider: Provider
    delivery: str
    event: str  # "push", "ping", or another event the forge sent
    ref: str = ""  # refs/heads/main
    sha: str = ""  # the pushed commit (empty for a ping; zeros when the branch was deleted)
    repositories: tuple[str, ...] = ()  # every URL the payload names for the repository, normalised

    @property
    def branch(self) -> str | None:
        return self.ref[len("refs/heads/"):] if self.ref.startswith("refs/heads/") else None


def normalize_repository(url: str) -> str:
    """A repository URL in one spelling, to compare a payload's with the registered one.

    ``https://GitHub.com/o/r.git/`` and ``https://github.com/o/r`` are the same repository; so are
    ``file:///srv/r.git`` and ``/srv/r.git``. Credentials in the URL are dropped; the host is lower-cased;
    a trailing ``/`` and ``.git`` go. ``git@host:o/r.git`` (scp-like) becomes ``ssh://git@host/o/r``."""
    u = url.strip()
    m = re.match(r"^([\w.-]+@)?([\w.-]+):(?!//)(.+)$", u)
    if m and not u.startswith("/"):
        u = f"ssh://{m.group(1) or ''}{m.group(2)}/{m.group(3)}"
    if u.startswith("/"):
        u = "file://" + u
    parts = urlsplit(u)
    host = (parts.hostname or "").lower()
    if parts.port:
        host += f":{parts.port}"
    path = parts.path.rstrip("/")
    if path.endswith(".git"):
        path = path[:-4]
    scheme = parts.scheme.lower()
    return f"{scheme}://{host}{path}"


def _repository_urls(provider: Provider, doc: dict[str, Any]) -> tuple[str, ...]:
    keys = ("clone_url", "html_url", "ssh_url", "git_url", "url", "svn_url")
    repos: list[Any] = [doc.get("repository")]
    if provider == "gitlab":
        keys = ("git_http_url", "git_ssh_url", "web_url", "http_url", "ssh_url", "url", "homepage")
        repos.append(doc.get("project"))
    out: list[str] = []
    for r in repos:
        if isinstance(r, dict):
            for k in keys:
                v = r.get(k)
                if isinstance(v, str) and v:
                    out.append(normalize_repository(v))
    return tuple(dict.fromkeys(out))


def parse(headers: Mapping[str, str], body: bytes) -> Push:
    """Read a delivery whose signature was checked. :class:`WebhookError` when it is not one we read."""
    provider = provider_of(headers)
    if provider is None:
        raise WebhookError("not a GitHub or GitLab webhook: send X-GitHub-Event or X-Gitlab-Event", 400)
    delivery = _header(headers, "X-GitHub-Delivery" if provider == "github" else "X-Gitlab-Event-UUID").strip()
    if not delivery or len(delivery) > MAX_DELIVERY_ID:
        name = "X-GitHub-Delivery" if provider == "github" else "X-Gitlab-Event-UUID"
        raise WebhookError(f"the delivery has no {name} header (of at most {MAX_DELIVERY_ID} characters): "
                           "deliveries are told apart by it, so replays can be refused", 400)
    event = _header(headers, "X-GitHub-Event" if provider == "github" else "X-Gitlab-Event").strip()
    event = {"Push Hook": "push", "System Hook": "system"}.get(event, event).lower()
    if event != "push":
        return Push(provider, delivery, event)
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise WebhookError("the push payload is not JSON: set the webhook's content type to application/json", 400) from None
    if not isinstance(doc, dict):
        raise WebhookError("the push payload is not a JSON object", 400)
    ref = doc.get("ref")
    sha = doc.get("after") if provider == "github" else (doc.get("checkout_sha") or doc.get("after"))
    if not isinstance(ref, str) or not isinstance(sha, str):
        raise WebhookError("the push payload has no 'ref' and 'after' (the pushed branch and commit)", 400)
    return Push(provider, delivery, event, ref=ref, sha=sha.lower(), repositories=_repository_urls(provider, doc))


@dataclass(frozen=True)
class Decision:
    """What to do with a signed delivery: ``ship`` (build ``sha``, then deploy it), ``pong`` (a ping: OK),
    ``ignore`` (a push we do not act on: 200 with the reason) or ``refuse`` (422 with the reason)."""

    action: Literal["ship", "pong", "ignore", "refuse"]
    reason: str
    sha: str = ""


def decide(push: Push, repository: str, branch: str) -> Decision:
    """Act on ``push`` for an app registered with ``repository`` and deploy ``branch``?"""
    if push.event == "ping":
        return Decision("pong", "pong: the webhook reaches Conveyor and its secret matches")
    if push.event != "push":
        return Decision("ignore", f"{push.event!r} events are not acted on: only push (and ping)")
    if normalize_repository(repository) not in push.repositories:
        named = ", ".join(push.repositories) or "none"
        return Decision("refuse", f"the push is for another repository ({named}); this app builds {repository}")
    if push.branch is None:
        return Decision("ignore", f"{push.ref} is not a branch: only pushes to {branch} are deployed")
    if push.branch != branch:
        return Decision("ignore", f"the push is to branch {push.branch!r}; this app deploys {branch!r}")
    if _ZERO_SHA.match(push.sha):
        return Decision("ignore", f"branch {branch!r} was deleted: nothing to deploy")
    if not _SHA.match(push.sha):
        return Decision("refuse", f"the pushed commit {push.sha[:80]!r} is not a commit id")
    return Decision("ship", f"push of {push.sha[:12]} to {branch}: building it, then deploying", push.sha)
