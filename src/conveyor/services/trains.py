"""Deploy trains: taking commits in (batched by ``[deploy] max_commits``), and the trains as the API,
the CLI and the pages show them.

Commits arriving while an environment deploys wait in its *collecting* train; the
train runner (``services/train_runner.py``) starts it once the environment is
free, so every push during a deployment rides the next one. A train holds at most
``max_commits`` commits (read from the newest commit's ``conveyor.toml``, the one
that will run); more commits start another train. Everything is checked before
anything is written: an unknown app, a repository that cannot be fetched, a
commit not in it, commits not on one line of history or a bad ``max_commits``
are refused with a message, and no train is made.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from conveyor.build import history
from conveyor.domain import bisection
from conveyor.domain.manifest import ENV_NAME_RE, ManifestError, loads_toml, parse_manifest
from conveyor.services.schemas import Train, TrainCommit, TrainCommitIn, TrainCulprit, TrainRef, TrainStep
from conveyor.services.state import ControlPlane
from conveyor.store import repo
from conveyor.store import trains as rows
from conveyor.store.repo import NotFound


def max_commits_of(manifest_text: str | None, env: str, sha: str) -> int:
    """``[deploy] max_commits`` (or ``[env.X]``'s) of the newest commit's conveyor.toml; the default without one."""
    if manifest_text is None:
        return bisection.DEFAULT_MAX_COMMITS
    source = f"conveyor.toml of commit {sha[:12]}"
    try:
        manifest = parse_manifest(loads_toml(manifest_text, source=source), source=source)
    except ManifestError as exc:
        raise ValueError(str(exc)) from None
    return bisection.check_max_commits(manifest.environment(env).max_commits)


def enqueue(cp: ControlPlane, app: str, repo_url: str, commits: list[TrainCommitIn], trigger: str = "api",
            actor: str = "", origin: str = "", env: str = "production") -> list[Train]:
    """Add new commits (oldest first) to ``app``'s trains for ``env``; the trains they went into.

    Commits some train of the environment already holds are skipped (a redelivered push adds nothing)."""
    if not ENV_NAME_RE.match(env):
        raise ValueError(f"environment name {env!r} is invalid: use lower-case letters, digits and '-'")
    if not commits:
        raise ValueError("give at least one commit")
    with cp.engine.connect() as conn:
        repo.get_app(conn, app)  # an unknown app: 404 before any git work
    try:
        line = history.inspect(cp.settings.cache_dir, repo_url.strip(), [c.sha for c in commits])
    except history.Missing as exc:
        raise NotFound(str(exc)) from None
    newest = str(line.commits[-1].sha)
    max_commits = max_commits_of(line.manifest, env, newest)
    touched: list[int] = []
    with cp.engine.begin() as conn:
        app_row = repo.get_app(conn, app)
        env_row = repo.get_env(conn, app_row["id"], env, create=True)
        repo.lock_env(conn, env_row["id"])  # two pushes at once: one collecting train, no lost commit
        known = rows.known_shas(conn, env_row["id"])
        new = [{"sha": c.sha, "time": c.time, "author": c.author, "message": c.message}
               for c in line.commits if c.sha not in known]
        now = cp.clock()
        collecting = rows.collecting(conn, env_row["id"], repo_url.strip())
        room = collecting["max_commits"] - len(collecting["commits"]) if collecting else 0
        sizes = bisection.batches(len(new), room, max_commits)
        if sizes[0] and collecting is not None:
            rows.set_commits(conn, collecting["id"], collecting["commits"] + new[:sizes[0]])
            touched.append(collecting["id"])
        start = sizes[0]
        for size in sizes[1:]:
            touched.append(rows.insert_train(conn, env_row["id"], repo_url.strip(), new[start:start + size],
                                             max_commits, trigger, actor, now))
            start += size
        if new:
            repo.record_event(
                conn, "train_queued",
                f"{len(new)} commit(s) queued for {app}/{env} by {actor or 'someone'} ({trigger}): "
                f"train(s) {', '.join(str(t) for t in touched)}",
                app=app, env=env, actor=actor, origin=origin,
                data={"trains": touched, "commits": [c["sha"] for c in new], "trigger": trigger,
                      "skipped": len(line.commits) - len(new)},
            )
        views = [view(conn, t) for t in touched]
    cp.notifier.poke("trains")
    return views


def is_revert(train: dict[str, Any], step: dict[str, Any]) -> bool:
    """The step tries the train's newest commit with its culprit reverted (``bisection.ShipWithout``)."""
    culprit = train["culprit"]
    return culprit is not None and step["id"] == culprit.get("revert_step")


# --- reading -----------------------------------------------------------------------


def _status(train: dict[str, Any], position: int) -> str:
    culprit = train["culprit"]
    if train["state"] == "collecting":
        return "waiting"
    if culprit is not None and position == culprit["position"]:
        return "culprit"  # never "shipped": a reverted image of a later commit leaves it out
    if position <= train["shipped"]:
        return "shipped"
    if culprit is not None and position > culprit["position"]:
        return "in train" if train["state"] == "running" else "blocked"
    return "in train" if train["state"] == "running" else "not shipped"


def _culprit(train: dict[str, Any]) -> TrainCulprit | None:
    c = train["culprit"]
    if c is None:
        return None
    commit = train["commits"][c["position"]]
    revert = c.get("revert") or {}
    return TrainCulprit(position=c["position"], sha=commit["sha"], author=commit.get("author"),
                        message=commit.get("message"), outcome=c["outcome"], verdict=c["verdict"],
                        deployment_id=c.get("deployment_id"), revert=revert.get("outcome"),
                        revert_reason=revert.get("reason") or "")


def view(conn: Connection, train_id: int) -> Train:
    t = rows.get(conn, train_id)
    steps = rows.steps(conn, train_id)
    commits = t["commits"]
    return Train(
        id=t["id"], app=t["app"], env=t["env"], repo=t["repo_url"], state=t["state"], trigger=t["trigger"],
        max_commits=t["max_commits"],
        commits=[TrainCommit(position=i, sha=c["sha"], author=c.get("author"), message=c.get("message"),
                             time=c.get("time"), status=_status(t, i)) for i, c in enumerate(commits)],
        shipped=t["shipped"], shipped_sha=commits[t["shipped"]]["sha"] if t["shipped"] >= 0 else None,
        culprit=_culprit(t), reason=t["reason"],
        canaries=sum(1 for s in steps if s["deployment_id"] is not None),
        steps=[TrainStep(position=s["position"], sha=commits[s["position"]]["sha"], reverted=is_revert(t, s),
                         build_id=s["build_id"],
                         image=s["image_digest"], deployment_id=s["deployment_id"], outcome=s["outcome"],
                         reason=s["reason"], created_at=s["created_at"], finished_at=s["finished_at"])
               for s in steps],
        created_by=t["created_by"], created_at=t["created_at"], started_at=t["started_at"],
        finished_at=t["finished_at"],
    )


def read(cp: ControlPlane, train_id: int) -> Train:
    with cp.engine.connect() as conn:
        return view(conn, train_id)


def list_for_app(cp: ControlPlane, app: str, env: str | None = None, limit: int = 50) -> list[Train]:
    """An app's trains, newest first."""
    with cp.engine.connect() as conn:
        app_row = repo.get_app(conn, app)
        return [view(conn, t["id"]) for t in rows.of_app(conn, app_row["id"], env, limit)]


def ref_of_deployment(conn: Connection, dep_id: int) -> TrainRef | None:
    """The train a deployment is a canary of (for the deployment's page and `deployments show`)."""
    step = rows.step_of_deployment(conn, dep_id)
    if step is None:
        return None
    t = rows.get(conn, step["train_id"])
    return TrainRef(id=t["id"], state=t["state"], position=step["position"],
                    sha=t["commits"][step["position"]]["sha"], reverted=is_revert(t, step), outcome=step["outcome"],
                    culprit=_culprit(t))
