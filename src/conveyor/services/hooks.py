"""Push webhooks in: `conveyor repo set/show/remove`, the webhook endpoint's rules, and "build this
commit, then deploy it" (:func:`ship`).

The webhook endpoint takes no token: the delivery's signature is its credential (``X-Hub-Signature-256``
from GitHub, ``X-Gitlab-Token`` from GitLab, checked by ``conveyor.domain.webhooks``). So that it cannot
be used to learn which apps exist, an unknown app, an app with no repository, a missing and a wrong
signature all get the same 401 with the same text, after the same HMAC work. Only a correctly signed
delivery learns more (a replay, another repository, another branch), and its sender knows the secret.

Each delivery id is remembered (``hook_deliveries``): a second delivery with the same id is a replay
and is refused with 409. A push to the deploy branch builds the commit from the registered URL (as
``conveyor build --git URL --ref SHA``) and, once the build and its tests succeed, deploys the image to
the registration's environment (:func:`ship`; the integrator may point it at the pipelines' hand-off).
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from collections.abc import Mapping
from typing import Any

from conveyor.build.queue import BuildRequest
from conveyor.domain import webhooks
from conveyor.domain.manifest import ENV_NAME_RE
from conveyor.domain.wire import API_PREFIX
from conveyor.services import builds, continuous, deployments, trains
from conveyor.services.schemas import BRANCH, REPO_URL, HookAnswer, HookDelivery, RepoIn, RepoView, TrainCommitIn
from conveyor.services.state import ControlPlane
from conveyor.store import hooks as store
from conveyor.store import repo
from conveyor.store.repo import Conflict, NotFound

__all__ = ["HookRefused", "receive", "remove_repo", "set_repo", "ship", "show_repo", "start", "webhook_url"]

log = logging.getLogger("conveyor.hooks")

#: a build started by a push gets this long before its delivery is marked failed
BUILD_DEADLINE_S = 3600.0
#: the one answer to an unknown app, an app without repository, and a missing or wrong signature
UNSIGNED = ("the delivery is not signed with this webhook's secret: check the secret (X-Hub-Signature-256 from "
            "GitHub, X-Gitlab-Token from GitLab) and the webhook URL `conveyor repo show APP` prints")
#: what an unknown app's delivery is checked against, so it costs the same HMAC as a known one's
_DUMMY_SECRET = secrets.token_urlsafe(32)
_BRANCH = re.compile(BRANCH)
_URL = re.compile(REPO_URL)


class HookRefused(Exception):
    """A delivery the endpoint refuses: ``status`` and a sentence saying why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def webhook_url(cp: ControlPlane, app: str) -> str:
    """Where the forge sends the app's push events (``CONVEYOR_PUBLIC_URL`` sets the host part)."""
    return f"{cp.settings.base_url}{API_PREFIX}/hooks/{app}"


def _check(body: RepoIn) -> tuple[str, str, str]:
    url, branch, env = body.url, body.branch.removeprefix("refs/heads/"), body.env
    if not _URL.match(url) or len(url) > 2000:
        raise ValueError(f"{url[:80]!r} is not a repository URL: give https://…, ssh://…, git@host:path, "
                         "an absolute path or a file:// URL (no spaces)")
    if not _BRANCH.match(branch) or len(branch) > 200:
        raise ValueError(f"{branch[:80]!r} is not a branch name: letters, digits and '_', joined by '.', '/' or '-' "
                         "(e.g. main, release/1.2)")
    if not ENV_NAME_RE.match(env):
        raise ValueError(f"environment {env!r} is not a name: use 1-40 lower-case letters, digits and '-'")
    return url, branch, env


def _view(cp: ControlPlane, app: str, row: Any, secret: str | None = None,
          deliveries: list[dict[str, Any]] | None = None) -> RepoView:
    return RepoView(app=app, url=row["url"], branch=row["branch"], env=row["env"], webhook_url=webhook_url(cp, app),
                    secret=secret, created_at=row["created_at"], created_by=row["created_by"] or "",
                    deliveries=[HookDelivery(**{k: d[k] for k in HookDelivery.model_fields}) for d in deliveries or []])


