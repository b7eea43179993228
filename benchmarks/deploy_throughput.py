"""Benchmark: deploy throughput, 50 apps on 3 hosts, blue/green, real processes (issue 13).

A real ``conveyor up`` (control plane, router, a local agent) listens on a bridge
address; two more agents run in network namespaces on that bridge
(``tests/integration/netns_hosts.py``), so there are three hosts. ``--apps`` apps
are made, each from its own build of the sample app (``examples/hello``, one
instance, health check ``/healthz``), and deployed once. Then:

1. ``single_app`` (the peer, same run): one client deploys one app back to back
   from its built image (``POST /apps/APP/deployments {image}``, then follow it
   until it ends and every router holds its table: what ``conveyor deploy
   --image D --wait`` does) for ``--single-s`` seconds.
2. ``many_apps``: ``--clients`` clients do the same concurrently, each cycling
   through its share of the apps, for ``--duration`` seconds (after ``--warmup``
   seconds of the same, not counted: every host unpacks an app's image once).

Throughout both, an open-loop load (``--rate`` requests/s per app, sent on
schedule whatever the previous ones do) runs through the router against
``--load-apps`` of the apps (the single app among them); every transport error
and every non-200 counts as a failed request.

Measured: deploys per minute sustained (deploys that ended in the window / its
length), the time of one deploy (request to release serving: the deployment
succeeded and every router holds its table) p50/p99, the same split into queue
(created → started), start-to-switch (started → finished, on the control plane's
clock) and the routers' sync; failed requests; and what limits it: the CPU time
of each process family over the window (control plane, router, each agent, the
app instances with their sandbox wrappers, the log writers, this benchmark's
clients and load, and everything else on the machine), from ``/proc``, and with
``--profile S`` a py-spy profile of the control plane (share of samples in SQL,
the busiest functions).

    sudo .venv/bin/python benchmarks/deploy_throughput.py [--apps 50] [--clients 8] [--duration 150]

Needs root (network namespaces) and iproute2; prints one JSON object. Goal (issue
13): >= 120 deploys a minute across the 50 apps, 0 failed requests.

Measured on the shared 2-core dev machine (defaults, twice; other engineers' runs took
55-61 % of the CPU): 66.8 and 104.8 deploys a minute (p50 6.4 / 4.0 s, p99 14.6 / 9.0 s),
0 failed of ~23,600 requests each; the single-app peer 44 and 60 a minute (p50 1.1 / 0.8 s);
0.69 / 0.50 CPU-seconds of our processes per deploy, the control plane the largest share
(0.24 / 0.18 s, 71-73 % of its busy samples in SQL). Short of 120 a minute: CPU-bound.
docs/ARCHITECTURE.md (Capacity) has the breakdown and what changed to get here.
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
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "integration")]  # the tests' `conveyor up` harness

from cvy_platform import Platform, wait_for  # noqa: E402
from netns_hosts import HostNetwork  # noqa: E402
from rollback import OpenLoop  # noqa: E402

MANIFEST = """\
[app]
name = "{app}"

[run]
web = "python app.py"

[health]
path = "/healthz"
timeout = "2s"

[deploy]
strategy = "bluegreen"
bake = "{bake}s"
drain_timeout = "{drain}s"

[env.production]
instances = {instances}
"""

# -- pure parts (tests/unit/test_deploy_throughput_bench.py calls them) -------------------------


def quantile(values: Iterable[float], q: float) -> float | None:
    """The ``q`` quantile of ``values`` by linear interpolation between closest ranks; None if empty."""
    xs = sorted(values)
    if not xs:
        return None
    pos = q * (len(xs) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def assign_apps(apps: list[str], clients: int) -> list[list[str]]:
    """Each client's apps, round robin: no app is ever deployed by two clients at once."""
    return [apps[i::clients] for i in range(min(clients, len(apps)))]


@dataclass(frozen=True)
class DeployRecord:
    app: str
    sent: float  # time.time() when the request was sent
    done: float  # when the client saw it end (and the routers synced)
    state: str
    created_at: float | None = None  # the control plane's times
    started_at: float | None = None
    finished_at: float | None = None
    synced: bool | None = None  # every live router held its table when the client returned


