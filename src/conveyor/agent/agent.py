"""The host agent: reconcile loop, status reports, log shipping, adoption.

Four loops share one event loop:

* **poll** long-polls the desired state and, when its version changes, stores
  it (in memory and in the state file) and wakes the reconcile loop;
* **reconcile** calls the pure :func:`conveyor.agent.reconcile.plan` with the
  desired instances and the supervisors it has, and applies the actions
  (start a :class:`Supervisor`, stop one); it also runs every second, because
  it is level-triggered and must not depend on having seen every change;
* **status** PUTs the whole :class:`AgentStatus` as soon as anything changed
  and at least every 5 s;
* **logs** ships new log bytes about every 0.5 s.

Failing calls to the control plane are retried with a backoff capped at 2 s
and never touch the instances: they keep running while the control plane is
down. On start, live processes recorded in ``agent-state.json`` are adopted,
so an agent killed at any line and started again runs no duplicates. On
:meth:`Agent.request_stop` every instance is stopped gracefully.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from conveyor import logfile
from conveyor.agent import policy, statefile
from conveyor.agent.client import ControlPlaneClient
from conveyor.agent.images import ImageProvider
from conveyor.agent.logship import LogShipper
from conveyor.agent.process import Process, find_instances, same_process_alive, terminate
from conveyor.agent.reconcile import Actual, Reject, Replace, Start, Stop, plan, same_spec
from conveyor.agent.sandbox import Isolation
from conveyor.agent.supervisor import Supervisor, SupervisorContext
from conveyor.domain.wire import AgentStatus, DesiredState, InstanceState, InstanceStatus

log = logging.getLogger("conveyor.agent")

AGENT_VERSION = "0.1.0"


@dataclass
class AgentConfig:
    """Everything the agent is told on its command line."""

    control_plane: str
    token: str | None
    host: str
    data_dir: Path
    address: str = "127.0.0.1"
    stop_grace: float = 10.0
    poll_wait: float = 30.0
    heartbeat_s: float = 5.0
    log_interval_s: float = 0.5
    retry_max_s: float = 2.0
    reconcile_every_s: float = 1.0
    log_max_bytes: int = logfile.DEFAULT_MAX_BYTES  # per instance, both log segments together
    #: what placement knows of this host (domain/placement.py): labels, most instances, memory offered
    labels: dict[str, str] = field(default_factory=dict)
    capacity: int | None = None
    memory: int | None = None
    #: Isolation: bubblewrap sandbox (when the host has it) and cgroup limits. None: neither
    #: (unit tests that drive the agent with fakes).
    isolation: Isolation | None = None

    @property
    def state_path(self) -> Path:
        return self.data_dir / "agent-state.json"

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"


async def _wait_event(event: asyncio.Event, timeout: float) -> None:
    """Wait until ``event`` is set or ``timeout`` passes.

    Not ``asyncio.wait_for``: in Python 3.11 it can swallow a cancellation
    that arrives as the event fires, which left the loop running at shutdown.
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await event.wait()


class _Backoff:
    """Retry delays for control-plane calls (``policy.control_plane_backoff``: 0.1 s doubling,
    capped, jittered), and one log line when calls start and stop failing."""

    def __init__(self, cap: float) -> None:
        self.cap = cap
        self.policy = policy.control_plane_backoff(cap)
        self.failures = 0

    def fail(self, what: str, exc: Exception) -> float:
        if not self.failures:
            log.warning("%s failed: %s (retrying every <= %gs)", what, exc, self.cap)
        self.failures += 1
        return self.policy.delay(self.failures)

    def ok(self, what: str) -> None:
        if self.failures:
            log.warning("%s works again", what)
        self.failures = 0


def _sandbox_note(iso: Isolation | None) -> str:
    if iso is None:
        return "UNSANDBOXED: no isolation configured"
    return f"UNSANDBOXED: {iso.warning}" if iso.warning else "bubblewrap"


