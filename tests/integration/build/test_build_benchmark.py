"""Smoke test: benchmarks/builds.py runs and prints its JSON (tiny parameters, an app without deps)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[3] / "benchmarks" / "builds.py"


def test_builds_benchmark_prints_one_json_object() -> None:
    out = subprocess.run(
        [sys.executable, str(BENCH), "--example", "hello", "--repeat", "1"],
        check=False,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["benchmark"] == "builds" and doc["test_status"] == "passed"
    assert doc["plain_venv_pip_copy_s"] > 0 and doc["cold_build_s"] > 0
    assert [layer["role"] for layer in doc["layers"]] == ["app"]
    assert doc["code_change_transfer_bytes"] < doc["image_bytes"] * 2
