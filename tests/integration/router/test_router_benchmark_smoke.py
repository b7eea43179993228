"""The benchmark runs end to end with tiny parameters (needs haproxy and wrk)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]


def test_benchmark_smoke() -> None:
    for tool, pkg in (("haproxy", "haproxy"), ("wrk", "wrk")):
        if not (shutil.which(tool) or Path(f"/usr/sbin/{tool}").exists()):
            if os.environ.get("CI") == "true":
                pytest.fail(f"needs {pkg} (apt-get install {pkg})")
            pytest.skip(f"needs {pkg} (apt-get install {pkg})")
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "router.py"), "--duration", "1", "--rounds", "1", "--connections", "4", "--micro-repeat", "2"],
        capture_output=True, text=True, timeout=180, check=True,
    ).stdout
    res = json.loads(out)
    for k in ("haproxy", "router", "router_no_metrics", "router_pure_python", "minimal_proxy"):
        assert res[k]["requests"] > 0 and res[k]["rps"] > 0, res
        assert res[k]["errors"] == 0, res
    assert res["ratios"]["throughput_router_vs_haproxy"] > 0
    assert res["ratios"]["throughput_compiled_vs_pure_python"] > 0
    assert res["router_build"]["mode"] in ("compiled", "pure-python"), res["router_build"]


@pytest.mark.parametrize("kind", ["router", "router_no_metrics", "minimal_proxy"])
def test_hot_path_loop_completes(kind: str) -> None:
    """What ``--instructions`` runs under valgrind: the in-process request path, which
    fails (exit status) if the fake exchanges stop completing."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "router.py"), "--hot-path-loop", kind, "--loop-n", "50"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr


def test_tls_benchmark_smoke() -> None:
    """``--tls-only``: HTTPS keep-alive and handshake runs against the router and HAProxy, same certificate."""
    for tool, pkg in (("haproxy", "haproxy"), ("wrk", "wrk")):
        if not (shutil.which(tool) or Path(f"/usr/sbin/{tool}").exists()):
            if os.environ.get("CI") == "true":
                pytest.fail(f"needs {pkg} (apt-get install {pkg})")
            pytest.skip(f"needs {pkg} (apt-get install {pkg})")
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "router.py"), "--tls-only", "--duration", "1", "--rounds", "1", "--connections", "4"],
        capture_output=True, text=True, timeout=180, check=True,
    ).stdout
    tls = json.loads(out)["tls"]
    for k in ("haproxy_keepalive", "router_keepalive", "haproxy_handshake", "router_handshake"):
        assert tls[k]["requests"] > 0 and tls[k]["errors"] == 0, tls
    assert tls["ratios"]["keepalive_rps_router_vs_haproxy"] > 0 and tls["ratios"]["handshakes_per_s_router_vs_haproxy"] > 0
