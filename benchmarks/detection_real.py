"""Benchmark: canary verdicts on real processes (issue 10, item 4). Run as ``detection.py --real``.

The simulated half of ``benchmarks/detection.py`` measures the judges on synthetic
traffic. This half measures what a user sees: a real ``conveyor up`` (control
plane, agent, router) in a temporary directory on free loopback ports, real app
instances, and steady open-loop load through the router (``--rate`` requests per
second per app, each sent on schedule whatever the previous ones do).

Two kinds of app, both a small standard-library HTTP server (:data:`APP`) with a
base error rate of ``--base-errors``:

* ``fast``: answers at once (sub-millisecond responses, the case of issue 10);
* ``jittery``: sleeps a log-normal ~20 ms (median ``--latency-ms``, sigma 0.25).

Per app, an initial release goes live, then:

* **A/A** (``--aa-runs`` times): a canary of a release identical to the live one
  except for its version string (two images, v1 and v2, deployed in turn, so each
  run starts fresh instances of code that is already live). Every rollback is a
  *false* rollback; the verdict's reason is kept.
* **worse releases** (``--bad-runs`` times each), from the live good release:
  ``errors_x5`` (five times the base error rate, both apps), ``p50_x1.5`` (every
  response 50 % slower, jittery app), ``p99_x2`` (2 % of responses ~50 ms slower,
  which doubles the p99, jittery app). Measured: detection rate (rolled back),
  time to detect (the failing verdict's time minus the canary's first request as
  the clients saw it) and the judge that caught it.

The deployments use the app's *default* analysis (no ``[deploy.analysis]``
table) and short steps (``--steps``), so what is measured is what a user gets.
``--manifest-extra`` adds lines to ``[deploy]`` (e.g. ``baseline = false``) to
compare settings. The two apps run side by side (``--sequential`` to run one
after the other). One JSON object on stdout; progress on stderr.

Figures measured on the shared 2-core machine, and the choice of the default
comparison they support: docs/ARCHITECTURE.md, "Like for like" and "Verdicts on
real processes".

    python benchmarks/detection.py --real                      # the full run (≈ 30-40 min)
    python benchmarks/detection.py --real --aa-runs 2 --bad-runs 1 --rate 60   # smoke (≈ 3 min)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT / "tests"), str(ROOT / "tests" / "integration")]

from cvy_platform import Platform, wait_for  # noqa: E402
from rollback import OpenLoop, Sample, _Pool  # noqa: E402  (the open-loop generator; one copy of it)

#: The benchmark's app: standard library only; ``bench.json`` next to it sets its behaviour.
APP = '''\
"""A benchmark app: answers GET / with its version after a latency drawn from a model."""
import json, math, os, random, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
VERSION = (HERE / "VERSION").read_text().strip()
CFG = json.loads((HERE / "bench.json").read_text())
MEDIAN = CFG["latency_ms"] / 1000.0 * CFG.get("p50_factor", 1.0)
SIGMA = CFG.get("sigma", 0.25)
ERRORS = CFG.get("error_rate", 0.0)
TAIL_SHARE = CFG.get("tail_share", 0.0)
TAIL_EXTRA = CFG.get("tail_extra_ms", 0.0) / 1000.0


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_GET(self):
        if self.path != "/healthz":
            delay = MEDIAN * math.exp(random.gauss(0.0, SIGMA)) if MEDIAN else 0.0
            if TAIL_SHARE and random.random() < TAIL_SHARE:
                delay += TAIL_EXTRA * random.uniform(0.8, 1.2)
            if delay:
                time.sleep(delay)
        status = 500 if self.path != "/healthz" and random.random() < ERRORS else 200
        body = f"{VERSION}\\n".encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-App-Version", VERSION)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
server.daemon_threads = True
server.serve_forever()
'''

MANIFEST = """\
[run]
web = "python bench_app.py"
[health]
path = "/healthz"
interval = "200ms"
[deploy]
strategy = "canary"
steps = {steps}
bake = "{bake}s"
drain_timeout = "2s"
{extra}
[env.production]
instances = {instances}
"""

ENDED = {"succeeded", "failed", "rolled_back", "cancelled", "paused"}

#: Bounds of the load generator over a long run: requests in flight (an open loop on a stalled
#: machine otherwise opens a connection per request until it runs out of file descriptors) and
#: idle keep-alive connections kept (a burst's connections are closed, not hoarded).
MAX_IN_FLIGHT = 256
MAX_IDLE = 32


class _BoundedPool(_Pool):
    async def get(self) -> tuple[int, str]:
        out = await super().get()
        while len(self.idle) > MAX_IDLE:
            self.idle.pop(0)[1].close()
        return out


class BoundedLoad(OpenLoop):
    """:class:`rollback.OpenLoop` with at most ``MAX_IN_FLIGHT`` requests in flight (the rest are
    skipped and counted) and at most ``MAX_IDLE`` idle connections kept."""

    def __init__(self, url: str, host: str, rate: float, max_s: float) -> None:
        super().__init__(url, host, rate, max_s, max_in_flight=MAX_IN_FLIGHT)

    def _pool(self) -> _Pool:
        return _BoundedPool(self.url, self.host)


@dataclass(frozen=True)
class Variant:
    name: str
    behaviour: dict[str, float]


def variants(kind: str, args: argparse.Namespace) -> tuple[dict[str, float], list[Variant]]:
    """The good behaviour of an app kind, and its worse releases."""
    good: dict[str, float] = {"latency_ms": 0.0 if kind == "fast" else args.latency_ms, "error_rate": args.base_errors}
    bad = [Variant("errors_x5", {**good, "error_rate": 5 * args.base_errors})]
    if kind == "jittery":
        bad += [Variant("p50_x1.5", {**good, "p50_factor": 1.5}),
                Variant("p99_x2", {**good, "tail_share": 0.02, "tail_extra_ms": 2.5 * args.latency_ms})]
    return good, bad


def manifest(args: argparse.Namespace) -> str:
    steps = "[" + ", ".join(f'{{weight = {w}, for = "{d}s"}}' for w, d in args.steps) + "]"
    return MANIFEST.format(steps=steps, bake=args.bake, extra="\n".join(args.manifest_extra), instances=args.instances)


def build(p: Platform, app: str, version: str, behaviour: dict[str, float], toml: str) -> str:
    from conveyor.build.archive import pack_directory

    src = p.app_copy(app, version, conveyor__toml=toml, bench_app__py=APP, bench__json=json.dumps(behaviour))
    r = p.api.post(f"/apps/{app}/builds", content=pack_directory(src), headers={"Content-Type": "application/gzip"})
    r.raise_for_status()
    b = wait_for(lambda: (x := p.api.get(f"/builds/{r.json()['id']}").json())["state"] in ("succeeded", "failed") and x,
                 300, 0.1, f"the build of {app} {version}")
    if b["state"] != "succeeded":
        raise RuntimeError(f"build of {app} {version} failed: {b.get('error')}")
    return str(b["image"]["digest"])


def deploy(p: Platform, app: str, digest: str, timeout: float) -> dict[str, Any]:
    """Queue a deployment and follow it to its end (a pause counts as an end; it is then aborted)."""
    r = p.api.post(f"/apps/{app}/deployments", json={"env": "production", "image": digest})
    r.raise_for_status()
    dep_id = r.json()["id"]
    t0 = time.time()
    try:
        dep = wait_for(lambda: (d := p.api.get(f"/deployments/{dep_id}").json())["state"] in ENDED and d,
                       timeout, 0.1, f"deployment {dep_id} of {app} to end")
    except AssertionError:
        dep = {**p.api.get(f"/deployments/{dep_id}").json(), "timed_out": True}
    if dep["state"] not in ("succeeded", "failed", "rolled_back", "cancelled"):
        p.cli("abort", app)
        wait_for(lambda: p.api.get(f"/deployments/{dep_id}").json()["state"] in ("rolled_back", "failed", "succeeded",
                                                                                 "cancelled"),
                 60, 0.1, f"deployment {dep_id} of {app} to be aborted")
    dep["_t_deploy"] = t0
    return dep  # type: ignore[no-any-return]


def one_run(p: Platform, app: str, digest: str, version: str, load: BoundedLoad, args: argparse.Namespace) -> dict[str, Any]:
    if not load.alive:
        raise RuntimeError("the load generator stopped; see stderr")
    n_before, late, skipped = len(load.samples), load.late, load.skipped
    dep = deploy(p, app, digest, args.run_timeout)
    t0 = dep["_t_deploy"]
    samples: list[Sample] = load.samples[n_before:]
    mine = [s for s in samples if s.version == version and s.sent >= t0]
    others = [s for s in samples if s.version not in ("", version) and s.sent >= t0]
    fails = [v for v in dep.get("verdicts") or [] if v["outcome"] == "fail"]
    out: dict[str, Any] = {
        "deployment": dep["id"],
        "state": dep["state"],
        "reason": dep.get("reason"),
        "seconds": round(time.time() - t0, 1),
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "generator_late_sends": load.late - late,
        "generator_skipped_sends": load.skipped - skipped,
        "canary_requests_seen_by_clients": len(mine),
        "canary_client_error_rate": _rate(mine),
        "stable_client_error_rate": _rate(others),
        "canary_client_p50_ms": _q(mine, 0.5),
        "stable_client_p50_ms": _q(others, 0.5),
        "canary_client_p99_ms": _q(mine, 0.99),
        "stable_client_p99_ms": _q(others, 0.99),
    }
    if dep.get("timed_out"):
        out["timed_out"] = True
    # How close each step came to a rollback: the sequential judge's largest e-value over its level.
    closest = {}
    for v in dep.get("verdicts") or []:
        n = v.get("numbers") or {}
        e = next((x for k, x in n.items() if k.endswith("largest_e_value") and x is not None), None)
        level = min((x for k, x in n.items() if k.endswith("e_value_level") and x), default=None)
        if e is not None and level:
            closest[str(v["step"])] = max(closest.get(str(v["step"]), 0.0), round(e / level, 4))
    if closest:
        out["largest_e_value_over_level_by_step"] = closest
    if fails:
        f = fails[0]
        named = re.search(r"Failed by (\w+)", f.get("reason") or "")
        out["failed_by"] = named.group(1) if named else f.get("judge")  # the step verdict's judge is "combined"
        out["failed_at_step"] = f.get("step")
        if mine:
            out["time_to_detect_s"] = round(f["at"] - mine[0].sent, 2)
    return out


def _rate(samples: list[Sample]) -> float | None:
    return round(sum(1 for s in samples if s.status != 200) / len(samples), 4) if samples else None


def _q(samples: list[Sample], q: float) -> float | None:
    lat = sorted(s.done - s.sent for s in samples if s.status == 200)
    return round(1000 * lat[min(len(lat) - 1, int(q * len(lat)))], 2) if lat else None


def run_app(p: Platform, kind: str, args: argparse.Namespace, out: dict[str, Any], lock: threading.Lock) -> None:
    app = f"bench-{kind}"
    toml = manifest(args)
    good, bad = variants(kind, args)
    p.cli("apps", "create", app, check=True)
    v1, v2 = build(p, app, "v1", good, toml), build(p, app, "v2", good, toml)
    bads = [(v, build(p, app, v.name, v.behaviour, toml)) for v in bad if v.name not in args.skip]
    first = deploy(p, app, v1, args.run_timeout)
    assert first["state"] == "succeeded", first
    result: dict[str, Any] = {"good_behaviour": good}
    load = BoundedLoad(p.url("/"), f"{app}.localhost", args.rate, args.max_load_s).start()
    try:
        wait_for(lambda: len(load.samples) >= args.rate, 30, 0.05, "load to flow")
        live = "v1"
        aa: list[dict[str, Any]] = []
        for i in range(0 if "aa" in args.skip else args.aa_runs):
            nxt = "v2" if live == "v1" else "v1"
            r = one_run(p, app, v2 if nxt == "v2" else v1, nxt, load, args)
            aa.append(r)
            _progress(kind, f"A/A {i + 1}/{args.aa_runs}", r)
            if r["state"] == "succeeded":
                live = nxt
        if aa:
            result["aa"] = summarise_aa(aa)
        for variant, digest in bads:
            runs = []
            for i in range(args.bad_runs):
                r = one_run(p, app, digest, variant.name, load, args)
                runs.append(r)
                _progress(kind, f"{variant.name} {i + 1}/{args.bad_runs}", r)
                if r["state"] == "succeeded":  # a miss became live: put the good release back
                    deploy(p, app, v1, args.run_timeout)
            result[variant.name] = summarise_bad(runs, variant.behaviour)
        result["load"] = {"requests": len(load.samples), "generator_late_sends": load.late,
                          "generator_skipped_sends": load.skipped,
                          "transport_errors": sum(1 for x in load.samples if isinstance(x.status, str))}
    finally:
        load.stop()
    with lock:
        out[kind] = result


def _progress(kind: str, what: str, r: dict[str, Any]) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {kind} {what}: {r['state']} in {r['seconds']}s "
          f"({r['canary_requests_seen_by_clients']} canary requests) {r.get('reason') or ''}"[:400], file=sys.stderr)


def summarise_aa(runs: list[dict[str, Any]]) -> dict[str, Any]:
    rolled = [r for r in runs if r["state"] == "rolled_back"]
    return {
        "runs": len(runs),
        "promoted": sum(1 for r in runs if r["state"] == "succeeded"),
        "false_rollbacks": len(rolled),
        "other_outcomes": sorted(r["state"] for r in runs if r["state"] not in ("succeeded", "rolled_back")),
        "false_rollback_reasons": [r["reason"] for r in rolled],
        "median_run_s": statistics.median(r["seconds"] for r in runs),
        # 1.0 is a rollback: how near the healthy canaries came to one (the sequential judge's e-value / level)
        "largest_e_value_over_level": max((x for r in runs for x in (r.get("largest_e_value_over_level_by_step") or {}
                                                                         ).values()), default=None),
        "each": runs,
    }


def summarise_bad(runs: list[dict[str, Any]], behaviour: dict[str, float]) -> dict[str, Any]:
    caught = [r for r in runs if r["state"] == "rolled_back"]
    ttd = sorted(r["time_to_detect_s"] for r in caught if "time_to_detect_s" in r)
    return {
        "behaviour": behaviour,
        "runs": len(runs),
        "detected": len(caught),
        "detection_rate": round(len(caught) / len(runs), 3) if runs else None,
        "time_to_detect_s": {"median": statistics.median(ttd), "max": max(ttd), "min": min(ttd)} if ttd else None,
        "caught_by": sorted({str(r.get("failed_by")) for r in caught}),
        "missed": [{"state": r["state"], "reason": r["reason"]} for r in runs if r["state"] != "rolled_back"],
        "each": runs,
    }


def parse_steps(text: str) -> list[tuple[int, float]]:
    """``"20:10,50:10"`` → [(20, 10.0), (50, 10.0)]: weight % and seconds per step."""
    out = []
    for part in text.split(","):
        w, _, d = part.partition(":")
        out.append((int(w), float(d)))
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="detection.py --real", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--aa-runs", type=int, default=30, help="A/A canaries per app")
    ap.add_argument("--bad-runs", type=int, default=10, help="canaries of each worse release per app")
    ap.add_argument("--rate", type=float, default=150.0, help="requests per second per app (open loop)")
    ap.add_argument("--steps", type=parse_steps, default=parse_steps("20:10,50:10"),
                    help="canary steps as weight:seconds,... (default 20:10,50:10)")
    ap.add_argument("--bake", type=float, default=5.0, help="bake after promotion, seconds")
    ap.add_argument("--instances", type=int, default=2, help="instances of each release")
    ap.add_argument("--latency-ms", type=float, default=20.0, help="the jittery app's median latency")
    ap.add_argument("--base-errors", type=float, default=0.01, help="the good releases' error rate")
    ap.add_argument("--manifest-extra", action="append", default=[], help="a line added to [deploy] (repeatable)")
    ap.add_argument("--apps", default="fast,jittery", help="which app kinds: fast,jittery")
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: aa,errors_x5,p50_x1.5,p99_x2")
    ap.add_argument("--sequential", action="store_true", help="run the apps one after the other, not side by side")
    ap.add_argument("--run-timeout", type=float, default=180.0, help="upper bound on one deployment, seconds")
    ap.add_argument("--max-load-s", type=float, default=4 * 3600.0, help="upper bound on each app's load, seconds")
    args = ap.parse_args(argv)
    args.skip = set(filter(None, args.skip.split(",")))
    kinds = [k for k in args.apps.split(",") if k]
    for k in kinds:
        if k not in ("fast", "jittery"):
            ap.error(f"--apps: unknown app kind {k!r} (use fast, jittery)")

    t_start = time.time()
    result: dict[str, Any] = {
        "benchmark": "detection_real",
        "params": {k: (sorted(v) if isinstance(v, set) else v) for k, v in vars(args).items()},
        "machine": {"cpus": os.cpu_count(), "loadavg_at_start": os.getloadavg()},
    }
    apps: dict[str, Any] = {}
    errors: dict[str, str] = {}
    lock = threading.Lock()
    with tempfile.TemporaryDirectory(prefix="cvy-detection-real-") as tmp:
        p = Platform(Path(tmp))
        try:
            p.start()

            def guarded(kind: str) -> None:
                try:
                    run_app(p, kind, args, apps, lock)
                except Exception as exc:  # noqa: BLE001 - reported in the JSON, the other app goes on
                    errors[kind] = f"{type(exc).__name__}: {exc}"[:2000]

            threads = [threading.Thread(target=guarded, args=(k,)) for k in kinds]
            for t in threads:
                t.start()
                if args.sequential:
                    t.join()
            for t in threads:
                t.join()
        finally:
            p.stop_all()
    result["apps"] = apps
    if errors:
        result["errors"] = errors
    result["machine"]["loadavg_at_end"] = os.getloadavg()
    result["wall_s"] = round(time.time() - t_start, 1)
    result["summary"] = summary(apps)
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")


def summary(apps: dict[str, Any]) -> dict[str, Any]:
    aa_runs = sum(a["aa"]["runs"] for a in apps.values() if "aa" in a)
    false = sum(a["aa"]["false_rollbacks"] for a in apps.values() if "aa" in a)
    out: dict[str, Any] = {
        "aa_runs": aa_runs,
        "false_rollbacks": false,
        "false_rollback_rate": round(false / aa_runs, 4) if aa_runs else None,
        "alpha": 0.01,  # the default [deploy.analysis] alpha
        "false_rollbacks_per_app": {k: a["aa"]["false_rollbacks"] for k, a in apps.items() if "aa" in a},
        "detection_rate": {f"{k}.{v}": a[v]["detection_rate"] for k, a in apps.items()
                           for v in ("errors_x5", "p50_x1.5", "p99_x2") if v in a},
    }
    must = [v for k, v in out["detection_rate"].items() if k.endswith(("errors_x5", "p50_x1.5"))]
    out["met_goal"] = {
        "zero_false_rollbacks_each_app": aa_runs > 0 and false == 0,
        "errors_x5_and_p50_caught_every_run": bool(must) and all(r == 1.0 for r in must),
    }
    return out


if __name__ == "__main__":
    main()