def deploy_stats(records: list[DeployRecord], t0: float, t1: float) -> dict[str, Any]:
    """Throughput and latency of the deploys that ended within ``[t0, t1]``."""
    window = [r for r in records if t0 <= r.done <= t1]
    ok = [r for r in window if r.state == "succeeded"]
    minutes = (t1 - t0) / 60.0

    def q(xs: list[float]) -> dict[str, float | None]:
        return {k: None if (v := quantile(xs, p)) is None else round(v, 3)
                for k, p in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))} | {
            "max": round(max(xs), 3) if xs else None}

    total = [r.done - r.sent for r in ok]
    queued = [r.started_at - r.created_at for r in ok if r.started_at and r.created_at]
    switching = [r.finished_at - r.started_at for r in ok if r.finished_at and r.started_at]
    after = [r.done - r.finished_at for r in ok if r.finished_at]
    return {
        "window_s": round(t1 - t0, 1),
        "deploys": len(window),
        "succeeded": len(ok),
        "not_succeeded": dict(Counter(r.state for r in window if r.state != "succeeded")),
        "deploys_per_minute": round(len(ok) / minutes, 1) if minutes > 0 else None,
        "apps_deployed": len({r.app for r in ok}),
        "deploy_s": q(total),
        "split_s": {
            "queued": q(queued),  # created → the orchestrator started it
            "start_to_switch": q(switching),  # started → traffic switched (new instances started and ready)
            "switch_to_client": q(after),  # finished → the client saw it and every router held the table
        },
        "routers_not_synced": sum(1 for r in ok if r.synced is False),
    }


@dataclass
class ProcSample:
    """utime+stime (clock ticks) of each live pid, its parent and command line, at one moment."""

    at: float
    ticks: dict[int, int] = field(default_factory=dict)
    parent: dict[int, int] = field(default_factory=dict)
    cmdline: dict[int, str] = field(default_factory=dict)
    machine_busy: int = 0  # every CPU's non-idle ticks (/proc/stat)


def parse_stat(text: str) -> tuple[int, int]:
    """(ppid, utime + stime) from a ``/proc/PID/stat`` line (the command may hold spaces and ')')."""
    rest = text[text.rindex(")") + 2:].split()
    return int(rest[1]), int(rest[11]) + int(rest[12])


def machine_busy(stat_text: str) -> int:
    """Non-idle ticks of all CPUs from ``/proc/stat``'s first line (idle and iowait excluded)."""
    parts = stat_text.splitlines()[0].split()[1:]
    vals = [int(x) for x in parts[:8]]
    return sum(vals) - vals[3] - vals[4]


def classify(pid: int, sample: ProcSample, roots: dict[int, str], bench_pid: int) -> str:
    """The family a process belongs to: the nearest known ancestor (server, router, an agent, up),
    then by its own command line (log writer, build worker, app instance and its wrappers)."""
    if pid == bench_pid:
        return "benchmark (clients + load)"
    seen = 0
    cur = pid
    while cur > 1 and seen < 64:
        if cur in roots:
            root = roots[cur]
            if cur == pid:
                return root
            cmd = sample.cmdline.get(pid, "")
            if "conveyor.logfile" in cmd:
                return f"{root}: log writers"
            if "conveyor.build.worker" in cmd:
                return f"{root}: build workers"
            if root.startswith("agent"):
                return f"{root}: app instances"
            return f"{root}: children"
        cur = sample.parent.get(cur, 0)
        seen += 1
    return "other (not this benchmark's)"


def cpu_by_family(first: ProcSample, last: ProcSample, middle: list[ProcSample], roots: dict[int, str],
                  bench_pid: int, hz: int) -> dict[str, float]:
    """CPU seconds per family between ``first`` and ``last``: each pid's last reading minus its first
    (a pid born in between counts from 0; one that died counts up to its last reading)."""
    seen_first: dict[int, int] = dict(first.ticks)
    newest: dict[int, tuple[int, ProcSample]] = {}
    for s in [first, *middle, last]:
        for pid, t in s.ticks.items():
            newest[pid] = (t, s)
            seen_first.setdefault(pid, 0)
    out: Counter[str] = Counter()
    for pid, (t, s) in newest.items():
        delta = t - seen_first[pid]
        if delta > 0:
            out[classify(pid, s, roots, bench_pid)] += delta / hz
    total = (last.machine_busy - first.machine_busy) / hz
    ours = sum(v for k, v in out.items() if not k.startswith("other"))
    out["other (not this benchmark's)"] = max(0.0, total - ours)
    return {k: round(v, 1) for k, v in sorted(out.items(), key=lambda kv: -kv[1])}


