"""The detection benchmark runs end to end with tiny parameters and prints its JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_detection_benchmark_smoke() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "detection.py"), "--runs", "20", "--seconds", "60", "--chunk", "10"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert set(report["judges"]) == {"sequential", "threshold", "mannwhitney_fixed", "mannwhitney_repeated"}
    seq = report["judges"]["sequential"]
    assert seq["aa_runs"] == 20
    assert seq["regressions"]["latency_p50_+100%"]["detection_rate"] > 0.5
    assert "60" in report["judges"]["mannwhitney_fixed"]["by_interval_s"]
    assert set(report["goals"]) == {
        "sequential_false_rollbacks_le_alpha",
        "errors_x5_requests",
        "repeated_mannwhitney_inflates_false_rollbacks",
    }


def test_detection_benchmark_refuses_bad_arguments() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "detection.py"), "--runs", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "--runs and --chunk must be >= 1" in proc.stderr
