"""A log flood (issue 18, item 3): each instance's log stays within its cap on the agent and on
the control plane, `/healthz` keeps answering in under 100 ms while viewers follow the logs,
and a token cannot open more follow streams than allowed."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from cvy_platform import Platform, wait_for

pytestmark = pytest.mark.integration

CAP = 256 * 1024
FOLLOWERS = 4

#: The load: FOLLOWERS follow streams of the app's logs, then 4 clients sending 1000 requests each
#: with a 30 KB path straight to the instances (each logs a 30 KB line). Prints {"sent", "followed"}.
LOAD = f"""
import json, sys, threading, httpx
api, token, ports = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
stop = threading.Event()
followed = [0]
opened = threading.Barrier({FOLLOWERS} + 1, timeout=60)
def follower():
    with httpx.Client(base_url=api, headers={{"Authorization": "Bearer " + token}}, timeout=30) as c, \\
            c.stream("GET", "/api/v1/apps/hello/logs", params={{"follow": True, "lines": 10}}) as r:
        assert r.status_code == 200, r.status_code
        opened.wait()
        for chunk in r.iter_bytes():
            followed[0] += len(chunk)
            if stop.is_set():
                return
for _ in range({FOLLOWERS}):
    threading.Thread(target=follower, daemon=True).start()
opened.wait()
print("following", flush=True)
sent = [0]
def flood(port):
    with httpx.Client(timeout=10) as c:
        for _ in range(1000):
            c.get("http://127.0.0.1:%d/%s" % (port, "x" * 30000))
            sent[0] += 1
flooders = [threading.Thread(target=flood, args=(port,)) for port in ports for _ in range(2)]
for t in flooders:
    t.start()
for t in flooders:
    t.join()
stop.set()
print(json.dumps({{"sent": sent[0], "followed": followed[0]}}), flush=True)
"""


def _sizes(logs_dir: Path) -> dict[str, int]:
    """Bytes on disk per instance (both segments)."""
    out: dict[str, int] = {}
    for p in [*logs_dir.glob("*.log"), *logs_dir.glob("*.log.1")]:  # not a rotation's transient temp file
        inst = p.name.split(".log")[0]
        try:
            out[inst] = out.get(inst, 0) + p.stat().st_size
        except FileNotFoundError:  # rotated this instant
            pass
    return out


def test_log_flood_stays_within_its_cap_and_healthz_stays_fast(platform_factory) -> None:  # type: ignore[no-untyped-def]
    p: Platform = platform_factory()
    p.env.update({"CONVEYOR_LOG_MAX_BYTES": str(CAP), "CONVEYOR_LOG_FOLLOWERS_PER_TOKEN": str(FOLLOWERS)})
    p.start()
    p.cli("apps", "create", "hello", check=True)
    dep = p.deploy("hello", p.app_copy())
    assert dep["state"] == "succeeded", dep
    ports = [i["port"] for e in p.api.get("/apps/hello").json()["environments"] for i in e["instances"] if i["port"]]
    assert len(ports) == 2

    # The flood and the followers run in another process, so that the /healthz timings below measure
    # the control plane, not this test's own threads.
    load = subprocess.Popen([sys.executable, "-c", LOAD, p.api_url, p.token, json.dumps(ports)],
                            stdout=subprocess.PIPE, text=True)
    assert load.stdout is not None
    assert load.stdout.readline().strip() == "following", "the followers did not start"
    # One stream more than allowed for this token: refused, with what to do.
    extra = p.api.get("/apps/hello/logs", params={"follow": True})
    assert extra.status_code == 429 and "log streams" in extra.json()["detail"]
    latencies: list[float] = []
    agent_logs, cp_logs = p.data_dir / "agent" / "logs", p.data_dir / "logs"
    peak = 0
    with httpx.Client(timeout=10) as c:
        deadline = time.monotonic() + 120
        while load.poll() is None and time.monotonic() < deadline:
            t0 = time.perf_counter()
            assert c.get(f"{p.api_url}/healthz").status_code == 200
            latencies.append(time.perf_counter() - t0)
            peak = max([peak, *_sizes(agent_logs).values(), *_sizes(cp_logs).values()])
            time.sleep(0.05)
    out, _ = load.communicate(timeout=60)
    stats = json.loads(out.strip().splitlines()[-1])
    sent, followed = stats["sent"], stats["followed"]
    written = sent * 30_000
    assert written > 20 * CAP, f"the flood wrote only {written} bytes"
    # The control plane received the flood (so the cap, not a slow shipper, is what bounds its disk).
    wait_for(lambda: max(_sizes(cp_logs).values()) > CAP // 2, 30, 0.2, "the flood to reach the control plane")
    sizes = {"agent": _sizes(agent_logs), "control plane": _sizes(cp_logs)}
    for where, per in sizes.items():
        assert per and max(per.values()) <= CAP, f"{where}: {per}"
    assert peak <= CAP
    latencies.sort()
    p95 = latencies[int(len(latencies) * 0.95)]
    print(f"\nflood: {sent} requests ({written / 1e6:.0f} MB of log lines), {len(latencies)} /healthz samples: "
          f"median {statistics.median(latencies) * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms; "
          f"followers read {followed / 1e6:.1f} MB; largest log on disk {peak} bytes (cap {CAP})")
    assert len(latencies) >= 20
    assert p95 < 0.100, f"/healthz p95 {p95 * 1000:.0f} ms under a log flood"
    assert followed > 0
    # The logs stay readable: the newest lines come back at once.
    t0 = time.perf_counter()
    res = p.cli("logs", "hello", "-n", "3", "--json", check=True)
    assert len(res.stdout.splitlines()) == 3, res.stdout[:500]
    assert time.perf_counter() - t0 < 10