def set_repo(cp: ControlPlane, app: str, body: RepoIn, actor: str = "", origin: str = "") -> RepoView:
    """Register (or replace) the repository pushes build from; the answer carries a new secret, once."""
    url, branch, env = _check(body)
    secret = secrets.token_urlsafe(32)
    sealed = cp.sealer().seal(secret.encode()).decode()
    with cp.engine.begin() as conn:
        a = repo.get_app(conn, app)
        store.put(conn, a["id"], url, branch, env, sealed, cp.clock(), actor)
        repo.record_event(conn, "repo_set", f"pushes to {branch} of {url} deploy {app}/{env}", app=app, env=env,
                          actor=actor, origin=origin, data={"url": url, "branch": branch})
        row = store.get(conn, a["id"])
    return _view(cp, app, row, secret=secret)


def show_repo(cp: ControlPlane, app: str, deliveries: int = 20) -> RepoView:
    """The app's registration (never its secret) and its newest deliveries."""
    with cp.engine.connect() as conn:
        a = repo.get_app(conn, app)
        row = store.get(conn, a["id"])
        if row is None:
            raise NotFound(f"{app} has no repository: register one with `conveyor repo set {app} URL`")
        return _view(cp, app, row, deliveries=store.deliveries(conn, a["id"], deliveries))


def remove_repo(cp: ControlPlane, app: str, actor: str = "", origin: str = "") -> None:
    """Forget the repository: its webhook's deliveries are refused from now on."""
    with cp.engine.begin() as conn:
        a = repo.get_app(conn, app)
        if not store.remove(conn, a["id"]):
            raise NotFound(f"{app} has no repository to remove")
        repo.record_event(conn, "repo_removed", f"{app} no longer deploys on push", app=app, actor=actor, origin=origin)


def receive(cp: ControlPlane, app: str, headers: Mapping[str, str], body: bytes) -> tuple[int, HookAnswer]:
    """Act on a delivery for ``app``: (HTTP status, answer), or :class:`HookRefused`. Starts the build on
    the running loop (call it from the event loop)."""
    with cp.engine.connect() as conn:
        reg = store.of_app_name(conn, app)
    secret = cp.sealer().open(reg["secret_sealed"].encode()).decode() if reg is not None else _DUMMY_SECRET
    signed = webhooks.verify(headers, body, secret)
    if reg is None or not signed:
        raise HookRefused(401, UNSIGNED)
    try:
        push = webhooks.parse(headers, body)
    except webhooks.WebhookError as exc:
        raise HookRefused(exc.status, str(exc)) from None
    decision = webhooks.decide(push, reg["url"], reg["branch"])
    outcome = {"pong": "pong", "ignore": "ignored", "refuse": "refused", "ship": "building"}[decision.action]
    with cp.engine.begin() as conn:
        row_id = store.remember(conn, reg["app_id"], push.delivery, {
            "provider": push.provider, "event": push.event[:40], "sha": push.sha[:64], "outcome": outcome,
            "reason": decision.reason, "at": cp.clock()})
        if row_id is None:
            raise HookRefused(409, f"delivery {push.delivery} was received before: a replayed delivery is refused "
                                   "(push again to build the branch anew)")
        if decision.action == "ship":
            repo.record_event(conn, "webhook_shipped", f"push of {push.sha[:12]} to {reg['branch']} ({push.provider}): "
                              "building, then deploying", app=app, env=reg["env"], actor=f"webhook:{push.provider}",
                              data={"delivery": push.delivery, "sha": push.sha, "branch": reg["branch"]})
    if decision.action == "refuse":
        raise HookRefused(422, decision.reason)
    if decision.action == "ship":
        task = asyncio.create_task(_ship_delivery(cp, app, reg["url"], decision.sha, reg["env"], push, row_id),
                                   name=f"webhook-{app}-{decision.sha[:12]}")
        cp.tasks.append(task)
        task.add_done_callback(lambda t: cp.tasks.remove(t) if t in cp.tasks else None)
        return 202, HookAnswer(outcome=outcome, reason=decision.reason, delivery=push.delivery)
    return 200, HookAnswer(outcome=outcome, reason=decision.reason, delivery=push.delivery)


