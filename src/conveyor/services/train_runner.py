"""The train runner: a level-triggered loop that moves every deploy train one step at a time.

Like the orchestrator, it reads everything from SQL on each pass, asks the pure
policy (``domain.bisection.decide``) what to do, applies that one action and
records it in the same transaction, so killing it at any line loses nothing:
the next pass (in this process or after a restart) recomputes the same action.

What it never does itself: judge or deploy. A try of a commit is a normal git
build (``services.builds.submit``) followed by a normal canary deployment of
its image, queued on the environment's deployment queue
(``services.deployments.queue_deploy``); the orchestrator runs it with the
app's canary steps and judges, promotes it when it passes (so the good prefix
ships as the bisection goes) and rolls it back when it fails. One train runs
per environment, one step at a time, and a collecting train starts only when
the environment has no open deployment: never two canaries of one environment.

Only the orchestrator's leader runs trains (several control planes may share
the database).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy import Connection

from conveyor.build.queue import BuildRequest
from conveyor.domain import bisection
from conveyor.services import builds, deployments, locks
from conveyor.services.state import ControlPlane
from conveyor.services.trains import is_revert
from conveyor.store import builds as build_rows
from conveyor.store import deployments as deployment_rows
from conveyor.store import repo
from conveyor.store import trains as rows
from conveyor.store.repo import Conflict

log = logging.getLogger("conveyor.trains")

#: A build the control plane lost in a restart is tried again, not blamed on its commit.
LOST_BUILD = "interrupted by a control-plane restart"


def outcome_of_deployment(dep: dict[str, Any]) -> tuple[str | None, str]:
    """A canary deployment's state → (bisection outcome or None while it runs, reason)."""
    state = dep["state"]
    if state == "succeeded":
        return "pass", "canary passed and was promoted"
    if state in ("rolled_back", "failed"):
        return "fail", dep["reason"] or state
    if state == "cancelled":
        return "inconclusive", dep["reason"] or "cancelled"
    if state == "paused":
        return "inconclusive", f"canary paused: {dep['reason'] or 'inconclusive verdict'} (aborted by the train)"
    return None, ""


