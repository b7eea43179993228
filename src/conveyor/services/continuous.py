"""Continuous deployment: a pushed commit range, built and tested, becomes a deployment.

:func:`ship` is the ONE hand-off from "commits accepted and built" to "ship it". Today it
queues a deployment of the image to the app's default environment (production) through
``services.deployments`` as an *automatic* deploy: a lock or a freeze window (even a
rollback's lock) refuses it with its reason, and the pipeline (``after =`` stages)
promotes it from there like any deployment.

:func:`record_push` is what the pre-receive hook calls (``POST /apps/{app}/pushes``):
it records the push with its commits and, for the deploy branch, ships the build's image
once the build has succeeded with passing tests — at once when the hook followed the
build, or (``git push -o detach``) from a task that waits for the build.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from conveyor.domain import pipeline
from conveyor.domain.gitpush import MAX_COMMITS
from conveyor.domain.manifest import ManifestError, parse_manifest
from conveyor.services import builds, deployments, trains
from conveyor.services.schemas import DeployPushIn, GitPushIn, GitPushView, PushReceived, TrainCommitIn
from conveyor.services.state import ControlPlane
from conveyor.store import builds as build_rows
from conveyor.store import deployments as deployment_rows
from conveyor.store import gitpushes, repo
from conveyor.store import trains as train_rows
from conveyor.store.repo import Conflict, NotFound

log = logging.getLogger("conveyor.continuous")

#: The environment a shipped push goes to (the integrator routes it through pipelines later).
DEFAULT_ENV = "production"


def ship(cp: ControlPlane, app: str, image: str, commits: list[dict[str, Any]], trigger: str, actor: str,
         origin: str = "") -> int:
    """Deploy ``image`` (built from ``commits``, newest first) where it enters the app's pipeline
    (the first stage before production, e.g. staging; production when there is none); the
    deployment's id. ``trigger`` ("git push by NAME") goes on the event log with the commits."""
    env = entry_env(cp, app, image)
    dep_id = deployments.deploy(cp, app, env, image, actor=actor, origin=origin, automatic=True)
    with cp.engine.begin() as conn:
        head = commits[0]["sha"][:10] if commits else "?"
        repo.record_event(
            conn, "continuous_ship",
            f"{trigger}: {len(commits)} commit(s) up to {head} shipped as deployment {dep_id}",
            app=app, env=env, actor=actor, origin=origin,
            data={"deployment": dep_id, "trigger": trigger, "image": image,
                  "commits": [{"sha": c["sha"], "message": c.get("message", "")[:200]} for c in commits[:50]]},
        )
    return dep_id


def entry_env(cp: ControlPlane, app: str, image: str) -> str:
    """Where ``image`` enters the app's pipeline (its own manifest says): staging before production, or
    production when no stage comes before it."""
    with cp.engine.connect() as conn:
        stored = repo.get_image(conn, repo.get_app(conn, app)["id"], image)["app_manifest"] or {}
    try:
        return pipeline.entry(parse_manifest(stored).pipeline(), DEFAULT_ENV)
    except ManifestError:
        return DEFAULT_ENV


def busy(cp: ControlPlane, app: str, env: str) -> bool:
    """A deployment of ``env`` is open (queued or running), or a deploy train of it collects or runs:
    new commits then ride in the next train instead of a deployment of their own."""
    with cp.engine.connect() as conn:
        app_row = repo.get_app(conn, app)
        env_row = next((e for e in repo.envs_of_app(conn, app_row["id"]) if e["name"] == env), None)
        if env_row is None:
            return False
        return bool(deployment_rows.open_in_env(conn, env_row["id"])) or any(
            t["env_id"] == env_row["id"] for t in train_rows.open_trains(conn))


