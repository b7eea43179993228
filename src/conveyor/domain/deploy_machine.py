"""The deployment state machine: pure data in, actions out.

Why pure: the orchestrator may be killed at any line and several control-plane
replicas may take turns driving one deployment. If ``step`` only *reads* a
snapshot (the deployment row, what the agents report, the clock) and *returns*
what should change, then running it twice, or after a crash, gives the same
answer, and every rule is tested by direct calls with no processes at all.

States (``STATES`` below is the table; ``step`` dispatches on it)::

    queued ──▶ starting ──▶ (bluegreen)  switch ──▶ succeeded
                   │        (canary)     canary step 1..n ──▶ promote ──▶ baking ──▶ succeeded
                   │        (rolling)    batch 1..n ───────────────────▶ succeeded
                   ├──▶ failed        new instances never ready / crash loop (nothing was routed)
                   └──▶ rolled_back   analysis failed or aborted after traffic moved
    queued ──▶ cancelled

A rollback deployment whose target release is still warm is one routing change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from conveyor.domain.wire import InstanceState

TERMINAL = frozenset({"succeeded", "failed", "rolled_back", "cancelled"})
ACTIVE = frozenset({"releasing", "starting", "canary", "rolling", "baking", "paused", "preview"})
STATES = ("queued", *sorted(ACTIVE), *sorted(TERMINAL))
#: How long instances may stay FAILED (image could not be fetched or unpacked) before the deploy fails.
FAILED_GRACE = 10.0


class IllegalTransition(ValueError):
    """A command that the deployment's current state does not allow (the caller's mistake)."""


# ---------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ObservedInstance:
    id: str
    release: int
    role: str  # main | canary | baseline | worker
    state: InstanceState
    restarts: int = 0
    message: str = ""
    process: str = "web"
    exit_code: int | None = None


@dataclass(frozen=True)
class Deployment:
    id: int
    kind: Literal["deploy", "rollback"]
    strategy: str
    state: str
    from_release: int | None
    to_release: int
    params: dict[str, Any]
    progress: dict[str, Any]
    created_at: float
    started_at: float | None = None
    created_by: str = ""
    #: a user's pending command: {"action": "promote"|"pause"|"resume"|"abort", "full": bool, "by": str}
    command: dict[str, Any] | None = None


#: How long a release may stay short of hosts before its deployment fails with the reason: instances
#: that drain free their slots within a drain timeout, and a host may be re-joining.
PLACEMENT_PATIENCE = 10.0


@dataclass(frozen=True)
class World:
    """What is true of the environment right now."""

    now: float
    instances: tuple[ObservedInstance, ...]
    hosts_alive: int = 1
    #: the analysis verdict for the current step, computed by the caller (canary only)
    verdict: dict[str, Any] | None = None
    #: why some of the new release's instances could not be placed (domain/placement.py), since when
    unplaced: str = ""
    unplaced_since: float = 0.0

    def unplaceable(self, release: int, timeout: float) -> str | None:
        """The failure to report when ``release`` has been short of hosts for PLACEMENT_PATIENCE (or the
        ready timeout, when shorter): a constraint no waiting will meet, said at once, not after the timeout."""
        if self.unplaced and self.now - self.unplaced_since >= min(PLACEMENT_PATIENCE, timeout):
            return f"release {release} cannot be placed: {self.unplaced}"
        return None

    def of(self, release: int, role: str | None = None) -> list[ObservedInstance]:
        return [i for i in self.instances if i.release == release and (role is None or i.role == role)]

    def ready(self, release: int, role: str | None = None) -> int:
        """Ready web instances (of ``role``; with none, of every role but ``worker``)."""
        return sum(1 for i in self.of(release, role) if i.state == InstanceState.READY
                   and (role is not None or i.role not in ("worker", RELEASE_ROLE)))

    def workers_ready(self, release: int, counts: dict[str, int]) -> bool:
        """Whether ``counts[process]`` workers of each process type of ``release`` are ready (stayed up)."""
        return all(
            sum(1 for i in self.of(release, "worker") if i.process == name and i.state == InstanceState.READY) >= n
            for name, n in counts.items()
        )

    def crashlooping(self, release: int) -> list[ObservedInstance]:
        return [i for i in self.of(release) if i.state in (InstanceState.CRASHLOOP, InstanceState.FAILED)]


# ---------------------------------------------------------------------------
# Outputs
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class EnsureInstances:
    """Make exactly ``count`` desired instances of ``release`` with ``role`` (and process type) exist."""

    release: int
    count: int
    role: str = "main"
    process: str = "web"


@dataclass(frozen=True)
class RemoveInstances:
    release: int
    role: str | None = None  # None = every role


@dataclass(frozen=True)
class SetRoutes:
    """Replace the environment's routing weights atomically: {release: weight}."""

    weights: dict[int, int]


