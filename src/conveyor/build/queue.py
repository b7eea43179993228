"""The build queue: builds in worker processes, a concurrency limit, live logs.

:class:`BuildQueue` runs each build as ``python -m conveyor.build.worker`` (see
that module for the protocol) with at most ``max_workers`` running at once;
the rest wait in submission order. The event loop only reads pipes and writes
lines, so any number of builds never blocks the API. Each build's log goes to
``log_dir/<id>.log`` (flushed per line, so it can be shown while it runs) and
to every subscriber; a subscriber that joins late first gets the lines so far.

The queue keeps no state that matters across restarts: a build is one process
and one result file. The control plane records builds (and their images) in
SQL; a build interrupted by a restart is simply reported failed and can be
submitted again.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from conveyor.build.proc import signal_group
from conveyor.build.builder import BuildResult
from conveyor.build.sources import CommitInfo


@dataclass(frozen=True)
class BuildRequest:
    """What to build: exactly one of ``source_dir``, ``git_url`` (+ ``git_ref``) or ``tarball``."""

    source_dir: Path | None = None
    git_url: str | None = None
    git_ref: str | None = None
    git_revert: str | None = None  # a commit whose change is reverted from git_ref's tree (a deploy train's culprit)
    tarball: Path | None = None
    commit: CommitInfo | None = None
    run_tests: bool = True
    app: str | None = None  # for the caller's bookkeeping

    def worker_args(self) -> list[str]:
        given = [x for x in (self.source_dir, self.git_url, self.tarball) if x is not None]
        if len(given) != 1:
            raise ValueError("a build request needs exactly one of source_dir, git_url or tarball")
        if self.source_dir is not None:
            args = ["--dir", str(Path(self.source_dir).resolve())]  # the worker may run elsewhere
        elif self.git_url is not None:
            if not self.git_ref:
                raise ValueError("a git build request needs git_ref (a branch, tag or commit sha)")
            args = ["--git", self.git_url, "--ref", self.git_ref]
            if self.git_revert:
                args += ["--revert", self.git_revert]
        elif self.tarball is not None:
            args = ["--tarball", str(Path(self.tarball).resolve())]
            if self.commit is not None:
                args += ["--commit", json.dumps(self.commit.to_dict())]
        if not self.run_tests:
            args.append("--no-tests")
        return args


class BuildFailed(RuntimeError):
    """A build produced no image. ``step`` says where; the log is at ``log_path``."""

    def __init__(self, build_id: str, step: str, message: str, log_path: Path) -> None:
        super().__init__(f"build {build_id} failed ({step}): {message}")
        self.build_id = build_id
        self.step = step
        self.message = message
        self.log_path = log_path


@dataclass
class BuildJob:
    """One submitted build. ``state``: queued → running → succeeded | failed | cancelled."""

    id: str
    request: BuildRequest
    log_path: Path
    state: str = "queued"
    submitted_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    result: BuildResult | None = None
    error: str | None = None
    lines: list[str] = field(default_factory=list)
    _subscribers: set[asyncio.Queue[str | None]] = field(default_factory=set, repr=False)
    _done: asyncio.Future[BuildResult] | None = field(default=None, repr=False)
    _proc: asyncio.subprocess.Process | None = field(default=None, repr=False)
    _cancelled: bool = field(default=False, repr=False)
    _task: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def finished(self) -> bool:
        return self.state in ("succeeded", "failed", "cancelled")

    async def wait(self) -> BuildResult:
        """The result; raises :class:`BuildFailed` if the build produced no image."""
        assert self._done is not None
        return await asyncio.shield(self._done)

    async def subscribe(self) -> AsyncIterator[str]:
        """Every log line of this build: those so far, then live ones until it ends."""
        q: asyncio.Queue[str | None] = asyncio.Queue()
        for line in self.lines:
            q.put_nowait(line)
        if self.finished:
            q.put_nowait(None)
        else:
            self._subscribers.add(q)
        try:
            while True:
                item = await q.get()
                if item is None:
                    break
                yield item
        finally:
            self._subscribers.discard(q)

    def _emit(self, line: str | None) -> None:
        if line is not None:
            self.lines.append(line)
        for q in self._subscribers:
            q.put_nowait(line)


class BuildQueue:
    """Run builds in worker processes, at most ``max_workers`` at a time."""

    def __init__(
        self,
        max_workers: int,
        *,
        store_root: Path,
        cache_dir: Path,
        log_dir: Path,
        python: str = sys.executable,
        timeout_s: float = 3600.0,
        hide: Sequence[Path] = (),
        sandbox: bool = True,
    ) -> None:
        if max_workers < 1:
            raise ValueError(f"max_workers must be at least 1, got {max_workers}")
        self.max_workers = max_workers
        self.store_root = Path(store_root).resolve()
        self.cache_dir = Path(cache_dir).resolve()
        self.log_dir = Path(log_dir).resolve()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.python = python
        self.timeout_s = timeout_s
        #: the build's own commands run in bubblewrap with these directories masked (conveyor.sandbox)
        self.sandbox_args = [a for h in hide for a in ("--hide", str(h))] if sandbox else ["--no-sandbox"]
        self._slots = asyncio.Semaphore(max_workers)
        self._jobs: dict[str, BuildJob] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(self, request: BuildRequest, *, build_id: str | None = None) -> BuildJob:
        """Queue a build (call from the event loop); returns at once."""
        request.worker_args()  # validate now, in the caller's hands
        build_id = build_id or uuid.uuid4().hex[:12]
        if build_id in self._jobs:
            raise ValueError(f"build id {build_id!r} is already in use")
        job = BuildJob(id=build_id, request=request, log_path=self.log_dir / f"{build_id}.log")
        job._done = asyncio.get_running_loop().create_future()
        self._jobs[build_id] = job
        task = asyncio.create_task(self._run(job), name=f"build-{build_id}")
        job._task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    def get(self, build_id: str) -> BuildJob | None:
        return self._jobs.get(build_id)

    def jobs(self) -> list[BuildJob]:
        return list(self._jobs.values())

    @property
    def running(self) -> int:
        return sum(1 for j in self._jobs.values() if j.state == "running")

    async def cancel(self, build_id: str) -> bool:
        """Stop a queued or running build (its worker and everything it started)."""
        job = self._jobs.get(build_id)
        if job is None or job.finished:
            return False
        job._cancelled = True
        if job._proc is not None:
            proc = job._proc
            signal_group(proc.pid, signal.SIGTERM)
            # A worker that ignores SIGTERM gets SIGKILL a little later.
            asyncio.get_running_loop().call_later(10.0, _kill_if_running, proc)
        elif job.state == "queued" and job._task is not None:
            job._task.cancel()  # still waiting for a slot: end it now
        return True

    async def close(self) -> None:
        """Cancel every unfinished build and wait for their workers to be gone."""
        for job in list(self._jobs.values()):
            await self.cancel(job.id)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _run(self, job: BuildJob) -> None:
        assert job._done is not None
        result_path = self.log_dir / f"{job.id}.result.json"
        result_path.unlink(missing_ok=True)
        try:
            async with self._slots:
                if job._cancelled:
                    raise BuildFailed(job.id, "cancelled", "cancelled before it started", job.log_path)
                job.state = "running"
                job.started_at = time.time()
                code = await self._run_worker(job, result_path)
                job.result = self._outcome(job, code, result_path)
            job.state = "succeeded"
            job._done.set_result(job.result)
        except BuildFailed as exc:
            job.state = "cancelled" if job._cancelled else "failed"
            job.error = str(exc)
            job._done.set_exception(exc)
        except asyncio.CancelledError:
            cancelled_by_us = job._cancelled and job._proc is None
            job.state = "cancelled" if job._cancelled else "failed"
            job.error = "cancelled" if job._cancelled else "the build queue was shut down"
            if not job._done.done():
                job._done.set_exception(BuildFailed(job.id, "cancelled", job.error, job.log_path))
            if not cancelled_by_us:
                raise
        except Exception as exc:  # noqa: BLE001 - a bug or an OS error in the queue itself fails the build, not the queue
            job.state = "failed"
            job.error = repr(exc)
            if not job._done.done():
                job._done.set_exception(BuildFailed(job.id, "queue", repr(exc), job.log_path))
        finally:
            job.finished_at = time.time()
            job._emit(None)
            if job._done.done() and not job._done.cancelled():
                job._done.exception()  # mark it retrieved: nobody has to wait for a failed build

    async def _run_worker(self, job: BuildJob, result_path: Path) -> int:
        argv = [
            self.python, "-m", "conveyor.build.worker",
            *job.request.worker_args(),
            "--store", str(self.store_root), "--cache", str(self.cache_dir), "--result", str(result_path),
            *self.sandbox_args,
        ]  # fmt: skip
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
            start_new_session=True,
            limit=1 << 20,
        )
        job._proc = proc
        if job._cancelled:  # cancel() came while the process was being spawned
            signal_group(proc.pid, signal.SIGTERM)
        assert proc.stdout is not None
        try:
            with open(job.log_path, "a", encoding="utf-8") as log:  # noqa: ASYNC230 - local appends of one line
                async with asyncio.timeout(self.timeout_s):
                    while raw := await proc.stdout.readline():
                        line = raw.decode("utf-8", "replace").rstrip("\r\n")
                        log.write(line + "\n")
                        log.flush()
                        job._emit(line)
                    return await proc.wait()
        except TimeoutError:
            job._emit(f"==> build timed out after {self.timeout_s:.0f} s")
            raise BuildFailed(job.id, "timeout", f"timed out after {self.timeout_s:.0f} s", job.log_path) from None
        finally:
            if proc.returncode is None:
                signal_group(proc.pid, signal.SIGKILL)
                await proc.wait()
            signal_group(proc.pid, signal.SIGKILL)  # anything the worker left behind in its group

    def _outcome(self, job: BuildJob, code: int, result_path: Path) -> BuildResult:
        if job._cancelled:
            raise BuildFailed(job.id, "cancelled", "cancelled", job.log_path)
        try:
            doc = json.loads(result_path.read_text())
        except (FileNotFoundError, ValueError):
            tail = " | ".join(job.lines[-5:])
            raise BuildFailed(
                job.id, "worker", f"worker exited with code {code} and no result; last output: {tail}", job.log_path
            ) from None
        if not doc.get("ok"):
            raise BuildFailed(job.id, str(doc.get("step", "unknown")), str(doc.get("error", "")), job.log_path)
        return BuildResult.from_dict(doc["result"])


def _kill_if_running(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        signal_group(proc.pid, signal.SIGKILL)