def _batch(cp: ControlPlane, app: str, push_id: int, env: str, commits: list[dict[str, Any]], actor: str,
           origin: str) -> str | None:
    """Put a received push's commits (oldest first) in the next deploy train of ``env``, fetched from the
    app's own bare repository (the branch has moved: they are there); None, or why it could not."""
    from conveyor.services import gitremote  # (gitremote imports this module: a late import)

    url = str(gitremote.repo_path(cp, app))
    with cp.engine.connect() as conn:
        new = gitpushes.get(conn, push_id)["new_sha"]
    ordered = [TrainCommitIn(sha=c["sha"]) for c in reversed(commits)]
    if not ordered or ordered[-1].sha != new:
        ordered = [TrainCommitIn(sha=new)]
    trigger = f"git push by {actor or 'someone'}"
    try:
        ridden = _enqueue(cp, app, url, ordered, trigger, actor, origin, env)
    except (Conflict, ValueError, NotFound) as exc:
        return f"not batched: {exc}"
    train = ridden[-1].id if ridden else None
    with cp.engine.begin() as conn:
        gitpushes.finish(conn, push_id, "batched", cp.clock(),
                         detail=f"{env} is deploying: {len(ordered)} commit(s) ride in train {train} "
                                f"(`conveyor trains {app}`)")
    return None


def _enqueue(cp: ControlPlane, app: str, url: str, commits: list[TrainCommitIn], trigger: str, actor: str,
             origin: str, env: str) -> list[Any]:
    """``trains.enqueue``; a range that is not one line of history (a merge brought side commits)
    rides as its head commit alone."""
    try:
        return trains.enqueue(cp, app, url, commits, trigger=trigger, actor=actor, origin=origin, env=env)
    except ValueError:
        if len(commits) == 1:
            raise
        return trains.enqueue(cp, app, url, commits[-1:], trigger=trigger, actor=actor, origin=origin, env=env)


def received(cp: ControlPlane, app: str, body: PushReceived, actor: str, origin: str = "") -> GitPushView:
    """The post-receive hook: the branch has moved to ``body.new``; ship the push that brought it (a
    deployment of its image), or put it in the next deploy train when its environment is deploying."""
    with cp.engine.connect() as conn:
        row = gitpushes.accepted(conn, repo.get_app(conn, app)["id"], body.ref, body.new)
    if row is None:
        raise NotFound(f"no accepted push of {body.ref} to {body.new[:10]} for {app}")
    _ship_build(cp, app, int(row["id"]), int(row["build_id"]), list(row["commits"] or []), actor, origin)
    return read(cp, int(row["id"]))


def view(row: Any) -> GitPushView:
    return GitPushView(
        id=row["id"], ref=row["ref"], old=row["old_sha"], new=row["new_sha"], commits=len(row["commits"] or []),
        action=row["action"], state=row["state"], detach=row["detach"], build=row["build_id"],
        deployment=row["deployment_id"], detail=row["detail"], pushed_by=row["pushed_by"],
        created_at=row["created_at"], finished_at=row["finished_at"],
    )


def record_push(cp: ControlPlane, app: str, body: GitPushIn, actor: str, origin: str = "") -> GitPushView:
    """Record a push; for a deploy push, ship its build's image (see the module's docstring).

    Refused (``Conflict``): a build that is not the app's. A finished build that failed, or whose
    tests failed, is recorded as a failed push (the hook has then rejected the push)."""
    commits = [c.model_dump() for c in body.commits[:MAX_COMMITS]]
    deploy = body if isinstance(body, DeployPushIn) else None
    with cp.engine.begin() as conn:
        app_row = repo.get_app(conn, app)
        build = None
        if deploy is not None:
            build = build_rows.get(conn, deploy.build)
            if build is None or build["app_id"] != app_row["id"]:
                raise Conflict(f"build {deploy.build} is not a build of app {app!r}")
        later = deploy is not None and deploy.received and not deploy.detach
        push_id = gitpushes.add(conn, app_row["id"], ref=body.ref, old=body.old, new=body.new, commits=commits,
                                action=body.action, state="accepted" if later else "building" if deploy else "stored",
                                detach=bool(deploy and deploy.detach), build_id=deploy.build if deploy else None,
                                pushed_by=actor, at=cp.clock())
        if deploy is None:
            repo.record_event(conn, "git_push_stored", f"git push by {actor or 'someone'}: {body.ref} "
                              f"({len(commits)} commit(s)) stored, not deployed", app=app, actor=actor,
                              origin=origin, data={"push": push_id, "ref": body.ref, "new": body.new})
    if build is not None and not later:  # (a later one ships from received(), once git has moved the branch)
        if build["state"] in ("succeeded", "failed"):
            _ship_build(cp, app, push_id, int(build["id"]), commits, actor, origin)
        else:
            task = asyncio.get_running_loop().create_task(
                _ship_when_built(cp, app, push_id, int(build["id"]), commits, actor, origin))
            cp.tasks.append(task)
    return read(cp, push_id)


