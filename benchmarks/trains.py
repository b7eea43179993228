"""Benchmark: a deploy train of 8 commits with one bad commit in the middle, end to end.

A real ``conveyor up`` (control plane, agent, router) in a temporary directory;
a real local git repository of the sample app; steady load through the router
(``--rate`` requests/s) for the whole run. The app is live at v1; then 8 commits
are queued as one train, each adding a file of its own and moving VERSION on, but
the ``--bad``-th (1-based, default 5), which leaves VERSION alone and makes the app
fail ``--fail-rate`` of its requests (every later commit contains it). The train
canaries the whole batch, which fails, bisects to the culprit, then builds the
newest commit with the culprit reverted and canaries that (so the good commits
after the culprit ship without it).

Measured: the time from queueing to the culprit named and to the end of the
train; canaries to *find* the culprit (the bisection's, after the batch's own
failed canary), and in all (the batch's + the bisection's + the reverted head's);
each try's duration (build + canary); the good commits shipped; whether the
culprit named is the bad commit and whether it stayed out of production.

Peer, computed from the same run's measured tries: a linear search, one canary
per commit from the oldest (what deploying each commit alone does): it needs
``bad`` canaries to find the culprit (``bad - 1`` passing, then the failing one)
and still ships nothing after it; its time is that many tries at this run's mean
passing / failing try durations.

Goal (issue 14): the culprit found in at most 3 bisection canaries, the 7 good
commits shipped.

    python benchmarks/trains.py [--rate 100] [--bad 5] [--step 5] [--bake 3]

Measured on the shared 2-core dev machine (defaults): the culprit (5th) named 30.2 s after queueing,
with 3 canaries to find it after the batch's own (the batch failed in 4.7 s; #4 passed and shipped
in 16.8 s incl. build, promotion and bake; #6 and #5 failed in 3.6 s and 4.7 s); then the 8th commit
built with the 5th reverted passed its canary in 17.3 s: the train ended `shipped` after 47.6 s with
5 canaries in all (1 batch + 3 bisection + 1 ship-without), all 7 good commits shipped, the culprit
not in production (v9 served). Peer, linear search (one canary per commit from the oldest), computed
from the same run's try durations: 5 canaries, 71.5 s, to find the culprit, shipping only the 4
commits before it. Load: 51 failed of 4,862 requests over the run (the bad canaries' share of 30
%-failing traffic before each rollback).
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

from cvy_platform import Platform, Traffic, wait_for  # noqa: E402
from test_progressive import _live, canary_toml  # noqa: E402
from test_trains import commit, enqueue, make_repo, train, until_ended  # noqa: E402


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
            p.create_app("train")
            _live(p, "train", manifest)
            repo = make_repo(p, "train", manifest)
            shas = []
            version = "v1"
            for i in range(1, args.commits + 1):
                files = {f"change-{i}": f"{i}\n"}  # each commit its own file: the culprit reverts cleanly
                if i == args.bad:
                    files["behaviour__json"] = json.dumps({"fail_rate": args.fail_rate})
                else:
                    version = f"v{i + 1}"
                shas.append(commit(repo, version, f"change {i}" + (" (bad)" if i == args.bad else ""), **files))
            with Traffic(p, "train", rate=args.rate, max_s=900) as traffic:
                t0 = time.time()
                (queued,) = enqueue(p, "train", repo, shas)
                wait_for(lambda: train(p, queued["id"])["culprit"] is not None
                         or train(p, queued["id"])["state"] != "running", 900, 0.2, "the culprit named")
                to_culprit = time.time() - t0
                t = until_ended(p, queued["id"], 900)
                elapsed = time.time() - t0
                served = {p.get("train.localhost").headers.get("X-App-Version") for _ in range(20)}
            requests = traffic.snapshot()
        finally:
            p.stop_all()
    steps = t["steps"]
    durations = [{"position": s["position"] + 1, "outcome": s["outcome"], "reverted": s["reverted"],
                  "canary": s["deployment_id"] is not None,
                  "seconds": round(s["finished_at"] - s["created_at"], 2)} for s in steps]
    passing = [d["seconds"] for d in durations if d["outcome"] == "pass" and not d["reverted"]]
    failing = [d["seconds"] for d in durations if d["outcome"] == "fail" and not d["reverted"]]
    bisection = [d for d in durations if not d["reverted"]]
    statuses = [c["status"] for c in t["commits"]]
    mean_pass = statistics.mean(passing) if passing else statistics.mean(failing)
    mean_fail = statistics.mean(failing)
    culprit = t["culprit"] or {}
    out: dict[str, Any] = {
        "benchmark": "trains",
        "params": vars(args),
        "goal": {"max_canaries_to_find_culprit": 3, "good_commits_shipped": args.commits - 1},
        "train": {
            "state": t["state"],
            "reason": t["reason"],
            "culprit_found": culprit.get("sha") == shas[args.bad - 1],
            "culprit_position": (culprit.get("position", -2) + 1) or None,
            "culprit_verdict": culprit.get("verdict"),
            "culprit_revert": culprit.get("revert"),
            "seconds_to_culprit": round(to_culprit, 1),
            "seconds_to_end": round(elapsed, 1),
            "canaries_to_find_culprit": sum(1 for d in bisection[1:] if d["canary"]),
            "canaries_total": t["canaries"],
            "canaries_breakdown": {"batch": int(bisection[0]["canary"]),
                                   "bisection": sum(1 for d in bisection[1:] if d["canary"]),
                                   "ship_without_culprit": sum(1 for d in durations if d["reverted"] and d["canary"])},
            "tries": durations,
            "good_commits": args.commits - 1,
            "good_commits_shipped": sum(1 for i, st in enumerate(statuses) if st == "shipped" and i != args.bad - 1),
            "good_commits_blocked": statuses.count("blocked"),
            "statuses": statuses,
            "culprit_in_production": culprit.get("position") is not None and statuses[culprit["position"]] == "shipped",
            "versions_served_at_end": sorted(v or "" for v in served),
        },
        "peer_linear_search": {
            "canaries": args.bad,
            "seconds": round((args.bad - 1) * mean_pass + mean_fail, 1),
            "how": "computed: (bad-1) passing tries + 1 failing try at this run's mean try durations; "
                   "ships the bad-1 commits before the culprit only",
        },
        "load": {"requests": len(requests), "failed": sum(1 for r in requests if r[1] != 200)},
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
