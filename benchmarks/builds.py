"""Image builds: cold build, warm rebuild after a one-line code change, sizes, bytes to ship.

Peer, measured in the same run: the plain way to get the same app runnable --
a fresh virtual environment, ``pip install -r requirements.txt`` into it, and a
copy of the code.

Both sides use pip's HTTP cache, warmed before anything is timed, so the
comparison is about work done rather than network speed. Each number is the
median of ``--repeat`` runs. Prints one JSON object.

    python benchmarks/builds.py [--example greeter] [--repeat 3]

Goals (issue 6): a code-only rebuild at least 5x faster than the plain way;
the bytes shipped for a code-only change under 5% of the full image.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from conveyor.build.archive import DEFAULT_EXCLUDES
from conveyor.build.builder import BuildResult, build_image
from conveyor.build.runtime import base_python, clean_environ
from conveyor.build.store import ArtifactStore

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _quiet(_: str) -> None:
    pass


def _pip_warmup(src: Path, work: Path) -> None:
    req = src / "requirements.txt"
    if req.is_file():
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "-r", str(req), "-d", str(work / "warmup")],
            cwd=src, check=True, env=clean_environ(),
        )  # fmt: skip


def _plain(src: Path, dest: Path) -> float:
    """Fresh venv + pip install -r + copy the code; seconds."""
    t = time.perf_counter()
    req = src / "requirements.txt"
    with_pip = [] if req.is_file() else ["--without-pip"]  # no requirements: no pip needed either
    subprocess.run([base_python(), "-m", "venv", *with_pip, str(dest / "venv")], check=True, env=clean_environ())
    if req.is_file():
        subprocess.run(
            [str(dest / "venv" / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r", str(req)],
            cwd=src, check=True, env=clean_environ(),
        )  # fmt: skip
    shutil.copytree(src, dest / "app", symlinks=True, ignore=shutil.ignore_patterns(*DEFAULT_EXCLUDES))
    return time.perf_counter() - t


def _timed_build(src: Path, store: ArtifactStore, cache: Path, *, tests: bool) -> tuple[float, BuildResult]:
    t = time.perf_counter()
    result = build_image(src, store, cache_dir=cache, log=_quiet, run_tests=tests)
    return time.perf_counter() - t, result


def run(example: str, repeat: int) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix="conveyor-bench-builds-"))
    try:
        src = work / "src"
        shutil.copytree(EXAMPLES / example, src, ignore=shutil.ignore_patterns(*DEFAULT_EXCLUDES))
        _pip_warmup(src, work)
        cold: list[float] = []
        warm: list[float] = []
        warm_no_tests: list[float] = []
        plain: list[float] = []
        last_cold = last_warm = None
        transfer = full = 0
        for i in range(repeat):
            store = ArtifactStore(work / f"store{i}")
            cache = work / f"cache{i}"
            (src / "app.py").write_text((EXAMPLES / example / "app.py").read_text())
            seconds, last_cold = _timed_build(src, store, cache, tests=True)
            cold.append(seconds)
            with open(src / "app.py", "a") as f:  # the one-line code change
                f.write(f"# change {i}\n")
            seconds, last_warm = _timed_build(src, store, cache, tests=True)
            warm.append(seconds)
            with open(src / "app.py", "a") as f:
                f.write(f"# another change {i}\n")
            seconds, _ = _timed_build(src, store, cache, tests=False)
            warm_no_tests.append(seconds)
            manifest_bytes = len(store.manifest_bytes(last_warm.image))
            transfer = sum(layer.size for layer in last_warm.layers if not layer.reused) + manifest_bytes
            full = last_warm.size + manifest_bytes
            plain.append(_plain(src, work / f"plain{i}"))
        assert last_cold is not None and last_warm is not None
        med = statistics.median
        return {
            "benchmark": "builds",
            "example": example,
            "repeat": repeat,
            "pip_http_cache": "warm (both sides)",
            "cold_build_s": round(med(cold), 4),
            "warm_code_change_rebuild_s": round(med(warm), 4),
            "warm_code_change_rebuild_without_tests_s": round(med(warm_no_tests), 4),
            "plain_venv_pip_copy_s": round(med(plain), 4),
            "speedup_warm_vs_plain": round(med(plain) / med(warm), 2),
            "speedup_cold_vs_plain": round(med(plain) / med(cold), 2),
            "test_status": last_warm.test_status,
            "image_bytes": full,
            "layers": [{"role": layer.role, "bytes": layer.size, "digest": layer.digest} for layer in last_cold.layers],
            "code_change_transfer_bytes": transfer,
            "code_change_transfer_fraction": round(transfer / full, 4),
            "deps_layer_reused_on_code_change": all(layer.reused for layer in last_warm.layers if layer.role == "deps"),
            "goals": {
                "rebuild_5x_faster_than_plain": med(plain) / med(warm) >= 5.0,
                "code_change_transfer_under_5_percent": transfer / full < 0.05,
            },
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--example", default="greeter", help="directory under examples/ (default: greeter)")
    p.add_argument("--repeat", type=int, default=3, help="runs per measurement (median reported)")
    args = p.parse_args()
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    print(json.dumps(run(args.example, args.repeat), indent=2))


if __name__ == "__main__":
    main()