async def _ship_when_built(cp: ControlPlane, app: str, push_id: int, build_id: int, commits: list[dict[str, Any]],
                           actor: str, origin: str) -> None:
    """A detached push: wait for its build (the queue's job, then its recorded outcome), then ship."""
    try:
        job = builds.job(cp, build_id)
        if job is not None:
            try:
                await job.wait()
            except Exception:  # the failure is recorded by the build service; read below
                pass
        await builds.outcome_recorded(build_id)
        await asyncio.to_thread(_ship_build, cp, app, push_id, build_id, commits, actor, origin)
    except Exception as exc:  # a detached push must end somewhere visible
        log.exception("shipping push %s failed", push_id)
        with cp.engine.begin() as conn:
            gitpushes.finish(conn, push_id, "failed", cp.clock(), detail=f"internal error: {exc}")


def _ship_build(cp: ControlPlane, app: str, push_id: int, build_id: int, commits: list[dict[str, Any]],
                actor: str, origin: str) -> None:
    """Ship a finished build's image, or mark the push failed with the reason."""
    b = builds.read(cp, build_id)
    image = b.get("image") or {}
    problem = None
    if b["state"] != "succeeded":
        problem = f"build {build_id} {b['state']}: {b.get('error') or 'see its log'}"
    elif image.get("test_status") == "failed":
        problem = f"image {image['digest'][7:19]} failed its tests"
    if problem is None:
        env = entry_env(cp, app, image["digest"])
        if busy(cp, app, env):
            problem = _batch(cp, app, push_id, env, commits, actor, origin)
            if problem is None:
                return
    if problem is None:
        try:
            dep_id = ship(cp, app, image["digest"], commits, f"git push by {actor or 'someone'}", actor, origin)
        except (Conflict, ValueError) as exc:
            problem = str(exc)
        else:
            with cp.engine.begin() as conn:
                gitpushes.finish(conn, push_id, "shipped", cp.clock(), deployment_id=dep_id,
                                 detail=f"deployment {dep_id}")
            return
    with cp.engine.begin() as conn:
        gitpushes.finish(conn, push_id, "failed", cp.clock(), detail=problem)
        repo.record_event(conn, "git_push_failed", f"git push by {actor or 'someone'} not shipped: {problem}",
                          app=app, actor=actor, origin=origin, data={"push": push_id, "build": build_id})


def read(cp: ControlPlane, push_id: int) -> GitPushView:
    with cp.engine.connect() as conn:
        return view(gitpushes.get(conn, push_id))


def app_of_push(cp: ControlPlane, push_id: int) -> str:
    with cp.engine.connect() as conn:
        return repo.app_name_of(conn, int(gitpushes.get(conn, push_id)["app_id"]))


def pushes_of(cp: ControlPlane, app: str, limit: int = 50) -> list[GitPushView]:
    with cp.engine.connect() as conn:
        app_row = repo.get_app(conn, app)
        return [view(r) for r in gitpushes.of_app(conn, app_row["id"], limit)]
