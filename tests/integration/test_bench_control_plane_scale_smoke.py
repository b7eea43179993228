"""benchmarks/control_plane_scale.py runs end to end at a tiny scale (5 SIMULATED hosts, 20
instances, 2 SIMULATED routers) against a real `conveyor server`, so that it cannot rot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def test_control_plane_scale_benchmark_smoke() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "control_plane_scale.py"), "--hosts", "5", "--apps", "1", "--envs", "2",
         "--instances", "10", "--routers", "2", "--idle", "2", "--changes", "1", "--deploys", "1", "--settle", "0.5",
         "--probe-rate", "10", "--setup-timeout", "90", "--change-timeout", "30"],
        capture_output=True, text=True, timeout=240, check=True,
    ).stdout
    res = json.loads(out)
    assert res["errors"] == {}, res["errors"]
    assert res["setup"]["routed"] == 20
    assert res["simulation"]["hosts"] == 5 and "SIMULATED" in res["simulation"]["what"]
    for kind in ("scale_down", "scale_up", "deploy"):
        change = res["routing_change_s"][kind]
        assert change["all_routers_held_it"] == change["changes"] == 1, res["routing_change_s"]
        assert change["per_router"]["n"] == 2
    assert res["api_ms"]["GET /apps"]["n"] > 0 and res["api_ms"]["PUT /agents/{host}/status (simulated agents)"]["n"] > 0
    assert res["control_plane_cpu"]["idle"]["cores"] > 0
