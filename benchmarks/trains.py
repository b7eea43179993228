"""Benchmark: a deploy train of 8 commits with one bad commit in the middle, end to end.

A real ``conveyor up`` (control plane, agent, router) in a temporary directory;
a real local git repository of the sample app; steady load through the router
(``--rate`` requests/s) for the whole run. The app is live at v1; then 8 commits
are queued as one train, the ``--bad``-th of which (1-based, default 5) makes the
app fail ``--fail-rate`` of its requests (every later commit contains it). The
train canaries the whole batch, which fails, then bisects.

Measured: the time from queueing to the culprit's report, the canaries spent
(the batch's own and the bisection's), each try's duration (build + canary),
the commits shipped, and whether the culprit named is the bad commit.

Peer, computed from the same run's measured tries: a linear search, one canary
per commit from the oldest (what deploying each commit alone does): it needs
``bad`` canaries (``bad - 1`` passing, then the failing one); its time is that
many tries at this run's mean passing / failing try durations.

Goal (issue 14): the culprit found in at most 3 bisection canaries, the good
commits shipped. Honest count: the commits *before* the culprit ship; the ones
after it contain it (git history) and stay blocked until a fix is pushed, so
with the bad commit 5th of 8, 4 of the 7 good commits ship.

    python benchmarks/trains.py [--rate 100] [--bad 5] [--step 5] [--bake 3]

Measured on the shared 2-core dev machine (defaults): the culprit (5th) named after 29.5 s from queueing with 4 canaries — the batch's own (failed in 4.2 s) and 3 bisection canaries (#4 passed and shipped in 17.2 s incl. build, promotion and bake; #6 and #5 failed in 3.6 s and 4.1 s); 4 commits shipped (those before the culprit), the 3 good commits after it blocked until a fix. Peer, linear search (one canary per commit from the oldest), computed from the same run's try durations: 5 canaries, 72.9 s. Load: 54 failed of 2,954 requests over the run (the bad canaries' share of 30 %-failing traffic before each rollback).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "integration")]  # the tests' `conveyor up` harness

from cvy_platform import Platform  # noqa: E402
from test_progressive import Traffic, _create, _live, canary_toml  # noqa: E402
from test_trains import commit, enqueue, make_repo, until_ended  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=100.0, help="requests per second through the router")
    ap.add_argument("--commits", type=int, default=8, help="commits in the train")
    ap.add_argument("--bad", type=int, default=5, help="which commit (1-based) is bad")
    ap.add_argument("--fail-rate", type=float, default=0.3, help="share of requests the bad commit fails")
    ap.add_argument("--step", type=float, default=5.0, help="each of the two canary steps, seconds")
    ap.add_argument("--bake", type=float, default=3.0, help="bake after promotion, seconds")
    args = ap.parse_args()
    if not 1 <= args.bad <= args.commits:
        ap.error("--bad must be between 1 and --commits")
    manifest = canary_toml(d1=f"{args.step}s", d2=f"{args.step}s", bake=f"{args.bake}s")
    manifest = manifest.replace('strategy = "canary"\n', f'strategy = "canary"\nmax_commits = {args.commits}\n', 1)
    with tempfile.TemporaryDirectory(prefix="cvy-trains-bench-") as tmp:
        p = Platform(Path(tmp))
        try:
            p.start()
            _create(p, "train")
            _live(p, "train", manifest)
            repo = make_repo(p, "train", manifest)
            shas = []
            for i in range(1, args.commits + 1):
                files = {"behaviour__json": json.dumps({"fail_rate": args.fail_rate})} if i == args.bad else {}
                shas.append(commit(repo, f"v{i + 1}", f"change {i}" + (" (bad)" if i == args.bad else ""), **files))
            with Traffic(p, "train", rate=args.rate, max_s=900) as traffic:
                t0 = time.time()
                (queued,) = enqueue(p, "train", repo, shas)
                t = until_ended(p, queued["id"], 900)
                elapsed = time.time() - t0
            requests = traffic.snapshot()
        finally:
            p.stop_all()
    steps = t["steps"]
    durations = [{"position": s["position"] + 1, "outcome": s["outcome"],
                  "seconds": round(s["finished_at"] - s["created_at"], 2)} for s in steps]
    passing = [d["seconds"] for d in durations if d["outcome"] == "pass"]
    failing = [d["seconds"] for d in durations if d["outcome"] == "fail"]
    mean_pass = statistics.mean(passing) if passing else statistics.mean(failing)
    mean_fail = statistics.mean(failing)
    culprit = t["culprit"] or {}
    out: dict[str, Any] = {
        "benchmark": "trains",
        "params": vars(args),
        "goal": {"max_bisection_canaries": 3},
        "train": {
            "state": t["state"],
            "culprit_found": culprit.get("sha") == shas[args.bad - 1],
            "culprit_position": (culprit.get("position", -2) + 1) or None,
            "culprit_verdict": culprit.get("verdict"),
            "seconds_to_culprit": round(elapsed, 1),
            "canaries": t["canaries"],
            "bisection_canaries": t["canaries"] - 1,
            "tries": durations,
            "commits_shipped": t["shipped"] + 1,
            "good_commits": args.commits - 1,
            "good_commits_blocked_behind_culprit": args.commits - args.bad,
        },
        "peer_linear_search": {
            "canaries": args.bad,
            "seconds": round((args.bad - 1) * mean_pass + mean_fail, 1),
            "how": "computed: (bad-1) passing tries + 1 failing try at this run's mean try durations",
        },
        "load": {"requests": len(requests), "failed": sum(1 for r in requests if r[1] != 200)},
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