class TrainRunner:
    def __init__(self, cp: ControlPlane, interval: float = 0.5) -> None:
        self.cp = cp
        self.interval = interval
        self._held: dict[int, str] = {}  # train id → why it waits (said once)

    async def run(self) -> None:
        while True:
            try:
                orch = self.cp.orchestrator
                if orch is None or orch.leader:
                    if await self.tick():
                        await asyncio.sleep(0.02)
                        continue  # something moved: look again at once
            except asyncio.CancelledError:
                raise
            except Exception:  # one bad pass must not stop every train
                log.exception("train runner pass failed; retrying")
            await self.cp.notifier.wait("trains", self.interval)

    async def tick(self) -> bool:
        """One pass over the open trains, the oldest of each environment only. True if anything changed."""
        with self.cp.engine.connect() as conn:
            open_trains = rows.open_trains(conn)
        moved = False
        served: set[int] = set()
        for train in open_trains:
            if train["env_id"] in served:
                continue
            served.add(train["env_id"])
            try:
                moved |= await self._drive(train)
            except Exception:
                log.exception("train %s failed this pass; the others go on", train["id"])
        if moved:
            self.cp.notifier.poke("orchestrator", "deployments")
        return moved

    async def _drive(self, train: dict[str, Any]) -> bool:
        if train["state"] == "collecting":
            with self.cp.engine.begin() as conn:
                if deployment_rows.open_in_env(conn, train["env_id"]):
                    return False  # commits keep riding into this train until the deployment ends
                try:  # a train is an automatic deploy: a lock or a freeze window holds it (it keeps collecting)
                    locks.check_in(conn, train["app"], train["env"], self.cp.clock(), automatic=True, force=False)
                except locks.Locked as held:
                    self._note_held(conn, train, str(held))
                    return False
                started = rows.advance(conn, train["id"], "collecting", {"state": "running", "started_at": self.cp.clock()})
                if started:
                    repo.record_event(conn, "train_started", f"train {train['id']} of {len(train['commits'])} "
                                      f"commit(s) started", app=train["app"], env=train["env"], actor="conveyor",
                                      data={"train": train["id"], "commits": [c["sha"] for c in train["commits"]]})
                return started
        with self.cp.engine.connect() as conn:
            steps = rows.steps(conn, train["id"])
        pending = next((s for s in steps if s["outcome"] is None), None)
        if pending is not None:
            return await self._advance_step(train, pending)
        results = tuple(bisection.Result(s["position"], s["outcome"], s["reason"], reverted=is_revert(train, s))
                        for s in steps if s["outcome"] in bisection.OUTCOMES)
        action = bisection.decide(bisection.Train(len(train["commits"]), results))
        with self.cp.engine.begin() as conn:
            return self._apply(conn, train, steps, action)

    def _note_held(self, conn: Connection, train: dict[str, Any], why: str) -> None:
        """Say once (per reason) that a train waits for a lock or a freeze window."""
        if self._held.get(train["id"]) == why:
            return
        self._held[train["id"]] = why
        repo.record_event(conn, "train_held", f"train {train['id']} waits: {why}", app=train["app"], env=train["env"],
                          actor="conveyor", data={"train": train["id"], "reason": why})

    # -- one action ----------------------------------------------------------------

    def _apply(self, conn: Connection, train: dict[str, Any], steps: list[dict[str, Any]],
               action: bisection.Action) -> bool:
        tid, commits, now = train["id"], train["commits"], self.cp.clock()
        names = {"app": train["app"], "env": train["env"], "actor": "conveyor"}
        if isinstance(action, bisection.Canary):
            if not rows.advance(conn, tid, "running", {"state": "running"}):  # still running: one pass wins
                return False
            rows.add_step(conn, tid, action.index, now)
            sha = commits[action.index]["sha"]
            what = "the whole batch" if action.index == len(commits) - 1 and not steps else "bisecting"
            repo.record_event(conn, "train_try", f"train {tid}: trying commit {sha[:12]} "
                              f"(#{action.index + 1} of {len(commits)}, {what})", **names,
                              data={"train": tid, "position": action.index, "sha": sha})
            return True
        if isinstance(action, bisection.ShipWithout):
            return self._ship_without(conn, train, steps, action)
        canaries = sum(1 for s in steps if s["deployment_id"] is not None)
        shipped_sha = commits[action.shipped]["sha"] if action.shipped >= 0 else None
        if isinstance(action, bisection.Done):
            if rows.advance(conn, tid, "running", {"state": "shipped", "shipped": action.shipped, "finished_at": now}):
                repo.record_event(conn, "train_shipped", f"train {tid}: all {len(commits)} commit(s) shipped "
                                  f"({canaries} canary)", **names,
                                  data={"train": tid, "shipped": shipped_sha, "canaries": canaries})
            return True
        if isinstance(action, bisection.Culprit):
            culprit = {**(train["culprit"] or {}), **self._culprit_row(steps, action.index, action.outcome,
                                                                       action.reason)}
            commit = commits[action.index]
            later = [c["sha"] for c in commits[action.index + 1:]]
            without = action.without
            reason = ""
            if without is not None:
                culprit["revert"] = {"outcome": without.outcome, "reason": without.reason}
            if action.rest_shipped:
                state, shipped, blocked = "shipped", len(commits) - 1, []
                shipped_sha = commits[-1]["sha"]
                told = (f"shipped every other commit ({action.shipped + 1} before it, {len(later)} after it through "
                        f"{shipped_sha[:12]} built with the culprit reverted); the culprit is not live")
            else:
                state, shipped, blocked = "blocked", action.shipped, later
                if without is not None:
                    short = ", ".join(s[:12] for s in later)
                    reason = (f"the culprit's revert conflicts with later commits: {short} stay blocked until a fix "
                              f"is pushed ({without.reason})" if "conflicts" in without.reason else
                              f"the newest commit with the culprit reverted could not be shipped ({without.outcome}: "
                              f"{without.reason}): {short} stay blocked until a fix is pushed")
                told = (f"shipped {'up to ' + shipped_sha[:12] if shipped_sha else 'nothing'}, "
                        f"{len(blocked)} later commit(s) blocked until a fix" + (f": {reason}" if reason else ""))
            if rows.advance(conn, tid, "running", {"state": state, "culprit": culprit, "shipped": shipped,
                                                   "reason": reason, "finished_at": now}):
                repo.record_event(
                    conn, "train_culprit",
                    f"train {tid}: commit {commit['sha'][:12]} ({commit.get('message') or 'no message'}) is the "
                    f"culprit: {action.outcome}: {action.reason}; {told}; {canaries} canaries",
                    **names,
                    data={"train": tid, "culprit": {**commit, **culprit}, "shipped": shipped_sha, "blocked": blocked,
                          "shipped_without_culprit": later if action.rest_shipped else [], "canaries": canaries},
                )
            return True
        assert isinstance(action, bisection.Halt)
        values: dict[str, Any] = {"state": "halted", "reason": action.reason, "shipped": action.shipped,
                                  "finished_at": now}
        reverted = [s for s in steps if is_revert(train, s) and s["outcome"] is not None]
        if reverted:  # the culprit is known; its reverted try is why the train halts
            values["culprit"] = {**train["culprit"],
                                 "revert": {"outcome": reverted[-1]["outcome"], "reason": reverted[-1]["reason"]}}
        if rows.advance(conn, tid, "running", values):
            repo.record_event(conn, "train_halted", f"train {tid} halted: {action.reason}", **names,
                              data={"train": tid, "shipped": shipped_sha, "low": action.low, "high": action.high})
        return True

    @staticmethod
    def _culprit_row(steps: list[dict[str, Any]], index: int, outcome: str, reason: str) -> dict[str, Any]:
        own = next(s for s in steps if s["position"] == index and s["outcome"] == outcome)
        return {"position": index, "outcome": outcome, "verdict": reason, "deployment_id": own["deployment_id"],
                "build_id": own["build_id"]}

    def _ship_without(self, conn: Connection, train: dict[str, Any], steps: list[dict[str, Any]],
                      action: bisection.ShipWithout) -> bool:
        """Record the culprit (the train's reports name it from now on) and open the try of the newest commit
        with the culprit reverted; the step's id goes in the culprit row, so a restart knows which try it is."""
        tid, commits = train["id"], train["commits"]
        culprit = self._culprit_row(steps, action.culprit, action.outcome, action.reason)
        if not rows.advance(conn, tid, "running", {"culprit": culprit}):
            return False
        step_id = rows.add_step(conn, tid, action.head, self.cp.clock())
        rows.advance(conn, tid, "running", {"culprit": {**culprit, "revert_step": step_id}})
        bad, head = commits[action.culprit]["sha"], commits[action.head]["sha"]
        repo.record_event(conn, "train_try", f"train {tid}: commit {bad[:12]} is the culprit ({action.reason}); "
                          f"trying {head[:12]} with it reverted to ship the {action.head - action.culprit} commit(s) "
                          f"after it", app=train["app"], env=train["env"], actor="conveyor",
                          data={"train": tid, "position": action.head, "sha": head, "reverted": bad})
        return True

    # -- one try: build, then canary -----------------------------------------------

    async def _advance_step(self, train: dict[str, Any], step: dict[str, Any]) -> bool:
        sha = train["commits"][step["position"]]["sha"]
        if step["build_id"] is None:
            app_id = builds.app_id(self.cp, train["app"])
            revert = train["commits"][train["culprit"]["position"]]["sha"] if is_revert(train, step) else None
            source = {"kind": "git", "git": train["repo_url"], "ref": sha, "app": train["app"], "train": train["id"]}
            if revert is not None:
                source["revert"] = revert
            build = builds.submit(
                self.cp, app_id,
                BuildRequest(git_url=train["repo_url"], git_ref=sha, git_revert=revert, app=train["app"]),
                source, f"train {train['id']}", None,
            )
            with self.cp.engine.begin() as conn:  # killed before this: the next pass builds again (harmless)
                rows.update_step(conn, step["id"], {"build_id": build["id"]})
            return True
        with self.cp.engine.begin() as conn:
            if step["deployment_id"] is None:
                return self._after_build(conn, train, step)
            dep = deployments.get_deployment(conn, step["deployment_id"])
            outcome, reason = outcome_of_deployment(dep)
            if outcome is None:
                return False
            if dep["state"] == "paused":  # inconclusive: do not leave the environment waiting for a person
                deployments.command(conn, dep["id"], "abort", actor=f"train {train['id']}")
            rows.update_step(conn, step["id"], {"outcome": outcome, "reason": reason, "finished_at": self.cp.clock()})
            if outcome == "pass":
                rows.advance(conn, train["id"], "running", {"shipped": max(train["shipped"], step["position"])})
            repo.record_event(conn, "train_result", f"train {train['id']}: commit {sha[:12]}: {outcome} ({reason})",
                              app=train["app"], env=train["env"], actor="conveyor",
                              data={"train": train["id"], "position": step["position"], "sha": sha,
                                    "outcome": outcome, "deployment": dep["id"]})
            return True

    def _after_build(self, conn: Connection, train: dict[str, Any], step: dict[str, Any]) -> bool:
        build = build_rows.get(conn, step["build_id"])
        if build is None or build["state"] in ("queued", "running"):
            return False
        now = self.cp.clock()
        if build["state"] == "failed":
            if LOST_BUILD in (build["error"] or ""):
                rows.update_step(conn, step["id"], {"build_id": None})  # build it again
                return True
            rows.update_step(conn, step["id"], {"outcome": "build_failed", "reason": build["error"] or "build failed",
                                                "finished_at": now})
            return True
        app = repo.get_app(conn, train["app"])
        image = build_rows.image_of_app(conn, app["id"], build["image_digest"])
        if image is not None and image["test_status"] == "failed":
            rows.update_step(conn, step["id"], {"image_digest": build["image_digest"], "outcome": "test_failed",
                                                "reason": "the image failed its [test] command (see its build log)",
                                                "finished_at": now})
            return True
        try:
            dep = deployments.queue_deploy(conn, train["app"], train["env"], build["image_digest"], strategy="canary",
                                           actor=f"train {train['id']}", origin="train")
        except (ValueError, Conflict) as exc:
            rows.update_step(conn, step["id"], {"outcome": "inconclusive", "reason": f"cannot deploy: {exc}",
                                                "finished_at": now})
            return True
        rows.update_step(conn, step["id"], {"image_digest": build["image_digest"], "deployment_id": dep["id"]})
        return True


async def start(cp: ControlPlane) -> None:
    """Start-up hook: the train runner."""
    cp.tasks.append(asyncio.create_task(TrainRunner(cp).run(), name="trains"))