def per_deploy(cpu: dict[str, float], deploys: int) -> dict[str, float] | None:
    """CPU seconds per succeeded deploy: all of this benchmark's processes, and the control plane's,
    the agents' (the agent processes alone) and the app instances' and log writers' share."""
    if not deploys:
        return None
    def total(pred: Callable[[str], bool]) -> float:
        return round(sum(v for k, v in cpu.items() if pred(k)) / deploys, 3)
    return {
        "ours": total(lambda k: not k.startswith("other")),
        "control_plane": total(lambda k: k == "control plane"),
        "agents": total(lambda k: k.startswith("agent") and ":" not in k),
        "instances_and_log_writers": total(lambda k: k.startswith("agent") and ":" in k),
    }


def load_summary(by_app: dict[str, list[Any]], late: int) -> dict[str, Any]:
    """What the load's clients saw (``rollback.Sample``s per app): every non-200 and transport error fails."""
    samples = [(app, s) for app, xs in by_app.items() for s in xs]
    failed = [(app, s) for app, s in samples if s.status != 200]
    return {
        "requests": len(samples),
        "failed_requests": len(failed),
        "transport_errors": sum(1 for _, s in failed if isinstance(s.status, str)),
        "failures_by_kind": dict(Counter(f"{app} {s.status}" for app, s in failed)),
        "generator_late_sends": late,
        "p99_latency_ms": round(1000 * (quantile([s.done - s.sent for _, s in samples], 0.99) or 0), 1),
    }


def failure_context(failed: list[tuple[str, Any]], records: list[DeployRecord]) -> list[dict[str, Any]]:
    """Each failed request (at most 20) with when it was sent relative to the nearest traffic switch
    (a deployment's end, on the control plane's clock) of its app: negative = before the switch."""
    out = []
    for app, smp in sorted(failed, key=lambda f: f[1].sent)[:20]:
        switches = [r.finished_at for r in records if r.app == app and r.finished_at]
        near = min(switches, key=lambda t: abs(t - smp.sent)) if switches else None
        out.append({"app": app, "status": smp.status, "sent": round(smp.sent, 3),
                    "took_s": round(smp.done - smp.sent, 3),
                    "from_nearest_switch_s": None if near is None else round(smp.sent - near, 3)})
    return out


#: What a stack of the control plane is doing, by the first of these found in it (file fragment → area).
AREAS = (
    ("deploy/orchestrator.py", "orchestrator tick"),
    ("deploy/scraper.py", "metrics scraper"),
    ("deploy/documents.py", "desired states and routing tables"),
    ("services/hosts.py", "agents' reports and routers"),
    ("api/", "other API requests"),
    ("services/", "other API requests"),
    ("uvicorn", "HTTP server (uvicorn, no handler)"),
    ("starlette", "HTTP server (uvicorn, no handler)"),
)


#: Leaf frames of a thread that waits (py-spy samples some waits as active): not CPU, left out.
IDLE_LEAVES = ("Condition.wait (threading.py", "Runner.run (asyncio/runners.py", "_worker (concurrent/futures/thread.py",
               "select (selectors.py", "Event.wait (threading.py")


def profile_summary(collapsed: str) -> dict[str, Any]:
    """From py-spy's raw (collapsed) output: the share of busy samples in SQL (SQLAlchemy or sqlite3
    on the stack), the share per area of the control plane, and the conveyor functions most often
    running. Samples of waiting threads (``IDLE_LEAVES``) are counted apart, as ``idle_samples``."""
    total = sql = idle = 0
    areas: Counter[str] = Counter()
    sql_by_area: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for line in collapsed.splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        count = int(n)
        frames = stack.split(";")
        if frames[-1].startswith(IDLE_LEAVES):
            idle += count
            continue
        total += count
        area = next((name for frag, name in AREAS if any(frag in f for f in frames)), "other")
        areas[area] += count
        if any("sqlalchemy" in f or "sqlite3" in f for f in frames):
            sql += count
            sql_by_area[area] += count
        conveyor = [f for f in frames if "conveyor/" in f]
        if conveyor:
            name, _, where = conveyor[-1].partition(" (")
            own[f"{name} ({where.split('conveyor/')[-1]}"] += count

    def share(c: Counter[str]) -> dict[str, float]:
        return {k: round(v / total, 3) for k, v in c.most_common(12)}

    return {
        "samples": total,
        "idle_samples": idle,
        "sql_share": round(sql / total, 3) if total else None,
        "areas": share(areas) if total else {},
        "sql_by_area": share(sql_by_area) if total else {},
        "top_conveyor_frames": share(own) if total else {},
    }