class Agent:
    """One host's agent. Build it, then ``await agent.run()``; ``request_stop()`` ends it."""

    def __init__(self, config: AgentConfig, images: ImageProvider, client: ControlPlaneClient | None = None) -> None:
        self.config = config
        self.images = images
        self.client = client or ControlPlaneClient(config.control_plane, config.token, config.host)
        self.desired = DesiredState(host=config.host)
        self.supervisors: dict[str, Supervisor] = {}
        self.rejected: dict[str, str] = {}
        self.adopted = 0
        self._stopping: set[asyncio.Task[object]] = set()
        self._wake = asyncio.Event()
        self._dirty = asyncio.Event()
        self._stop = asyncio.Event()
        self._shipper = LogShipper(config.host, config.logs_dir)
        self._offsets_saved: dict[str, int] = {}
        self._loaded = False
        self._orphans: list[Process] = []

    # ------------------------------------------------------------------ lifecycle

    def request_stop(self) -> None:
        """Stop all instances gracefully and return from :meth:`run`."""
        self._stop.set()

    def load(self) -> None:
        """Read the state file and adopt the instance processes that are still alive."""
        self._loaded = True
        self.config.logs_dir.mkdir(parents=True, exist_ok=True)
        saved = statefile.load(self.config.state_path)
        if saved.desired is not None and saved.desired.host == self.config.host:
            self.desired = saved.desired
        self._shipper = LogShipper(self.config.host, self.config.logs_dir, saved.log_offsets)
        self._offsets_saved = dict(saved.log_offsets)
        for instance_id, record in saved.processes.items():
            if same_process_alive(record.pid, record.start_ticks):
                sup = Supervisor(record.spec, self._context(), adopted=record)
                self.supervisors[instance_id] = sup
                self._shipper.track([instance_id])
                self.adopted += 1
                log.info("adopted %s (pid %d, port %d)", instance_id, record.pid, record.port)
            else:
                log.info("%s (pid %d) is gone; it will be started again if still desired", instance_id, record.pid)
        self._orphans = self._find_orphans()
        self.save()

    def _find_orphans(self) -> list[Process]:
        """Instances of this data directory that the state file does not know (it was lost, or not yet written)."""
        known = {s.process.pid for s in self.supervisors.values() if s.process is not None}
        orphans = []
        for pid, (instance_id, start_ticks) in find_instances(str(self.config.data_dir)).items():
            if pid not in known:
                log.warning("instance %s (pid %d) is not in %s: stopping it", instance_id or "?", pid, self.config.state_path.name)
                orphans.append(Process(pid=pid, start_ticks=start_ticks))
        return orphans

    async def run(self) -> None:
        """Run until :meth:`request_stop`; then stop every instance and return."""
        if not self._loaded:
            self.load()
        for sup in self.supervisors.values():
            if not sup.started:
                sup.start()
        for orphan in self._orphans:
            task = asyncio.create_task(terminate(orphan, self.config.stop_grace), name=f"stop orphan {orphan.pid}")
            self._stopping.add(task)
            task.add_done_callback(self._stopping.discard)
        self._orphans = []
        loops = [
            asyncio.create_task(self._poll_loop(), name="poll"),
            asyncio.create_task(self._reconcile_loop(), name="reconcile"),
        ]
        reporters = [
            asyncio.create_task(self._status_loop(), name="status"),
            asyncio.create_task(self._log_loop(), name="logs"),
        ]
        try:
            await self._stop.wait()
            log.info("stopping: %d instance(s) to stop", len(self.supervisors))
        finally:
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            await self._stop_all()
            for task in reporters:
                task.cancel()
            await asyncio.gather(*reporters, return_exceptions=True)
            await self._final_report()
            await self.client.aclose()

    def _context(self) -> SupervisorContext:
        return SupervisorContext(
            images=self.images,
            agent_dir=str(self.config.data_dir),
            logs_dir=self.config.logs_dir,
            address=self.config.address,
            home=os.environ.get("HOME", "/"),
            on_change=self._dirty.set,
            on_process=self.save,
            log_max_bytes=self.config.log_max_bytes,
            isolation=self.config.isolation,
        )

    # ------------------------------------------------------------------ state

    def save(self) -> None:
        """Write ``agent-state.json`` (atomically) from what is in memory now."""
        state = statefile.AgentState(
            desired=self.desired,
            processes={i: r for i, s in self.supervisors.items() if (r := s.record()) is not None},
            log_offsets=dict(self._shipper.offsets),
        )
        try:
            statefile.save(self.config.state_path, state)
        except OSError as exc:
            log.error("cannot write %s: %s", self.config.state_path, exc)
        self._offsets_saved = dict(self._shipper.offsets)

    def status(self) -> AgentStatus:
        """The report for the control plane: every supervised instance, plus rejected ones."""
        instances = [s.status.model_copy(update={"usage": s.usage()}) for _, s in sorted(self.supervisors.items())]
        instances += [
            InstanceStatus(id=i, state=InstanceState.FAILED, message=m) for i, m in sorted(self.rejected.items()) if i not in self.supervisors
        ]
        return AgentStatus(
            host=self.config.host,
            address=self.config.address,
            desired_version=self.desired.version,
            instances=instances,
            agent_version=AGENT_VERSION,
            sandbox=_sandbox_note(self.config.isolation),
            labels=self.config.labels,
            capacity=self.config.capacity,
            memory=self.config.memory,
        )

    # ------------------------------------------------------------------ reconcile

    def reconcile(self) -> None:
        """One level-triggered pass: diff desired against supervised, apply the actions."""
        for spec in self.desired.instances:  # a fresh desired state brings the secrets the state file withheld
            sup = self.supervisors.get(spec.id)
            if sup is not None and sup.spec.withheld() and not spec.withheld() and same_spec(sup.spec, spec):
                sup.spec = spec
            if sup is not None and not sup.stopping and spec.interrupts > sup.spec.interrupts and same_spec(sup.spec, spec):
                sup.spec = sup.spec.model_copy(update={"interrupts": spec.interrupts})
                sup.interrupt()  # Ctrl-C of `conveyor run`, forwarded: the command decides what to do with it
        actual = {i: Actual(s.spec, s.stopping) for i, s in self.supervisors.items()}
        rejected: dict[str, str] = {}
        for action in plan(self.desired.instances, actual):
            if isinstance(action, Start):
                log.info("starting %s (release %d of %s/%s)", action.spec.id, action.spec.release, action.spec.app, action.spec.env)
                sup = Supervisor(action.spec, self._context())
                self.supervisors[action.spec.id] = sup
                self._shipper.track([action.spec.id])
                sup.start()
                self._dirty.set()
            elif isinstance(action, Stop | Replace):
                instance_id = action.instance_id if isinstance(action, Stop) else action.spec.id
                task = asyncio.create_task(self._stop_one(instance_id), name=f"stop {instance_id}")
                self._stopping.add(task)
                task.add_done_callback(self._stopping.discard)
            elif isinstance(action, Reject):
                rejected[action.instance_id] = action.message
        if rejected != self.rejected:
            self.rejected = rejected
            self._dirty.set()

    async def _stop_one(self, instance_id: str) -> None:
        sup = self.supervisors.get(instance_id)
        if sup is None:
            return
        log.info("stopping %s", instance_id)
        try:
            await sup.stop(self.config.stop_grace)
        finally:
            if self.supervisors.get(instance_id) is sup:
                del self.supervisors[instance_id]
            self._shipper.retire(instance_id)
            self.save()
            self._dirty.set()
            self._wake.set()

    async def _stop_all(self) -> None:
        ids = [i for i, s in self.supervisors.items() if not s.stopping]
        await asyncio.gather(*(self._stop_one(i) for i in ids), *list(self._stopping), return_exceptions=True)

    async def _reconcile_loop(self) -> None:
        while True:
            try:
                self.reconcile()
            except Exception:  # noqa: BLE001 - the loop must survive a bug in one pass
                log.exception("reconcile failed")
            await _wait_event(self._wake, self.config.reconcile_every_s)
            self._wake.clear()

    # ------------------------------------------------------------------ control plane

    async def _poll_loop(self) -> None:
        backoff = _Backoff(self.config.retry_max_s)
        while True:
            try:
                desired = await self.client.desired(after=self.desired.version, wait=self.config.poll_wait)
            except Exception as exc:  # noqa: BLE001 - ControlPlaneError or a bug: never crash on the control plane
                await asyncio.sleep(backoff.fail("fetching the desired state", exc))
                continue
            backoff.ok("fetching the desired state")
            if desired.host != self.config.host:
                log.error("control plane sent the desired state of host %r to host %r; ignored", desired.host, self.config.host)
                await asyncio.sleep(self.config.retry_max_s)
                continue
            if desired.version != self.desired.version:
                self.desired = desired
                self.save()
                self._wake.set()
                self._dirty.set()

    async def _status_loop(self) -> None:
        backoff = _Backoff(self.config.retry_max_s)
        while True:
            await _wait_event(self._dirty, self.config.heartbeat_s)
            self._dirty.clear()
            try:
                await self.client.put_status(self.status())
            except Exception as exc:  # noqa: BLE001
                self._dirty.set()  # send again once the control plane answers
                await asyncio.sleep(backoff.fail("reporting status", exc))
                continue
            backoff.ok("reporting status")

    async def _ship_logs_once(self) -> bool:
        """Post one batch; return whether there may be more to send right away."""
        batch = await asyncio.to_thread(self._shipper.collect)  # file reads stay off the event loop
        if not batch.chunks:
            return False
        await self.client.post_logs(batch)
        self._shipper.ack(batch)
        return sum(len(c.data) for c in batch.chunks) >= self._shipper.max_batch // 2

    async def _log_loop(self) -> None:
        backoff = _Backoff(self.config.retry_max_s)
        last_save = time.monotonic()
        while True:
            try:
                more = await self._ship_logs_once()
            except Exception as exc:  # noqa: BLE001
                await asyncio.sleep(backoff.fail("shipping logs", exc))
                continue
            backoff.ok("shipping logs")
            if self._shipper.offsets != self._offsets_saved and time.monotonic() - last_save >= 2.0:
                self.save()
                last_save = time.monotonic()
            if not more:
                await asyncio.sleep(self.config.log_interval_s)

    async def _final_report(self) -> None:
        """Best effort on the way out: the last logs and a status without the stopped instances."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2.0):
                await self._ship_logs_once()
        with contextlib.suppress(Exception):
            await self.client.put_status(self.status(), timeout=2.0)
        self.save()