async def _ship_delivery(cp: ControlPlane, app: str, url: str, sha: str, env: str, push: webhooks.Push, row_id: int) -> None:
    def note(**values: Any) -> None:
        with cp.engine.begin() as conn:
            store.update_delivery(conn, row_id, **values)

    try:
        if continuous.busy(cp, app, env):  # commits pushed while a deployment runs ride in the next train
            try:
                ridden = await asyncio.to_thread(
                    trains.enqueue, cp, app, url, [TrainCommitIn(sha=sha)], trigger=f"webhook {push.provider}",
                    actor=f"webhook:{push.provider}", origin=f"delivery {push.delivery}", env=env)
            except (Conflict, ValueError, NotFound) as exc:
                note(outcome="failed", reason=f"not batched: {exc}")
                return
            note(outcome="batched", reason=f"{env} is deploying: {sha[:12]} rides in train "
                                           f"{ridden[-1].id if ridden else '?'} (`conveyor trains {app}`)")
            return
        dep_id = await ship(cp, app, url, sha, env, actor=f"webhook:{push.provider}", origin=f"delivery {push.delivery}",
                            on_build=lambda build_id: note(build_id=build_id))
    except ShipFailed as exc:
        note(outcome="failed", reason=str(exc))
        return
    except Exception as exc:  # never let a push take the control plane down; say what happened
        log.exception("webhook delivery %s of %s failed", push.delivery, app)
        note(outcome="failed", reason=f"internal error: {exc}")
        return
    note(outcome="deploying", deployment_id=dep_id, reason=f"deployment {dep_id} of {sha[:12]} to {env}")


class ShipFailed(Exception):
    """The commit could not be built or deployed (the message says why)."""


async def ship(cp: ControlPlane, app: str, url: str, sha: str, env: str, *, actor: str, origin: str = "",
               on_build: Any = None) -> int:
    """Build commit ``sha`` of ``url`` for ``app`` (as ``conveyor build --git URL --ref SHA``), then, once the
    build and its tests succeed, deploy the image to ``env``; the deployment's id. :class:`ShipFailed` otherwise.

    The one place a push becomes a deployment: when the pipelines' ``services/continuous.ship`` exists,
    this is the function to point at it."""
    app_id = builds.app_id(cp, app)
    req = BuildRequest(git_url=url, git_ref=sha, app=app)
    source = {"kind": "git", "git": url, "ref": sha, "app": app, "via": origin or "webhook"}
    build = builds.submit(cp, app_id, req, source, actor, None)
    build_id = int(build["id"])
    if on_build is not None:
        on_build(build_id)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + BUILD_DEADLINE_S
    while build["state"] not in ("succeeded", "failed"):
        if loop.time() > deadline:
            raise ShipFailed(f"build {build_id} did not finish within {BUILD_DEADLINE_S:.0f} s")
        await cp.notifier.wait("builds", 2.0)
        build = builds.read(cp, build_id)
    if build["state"] == "failed":
        with cp.engine.begin() as conn:
            repo.record_event(conn, "build_failed", f"build {build_id} of {sha[:12]} failed: {build['error']}",
                              app=app, env=env, actor=actor, data={"build": build_id, "sha": sha})
        raise ShipFailed(f"build {build_id} failed: {build['error']}")
    digest = str(build["image_digest"])
    try:
        return deployments.deploy(cp, app, env, digest, actor=actor, origin=origin, automatic=True)
    except (Conflict, ValueError, NotFound) as exc:
        raise ShipFailed(f"image {digest[7:19]} of build {build_id} was not deployed: {exc}") from None


async def start(cp: ControlPlane) -> None:
    """Start-up hook: deliveries whose build a previous process lost are failed (their builds were too)."""
    with cp.engine.begin() as conn:
        store.fail_unfinished(conn, "interrupted by a control-plane restart: push again")


def summary(cp: ControlPlane, app: str, deliveries: int = 10) -> dict[str, Any] | None:
    """What the app page shows of push deploys (None: no repository registered)."""
    try:
        return show_repo(cp, app, deliveries).model_dump(mode="json")
    except NotFound:
        return None