@dataclass(frozen=True)
class MakeCurrent:
    """``release`` is now the one the environment serves; ``previous`` retires (kept warm)."""

    release: int
    previous: int | None
    retire_as: str = "superseded"  # or "rolled_back"


@dataclass(frozen=True)
class Event:
    kind: str
    message: str
    data: dict[str, Any] = field(default_factory=dict)


Action = EnsureInstances | RemoveInstances | SetRoutes | MakeCurrent | Event


@dataclass
class Step:
    """The result of one evaluation: the new state and progress, and what to do."""

    state: str
    progress: dict[str, Any]
    actions: list[Action] = field(default_factory=list)
    reason: str | None = None
    #: the deployment's pending command was handled (the orchestrator clears it)
    consumed_command: bool = False

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL


# ---------------------------------------------------------------------------
# The machine
# ---------------------------------------------------------------------------


def start(dep: Deployment, now: float) -> Step:
    """queued → starting: bring up the new release's instances (nothing routed yet)."""
    if dep.state != "queued":
        raise IllegalTransition(f"deployment {dep.id}: cannot start from state {dep.state!r}")
    progress = {**dep.progress, "phase_started": now}
    if dep.kind == "rollback":
        return Step("starting", progress, [Event("rollback_started", _rollback_msg(dep))])
    if dep.params.get("release_command") and dep.params.get("skip_release_phase"):
        skipped = Event("release_phase_skipped", f"release {dep.to_release}: release command skipped at "
                        f"{dep.params.get('skip_release_phase_by') or 'someone'}'s request")
        step = _start_instances(dep, progress, now)
        return Step(step.state, step.progress, [skipped, *step.actions])
    if dep.params.get("release_command"):
        return Step("releasing", {**progress, "release_started": now}, [
            EnsureInstances(dep.to_release, 1, role=RELEASE_ROLE, process=RELEASE_ROLE),
            Event("release_phase_started", f"release {dep.to_release}: running the release command "
                  f"{dep.params['release_command']!r}"),
        ])
    return _start_instances(dep, progress, now)


#: Role and process type of the release command's one instance.
RELEASE_ROLE = "release"


def _start_instances(dep: Deployment, progress: dict[str, Any], now: float) -> Step:
    """Bring up the new release's instances (after its release command, if any)."""
    progress = {**progress, "phase_started": now}
    started = Event("deploy_started", f"deploying release {dep.to_release} ({strategy_of(dep)})")
    if strategy_of(dep) == "rolling":
        return Step("rolling", {**progress, "new": 0, "batch_started": now}, [started])
    return Step("starting", progress, [EnsureInstances(dep.to_release, _first_size(dep)), started])


def strategy_of(dep: Deployment) -> str:
    """The strategy in effect: the first release of an environment has nothing to compare with or
    roll back to, so canary and rolling deploy it blue/green."""
    if dep.from_release is None or dep.kind == "rollback":
        return "bluegreen"
    return dep.strategy


def _first_size(dep: Deployment) -> int:
    """How many new instances to start first: all (blue/green) or the canary's size."""
    if strategy_of(dep) == "canary":
        return canary_size(dep)
    return _instances(dep)