# -- the run ------------------------------------------------------------------------------------


class CpuSampler:
    """Reads /proc every ``interval`` seconds in a thread."""

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self.samples: list[ProcSample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def read() -> ProcSample:
        s = ProcSample(time.time())
        with open("/proc/stat") as f:
            s.machine_busy = machine_busy(f.read())
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            pid = int(name)
            try:
                with open(f"/proc/{pid}/stat") as f:
                    ppid, ticks = parse_stat(f.read())
                with open(f"/proc/{pid}/cmdline", "rb") as fb:
                    cmd = fb.read(400).replace(b"\0", b" ").decode(errors="replace")
            except (OSError, ValueError, IndexError):
                continue
            s.ticks[pid], s.parent[pid], s.cmdline[pid] = ticks, ppid, cmd
        return s

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.samples.append(self.read())

    def start(self) -> CpuSampler:
        self.samples.append(self.read())
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.samples.append(self.read())

    def between(self, t0: float, t1: float) -> list[ProcSample]:
        return [s for s in self.samples if t0 <= s.at <= t1] or self.samples[-1:]


def roots_of(p: Platform, net: HostNetwork) -> dict[int, str]:
    roots = {p.child_pid("server"): "control plane", p.child_pid("router"): "router",
             p.child_pid("agent"): "agent local"}
    assert p.proc is not None
    roots[p.proc.pid] = "conveyor up"
    for h in net.hosts:
        assert h.agent is not None
        roots[h.agent.pid] = f"agent {h.name}"
    return roots


class Deployer:
    """One client deploying its apps in turn, as ``conveyor deploy APP --image D --wait`` does."""

    def __init__(self, p: Platform, apps: list[str], images: dict[str, str], until: Callable[[], bool],
                 records: list[DeployRecord], lock: threading.Lock, max_deploys: int | None = None) -> None:
        from conveyor.cli.client import Api
        from conveyor.config import ClientConfig

        self.api = Api(ClientConfig(url=p.api_url, token=p.token))
        self.apps, self.images, self.until = apps, images, until
        self.records, self.lock, self.max_deploys = records, lock, max_deploys
        self.errors: list[str] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        i = 0
        while not self.until() and (self.max_deploys is None or i < self.max_deploys):
            app = self.apps[i % len(self.apps)]
            i += 1
            sent = time.time()
            try:
                dep = self.api.post(f"/apps/{app}/deployments",
                                    json={"env": "production", "image": self.images[app], "strategy": "bluegreen"})
                done = self.api.wait_deployment(dep["id"], timeout=180)
            except Exception as exc:  # noqa: BLE001 - recorded, and the client goes on
                self.errors.append(f"{app}: {type(exc).__name__}: {exc}"[:300])
                rec = DeployRecord(app, sent, time.time(), "error")
            else:
                routers = done.get("routers") or {}
                rec = DeployRecord(app, sent, time.time(), done["state"], done.get("created_at"),
                                   done.get("started_at"), done.get("finished_at"), routers.get("synced"))
            with self.lock:
                self.records.append(rec)


def run_clients(p: Platform, groups: list[list[str]], images: dict[str, str], seconds: float,
                once: bool = False) -> tuple[list[DeployRecord], list[str], float, float]:
    """Clients deploying their apps in turn for ``seconds`` (or, ``once``, each app once)."""
    records: list[DeployRecord] = []
    lock = threading.Lock()
    t0 = time.time()
    t1 = t0 + seconds
    clients = [Deployer(p, g, images, (lambda: False) if once else (lambda: time.time() >= t1), records, lock,
                        len(g) if once else None) for g in groups]
    for c in clients:
        c.thread.start()
    for c in clients:
        c.thread.join(seconds + 600)
        c.api.__exit__()
    return records, [e for c in clients for e in c.errors], t0, t1


def build_all(p: Platform, apps: list[str], args: argparse.Namespace) -> dict[str, str]:
    """One build per app (an image belongs to an app), all submitted at once; digest per app."""
    from conveyor.build.archive import pack_directory

    ids: dict[str, int] = {}
    for app in apps:
        src = p.app_copy(app, "v1", conveyor__toml=MANIFEST.format(app=app, bake=args.bake, drain=args.drain,
                                                                   instances=args.instances))
        r = p.api.post(f"/apps/{app}/builds", content=pack_directory(src), headers={"Content-Type": "application/gzip"})
        r.raise_for_status()
        ids[app] = r.json()["id"]
    digests: dict[str, str] = {}

    def all_built() -> bool:
        for app, bid in ids.items():
            if app in digests:
                continue
            b = p.api.get(f"/builds/{bid}").json()
            if b["state"] == "failed":
                raise RuntimeError(f"build of {app} failed: {b.get('error')}")
            if b["state"] == "succeeded":
                digests[app] = b["image"]["digest"]
        return len(digests) == len(ids)

    wait_for(all_built, 900, 0.5, "every app's build")
    return digests


def profile(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes] | None:
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        return None
    return subprocess.Popen([spy, "record", "-p", str(pid), "-d", str(int(seconds)), "-r", "50", "-f", "raw",
                             "-o", str(out), "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def phase(name: str, p: Platform, groups: list[list[str]], images: dict[str, str], seconds: float,
          loops: dict[str, OpenLoop], sampler: CpuSampler, roots: dict[int, str], args: argparse.Namespace,
          tmp: Path) -> dict[str, Any]:
    before = {app: len(loop.samples) for app, loop in loops.items()}
    late_before = sum(loop.late for loop in loops.values())
    spy = None
    if args.profile and name == "many_apps":
        spy = profile(p.child_pid("server"), min(args.profile, seconds), tmp / "server.spy")
    records, errors, t0, t1 = run_clients(p, groups, images, seconds)
    stats = deploy_stats(records, t0, t1)
    window = sampler.between(t0, t1)
    cpu = cpu_by_family(window[0], window[-1], window[1:-1], roots, os.getpid(), os.sysconf("SC_CLK_TCK"))
    span = max(1e-9, window[-1].at - window[0].at)
    out: dict[str, Any] = {
        **stats,
        "clients": len(groups),
        "client_errors": errors[:10],
        "load": load_summary({app: loop.samples[before[app]:] for app, loop in loops.items()},
                             sum(loop.late for loop in loops.values()) - late_before),
        "cpu_s": cpu,
        "cpu_cores_busy": {k: round(v / span, 2) for k, v in cpu.items()},
        # what a deploy costs this benchmark's processes (steady work included: probes, the load):
        # less noisy than a rate on a machine others share
        "cpu_s_per_deploy": per_deploy(cpu, stats["succeeded"]),
        "sampled_s": round(span, 1),
    }
    failed = [(app, smp) for app, loop in loops.items() for smp in loop.samples[before[app]:] if smp.status != 200]
    if failed:
        out["failures"] = failure_context(failed, records)
    if spy is not None:
        spy.wait(args.profile + 60)
        raw = tmp / "server.spy"
        if raw.exists():
            out["control_plane_profile"] = profile_summary(raw.read_text())
            if args.keep:
                Path(args.keep).mkdir(parents=True, exist_ok=True)
                shutil.copy(raw, Path(args.keep) / "server.spy")
    return out


def free_subnet() -> int:
    """A 10.231.N.0/24 no interface of this machine uses (other test runs make their bridges too)."""
    used = subprocess.run(["ip", "-o", "-4", "addr"], capture_output=True, text=True).stdout
    for _ in range(200):
        net = HostNetwork()
        if f"10.231.{net.subnet}." not in used:
            return net.subnet
    raise RuntimeError("no free 10.231.N.0/24 subnet")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--apps", type=int, default=50)
    ap.add_argument("--clients", type=int, default=8, help="concurrent deploying clients in the many-apps phase")
    ap.add_argument("--duration", type=float, default=150.0, help="the many-apps phase, seconds (measured)")
    ap.add_argument("--warmup", type=float, default=30.0, help="the many-apps loop before measuring, seconds")
    ap.add_argument("--single-s", type=float, default=45.0, help="the single-app peer, seconds (0: skip it)")
    ap.add_argument("--load-apps", type=int, default=5)
    ap.add_argument("--rate", type=float, default=20.0, help="requests/s per load app (open loop)")
    ap.add_argument("--instances", type=int, default=1, help="instances per app")
    ap.add_argument("--bake", type=float, default=10.0, help="warm-rollback window: the old release runs this long")
    ap.add_argument("--drain", type=float, default=10.0, help="drain_timeout of the old release, seconds")
    ap.add_argument("--profile", type=float, default=0.0, help="py-spy the control plane this many seconds")
    ap.add_argument("--keep", help="copy the platform's and agents' logs (and the profile) into this directory")
    args = ap.parse_args()
    if os.geteuid() != 0 or shutil.which("ip") is None:
        ap.error("needs root and iproute2 (network namespaces)")

    apps = [f"tp{i:02d}" for i in range(args.apps)]
    load_apps = apps[: args.load_apps]
    result: dict[str, Any] = {
        "benchmark": "deploy_throughput",
        "params": vars(args),
        "goal": {"deploys_per_minute": 120, "failed_requests": 0},
        "machine": {"cpus": os.cpu_count(), "loadavg_start": os.getloadavg()},
    }
    net = HostNetwork(subnet=free_subnet())
    with tempfile.TemporaryDirectory(prefix="cvy-throughput-bench-") as tmp_s:
        tmp = Path(tmp_s)
        p = Platform(tmp / "p", host=net.gateway)
        loops: dict[str, OpenLoop] = {}
        try:
            net.create(2)
            p.root.mkdir(parents=True)
            p.start()
            for h in net.hosts:
                net.start_agent(h, p.api_url, p.token, tmp / h.name, tmp / f"{h.name}-agent.log")
            wait_for(lambda: sum(h["online"] for h in p.api.get("/hosts").json()["hosts"]) >= 3, 60, 0.2,
                     "the three agents reporting")
            roots = roots_of(p, net)
            t = time.time()
            for app in apps:
                p.create_app(app)
            images = build_all(p, apps, args)
            result["setup_builds_s"] = round(time.time() - t, 1)
            t = time.time()
            first, errors, _, _ = run_clients(p, assign_apps(apps, args.clients), images, 0.0, once=True)
            bad = [r for r in first if r.state != "succeeded"]
            if bad or len(first) != len(apps):
                raise RuntimeError(f"first deploys failed: {bad[:3]} {errors[:3]}")
            result["setup_first_deploys_s"] = round(time.time() - t, 1)
            for app in load_apps:
                loops[app] = OpenLoop(p.url("/"), f"{app}.localhost", args.rate, 3600).start()
            wait_for(lambda: all(len(lp.samples) >= args.rate for lp in loops.values()), 30, 0.1, "load to flow")
            sampler = CpuSampler().start()
            if args.single_s > 0:
                result["single_app"] = phase("single_app", p, [[apps[0]]], images, args.single_s, loops, sampler,
                                             roots, args, tmp)
            if args.warmup > 0:
                run_clients(p, assign_apps(apps, args.clients), images, args.warmup)
            result["many_apps"] = phase("many_apps", p, assign_apps(apps, args.clients), images, args.duration,
                                        loops, sampler, roots, args, tmp)
            sampler.stop()
            result["load_whole_run"] = load_summary({a: lp.samples for a, lp in loops.items()},
                                                    sum(lp.late for lp in loops.values()))
        finally:
            for loop in loops.values():
                loop.stop()
            p.stop_all()
            net.destroy()
            if args.keep:
                keep = Path(args.keep)
                keep.mkdir(parents=True, exist_ok=True)
                for log in [tmp / "p" / "up.log", *tmp.glob("*-agent.log"), *(p.data_dir / "platform-logs").glob("*.log")]:
                    if log.exists():
                        shutil.copy(log, keep / log.name)
    many = result.get("many_apps", {})
    single = result.get("single_app", {})
    if many.get("deploys_per_minute") and single.get("deploys_per_minute"):
        result["ratio_many_to_single"] = round(many["deploys_per_minute"] / single["deploys_per_minute"], 2)
    result["machine"]["loadavg_end"] = os.getloadavg()
    result["met_goal"] = {
        "deploys_per_minute_ge_120": (many.get("deploys_per_minute") or 0) >= 120,
        "zero_failed_requests": result.get("load_whole_run", {}).get("failed_requests", 1) == 0,
    }
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
