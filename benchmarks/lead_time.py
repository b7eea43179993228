"""Benchmark: lead time from `git push` to 100 % in production, real processes (issue 14).

A real ``conveyor up`` (control plane, agent, router) runs in a temporary directory on
free loopback ports; the sample app (examples/hello) is given a two-step canary
(``--step`` seconds at 10 %, then at 50 %, then ``--bake``). A light load goes through
the router the whole time (the canary is judged on real requests). Each run makes one
change (a new VERSION) and ships it two ways, in turns:

1. ``git_push``: ``git commit`` then ``git push conveyor main`` (the push returns once
   the release has all the traffic). Each ``remote:`` line is time-stamped as it
   arrives, so the phases are reported: build and tests, hand-over, the deployment.
2. ``conveyor_deploy`` (the peer, same run): ``conveyor deploy APP --source DIR --wait``
   of the same kind of change (the non-git path: pack, upload, build, deploy).

``excluding_steps_s`` is the wall time minus the configured step and bake durations
(reported apart as ``configured_steps_s``): what Conveyor itself adds. Goal: < 60 s.

    python benchmarks/lead_time.py [--repeat 3] [--step 4] [--bake 1] [--rate 60]

Prints one JSON object (medians, and every run).

Measured on the 2-core dev machine at load average 6-7 (other suites running), 3 changes each
way: `git push` 17.4 s median wall, 8.4 s excluding the 9 s of steps and bake (hook's first
line after 2.9-3.9 s, built and tested 1.0-1.2 s later); the peer `conveyor deploy` 15.9 s
median, 6.9 s excluding.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "integration")]  # the tests' `conveyor up` harness
from cvy_platform import Platform  # noqa: E402

APP = "leadtime"
MANIFEST = """\
[app]
name = "{app}"
[run]
web = "python app.py"
[health]
path = "/healthz"
interval = "200ms"
[test]
command = "python -c \\"import app\\""
[deploy]
strategy = "canary"
steps = [{{weight = 10, for = "{step}s"}}, {{weight = 50, for = "{step}s"}}]
bake = "{bake}s"
drain_timeout = "2s"
[deploy.analysis]
min_requests = 5
[deploy.analysis.threshold]
min_requests = 5
[env.production]
instances = 2
"""


class Load:
    """A few requests a second through the router, from a thread (the canary needs real requests)."""

    def __init__(self, url: str, host: str, rate: float) -> None:
        self.url, self.host, self.interval = url, host, 1.0 / rate
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=5) as c:
            while not self.stop_flag.is_set():
                try:
                    c.get(self.url, headers={"Host": self.host})
                except httpx.HTTPError:
                    pass
                self.stop_flag.wait(self.interval)

    def __enter__(self) -> Load:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_flag.set()
        self.thread.join(10)


def git_env(p: Platform) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    return env | {k: v for k, v in p.env.items() if k.startswith("CONVEYOR_")} | {
        "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_AUTHOR_NAME": "Bench", "GIT_AUTHOR_EMAIL": "bench@example.com",
        "GIT_COMMITTER_NAME": "Bench", "GIT_COMMITTER_EMAIL": "bench@example.com"}


def git(checkout: Path, env: dict[str, str], *args: str) -> str:
    res = subprocess.run(["git", *args], cwd=checkout, env=env, capture_output=True, text=True, timeout=120)
    if res.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)}: {res.stderr}")
    return res.stdout


def timed_push(checkout: Path, env: dict[str, str]) -> tuple[float, int, dict[str, float], str]:
    """``git push conveyor main``: wall time, exit code, when each phase's line arrived, the output."""
    t0 = time.monotonic()
    proc = subprocess.Popen(["git", "push", "conveyor", "main"], cwd=checkout, env=env, stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True)
    assert proc.stderr is not None
    marks: dict[str, float] = {}
    lines = []
    for line in proc.stderr:
        lines.append(line)
        now = time.monotonic() - t0
        for key, text in (("hook_started", "-----> Conveyor:"), ("build_started", "-----> Building #"), ("built", "-----> Building… done"),
                          ("deployment_queued", "-----> Deploying as deployment"), ("released", "-----> Released")):
            if text in line and key not in marks:
                marks[key] = round(now, 2)
    code = proc.wait()
    return time.monotonic() - t0, code, marks, "".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3, help="changes shipped each way")
    ap.add_argument("--step", type=float, default=4.0, help="each canary step's duration, seconds")
    ap.add_argument("--bake", type=float, default=1.0, help="bake after the last step, seconds")
    ap.add_argument("--rate", type=float, default=60.0, help="requests per second during the runs")
    args = ap.parse_args()
    configured = 2 * args.step + args.bake
    runs: dict[str, list[dict[str, Any]]] = {"git_push": [], "conveyor_deploy": []}
    with tempfile.TemporaryDirectory(prefix="cvy-leadtime-bench-") as tmp:
        p = Platform(Path(tmp))
        try:
            p.start()
            p.cli("apps", "create", APP, check=True)
            checkout = Path(tmp) / "checkout"
            shutil.copytree(ROOT / "examples" / "hello", checkout)
            (checkout / "conveyor.toml").write_text(MANIFEST.format(app=APP, step=args.step, bake=args.bake))
            env = git_env(p)
            git(checkout, env, "init", "-q", "-b", "main")
            git(checkout, env, "add", "-A")
            git(checkout, env, "commit", "-q", "-m", "v0")
            add = subprocess.run([sys.executable, "-m", "conveyor", "git-remote", APP, "--add"], cwd=checkout,
                                 env=p.env, capture_output=True, text=True, timeout=60)
            if add.returncode != 0:
                raise RuntimeError(add.stderr)
            _, code, _, out = timed_push(checkout, env)  # the first release (nothing to canary against)
            if code != 0:
                raise RuntimeError(f"first push failed:\n{out}")
            with Load(p.url("/"), f"{APP}.localhost", args.rate):
                for i in range(1, args.repeat + 1):
                    (checkout / "VERSION").write_text(f"git-{i}\n")
                    git(checkout, env, "commit", "-q", "-am", f"change {i}")
                    wall, code, marks, out = timed_push(checkout, env)
                    if code != 0 or "-----> Released" not in out:
                        raise RuntimeError(f"push {i} did not ship:\n{out}")
                    runs["git_push"].append({"wall_s": round(wall, 2), "excluding_steps_s": round(wall - configured, 2),
                                             "phases_s": marks})
                    (checkout / "VERSION").write_text(f"deploy-{i}\n")
                    t0 = time.monotonic()
                    res = p.cli("deploy", APP, "--source", str(checkout), "--wait", "--json", timeout=300)
                    wall = time.monotonic() - t0
                    dep = json.loads(res.stdout) if res.stdout.strip() else {}
                    if dep.get("state") != "succeeded":
                        raise RuntimeError(f"conveyor deploy {i}: {dep.get('state')} ({dep.get('reason')}; "
                                           f"{[v['reason'] for v in dep.get('verdicts', [])]})\n{res.stderr[-2000:]}")
                    runs["conveyor_deploy"].append({"wall_s": round(wall, 2),
                                                    "excluding_steps_s": round(wall - configured, 2)})
                    git(checkout, env, "checkout", "-q", "VERSION")  # the next change starts from the pushed tree
            dora = p.api.get(f"/dora", params={"app": APP, "since": "1d"}).json()["keys"]["lead_time"]
        finally:
            p.stop_all()

    def summary(rs: list[dict[str, Any]]) -> dict[str, Any]:
        return {"median_wall_s": round(statistics.median(r["wall_s"] for r in rs), 2),
                "median_excluding_steps_s": round(statistics.median(r["excluding_steps_s"] for r in rs), 2),
                "runs": rs}

    print(json.dumps({
        "benchmark": "lead_time",
        "params": vars(args),
        "configured_steps_s": configured,
        "goal": {"git_push_excluding_steps_s": 60.0},
        "git_push": summary(runs["git_push"]),
        "conveyor_deploy_peer": summary(runs["conveyor_deploy"]),
        "dora_lead_time": {"median_s": dora["value"], "commits": dora["samples"]},
    }, indent=2))


if __name__ == "__main__":
    main()