def canary_size(dep: Deployment) -> int:
    """Enough instances for the canary's largest step weight (at least one), started before any
    traffic moves. An autoscaled environment's canary (``params["autoscaled"]``, written by the
    orchestrator with the autoscaler's total as ``instances``) starts at its first step's share
    instead, and grows with each step's weight (``domain/shares.py``)."""
    steps = dep.params.get("steps") or []
    top = max((int(s.get("weight", 0)) for s in steps), default=10)
    if dep.params.get("autoscaled") and not dep.params.get("baseline"):
        top = int(steps[0].get("weight", 0)) if steps else 10
    return max(1, min(_instances(dep), -(-_instances(dep) * top // 100)))


def step(dep: Deployment, world: World) -> Step:
    """Advance an active deployment by one evaluation. Idempotent for the same inputs."""
    handler = _HANDLERS.get(dep.state)
    if handler is None:
        return Step(dep.state, dict(dep.progress))
    return with_workers(dep, handler(dep, world))


def _workers(dep: Deployment) -> dict[str, int]:
    return {str(k): int(v) for k, v in (dep.params.get("workers") or {}).items()}


def worker_actions(dep: Deployment, release: int) -> list[Action]:
    """Ensure the process types other than web (workers, schedulers) of ``release`` at their counts."""
    return [EnsureInstances(release, n, role="worker", process=name) for name, n in sorted(_workers(dep).items())]


def with_workers(dep: Deployment, result: Step) -> Step:
    """The workers ship with the release, whatever the strategy: the new release's run from the
    start (a crash-looping one fails the deployment, as ``world.of`` sees it); once the deployment
    succeeded the previous release's stop (drained: SIGTERM, then the drain period; the params'
    ``previous_workers`` says it had some); a rolled-back deployment brings the previous release's
    back (``roll_back``). Failing removes the new release entirely."""
    if not _workers(dep) and not dep.params.get("previous_workers"):
        return result
    actions = list(result.actions)
    if (result.state in ACTIVE and result.state != "releasing") or result.state == "succeeded":
        actions = [*worker_actions(dep, dep.to_release), *actions]
    if result.state == "succeeded" and dep.from_release is not None and dep.from_release != dep.to_release:
        actions.append(RemoveInstances(dep.from_release, role="worker"))
    return Step(result.state, result.progress, actions, result.reason, result.consumed_command)


def _releasing(dep: Deployment, world: World) -> Step:
    """The release command runs once, before any instance of the release exists: exit 0 → start the
    instances; another exit code or the timeout → failed, nothing moved (Heroku's release phase)."""
    progress = dict(dep.progress)
    if dep.command and dep.command.get("action") == "abort":
        return _abort_before_traffic(dep, progress)
    task = dep.params["release_command"]
    run = world.of(dep.to_release, RELEASE_ROLE)
    ended = [i for i in run if i.state == InstanceState.EXITED]
    if ended:
        code = ended[0].exit_code
        if code == 0:
            step = _start_instances(dep, progress, world.now)
            done = Event("release_phase_succeeded", f"release {dep.to_release}: release command succeeded")
            return Step(step.state, step.progress,
                        [RemoveInstances(dep.to_release, role=RELEASE_ROLE), done, *step.actions])
        return _fail(dep, progress, f"the release command {task!r} exited with code {code}; nothing was deployed "
                     f"({ended[0].message})")
    failed = [i for i in run if i.state == InstanceState.FAILED]
    timeout = float(dep.params.get("release_timeout", 600.0))
    waited = world.now - float(progress.get("release_started", world.now))
    if waited > timeout:
        why = f" ({failed[0].message})" if failed else ""
        return _fail(dep, progress, f"the release command {task!r} did not finish within {timeout:g}s{why}; "
                     "it was stopped and nothing was deployed")
    return Step("releasing", progress, [EnsureInstances(dep.to_release, 1, role=RELEASE_ROLE, process=RELEASE_ROLE)])


def _starting(dep: Deployment, world: World) -> Step:
    want = _first_size(dep)
    progress = dict(dep.progress)
    if dep.command and dep.command.get("action") == "abort":
        return _abort_before_traffic(dep, progress)
    if dep.kind == "rollback" and world.ready(dep.to_release) >= max(1, want) and want > 0:
        # The previous release is still warm: a rollback is just a routing change.
        return _switch(dep, progress, instant=True)
    actions: list[Action] = [EnsureInstances(dep.to_release, want)]
    with_baseline = strategy_of(dep) == "canary" and bool(dep.params.get("baseline"))
    if with_baseline:
        assert dep.from_release is not None
        actions.append(EnsureInstances(dep.from_release, want, role="baseline"))
    broken = world.crashlooping(dep.to_release)
    if broken:
        # A crash loop is final; FAILED (image fetch/unpack) may be transient, so it gets a grace period.
        since = float(progress.setdefault("broken_since", world.now))
        looping = any(i.state == InstanceState.CRASHLOOP for i in broken)
        if not looping and world.now - since < FAILED_GRACE:
            return Step("starting", progress, actions)
        first = broken[0]
        reason = (
            f"instance {first.id} of release {dep.to_release} is {first.state.value} "
            f"after {first.restarts} restarts: {first.message or 'no output'}"
        )
        return _fail(dep, progress, reason)
    progress.pop("broken_since", None)
    baseline_ready = not with_baseline or world.ready(dep.from_release or 0, "baseline") >= want
    if world.ready(dep.to_release) >= want and baseline_ready and world.workers_ready(dep.to_release, _workers(dep)):
        if strategy_of(dep) == "canary":
            from conveyor.domain.strategies import enter_canary_step

            return enter_canary_step(dep, progress, 0, world.now)
        from conveyor.domain import preview

        if preview.wanted(dep):
            return preview.enter(dep, progress, world.now)
        return _switch(dep, progress, instant=False)
    waited = world.now - float(progress.get("phase_started", world.now))
    timeout = float(dep.params.get("ready_timeout", 60.0))
    unplaceable = world.unplaceable(dep.to_release, timeout)
    if unplaceable:
        return _fail(dep, progress, unplaceable)
    if waited > timeout:
        ready = world.ready(dep.to_release)
        if world.hosts_alive == 0:
            why = "no agent is connected to run its instances"
        else:
            states = ", ".join(sorted({i.state.value for i in world.of(dep.to_release)})) or "not started"
            why = f"{ready}/{want} instances ready ({states})"
        return _fail(dep, progress, f"release {dep.to_release} did not become ready within {timeout:g}s: {why}")
    return Step("starting", progress, actions)


def _switch(dep: Deployment, progress: dict[str, Any], *, instant: bool) -> Step:
    """All new instances ready: move all traffic at once (blue/green)."""
    verb = "rolled back" if dep.kind == "rollback" else "switched"
    msg = f"{verb} traffic from release {dep.from_release} to {dep.to_release}"
    if dep.from_release is None:
        msg = f"release {dep.to_release} is live (the first release of this environment)"
    if instant:
        msg += " (warm instances: routing change only)"
    progress = {**progress, "switched": True}
    return Step(
        "succeeded",
        progress,
        [
            SetRoutes({dep.to_release: 100}),
            MakeCurrent(dep.to_release, dep.from_release),
            Event("rollback" if dep.kind == "rollback" else "deployed", msg, {"release": dep.to_release}),
        ],
    )


def _abort_before_traffic(dep: Deployment, progress: dict[str, Any]) -> Step:
    by = (dep.command or {}).get("by") or "someone"
    step = _fail(dep, progress, f"aborted by {by} before any traffic moved")
    step.consumed_command = True
    return step


def roll_back(dep: Deployment, progress: dict[str, Any], reason: str, *, was_current: bool) -> Step:
    """Traffic back to the previous release first (one table change), then the new release's
    instances drain and stop. ``was_current``: the new release had already been made current."""
    assert dep.from_release is not None
    actions: list[Action] = [SetRoutes({dep.from_release: 100})]
    if was_current:
        actions.append(MakeCurrent(dep.from_release, dep.to_release, retire_as="rolled_back"))
    actions += [
        EnsureInstances(dep.from_release, _instances(dep)),
        *worker_actions(dep, dep.from_release),
        RemoveInstances(dep.to_release),
        *_baseline_removal(dep),
        Event("rolled_back", f"release {dep.to_release} rolled back to {dep.from_release}: {reason}",
              {"release": dep.from_release, "from_release": dep.to_release}),
    ]
    return Step("rolled_back", {**progress, "weights": {str(dep.from_release): 100}}, actions, reason)


def _baseline_removal(dep: Deployment) -> list[Action]:
    if dep.params.get("baseline") and dep.from_release is not None:
        return [RemoveInstances(dep.from_release, role="baseline")]
    return []


def _fail(dep: Deployment, progress: dict[str, Any], reason: str) -> Step:
    actions: list[Action] = [Event("deploy_failed", reason, {"release": dep.to_release})]
    if dep.kind == "deploy":
        actions[:0] = [RemoveInstances(dep.to_release), *_baseline_removal(dep)]
    return Step("failed", progress, actions, reason)


def cancel(dep: Deployment) -> Step:
    """Cancel a queued deployment (nothing has happened yet)."""
    if dep.state != "queued":
        raise IllegalTransition(
            f"deployment {dep.id} is {dep.state}: only a queued deployment can be cancelled; "
            "use abort to roll back one in progress"
        )
    return Step("cancelled", dict(dep.progress), [Event("deploy_cancelled", f"deployment {dep.id} cancelled")])


def _instances(dep: Deployment) -> int:
    return int(dep.params.get("instances", 1))


def _rollback_msg(dep: Deployment) -> str:
    return f"rolling back from release {dep.from_release} to {dep.to_release}"


_HANDLERS: dict[str, Any] = {"starting": _starting, "releasing": _releasing}  # the strategies module adds its states


# ---------------------------------------------------------------------------
# Queue and warm-instance retention (also pure)
# ---------------------------------------------------------------------------


def next_to_start(deployments: list[Deployment]) -> Deployment | None:
    """The oldest queued deployment of an environment, if none is active (Etsy's push queue)."""
    if any(d.state in ACTIVE for d in deployments):
        return None
    queued = sorted((d for d in deployments if d.state == "queued"), key=lambda d: (d.created_at, d.id))
    return queued[0] if queued else None


@dataclass(frozen=True)
class ReleaseInfo:
    number: int
    status: str
    retired_at: float | None
    bake: float
    drain: float


def releases_to_stop(
    current: int | None,
    routed: set[int],
    busy: set[int],
    releases: list[ReleaseInfo],
    running: set[int],
    now: float,
) -> list[int]:
    """Releases whose instances can be stopped now.

    Kept: the current release, every routed release, releases an active
    deployment uses (``busy``), and the most recently retired release until its
    bake period ends (the instant-rollback target). Everything else stops once
    its drain period has passed since it left the routing table.
    """
    keep = set(routed | busy)
    if current is not None:
        keep.add(current)
    retired = sorted(
        (r for r in releases if r.retired_at is not None and r.number in running and r.number not in keep),
        key=lambda r: r.retired_at or 0.0,
        reverse=True,
    )
    out: list[int] = []
    for idx, rel in enumerate(retired):
        assert rel.retired_at is not None
        hold = max(rel.bake, rel.drain) if idx == 0 and rel.status == "superseded" else rel.drain
        if now - rel.retired_at >= hold:
            out.append(rel.number)
    # Running, yet neither kept nor ever retired (never routed, e.g. a failed deploy's): stop now.
    out += running - keep - {r.number for r in retired}
    return sorted(set(out))


from conveyor.domain import strategies as _strategies  # noqa: E402  (registers canary, rolling, baking, paused)

_HANDLERS.update(_strategies.HANDLERS)

from conveyor.domain import preview as _preview  # noqa: E402  (blue/green preview)

_HANDLERS["preview"] = _preview.handle
