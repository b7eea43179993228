"""The orchestrator: a level-triggered loop that drives deployments.

Each tick reads, per environment, the deployments, the desired instances and
what agents report; asks the pure state machine (``domain.deploy_machine``) what
to do; and applies the answer in one transaction. Kill it at any line and the
next tick (in this process or another replica) computes the same actions from
the same rows. Nothing is remembered in memory between ticks.

Ticks happen every ``interval`` seconds and whenever something pokes the
``orchestrator`` topic (an agent report, a new deployment), so readiness turns
into a traffic switch within milliseconds.

One pass drives every environment, so each environment gets its own
transaction and a failure in one (a judge that raises on data it cannot
handle, a bug) is logged and costs that environment one pass, never the others.
A judge that raises is caught closer still (:meth:`Orchestrator._judge`): its
canary pauses with the error as its verdict, and ``abort`` keeps working.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import secrets
import socket
import time
from dataclasses import dataclass, replace
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Engine

from conveyor.deploy.notify import Notifier
from conveyor.domain import deploy_machine as dm
from conveyor.domain import config_vars as config_vars_rules
from conveyor.domain import autoscale, gate, healing, processes, shares
from conveyor.domain.manifest import DEFAULT_BAKE, DEFAULT_DRAIN_TIMEOUT
from conveyor.domain.placement import parse_selector, place
from conveyor.domain.wire import InstanceState
from conveyor.domain.strategies import analysis_request
from conveyor.store import autoscalers, config_vars, deployments, hosts, instance_counts, instances, locks, repo, series

log = logging.getLogger("conveyor.orchestrator")

#: Control-plane replicas on one database: only the holder of this lease runs the loop. A holder
#: renews it every tick; if it dies, another replica takes over once the lease has expired.
LEASE = "orchestrator"
LEASE_TTL = 5.0
#: A one-off command (`conveyor run`) is stopped after this long whatever its client asked (24 h).
RUN_MAX_AGE = 24 * 3600.0

#: Hook for analysis: (connection, environment id, deployment, now) → verdict dict or None.
VerdictSource = Callable[[Connection, int, dm.Deployment, float], dict[str, Any] | None]
#: Hook for pipelines (``services.pipelines.reconcile``): (connection, now) → the topics to poke.
PromotionSource = Callable[[Connection, float], set[str]]

#: The ``judge`` of a verdict row recording that the analysis itself raised.
JUDGE_ERROR = "error"
#: A judge that keeps raising is recorded again at most this often (seconds), not on every tick.
JUDGE_ERROR_EVERY = 30.0


#: At the end of an analysed window the verdict waits, at most this long (seconds), for the metrics
#: of the window's last second: on a loaded machine a scrape can come late (or time out and be
#: covered by the next), and a verdict taken before it sees a step short of its traffic
#: ("Not enough traffic: the canary served 14 requests in 10 s" while clients saw 300).
METRICS_GRACE = 10.0
#: Autoscalers decide once a second per environment (the orchestrator ticks every 0.25 s), and store
#: a decision that did not change the count at most this often (`conveyor autoscale APP` shows it).
AUTOSCALE_EVERY = 1.0
AUTOSCALE_RECORD_EVERY = 5.0
#: Instance counts are sampled this often per environment (a row is written only on a change).
COUNTS_EVERY = 1.0


def metrics_pending(window_end: float, newest_point: float | None, now: float) -> bool:
    """Pure: should a verdict due at ``window_end`` wait for the metrics of the window's last second?

    A stored point at second ``t`` was written by a scrape at ``t`` or later, so a point at or
    after ``window_end`` proves a scrape after the window ended. With no such point the verdict
    waits, for at most ``METRICS_GRACE`` (an app with no traffic at all has no new points).
    """
    if now < window_end or now >= window_end + METRICS_GRACE:
        return False
    return newest_point is None or newest_point < window_end


def judge_error_verdict(exc: BaseException) -> dict[str, Any]:
    """The verdict of an analysis that raised: inconclusive, so a canary step pauses for a human.

    Not "fail": a judge's bug must not roll back a healthy release (that teaches users to switch
    analysis off), and not "continue": a canary nobody judges must not be promoted by the clock.
    A paused canary keeps its traffic and can be resumed, promoted or aborted; in the bake
    (the release is already live) the error is recorded and the bake goes on.
    """
    detail = f"{type(exc).__name__}: {exc}"[:300]
    return {
        "outcome": "inconclusive",
        "reason": f"the analysis raised {detail} (a bug or data the judges cannot handle); "
        "not judged, so paused: resume, promote or abort by hand",
        "numbers": {},
    }


@dataclass(frozen=True)
class EnvFacts:
    """What a few queries over every environment say of one at the start of a tick (see
    :func:`idle_steps`): its current release and routed releases, and its instance rows as
    (release, host, draining)."""

    current: int | None = None
    routed: frozenset[int] = frozenset()
    instances: tuple[tuple[int, str, bool], ...] = ()
    restarting: bool = False
    scaled: bool = False
    autoscaled: bool = False


#: The steps of an environment's pass between deployments, in the order they run.
IDLE_STEPS = ("retire", "reap", "heal", "restart", "autoscale", "scale")

#: Seconds between passes that run every step in every environment, whatever the facts say (the
#: resync of Kubernetes' informers): the steps are level-triggered, and what the facts cannot see
#: (a release short of its counts after a lost host's replacements found no room) is made good
#: within this period. 1 tick in 20 at the default interval.
RESYNC = 5.0
#: Wall-clock seconds a tick may spend on full passes once one is done: the environments still due
#: wait for the next tick, the longest-waiting first. With hundreds of environments a full pass
#: over all of them held one tick for seconds, and every change (a scale-down, a deployment's next
#: step) waited behind it (the 500-host benchmark: a scale-down at every router 5.6 → 10 s p50);
#: spread over ticks, a large fleet's resync period stretches instead.
RESYNC_BUDGET = 0.05


def idle_steps(facts: EnvFacts, alive: set[str], drained: set[str], heal: bool) -> frozenset[str]:
    """Pure: the between-deployments steps that may have work in an environment, from the facts
    read for every environment at once. Each step left out would find nothing to do:

    * ``retire``: only the current and routed releases have instances (they are always kept);
    * ``reap``: no instance is draining;
    * ``heal`` (only once hosts may be judged lost: ``heal``): every serving instance is on a live host;
    * ``restart``, ``autoscale``: no rolling restart or autoscaler;
    * ``scale``: no `conveyor scale` count and no serving instance on a drained host (``_scale`` holds
      the current release at its counts, which moves instances off drained hosts).

    What the facts cannot show (a release short of its counts) the periodic full pass (``RESYNC``) finds.

    Each step is level-triggered and reads its own rows again when it runs, so facts gone stale
    since they were read cost at most one tick (whoever changes them pokes the orchestrator).
    """
    out: set[str] = set()
    keep = facts.routed | ({facts.current} if facts.current is not None else set())
    if any(release not in keep for release, _, _ in facts.instances):
        out.add("retire")
    if any(draining for _, _, draining in facts.instances):
        out.add("reap")
    if heal and any(not draining and host not in alive for _, host, draining in facts.instances):
        out.add("heal")
    if facts.restarting:
        out.add("restart")
    if facts.autoscaled:
        out.add("autoscale")
    if facts.scaled or (drained and any(not draining and host in drained for _, host, draining in facts.instances)):
        out.add("scale")
    return frozenset(out)


class Orchestrator:
    def __init__(
        self,
        engine: Engine,
        notifier: Notifier,
        *,
        interval: float = 0.25,
        clock: Callable[[], float] = time.time,
        verdicts: VerdictSource | None = None,
        identity: str | None = None,
        started_at: float | None = None,
        promotions: PromotionSource | None = None,
    ) -> None:
        self.engine = engine
        #: one level-triggered pass over the pipelines each tick, after the environments' passes
        self.promotions = promotions
        self.notifier = notifier
        self.interval = interval
        self.clock = clock
        #: When this control plane started, on ``clock``: hosts get a grace period from it before
        #: they can be judged lost (``domain.healing.lost_cutoff``).
        self.started_at = clock() if started_at is None else started_at
        if verdicts is None:
            from conveyor.deploy.analysis_source import verdict_for

            verdicts = verdict_for
        self.verdicts = verdicts
        self.ticks = 0
        #: environment → when its last full pass ran (``RESYNC``); none at first (a restart after a
        #: crash, or a new leader: every environment is due)
        self._resynced: dict[int, float] = {}
        #: Who this replica is, for the lease. The server passes host:address:port, so a restarted
        #: control plane reclaims its own lease at once instead of waiting for it to expire.
        self.identity = identity or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.leader = False
        #: (env id, release) → (why its instances could not all be placed, since when); see _unplaced
        self.unplaced: dict[tuple[int, int], tuple[str, float]] = {}
        #: the autoscalers' memory (recommendations in the stabilisation window, last steps) and pace
        self.autoscale_state: dict[tuple[int, str], autoscale.State] = {}
        self._autoscaled_at: dict[int, float] = {}
        #: the instance counts last recorded per environment (process → (ready, count)), and when sampled
        self._counted: dict[int, dict[str, tuple[int, int]]] = {}
        self._counted_at: dict[int, float] = {}

    async def run(self) -> None:
        try:
            while True:
                seen = self.notifier.generation("orchestrator")
                try:
                    touched = await asyncio.to_thread(self.tick)
                    if touched:
                        self.notifier.poke(*touched)
                except asyncio.CancelledError:
                    raise
                except Exception:  # one bad tick must not stop deployments everywhere
                    log.exception("orchestrator tick failed; retrying")
                await self.notifier.wait("orchestrator", self.interval, since=seen)
        finally:
            if self.leader:
                with self.engine.begin() as conn:
                    repo.release_lease(conn, LEASE, self.identity)
                self.leader = False

    # -- one pass ---------------------------------------------------------------

    def tick(self) -> set[str]:
        """One reconcile pass over every environment (if this replica holds the lease). Returns the topics to poke."""
        self.ticks += 1
        with self.engine.begin() as conn:
            leader = repo.take_lease(conn, LEASE, self.identity, self.clock(), LEASE_TTL)
        if leader != self.leader:
            self._counted.clear()  # another replica may have recorded counts meanwhile
            self._resynced.clear()  # and acted meanwhile: every environment gets a full pass
            log.info("orchestrator %s: %s", self.identity, "leading" if leader else "standing by (another replica leads)")
            self.leader = leader
        if not leader:
            return set()
        touched: set[str] = set()
        with self.engine.begin() as conn:
            stale_runs = instances.runs_before(conn, self.clock() - RUN_MAX_AGE)
            if stale_runs:  # a `conveyor run` whose client went away: no run outlives the longest timeout
                instances.delete_ids(conn, stale_runs)
                repo.bump_counter(conn, "desired")
                touched.add("desired")
            driven = set(deployments.open_env_ids(conn))
            facts = self._facts(conn)
            now = self.clock()
            alive = set(hosts.alive_names(conn, now))
            drained = hosts.drained_names(conn)
        heal = healing.lost_cutoff(now, self.started_at) > 0
        self._resynced = {e: t for e, t in self._resynced.items() if e in facts}  # deleted ones
        due = sorted((e for e in facts if e not in driven and now - self._resynced.get(e, -math.inf) >= RESYNC),
                     key=lambda e: self._resynced.get(e, -math.inf))
        for env_id in (e for e in facts if e in driven):  # in the environments' order
            touched |= self._pass(env_id, True)
        full: set[int] = set()
        started = time.monotonic()
        for env_id in due:  # full passes, the longest-waiting first, within RESYNC_BUDGET (at least one)
            if full and time.monotonic() - started > RESYNC_BUDGET:
                break  # the rest stay due for the next tick
            touched |= self._pass(env_id, False)
            self._resynced[env_id] = now
            full.add(env_id)
        for env_id, env_facts in facts.items():  # the others: only the steps their facts say may have work
            if env_id not in driven and env_id not in full and (steps := idle_steps(env_facts, alive, drained, heal)):
                touched |= self._pass(env_id, False, steps)
        if self.promotions is not None:
            try:
                with self.engine.begin() as conn:
                    touched |= self.promotions(conn, self.clock())
            except Exception:
                log.exception("orchestrator: the pipelines' pass failed (rolled back); the next tick retries")
        return touched

    @staticmethod
    def _facts(conn: Connection) -> dict[int, EnvFacts]:
        """Every environment's :class:`EnvFacts`, from one query per table."""
        rows: dict[int, list[tuple[int, str, bool]]] = {}
        for r in instances.placements(conn):
            rows.setdefault(r.env_id, []).append((r.release, r.host, r.draining_since is not None))
        restarting = config_vars.env_ids_restarting(conn)
        scaled = config_vars.env_ids_scaled(conn)
        autoscaled = autoscalers.env_ids(conn)
        return {
            env["id"]: EnvFacts(env["current_release"], frozenset(repo.routes_of(env)), tuple(rows.get(env["id"], ())),
                                env["id"] in restarting, env["id"] in scaled, env["id"] in autoscaled)
            for env in repo.env_states(conn)
        }

    def _pass(self, env_id: int, driven: bool, steps: frozenset[str] | None = None) -> set[str]:
        """One environment's share of a tick, in its own transaction: if it fails, it is rolled back
        and logged, and the other environments are driven all the same (the next tick retries).
        Between deployments only ``steps`` run (``idle_steps``: the others have nothing to do)."""
        run = frozenset(IDLE_STEPS) if steps is None else steps
        try:
            with self.engine.begin() as conn:
                touched: set[str] = set()
                if driven:  # the autoscaler decides the total; the deployment's releases share it
                    touched |= self._autoscale(conn, env_id)
                    touched |= self._follow(conn, env_id)
                    touched |= self._drive(conn, env_id)
                    touched |= self._share(conn, env_id)
                if driven or "retire" in run:
                    touched |= self._retire(conn, env_id)
                if driven or "reap" in run:
                    touched |= self._reap_drained(conn, env_id)
                if not driven:  # a running deployment owns its environment's counts (but for _share's)
                    if "heal" in run:
                        touched |= self._heal(conn, env_id)
                    if "restart" in run:
                        touched |= self._restart(conn, env_id)
                    if "autoscale" in run:
                        touched |= self._autoscale(conn, env_id)
                    if "scale" in run:
                        touched |= self._scale(conn, env_id)
                # an idle environment is sampled by the full pass (RESYNC): its counts change only
                # through a step that runs a pass, or an instance dying, seen within RESYNC
                self._sample_counts(conn, env_id)
                return touched
        except Exception:
            log.exception("orchestrator: environment %s failed this pass (rolled back); the others go on", env_id)
            self._counted.pop(env_id, None)  # what it recorded was rolled back too: read it again
            return set()

    def _drive(self, conn: Connection, env_id: int) -> set[str]:
        touched: set[str] = set()
        for _ in range(5):  # a finished deployment lets the next queued one start in the same tick
            machines = [deployments.machine(r) for r in deployments.open_in_env(conn, env_id)]
            active = next((m for m in machines if m.state in dm.ACTIVE), None)
            now = self.clock()
            if active is None:
                nxt = dm.next_to_start(machines)
                if nxt is None:
                    return touched
                deployments.mark_started(conn, nxt.id, now)
                touched |= self._apply(conn, env_id, nxt, dm.start(nxt, now))
                continue
            world = self._observe(conn, env_id, now)
            unplaced = self.unplaced.get((env_id, active.to_release))
            if unplaced is not None:
                world = replace(world, unplaced=unplaced[0], unplaced_since=unplaced[1])
            verdict = None if self._metrics_pending(conn, env_id, active, now) else self._judge(conn, env_id, active, now)
            if verdict is not None:
                world = replace(world, verdict=verdict)
            result = dm.step(active, world)
            touched |= self._apply(conn, env_id, active, result)
            if not result.finished:
                return touched
        return touched

    def _metrics_pending(self, conn: Connection, env_id: int, dep: dm.Deployment, now: float) -> bool:
        """True while an analysed window has ended but its last second's metrics are not stored yet."""
        req = analysis_request(dep)
        if req is None or req.phase != "step":
            return False  # the bake ends by the clock; a verdict only ever stops it early
        end = req.since + req.duration
        if not end <= now < end + METRICS_GRACE:
            return False
        return metrics_pending(end, series.newest_second(conn, env_id), now)

    def _judge(self, conn: Connection, env_id: int, dep: dm.Deployment, now: float) -> dict[str, Any] | None:
        """The verdict for ``dep`` now; if the analysis raises, :func:`judge_error_verdict`, recorded.

        The analysis runs in a savepoint, so whatever it did in the database before raising (on
        PostgreSQL an error aborts the whole transaction) is undone and the pass carries on.
        """
        if self.verdicts is None:
            return None
        try:
            with conn.begin_nested():
                return self.verdicts(conn, env_id, dep, now)
        except Exception as exc:
            log.exception("analysis of deployment %s raised; pausing it with the error as its verdict", dep.id)
            verdict = judge_error_verdict(exc)
            req = analysis_request(dep)
            last = deployments.newest_verdict(conn, dep.id)
            recorded = (
                last is not None and last["judge"] == JUDGE_ERROR and last["reason"] == verdict["reason"]
                and now - last["at"] < JUDGE_ERROR_EVERY
            )
            if not recorded:
                deployments.add_verdict(conn, dep.id, now, req.step if req is not None else 0, JUDGE_ERROR,
                                        verdict["outcome"], verdict["reason"], {})
            return verdict

    def _observe(self, conn: Connection, env_id: int, now: float) -> dm.World:
        rows = instances.of_env(conn, env_id)
        status = hosts.instance_status_map(conn, now, self.started_at, on={r["host"] for r in rows})
        observed = []
        for row in rows:
            if row["draining_since"] is not None:
                continue  # on its way out: neither counted nor routed
            st = status.get(row["id"], ("", {}))[1]
            observed.append(
                dm.ObservedInstance(
                    id=row["id"],
                    release=row["release"],
                    role=row["role"],
                    state=InstanceState(st.get("state", "pending")),
                    restarts=int(st.get("restarts", 0)),
                    message=str(st.get("message", ""))[-300:],
                    process=row["process"],
                    exit_code=st.get("exit_code"),
                )
            )
        return dm.World(now=now, instances=tuple(observed), hosts_alive=hosts.alive_count(conn, now))

    # -- applying actions -----------------------------------------------------

    def _apply(self, conn: Connection, env_id: int, dep: dm.Deployment, result: dm.Step) -> set[str]:
        touched: set[str] = {"deployments"}
        now = self.clock()
        values: dict[str, Any] = {"state": result.state, "progress": result.progress}
        if result.reason is not None:
            values["reason"] = result.reason
        if result.finished:
            values["finished_at"] = now
        if result.consumed_command:
            values["command"] = None
        if not deployments.advance(conn, dep.id, dep.state, values):  # another replica moved it first: its actions win
            return set()
        app, env = repo.app_env_names(conn, env_id)
        routed_before = set(repo.routes_of(repo.env_by_id(conn, env_id)))
        if result.actions:
            touched.add("routing")  # instances or weights may have changed; the table is versioned by content
        for action in result.actions:
            match action:
                case dm.EnsureInstances(release=rel, count=count, role=role, process=process):
                    if self._ensure(conn, env_id, app, env, rel, count, role, process):
                        touched.add("desired")
                case dm.RemoveInstances(release=rel, role=role):
                    if rel not in routed_before:  # never took traffic (e.g. a failed deploy): nothing to drain
                        if instances.delete_release(conn, env_id, rel, role):
                            repo.bump_counter(conn, "desired")
                            touched.add("desired")
                    elif instances.drain_release(conn, env_id, rel, role, now):
                        touched |= {"desired", "routing"}
                case dm.SetRoutes(weights=weights):
                    repo.set_routes(conn, env_id, weights)
                    touched.add("routing")
                case dm.MakeCurrent(release=rel, previous=prev, retire_as=retire_as):
                    repo.make_current(conn, env_id, rel, now)
                    if prev is not None and prev != rel:
                        repo.set_release_status(conn, env_id, prev, "rolled_back" if dep.kind == "rollback" else retire_as,
                                                retired_at=now)
                case dm.Event(kind=kind, message=message, data=data):
                    repo.record_event(
                        conn, kind, message, app=app, env=env, actor=dep.created_by or "conveyor",
                        data={"deployment": dep.id, **data},
                    )
        if result.state in ("failed", "rolled_back") and dep.kind == "deploy":
            repo.set_release_status(conn, env_id, dep.to_release,
                                    "failed" if result.state == "failed" else "rolled_back", retired_at=now)
            self._restore_config(conn, env_id, app, env, dep, result.state, now)
        why = gate.rollback_lock(dep.id, dep.kind, result.state, dep.command, result.reason or "")
        if why is not None and locks.add_lock(conn, repo.get_app(conn, app)["id"], env, "rollback", why, "conveyor",
                                              now, dep.id):
            repo.record_event(conn, "locked", f"{app}/{env} locked: {why}", app=app, env=env, actor="conveyor",
                              data={"deployment": dep.id, "reason": why, "kind": "rollback"})
        return touched

    def _restore_config(self, conn: Connection, env_id: int, app: str, env: str, dep: dm.Deployment, outcome: str,
                        now: float) -> None:
        """The environment went back to ``dep.from_release``: so do its set config vars (``domain/config_vars``),
        or the next deploy would ship the failed release's values again. Keys only in the event."""
        if dep.from_release is None:
            return  # a first release that failed: nothing to go back to; the set vars stay for the next try
        try:
            failed = repo.get_release(conn, env_id, dep.to_release)["config"] or {}
            previous = repo.get_release(conn, env_id, dep.from_release)["config"] or {}
        except repo.NotFound:
            return  # a release row gone (or never written): nothing to restore from, and no reason to fail the pass
        if "vars" not in failed or "vars" not in previous:
            return  # releases made before config vars existed carry no snapshot
        rows, changed = config_vars_rules.revert(config_vars.snapshot(conn, env_id), list(failed["vars"]),
                                                 list(previous["vars"]))
        if not changed:
            return
        config_vars.replace_all(conn, env_id, rows, "conveyor", now)
        repo.record_event(
            conn, "config_restored",
            f"config of {app}/{env}: {', '.join(changed)} back to release {dep.from_release}'s "
            f"(release {dep.to_release} {outcome.replace('_', ' ')})",
            app=app, env=env, actor="conveyor",
            data={"deployment": dep.id, "release": dep.from_release, "from_release": dep.to_release, "keys": changed},
        )

    def _ensure(self, conn: Connection, env_id: int, app: str, env: str, release: int, count: int, role: str,
                process: str = "web") -> bool:
        """Hold ``count`` instances of the release (role, process type) off drained hosts.

        Short of it: place the missing ones (``domain/placement.py``; what cannot be placed is
        remembered with its reason, see :meth:`_unplaced`). Over: drain the extra ones, those on
        drained hosts first. Instances on a drained host are drained once ``count`` others are ready,
        so moving off a drained host never lowers what serves (start new, then drain old)."""
        now = self.clock()
        placed = instances.active_hosts(conn, env_id, release, role, process)
        drained = hosts.drained_names(conn) if placed else set()
        stuck = [iid for iid, host in placed if host in drained]
        ids = [iid for iid, host in placed if host not in drained]
        changed = False
        if len(ids) > count:
            # Draining changes the routing table, not what the agents run (yet): no desired bump.
            changed |= instances.drain_ids(conn, stuck + ids[: len(ids) - count], now)
            stuck, ids = [], ids[len(ids) - count:]
        elif len(ids) < count:
            changed |= self._add(conn, env_id, app, env, release, count - len(ids), role, process, placed, now)
        if stuck and count == 0:
            changed |= instances.drain_ids(conn, stuck, now)
        elif stuck and len(ids) >= count:
            on = {host for _, host in placed}
            if _ready(hosts.instance_status_map(conn, now, self.started_at, on), ids) >= count:
                changed |= instances.drain_ids(conn, stuck, now)
                repo.record_event(
                    conn, "instances_moved",
                    f"moved {len(stuck)} instance(s) of release {release} off drained host(s): their replacements are ready",
                    app=app, env=env, actor="conveyor", data={"release": release, "instances": stuck},
                )
        return changed

    def _add(self, conn: Connection, env_id: int, app: str, env: str, release: int, n: int, role: str,
             process: str, placed: list[tuple[str, str]], now: float) -> bool:
        """Place ``n`` new instances of a release; what cannot be placed is remembered with its reason.
        (A release without its row, as in tests that drive deployments alone, has no selector or limits.)"""
        try:
            cfg = repo.get_release(conn, env_id, release)["config"] or {}
        except repo.NotFound:
            cfg = {}
        lim = (cfg.get("process_limits") or {}).get(process) or cfg.get("limits") or {}
        spread: dict[str, int] = {}
        for _, host in placed:  # the release's instances per host: the spread counts them
            spread[host] = spread.get(host, 0) + 1
        result = place(hosts.fleet(conn, now), n, selector=parse_selector(cfg.get("hosts") or ""),
                       release_load=spread, memory=int(lim.get("memory") or 0) or None)
        self._unplaced(conn, env_id, app, env, release, "" if result.waiting else result.reason, now)
        for host in result.hosts:
            kind = "" if process == "web" else f"{process}-"
            iid = f"{app}-{env}-r{release}-{kind}{secrets.token_hex(3)}"
            instances.add(conn, iid, env_id, release, host, role, now, process)
        if result.hosts:
            repo.bump_counter(conn, "desired")
        return bool(result.hosts)

    def _unplaced(self, conn: Connection, env_id: int, app: str, env: str, release: int, reason: str,
                  now: float) -> None:
        """Remember why a release's instances could not all be placed (the deployment fails with it,
        see ``deploy_machine``), and say it in the event log once per reason."""
        key = (env_id, release)
        if not reason:
            self.unplaced.pop(key, None)
            return
        prev = self.unplaced.get(key)
        if prev is not None and prev[0] == reason:
            return
        self.unplaced[key] = (reason, now if prev is None else prev[1])
        repo.record_event(conn, "placement_short", f"release {release} of {app}/{env}: {reason}",
                          app=app, env=env, actor="conveyor", data={"release": release, "reason": reason})

    def _heal(self, conn: Connection, env_id: int) -> set[str]:
        """Replace the serving instances of a lost host on the hosts that are alive (domain/healing.py)."""
        now = self.clock()
        if healing.lost_cutoff(now, self.started_at) <= 0:  # just started: hosts have not had time to report yet
            return set()
        env = repo.env_by_id(conn, env_id)
        placed = [healing.PlacedInstance(r.id, r.release, r.role, r.host) for r in instances.serving(conn, env_id)]
        alive = hosts.alive_names(conn, now, among={i.host for i in placed})  # not every host's name, per environment
        if not alive and hosts.alive_count(conn, now):  # all of its hosts are lost, not every host: the rule needs the others
            alive = hosts.alive_names(conn, now)
        serving = healing.serving_releases(env["current_release"], repo.routes_of(env))
        lost = healing.lost_instances(placed, serving, alive)
        if not lost:
            return set()
        app, env_name = repo.app_env_names(conn, env_id)
        for release in sorted({i.release for i in lost}):
            gone = [i for i in lost if i.release == release]
            keep = sum(1 for i in placed if i.release == release and i.role == "main")
            instances.drain_ids(conn, [i.id for i in gone], now)
            self._ensure(conn, env_id, app, env_name, release, keep, "main")
            hosts_gone = ", ".join(sorted({i.host for i in gone}))
            repo.record_event(
                conn, "instances_replaced",
                f"host {hosts_gone} stopped reporting: started {len(gone)} instance(s) of release {release} elsewhere",
                app=app, env=env_name, actor="conveyor",
                data={"release": release, "hosts": sorted({i.host for i in gone}), "instances": [i.id for i in gone]},
            )
        return {"desired", "routing"}

    def _scale(self, conn: Connection, env_id: int) -> set[str]:
        """Hold the current release at its counts (``_counts``: its own, or what `conveyor scale` or the
        autoscaler set), level-triggered: more instances start, extra ones drain (the router finishes
        their requests; workers get SIGTERM), and those on drained hosts move (``_ensure``).

        Always, not only after `conveyor scale`: whatever took instances away (a lost host whose
        replacements found no room at the time, a crash of this process between two steps) is made
        good as soon as it can be placed, rather than leaving the environment short until the next
        deployment."""
        env = repo.env_by_id(conn, env_id)
        if env["current_release"] is None:
            return set()
        release = env["current_release"]
        cfg = repo.get_release(conn, env_id, release)["config"] or {}
        return self._hold(conn, env_id, release, cfg, _counts(cfg, config_vars.counts_of(conn, env_id)))

    def _hold(self, conn: Connection, env_id: int, release: int, cfg: dict[str, Any], counts: dict[str, int]) -> set[str]:
        """Hold ``release`` at ``counts`` per process type (``domain/processes.scale``), but for the
        process types a rolling restart holds (its own count: one surge)."""
        app, env_name = repo.app_env_names(conn, env_id)
        touched: set[str] = set()
        restarting = config_vars.restarts_of(conn, env_id)
        for action in processes.scale(release, {k: v for k, v in counts.items() if k not in restarting},
                                      set(cfg.get("processes") or {"web": ""})):
            if self._ensure(conn, env_id, app, env_name, action.release, action.count, action.role, action.process):
                touched |= {"desired", "routing"}
        return touched

    def _autoscale(self, conn: Connection, env_id: int) -> set[str]:
        """Once a second per environment: each autoscaled process type's count, by HPA's rule
        (``domain/autoscale.py``) on the load the routers measured; a change is written as the
        `conveyor scale` count and an event saying why. Between deployments ``_scale`` then starts or
        drains instances of the current release; during one the count is the environment's total,
        which the deployment's releases share by traffic weight (:meth:`_follow`, :meth:`_share`).
        The base is the ready web instances of every routed release (a canary, its baseline)."""
        now = self.clock()
        if now - self._autoscaled_at.get(env_id, -math.inf) < AUTOSCALE_EVERY:
            return set()
        self._autoscaled_at[env_id] = now
        rows = autoscalers.of_env(conn, env_id)
        env = repo.env_by_id(conn, env_id)
        if not rows or env["current_release"] is None:
            return set()
        release = env["current_release"]
        counts = _counts(repo.get_release(conn, env_id, release)["config"] or {}, config_vars.counts_of(conn, env_id))
        status = hosts.instance_status_map(conn, now, self.started_at)
        app, env_name = repo.app_env_names(conn, env_id)
        touched: set[str] = set()
        for row in rows:
            process = row["process"]
            policy = autoscale.Policy.from_json(row["policy"])
            key = (env_id, process)
            ready = self._serving_ready(conn, env_id, repo.routes_of(env) or {release: 100}, release, status, process)
            state = self.autoscale_state[key] = autoscale.observe(self.autoscale_state.get(key, autoscale.State()),
                                                                  ready, now)
            if not ready or not autoscale.due(policy, state, now):
                continue  # nothing serves yet (no load to read: the count holds), or a slower loop (HPA's: 15 s)
            since, until = autoscale.span(policy, state, now)
            # a scale-up also reads the last seconds (Policy.up_window), from the same rows
            tail = policy.up_window if 0 < policy.up_window < until - since else 0.0
            whole, last = series.totals(conn, env_id, since, until, tail)
            d = autoscale.decide(policy, counts.get(process, 1), _sample(whole, until - since, ready), now, state,
                                 _sample(last, tail, ready) if tail else None)
            self.autoscale_state[key] = d.state
            doc = {"current": d.current, "desired": d.desired, "recommendation": d.recommendation, "value": d.value,
                   "ready": ready, "reason": d.reason, "metric": policy.metric, "target": policy.target}
            last = row["decision"] or {}
            if d.changed or last.get("reason") != d.reason and now - (row["decided_at"] or 0) >= AUTOSCALE_RECORD_EVERY:
                autoscalers.record(conn, env_id, process, doc, now)
            if d.changed:
                config_vars.set_count(conn, env_id, process, d.desired, "autoscaler", now)
                repo.record_event(conn, "autoscaled", f"{app}/{env_name} {process} {d.reason}", app=app, env=env_name,
                                  actor="autoscaler", data={**doc, "process": process, "release": release})
                touched.add("deployments")
        return touched

    def _sample_counts(self, conn: Connection, env_id: int) -> None:
        """Once a second: record each process type's ready instances and count in force when either
        changed (``store/instance_counts``), for the metrics page's graph of instances against load.
        Every release's instances count (a canary, its baseline), but not those draining."""
        now = self.clock()
        if now - self._counted_at.get(env_id, -math.inf) < COUNTS_EVERY:
            return
        env = repo.env_by_id(conn, env_id)
        if env["current_release"] is None:
            return  # nothing deployed yet: sampled from the first pass that has a release
        self._counted_at[env_id] = now
        cfg = repo.get_release(conn, env_id, env["current_release"])["config"] or {}
        rows = instances.of_env(conn, env_id)
        # only the reports of the hosts this environment's instances are on (each is a JSON document)
        status = hosts.instance_status_map(conn, now, self.started_at, on={r["host"] for r in rows})
        counts = _counts(cfg, config_vars.counts_of(conn, env_id))
        ready = dict.fromkeys(counts, 0)
        for r in rows:
            if r["draining_since"] is None and r["role"] != dm.RELEASE_ROLE:
                ready[r["process"]] = ready.get(r["process"], 0) + _ready(status, [r["id"]])
        last = self._counted.get(env_id)
        if last is None:
            last = self._counted[env_id] = instance_counts.newest(conn, env_id)
        second = float(int(now))
        for process, n in sorted(ready.items()):
            value = (n, counts.get(process, 0))
            if last.get(process) != value:
                instance_counts.record(conn, env_id, process, second, *value)
                last[process] = value

    def _serving_ready(self, conn: Connection, env_id: int, routes: dict[int, int], release: int,
                       status: dict[str, tuple[str, dict[str, Any]]], process: str) -> int:
        """Ready instances serving ``process``'s load: for web, those of every release with traffic
        (a baseline's route is ``-release``, its instances the ``baseline`` role); workers take no
        routed traffic, so the current release's."""
        if process != "web":
            return _ready(status, instances.active_ids(conn, env_id, release, "worker", process))
        serving = [(-key, "baseline") if key < 0 else (key, "main") for key, weight in routes.items() if weight > 0]
        return sum(_ready(status, instances.active_ids(conn, env_id, rel, role)) for rel, role in serving)

    def _active(self, conn: Connection, env_id: int) -> tuple[dm.Deployment, int] | None:
        """The running deployment of an environment whose web process is autoscaled (else the one to
        start next: it starts its instances from the total too), with the autoscaler's total (the
        count in force); None when there is no such pair."""
        if not any(r["process"] == "web" for r in autoscalers.of_env(conn, env_id)):
            return None
        machines = [deployments.machine(r) for r in deployments.open_in_env(conn, env_id)]
        dep = next((m for m in machines if m.state in dm.ACTIVE), None) or dm.next_to_start(machines)
        env = repo.env_by_id(conn, env_id)
        if dep is None or env["current_release"] is None:
            return None
        cfg = repo.get_release(conn, env_id, env["current_release"])["config"] or {}
        return dep, _counts(cfg, config_vars.counts_of(conn, env_id))["web"]

    def _follow(self, conn: Connection, env_id: int) -> set[str]:
        """A running deployment's web count (``params["instances"]``) follows the autoscaler's total,
        so what the deployment machine sizes is sized from it too: a canary's first instances, its
        full size when promoted, a blue/green release before its switch, and the stable release a
        rollback restores, at once. Not a rolling deployment (its batches are its counts) nor a
        `conveyor rollback` (it returns to a warm release as it is; ``_scale`` sizes it after)."""
        active = self._active(conn, env_id)
        if active is None:
            return set()
        dep, total = active
        if dep.kind == "rollback" or dm.strategy_of(dep) == "rolling":
            return set()
        return {"deployments"} if deployments.follow_count(conn, dep.id, dep.state, total) else set()

    def _share(self, conn: Connection, env_id: int) -> set[str]:
        """During a deployment, size each routed release of an autoscaled environment for its share of
        the traffic (``domain/shares.py``: ``ceil(total × weight)``, start new then drain old), but for
        the releases the deployment machine holds this phase and releases being drained."""
        active = self._active(conn, env_id)
        if active is None:
            return set()
        dep, total = active
        held = shares.held_releases(dm.strategy_of(dep), dep.state, dep.progress.get("phase"), dep.to_release,
                                    baseline=bool(dep.params.get("baseline")))
        if held is None:
            return set()
        status = hosts.instance_status_map(conn, self.clock(), self.started_at)
        rows = [r for r in instances.of_env(conn, env_id) if r["role"] == "main" and r["process"] == "web"]
        releases: dict[int, shares.Release] = {}
        for number, weight in repo.routes_of(repo.env_by_id(conn, env_id)).items():
            if number <= 0:
                continue  # a baseline: the strategy's
            ids = [r["id"] for r in rows if r["release"] == number and r["draining_since"] is None]
            releases[number] = shares.Release(weight, len(ids), _ready(status, ids))
        draining = {r["release"] for r in rows if r["draining_since"] is not None} - {
            r["release"] for r in rows if r["draining_since"] is None}
        app, env_name = repo.app_env_names(conn, env_id)
        touched: set[str] = set()
        for number, count in shares.release_counts(total, releases, held=held, draining=draining).items():
            if self._ensure(conn, env_id, app, env_name, number, count, "main", "web"):
                touched |= {"desired", "routing"}
        return touched

    def _restart(self, conn: Connection, env_id: int) -> set[str]:
        """Advance each rolling restart of the environment by one step (``domain/processes.restart_plan``)."""
        pending = config_vars.restarts_of(conn, env_id)
        if not pending:
            return set()
        env = repo.env_by_id(conn, env_id)
        release = env["current_release"]
        now = self.clock()
        status = hosts.instance_status_map(conn, now, self.started_at)
        app, env_name = repo.app_env_names(conn, env_id)
        touched: set[str] = set()
        for process, (requested_at, count) in sorted(pending.items()):
            role = "main" if process == "web" else "worker"
            have = [
                processes.Running(r["id"], float(r["created_at"]), status.get(r["id"], ("", {}))[1].get("state") == "ready")
                for r in instances.of_env(conn, env_id)
                if r["release"] == release and r["role"] == role and r["process"] == process and r["draining_since"] is None
            ]
            plan = processes.restart_plan(requested_at, count, have)
            if plan.done:
                config_vars.restart_done(conn, env_id, process)
                repo.record_event(conn, "restarted", f"{process} instances of release {release} restarted",
                                  app=app, env=env_name, actor="conveyor", data={"process": process, "release": release})
                touched.add("deployments")
            if plan.grow_to is not None and self._ensure(conn, env_id, app, env_name, release, plan.grow_to, role, process):
                touched |= {"desired", "routing"}
            if plan.drain and instances.drain_ids(conn, plan.drain, now):
                touched |= {"desired", "routing"}
        return touched

    def _reap_drained(self, conn: Connection, env_id: int) -> set[str]:
        """Delete (so the agent stops) instances whose drain period is over."""
        now = self.clock()
        draining = instances.draining(conn, env_id)
        if not draining:
            return set()
        drains = {n: float(cfg.get("drain", DEFAULT_DRAIN_TIMEOUT)) for n, cfg in repo.release_configs(conn, env_id).items()}
        done = [r.id for r in draining if now - r.draining_since >= drains.get(r.release, DEFAULT_DRAIN_TIMEOUT)]
        if not done:
            return set()
        instances.delete_ids(conn, done)
        repo.bump_counter(conn, "desired")
        return {"desired"}

    def _retire(self, conn: Connection, env_id: int) -> set[str]:
        """Stop instances of releases that no longer need to run (after drain / bake)."""
        running = instances.running_releases(conn, env_id)
        if not running:
            return set()
        env = repo.env_by_id(conn, env_id)
        busy = deployments.busy_releases(conn, env_id)
        infos = [
            dm.ReleaseInfo(
                number=r["number"],
                status=r["status"],
                retired_at=r["retired_at"],
                bake=float((r["config"] or {}).get("bake", DEFAULT_BAKE)),
                drain=float((r["config"] or {}).get("drain", DEFAULT_DRAIN_TIMEOUT)),
            )
            for r in repo.releases_in(conn, env_id, running)
        ]
        stop = dm.releases_to_stop(
            env["current_release"], set(repo.routes_of(env)), busy, infos, running, self.clock()
        )
        if not stop:
            return set()
        instances.delete_releases(conn, env_id, stop)
        repo.bump_counter(conn, "desired")
        app, env_name = repo.app_env_names(conn, env_id)
        for number in stop:
            repo.record_event(
                conn, "instances_stopped", f"stopped the instances of release {number} (no longer needed)",
                app=app, env=env_name, actor="conveyor", data={"release": number},
            )
        return {"desired"}


def _counts(cfg: dict[str, Any], scaled: dict[str, int]) -> dict[str, int]:
    """The counts a release is held at: its own (web ``instances``, each worker's), overridden by the
    `conveyor scale` (or autoscaler) counts."""
    return {"web": int(cfg.get("instances", 1)), **{k: int(v) for k, v in (cfg.get("workers") or {}).items()}, **scaled}


def _sample(t: series.Totals, seconds: float, ready: int) -> autoscale.Sample:
    return autoscale.Sample(t.requests, seconds, t.latency.mean(), t.latency.quantile(0.95), ready, t.arrivals)


def _ready(status: dict[str, tuple[str, dict[str, Any]]], ids: list[str]) -> int:
    """How many of ``ids`` their hosts last reported ready."""
    return sum(1 for iid in ids if status.get(iid, ("", {}))[1].get("state") == InstanceState.READY.value)
