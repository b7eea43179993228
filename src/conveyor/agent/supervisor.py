"""One instance's life: image, process, readiness, liveness, restarts, stop.

A :class:`Supervisor` owns one desired instance. Its task loops: prepare the
image (FAILED and retried with backoff if that fails), pick a port, spawn the
process, probe readiness every ~0.2 s until it passes (STARTING → READY), then
liveness every ``health.interval_s`` (READY ⇄ UNHEALTHY), and when the process
exits, record why, wait out the backoff (CRASHED or CRASHLOOP) and start again.
:meth:`Supervisor.stop` cancels that task and terminates the process group.

The rules (delays, thresholds) are in :mod:`conveyor.agent.policy`; this
module does the I/O. Every change of the reported status calls
``on_change``; every change of the process (spawned, exited, stopped, ready)
calls ``on_process`` so the agent can rewrite its state file at once: the
file is the only memory a restarted agent has, so it is written before
anything else happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from conveyor.agent import policy
from conveyor.agent.health import probe, probe_host
from conveyor.agent.images import ImageError, ImageProvider
from conveyor import logfile
from conveyor.agent.process import Process, append_line, build_env, describe_exit, free_port, spawn, tail_lines, terminate
from conveyor.agent.sandbox import Isolation
from conveyor.agent.statefile import ProcessRecord
from conveyor.domain.wire import DesiredInstance, InstanceState, InstanceStatus, InstanceUsage, ResourceLimits

log = logging.getLogger("conveyor.agent")

#: How often a running process is checked for exit.
EXIT_POLL_S = 0.1


@dataclass
class SupervisorContext:
    """What every supervisor of one agent shares."""

    images: ImageProvider
    agent_dir: str
    logs_dir: Path
    address: str
    home: str
    on_change: Callable[[], None]
    on_process: Callable[[], None]
    log_max_bytes: int = logfile.DEFAULT_MAX_BYTES  # per instance (see conveyor.logfile)
    isolation: Isolation | None = None


class Supervisor:
    """Keeps one desired instance running and knows its :class:`InstanceStatus`."""

    def __init__(self, spec: DesiredInstance, ctx: SupervisorContext, adopted: ProcessRecord | None = None) -> None:
        self.spec = spec
        self._ctx = ctx
        self.status = InstanceStatus(id=spec.id, state=InstanceState.PENDING, message="preparing image")
        self.process: Process | None = None
        self.stopping = False
        self._task: asyncio.Task[None] | None = None
        self._streak = 0
        self._crash_times: list[float] = []
        self._ready_mono: float | None = None
        self._restart_pending = False
        self._oom_seen = 0
        self._work_dir: Path | None = None
        if adopted is not None:
            self.process = Process(pid=adopted.pid, start_ticks=adopted.start_ticks)
            self.status.pid = adopted.pid
            self.status.port = adopted.port
            self.status.restarts = adopted.restarts
            self.status.started_at = adopted.started_at
            self.status.ready_at = adopted.ready_at
            # A process that was ready stays routable while liveness re-checks it.
            self.status.state = InstanceState.READY if adopted.ready_at else InstanceState.STARTING
            self.status.message = "adopted from an earlier agent"
            if adopted.ready_at is not None:
                self._ready_mono = time.monotonic() - max(0.0, time.time() - adopted.ready_at)

    @property
    def log_path(self) -> Path:
        return self._ctx.logs_dir / f"{self.spec.id}.log"

    def record(self) -> ProcessRecord | None:
        """The state-file record of the live process, if there is one."""
        if self.process is None or self.status.port is None:
            return None
        return ProcessRecord(
            spec=self.spec,
            pid=self.process.pid,
            start_ticks=self.process.start_ticks,
            port=self.status.port,
            started_at=self.status.started_at or time.time(),
            restarts=self.status.restarts,
            ready_at=self.status.ready_at,
        )

    def usage(self) -> InstanceUsage | None:
        """What the instance uses now (its cgroups), or None where it has none."""
        iso = self._ctx.isolation
        if iso is None or not iso.cgroups.hierarchies or self.process is None:
            return None
        u = iso.cgroups.usage(self.spec.id)
        return InstanceUsage(memory_bytes=int(u["memory_bytes"]) if "memory_bytes" in u else None,
                             cpu_seconds=u.get("cpu_seconds"), pids=int(u["pids"]) if "pids" in u else None)

    @property
    def started(self) -> bool:
        return self._task is not None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"supervise {self.spec.id}")

    async def stop(self, grace: float) -> None:
        """Stop supervising and terminate the process (SIGTERM, ``grace`` seconds, SIGKILL)."""
        self.stopping = True
        self._set(InstanceState.STOPPING, f"stopping (grace {grace:g}s)")
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.process is not None:
            code = await terminate(self.process, grace)
            self.status.exit_code = code
            self.process = None
            self._ctx.on_process()
        if self._ctx.isolation is not None:
            await asyncio.to_thread(self._ctx.isolation.finished, self.spec, self._work_dir)

    def interrupt(self) -> None:
        """Send SIGINT to the process group, as a terminal's Ctrl-C would (``conveyor run``); nothing else
        changes: the process handles it (or dies of it) and its exit is reported as usual."""
        if self.process is not None:
            log.info("interrupting %s (SIGINT)", self.spec.id)
            self.process.interrupt()

    # ------------------------------------------------------------------

    def _set(self, state: InstanceState, message: str | None = None) -> None:
        changed = state != self.status.state
        if changed:
            first_line = (message or "").split("\n", 1)[0]
            log.info("%s: %s -> %s%s", self.spec.id, self.status.state.value, state.value, f" ({first_line})" if first_line else "")
        self.status.state = state
        if message is not None and message != self.status.message:
            self.status.message = message
            changed = True
        if changed:
            self._ctx.on_change()

    def _not_ready_state(self) -> InstanceState:
        return InstanceState.CRASHLOOP if policy.in_crashloop(self._crash_times, time.monotonic()) else InstanceState.STARTING

    async def _run(self) -> None:
        image_failures = 0
        while True:
            try:
                if self.process is None:
                    problem = await self._spawn()
                    if problem is not None:
                        image_failures += 1
                        delay = policy.image_retry_delay(image_failures)
                        self._set(InstanceState.FAILED, f"{problem} (retrying in {delay:g}s)")
                        await asyncio.sleep(delay)
                        continue
                    image_failures = 0
                code = await self._watch()
                if self.spec.once:
                    await self._finish_once(code)
                    return
                await self._after_exit(code)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a supervisor must never die
                log.exception("instance %s: unexpected error", self.spec.id)
                self._set(InstanceState.FAILED, f"agent error: {exc!r}")
                await asyncio.sleep(1.0)

    async def _spawn(self) -> str | None:
        """Prepare the image and start the process; return why not, or ``None``."""
        if self.status.state == InstanceState.PENDING:
            self._ctx.on_change()
        if self.spec.withheld():
            return "waiting for the control plane: this instance's secrets are kept in memory only"
        try:
            root, image_env = await asyncio.to_thread(self._ctx.images.prepare, self.spec.image)
        except ImageError as exc:
            return str(exc)
        except Exception as exc:  # noqa: BLE001 - a provider bug is reported, not fatal
            return f"cannot prepare image {self.spec.image}: {exc!r}"
        try:
            port = free_port(probe_host(self._ctx.address))
        except OSError as exc:
            return f"cannot get a port on {self._ctx.address} (is --address an IP of this host?): {exc}"
        env = build_env(
            self.spec,
            image_root=root,
            image_env=image_env,
            port=port,
            address=self._ctx.address,
            home=self._ctx.home,
            agent_dir=self._ctx.agent_dir,
        )
        banner = f"--- conveyor agent: starting {self.spec.id} (release {self.spec.release}) on port {port}: {self.spec.command}\n"
        argv = None
        iso = self._ctx.isolation
        if iso is not None:
            try:
                launch = await asyncio.to_thread(iso.launch, self.spec, self.spec.command, root)
            except OSError as exc:
                return f"cannot set up the instance's sandbox or limits: {exc}"
            argv, self._work_dir = launch.argv, launch.work_dir
            env.update(launch.env)
            self.status.sandbox = launch.note
            lim = iso.limits_of(self.spec)
            self.status.limits = ResourceLimits(memory=lim.memory, cpu=lim.cpu, pids=lim.pids)
            self._oom_seen = iso.cgroups.oom_kills(self.spec.id)
            banner += f"--- conveyor agent: {launch.note}; limits memory {lim.memory_text()} cpu {lim.cpu} pids {lim.pids}\n"
        try:
            self.process = spawn(self.spec.command, cwd=root, env=env, log_path=self.log_path, banner=banner,
                                 log_max_bytes=self._ctx.log_max_bytes, argv=argv)
        except OSError as exc:
            return f"cannot start {self.spec.command!r} in {root}: {exc}"
        if self._restart_pending:
            self.status.restarts += 1
            self._restart_pending = False
        self.status.pid = self.process.pid
        self.status.port = port
        self.status.started_at = time.time()
        self.status.ready_at = None
        self._ready_mono = None
        self._ctx.on_process()  # record the pid before anything else can happen
        self._set(self._not_ready_state(), "waiting for readiness")
        self._ctx.on_change()
        return None

    async def _watch(self) -> int | None:
        """Probe the process until it exits; return its exit code (``None`` if unknown)."""
        assert self.process is not None
        prober = asyncio.create_task(self._probe_loop(), name=f"probe {self.spec.id}")
        try:
            while True:
                alive, code = self.process.poll()
                if not alive:
                    return code
                if prober.done() and not prober.cancelled() and prober.exception() is not None:
                    raise prober.exception()  # type: ignore[misc]
                await asyncio.sleep(EXIT_POLL_S)
        finally:
            prober.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await prober

    async def _probe_loop(self) -> None:
        health = self.spec.health
        if self.spec.once:  # a run-once command: nothing to probe, its exit code is the verdict
            await asyncio.Event().wait()
        if not health.path:  # a worker: no HTTP endpoint; ready once it has stayed up a while
            if self._ready_mono is None:
                await asyncio.sleep(policy.WORKER_READY_AFTER_S)
                self._ready_mono = time.monotonic()
                self.status.ready_at = time.time()
                self._ctx.on_process()
                self._set(InstanceState.READY, "")
            await asyncio.Event().wait()  # nothing more to probe; _watch sees the exit
        path = health.path if health.path.startswith("/") else "/" + health.path
        url = f"http://{probe_host(self._ctx.address)}:{self.status.port}{path}"
        timeout = max(0.1, health.timeout_s)
        ready = self._ready_mono is not None
        failures = 0
        while not ready:
            reason = await probe(url, timeout)
            if reason is None:
                ready = True
                self._ready_mono = time.monotonic()
                self.status.ready_at = time.time()
                self._ctx.on_process()
                self._set(InstanceState.READY, "")
                break
            self._set(self._not_ready_state(), f"waiting for readiness: GET {path}: {reason}")
            await asyncio.sleep(policy.READINESS_PERIOD_S)
        while True:
            await asyncio.sleep(max(0.05, health.interval_s))
            reason = await probe(url, timeout)
            failures = 0 if reason is None else failures + 1
            state = policy.after_liveness(self.status.state, failures)
            if state == InstanceState.UNHEALTHY:
                self._set(state, f"liveness failing ({failures} in a row): GET {path}: {reason}")
            elif state == InstanceState.READY:
                self._set(state, "")

    async def _finish_once(self, code: int | None) -> None:
        """A run-once process ended: report EXITED with its code; it is not restarted. The exit note is
        the log's last line (the command's output is all in before it): readers take it as the end."""
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)  # whatever it left behind
        await self.process.output_written()
        self.process = None
        self.status.pid = None
        self.status.exit_code = code
        self._ctx.on_process()
        tail = tail_lines(self.log_path, lines=4, max_bytes=240)  # before our own line: the command's last words
        with contextlib.suppress(OSError):
            append_line(self.log_path, f"--- conveyor agent: {self.spec.id} {describe_exit(code)}", self._ctx.log_max_bytes)
        self._set(InstanceState.EXITED, describe_exit(code) + (f"; last output:\n{tail}" if tail else ""))

    async def _after_exit(self, code: int | None) -> None:
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)  # whatever the leader left behind
        now = time.monotonic()
        self._crash_times = policy.recent_crashes([*self._crash_times, now], now)
        self._streak = policy.next_streak(self._streak, self._ready_mono, now)
        delay = policy.restart_delay(self._streak)
        await self.process.output_written()  # the last words are in the log before we quote them
        tail = tail_lines(self.log_path)
        iso = self._ctx.isolation
        oom = None
        if iso is not None:
            kills = iso.cgroups.oom_kills(self.spec.id)
            if kills > self._oom_seen:
                oom = iso.limits_of(self.spec).memory_text()
            self._oom_seen = kills
        what = describe_exit(code, oom)
        self.process = None
        self.status.pid = None
        self.status.exit_code = code
        self._restart_pending = True
        self._ctx.on_process()
        with contextlib.suppress(OSError):
            append_line(self.log_path, f"--- conveyor agent: {self.spec.id} {what}; restarting in {delay:g}s",
                        self._ctx.log_max_bytes)
        state = InstanceState.CRASHLOOP if policy.in_crashloop(self._crash_times, now) else InstanceState.CRASHED
        message = f"{what}; restart {self.status.restarts + 1} in {delay:g}s"
        if tail:
            message += f"; last output:\n{tail}"
        self._set(state, message)
        await asyncio.sleep(delay)
