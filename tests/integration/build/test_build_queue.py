"""Builds in worker processes: the worker CLI, the asyncio queue, live logs, limits, cancel."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conveyor_build_helpers import init_repo, write_app

from conveyor.build.archive import pack_directory
from conveyor.build.queue import BuildFailed, BuildQueue, BuildRequest
from conveyor.build.sources import CommitInfo
from conveyor.build.store import ArtifactStore


def _worker(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "conveyor.build.worker", *args], check=False, capture_output=True, text=True, timeout=120
    )


def test_worker_cli_builds_a_directory_a_git_repo_and_a_tarball(tmp_path: Path) -> None:
    src = write_app(tmp_path / "src", test="python app.py")
    init_repo(src)
    common = ["--store", str(tmp_path / "store"), "--cache", str(tmp_path / "cache")]
    out = _worker("--dir", str(src), *common, "--result", str(tmp_path / "r1.json"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "==> tests passed" in out.stdout
    r1 = json.loads((tmp_path / "r1.json").read_text())
    assert r1["ok"] and r1["result"]["test_status"] == "passed" and r1["result"]["image"].startswith("sha256:")
    assert ArtifactStore(tmp_path / "store").has_manifest(r1["result"]["image"])

    out = _worker("--git", str(src), "--ref", "main", *common, "--result", str(tmp_path / "r2.json"))
    r2 = json.loads((tmp_path / "r2.json").read_text())
    assert out.returncode == 0 and r2["result"]["image"] == r1["result"]["image"]
    assert r2["result"]["commit"]["sha"] == r1["result"]["commit"]["sha"]

    (tmp_path / "src.tar.gz").write_bytes(pack_directory(src))
    commit = json.dumps(CommitInfo(sha="abc", author="a", message="m", time=1.0).to_dict())
    out = _worker("--tarball", str(tmp_path / "src.tar.gz"), "--commit", commit, *common, "--result", str(tmp_path / "r3.json"))
    r3 = json.loads((tmp_path / "r3.json").read_text())
    assert out.returncode == 0 and r3["result"]["image"] == r1["result"]["image"] and r3["result"]["commit"]["sha"] == "abc"


def test_worker_cli_reports_a_failed_build(tmp_path: Path) -> None:
    src = write_app(tmp_path / "src", build="echo compiling; exit 5")
    out = _worker(
        "--dir", str(src), "--store", str(tmp_path / "s"), "--cache", str(tmp_path / "c"), "--result", str(tmp_path / "r.json")
    )
    assert out.returncode == 1 and "compiling" in out.stdout
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc == {"ok": False, "step": "build", "error": doc["error"]} and "exited with code 5" in doc["error"]
    bad = _worker(
        "--git", str(src), "--store", str(tmp_path / "s"), "--cache", str(tmp_path / "c"), "--result", str(tmp_path / "r2.json")
    )
    assert bad.returncode == 1 and "--ref" in json.loads((tmp_path / "r2.json").read_text())["error"]


async def _ticker(gaps: list[float], stop: asyncio.Event) -> None:
    last = time.monotonic()
    while not stop.is_set():
        await asyncio.sleep(0.02)
        now = time.monotonic()
        gaps.append(now - last)
        last = now


async def test_queue_limits_concurrency_streams_logs_and_never_blocks_the_loop(tmp_path: Path) -> None:
    queue = BuildQueue(2, store_root=tmp_path / "store", cache_dir=tmp_path / "cache", log_dir=tmp_path / "logs")
    apps = [
        write_app(
            tmp_path / f"app{i}",
            name=f"app{i}",
            build=f"echo building {i} && python app.py",
            test="python app.py",
            app_py=f"import time\nprint('app{i} says hi')\ntime.sleep(0.5)\n",
        )
        for i in range(3)
    ]
    gaps: list[float] = []
    stop = asyncio.Event()
    ticker = asyncio.create_task(_ticker(gaps, stop))
    try:
        jobs = [queue.submit(BuildRequest(source_dir=a, app=a.name)) for a in apps]
        live: list[str] = []

        async def follow() -> None:
            async for line in jobs[0].subscribe():
                live.append(line)

        follower = asyncio.create_task(follow())
        peak = 0
        deadline = time.monotonic() + 120
        while not all(j.finished for j in jobs):
            peak = max(peak, queue.running)
            assert time.monotonic() < deadline, "builds did not finish"
            await asyncio.sleep(0.02)
        results = [await j.wait() for j in jobs]
        await asyncio.wait_for(follower, 10)
    finally:
        stop.set()
        await ticker
        await queue.close()
    assert peak == 2, f"expected 2 builds at once, saw {peak}"
    assert len({r.image for r in results}) == 3 and all(r.test_status == "passed" for r in results)
    assert "app0 says hi" in live and live[-1].startswith("==> image sha256:")
    assert live == jobs[0].log_path.read_text().splitlines()
    late = [line async for line in jobs[1].subscribe()]  # a late subscriber gets the whole log
    assert "app1 says hi" in late
    assert max(gaps) < 1.0, f"event loop blocked for {max(gaps):.2f} s"


async def test_queue_reports_failures_and_cancels(tmp_path: Path) -> None:
    # Unsandboxed: the build command writes its pid where the test reads it (a sandboxed one could not,
    # and its pid is its namespace's); test_build_sandbox.py checks what the sandbox stops.
    queue = BuildQueue(1, store_root=tmp_path / "store", cache_dir=tmp_path / "cache", log_dir=tmp_path / "logs",
                       sandbox=False)
    marker = tmp_path / "child.pid"
    slow = write_app(tmp_path / "slow", build=f"echo $$ > {marker}; sleep 60")
    broken = write_app(tmp_path / "broken", build="exit 9")
    try:
        failing = queue.submit(BuildRequest(source_dir=broken), build_id="b-broken")
        with pytest.raises(BuildFailed) as err:
            await asyncio.wait_for(failing.wait(), 60)
        assert err.value.step == "build" and "exited with code 9" in err.value.message
        assert failing.state == "failed" and failing.log_path.exists()

        job = queue.submit(BuildRequest(source_dir=slow), build_id="b-slow")
        deadline = time.monotonic() + 60
        while not (marker.exists() and marker.read_text().strip()):
            assert time.monotonic() < deadline, "slow build never started"
            await asyncio.sleep(0.05)
        child = int(marker.read_text())
        assert await queue.cancel("b-slow")
        with pytest.raises(BuildFailed, match="cancelled"):
            await asyncio.wait_for(job.wait(), 30)
        assert job.state == "cancelled"
        deadline = time.monotonic() + 10
        while _alive(child):
            assert time.monotonic() < deadline, "the build command outlived its cancelled build"
            await asyncio.sleep(0.05)
        with pytest.raises(ValueError, match="already in use"):
            queue.submit(BuildRequest(source_dir=slow), build_id="b-slow")
    finally:
        await queue.close()
    assert list(ArtifactStore(tmp_path / "store").manifests()) == []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is as good as gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def test_cancelling_a_queued_build_is_immediate(tmp_path: Path) -> None:
    queue = BuildQueue(1, store_root=tmp_path / "store", cache_dir=tmp_path / "cache", log_dir=tmp_path / "logs")
    slow = write_app(tmp_path / "slow", build="sleep 60")
    quick = write_app(tmp_path / "quick")
    try:
        running = queue.submit(BuildRequest(source_dir=slow))
        waiting = queue.submit(BuildRequest(source_dir=quick))
        await asyncio.sleep(0)
        assert waiting.state == "queued"
        assert await queue.cancel(waiting.id)
        with pytest.raises(BuildFailed, match="cancelled"):
            await asyncio.wait_for(waiting.wait(), 5)
        assert waiting.state == "cancelled" and not running.finished
    finally:
        await queue.close()
    assert running.state == "cancelled"
