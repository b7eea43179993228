"""Benchmark: the control plane with 500 hosts and 5,000 instances — SIMULATED agents and routers.

The control plane is real: ``conveyor server`` in its own process, on a free loopback port, with
its own data dir (SQLite by default; ``--database-url`` for PostgreSQL), spoken to over real HTTP.
The hosts and routers are a SIMULATION, all in this one asyncio process (httpx, pooled
connections), speaking the same API the real ones do:

* each simulated agent joins like ``conveyor agent --join`` (a one-time join token traded at
  ``POST /hosts/join`` for its own credential), long-polls ``GET /agents/{host}/desired`` as
  ``agent/agent.py`` does (``after=V&wait=30``), and PUTs its ``AgentStatus`` after every change
  and at least every ``--heartbeat`` seconds. It runs no process: an instance it is asked for is
  ``starting`` at once and ``ready`` ``--ready-delay`` seconds later (the simulation answers for
  it); an instance no longer desired is gone. Simulated instances write no output, so no logs are
  shipped (the real agent ships only new bytes).
* each simulated router long-polls ``GET /routing?after=V&wait=30&router=ID`` with its own router
  join token, as ``router/follower.py`` does, and re-polls the instant it has a table. It
  registers without an admin URL, so the control plane's metrics scraper has nothing to scrape.

Setup: ``--apps`` apps, one image built per app (images belong to an app), deployed to ``--envs``
environments of ``--instances`` each: 50 × 5 × 20 = 5,000 instances over 500 hosts by default.
Measured, while every simulated agent reports at its normal cadence:

* ``setup``: joins, builds, and the time until every router routes all the instances;
* ``api_ms``: p50/p99/max of the common calls, sent by a prober in a separate process (so the
  simulation's own event loop does not inflate them) at ``--probe-rate`` calls/s in turn: GET
  /apps, GET /apps/{app}, GET /hosts, GET /agents/{host}/desired (wait=0), GET /routing (wait=0);
  and from the simulation: the agents' PUT status, and each deploy request;
* ``control_plane_cpu``: the server process's CPU seconds per second (its utime + stime from
  /proc), over an idle window (heartbeats only) and over the window of routing changes;
* ``routing_change_s``: for each change, the time from the API call to the moment each simulated
  router's long-poll returned a table that contains it (p50 and max over routers and changes):
  a scale-down (an instance leaves the table: the control plane's own path), a scale-up (an
  instance is placed, its simulated agent reports it ready, then it is routed) and a blue/green
  deploy (every new instance ready, then all the traffic on the new release).

    python benchmarks/control_plane_scale.py [--hosts 500] [--apps 50 --envs 5 --instances 20]
                                             [--routers 10] [--database-url postgresql+psycopg://…]

Prints one JSON object (a progress line every 15 s on stderr). Every phase is bounded in time
(``--setup-timeout``, ``--change-timeout``); a bound that runs out is reported in the JSON
(``errors``), not waited out.

Measured on the shared 2-core machine (2026-12-02, load average 10-26 from other work): at 100
simulated hosts and 1,000 instances everything is measured (docs/ARCHITECTURE.md, Capacity: PUT
status p50 0.2 s, a scale-down at every router in 1.7 s p50, a blue/green deploy in 2.9 s; `main`
before this benchmark's fixes: 1.2 s, 4.3 s, 11.4 s). At 500 hosts and 5,000 instances (SQLite,
machine quiet): all routed in 358 s, the server CPU-bound at 1.1 cores, PUT status p50 / p99
0.65 / 3.4 s, a scale-down at every router in 5.6 s p50, a deploy in 11.2 s. With the machine
loaded, the placement collapsed past ~2,300 (SQLite) or ~3,100 (PostgreSQL) instances: reports fell
behind, hosts were judged lost and their instances moved, which added work (what is left is
listed there). Re-measured 2026-12-03 (quiet) with full passes spread over ticks
(``RESYNC_BUDGET``): all routed in 351 s, a scale-down at every router in 2.2 s p50 (5.7 s max),
a scale-up in 6.3 s, a deploy in 11.5 s; before that change, the same day, 10.1, 12.6 and 27.7 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
API = "/api/v1"
ADMIN_TOKEN = "bench-admin-token"

# ---------------------------------------------------------------------------------------------
# Pure parts (tested in tests/unit/test_bench_control_plane_scale.py)
# ---------------------------------------------------------------------------------------------


def quantiles(samples: list[float], scale: float = 1.0, digits: int = 1) -> dict[str, Any]:
    """n, p50, p99 and max of ``samples`` (times ``scale``, e.g. 1000 for ms); None when empty."""
    if not samples:
        return {"n": 0, "p50": None, "p99": None, "max": None}
    s = sorted(samples)

    def at(q: float) -> float:
        return round(s[min(len(s) - 1, int(q * len(s)))] * scale, digits)

    return {"n": len(s), "p50": at(0.5), "p99": at(0.99), "max": round(s[-1] * scale, digits)}


def app_manifest(app: str, envs: list[str], instances: int) -> str:
    """A minimal app's ``conveyor.toml``: one web process, each environment ``instances`` strong.
    A short drain keeps the scale-down changes of one run from piling up drained rows."""
    sections = "".join(f"\n[env.{e}]\ninstances = {instances}\n" for e in envs)
    return (f'[app]\nname = "{app}"\n\n[run]\nweb = "python app.py"\n\n[health]\npath = "/"\n\n'
            f'[deploy]\ndrain_timeout = "2s"\nbake = "2s"\nready_timeout = "10m"\n{sections}')


def layout(hosts: int, apps: int, envs: int, instances: int) -> dict[str, Any]:
    """Names of the simulated hosts, apps and environments, and what they add up to."""
    return {
        "hosts": [f"sim-host-{i:04d}" for i in range(hosts)],
        "apps": [f"sim-app-{i:03d}" for i in range(apps)],
        "envs": [f"e{i}" for i in range(envs)],
        "instances": apps * envs * instances,
        "per_host": apps * envs * instances / max(hosts, 1),
    }


def routed(table: dict[str, Any]) -> dict[tuple[str, str], dict[int, tuple[int, int]]]:
    """(app, env) → release → (weight, instances routed): what a router would serve."""
    out: dict[tuple[str, str], dict[int, tuple[int, int]]] = {}
    for e in table.get("environments", []):
        out[(e["app"], e["env"])] = {r["release"]: (r["weight"], len(r.get("instances", []))) for r in e.get("releases", [])}
    return out


def total_routed(view: dict[tuple[str, str], dict[int, tuple[int, int]]]) -> int:
    return sum(n for rels in view.values() for w, n in rels.values() if w > 0)


def serving(view: dict[tuple[str, str], dict[int, tuple[int, int]]], key: tuple[str, str]) -> dict[int, int]:
    """release → instances of the releases of ``key`` that take unpinned traffic (weight > 0)."""
    return {rel: n for rel, (w, n) in view.get(key, {}).items() if w > 0 and n > 0}


@dataclass
class SimInstance:
    id: str
    port: int
    started_at: float
    ready_at: float | None = None


@dataclass
class SimHost:
    """A SIMULATED host: what its agent would report, with no process behind any instance.

    ``apply`` takes the desired state's JSON and returns the ids that must turn ready later (the
    caller schedules ``ready``); instances no longer desired are forgotten at once."""

    name: str
    address: str
    desired_version: int = 0
    instances: dict[str, SimInstance] = field(default_factory=dict)
    next_port: int = 20000

    def apply(self, desired: dict[str, Any], now: float) -> tuple[bool, list[str]]:
        """(changed, new instance ids) after taking the desired state ``desired``."""
        wanted = {i["id"] for i in desired.get("instances", [])}
        changed = desired.get("version", 0) != self.desired_version
        self.desired_version = int(desired.get("version", 0))
        new = []
        for iid in sorted(wanted - self.instances.keys()):
            self.next_port += 1
            self.instances[iid] = SimInstance(iid, self.next_port, now)
            new.append(iid)
        gone = self.instances.keys() - wanted
        for iid in gone:
            del self.instances[iid]
        return changed or bool(new) or bool(gone), new

    def ready(self, iid: str, now: float) -> bool:
        inst = self.instances.get(iid)
        if inst is None or inst.ready_at is not None:
            return False
        inst.ready_at = now
        return True

    def status(self) -> dict[str, Any]:
        """The ``AgentStatus`` a real agent would send for these instances (usage included: its size matters)."""
        return {
            "host": self.name, "address": self.address, "desired_version": self.desired_version,
            "agent_version": "sim", "sandbox": "SIMULATED: no process runs", "labels": {"sim": "yes"},
            "capacity": None, "memory": None,
            "instances": [
                {"id": i.id, "state": "ready" if i.ready_at is not None else "starting", "port": i.port,
                 "pid": 100000 + i.port, "restarts": 0, "started_at": i.started_at, "ready_at": i.ready_at,
                 "usage": {"memory_bytes": 31_000_000, "cpu_seconds": 0.5, "pids": 1}, "limits": None,
                 "sandbox": "SIMULATED", "message": ""}
                for i in sorted(self.instances.values(), key=lambda i: i.id)
            ],
        }


@dataclass
class Watch:
    """One routing change: when each simulated router first held a table where ``holds`` is true."""

    what: str
    holds: Callable[[dict[tuple[str, str], dict[int, tuple[int, int]]]], bool]
    t0: float
    routers: set[str]
    seen: dict[str, float] = field(default_factory=dict)

    def offer(self, router: str, view: dict[tuple[str, str], dict[int, tuple[int, int]]], at: float) -> None:
        if router in self.routers and router not in self.seen and self.holds(view):
            self.seen[router] = at

    @property
    def done(self) -> bool:
        return self.routers <= self.seen.keys()

    def delays(self) -> list[float]:
        return [t - self.t0 for t in self.seen.values()]


# ---------------------------------------------------------------------------------------------
# The real control plane
# ---------------------------------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Server:
    """``conveyor server`` in its own process, on a free port, with its own data dir."""

    def __init__(self, root: Path, database_url: str | None) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = root / "server.log"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if database_url:
            env["CONVEYOR_DATABASE_URL"] = database_url
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "conveyor", "server", "--data-dir", str(root / "data"), "--port", str(self.port),
                 "--admin-token", ADMIN_TOKEN, "--build-workers", "2"],
                stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True, cwd=root)

    def wait_up(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"conveyor server exited {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("conveyor server did not answer /healthz in time")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


# ---------------------------------------------------------------------------------------------
# The prober: a separate process, so the simulation's event loop cannot inflate its latencies
# ---------------------------------------------------------------------------------------------


def probe(url: str, apps: list[str], hosts: list[str], seconds: float, rate: float, stop: str) -> dict[str, list[float]]:
    """Send the common read calls in turn at ``rate`` calls/s for at most ``seconds``, until the file
    ``stop`` exists; latencies by call."""
    rng = random.Random(13)
    kinds: list[tuple[str, Callable[[], str]]] = [
        ("GET /apps", lambda: "/apps"),
        ("GET /apps/{app}", lambda: f"/apps/{rng.choice(apps)}"),
        ("GET /hosts", lambda: "/hosts"),
        ("GET /agents/{host}/desired", lambda: f"/agents/{rng.choice(hosts)}/desired?wait=0"),
        ("GET /routing", lambda: "/routing?wait=0"),
    ]
    out: dict[str, list[float]] = {k: [] for k, _ in kinds}
    out["errors"] = []
    start = time.monotonic()
    n = 0
    with httpx.Client(base_url=url + API, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30) as c:
        while time.monotonic() - start < seconds and not os.path.exists(stop):
            due = start + n / rate
            if (delay := due - time.monotonic()) > 0:
                time.sleep(delay)
            kind, path = kinds[n % len(kinds)]
            n += 1
            t = time.perf_counter()
            try:
                r = c.get(path())
                ok = r.status_code == 200
            except httpx.HTTPError:
                ok = False
            if ok:
                out[kind].append(time.perf_counter() - t)
            else:
                out["errors"].append(float(n))
    return out


# ---------------------------------------------------------------------------------------------
# The simulation
# ---------------------------------------------------------------------------------------------


class Wire:
    """Keep-alive HTTP/1.1 connections on asyncio streams: a minimal client for the simulated
    agents' and routers' calls, cheap in CPU (httpx costs several times more per request: on a
    loaded 2-core machine the simulation, not the control plane, was what fell behind)."""

    def __init__(self, url: str) -> None:
        u = httpx.URL(url)
        self.addr = (u.host, u.port or 80)
        #: (reader, writer, when it fell idle); uvicorn closes a connection idle for 5 s, so one idle
        #: for 2 s is dropped rather than reused
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []

    def _take(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        now = time.monotonic()
        while self.idle:
            reader, writer, since = self.idle.pop()
            if now - since < 2.0 and not writer.is_closing():
                return reader, writer
            writer.close()
        return None

    async def request(self, method: str, path: str, token: str, body: bytes = b"", timeout: float = 45.0) -> tuple[int, bytes]:
        head = (f"{method} {API}{path} HTTP/1.1\r\nHost: control-plane\r\nAuthorization: Bearer {token}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
        for attempt in range(3):
            conn = self._take()
            reused = conn is not None
            if conn is not None:
                reader, writer = conn
            else:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(*self.addr), 10)
            try:
                writer.write(head + body)
                async with asyncio.timeout(timeout):
                    raw = await reader.readuntil(b"\r\n\r\n")
                    lines = raw.decode("latin-1").split("\r\n")
                    status = int(lines[0].split(" ", 2)[1])
                    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
                    if headers.get("transfer-encoding", "").lower() == "chunked":
                        chunks = []
                        while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
                            chunks.append(await reader.readexactly(size))
                            await reader.readexactly(2)
                        await reader.readexactly(2)
                        data = b"".join(chunks)
                    else:
                        data = await reader.readexactly(int(headers.get("content-length", "0")))
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                writer.close()
                if reused and attempt < 2 and not (isinstance(exc, asyncio.IncompleteReadError) and exc.partial):
                    continue  # the server closed an idle keep-alive connection under us: once more, fresh
                raise
            except BaseException:
                writer.close()
                raise
            if headers.get("connection", "").lower() == "close":
                writer.close()
            else:
                self.idle.append((reader, writer, time.monotonic()))
            return status, data
        raise AssertionError("unreachable")

    def close(self) -> None:
        for _, writer, _ in self.idle:
            writer.close()
        self.idle.clear()


#: what a failed call of the simulation raises
WIRE_ERRORS = (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError, IndexError)


class Simulation:
    """SIMULATED agents and routers, in one event loop, against the real control plane at ``url``."""

    def __init__(self, url: str, args: argparse.Namespace, names: dict[str, Any]) -> None:
        self.url = url
        self.args = args
        self.names = names
        self.admin = httpx.AsyncClient(base_url=url + API, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                                       timeout=60, limits=httpx.Limits(max_connections=20, keepalive_expiry=2))
        self.polls = Wire(url)  # the agents' long-polls: one connection each
        self.reports = Wire(url)  # the agents' reports
        self.router_http = Wire(url)
        self.hosts: dict[str, SimHost] = {}
        self.tokens: dict[str, str] = {}
        self.dirty: dict[str, asyncio.Event] = {}
        self.tasks: list[asyncio.Task[None]] = []
        self.views: dict[str, dict[tuple[str, str], dict[int, tuple[int, int]]]] = {}
        self.table_version: dict[str, int] = {}
        self.watches: list[Watch] = []
        self.put_latency: list[float] = []
        self.recording = False
        self.reports_sent = 0
        self.errors: dict[str, int] = {}
        self.lag: list[float] = []
        self.table_arrived = asyncio.Event()

    async def get(self, path: str) -> httpx.Response:
        """An admin GET, retried: on a loaded machine a keep-alive connection may close under it."""
        for attempt in range(4):
            try:
                return await self.admin.get(path)
            except httpx.TransportError:
                if attempt == 3:
                    raise
                await asyncio.sleep(0.5)
        raise AssertionError("unreachable")

    async def post(self, path: str, **kw: Any) -> httpx.Response:
        """An admin POST on a connection of its own (``Connection: close``: never sent on a
        keep-alive connection the server is closing). A connection the server drops (overloaded:
        its 10 s head timeout runs from the connection's opening) is retried and counted."""
        headers = {**kw.pop("headers", {}), "Connection": "close"}
        for attempt in range(4):
            try:
                return await self.admin.post(path, headers=headers, **kw)
            except httpx.TransportError as exc:
                self.error(f"POST retried after {type(exc).__name__}")
                if attempt == 3:
                    raise
                await asyncio.sleep(1)
        raise AssertionError("unreachable")

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1

    # -- joining --------------------------------------------------------------------------

    async def join(self, host: str) -> None:
        """Join as ``conveyor agent --join`` does: a one-time join token traded for the host's credential."""
        r = await self.post("/join-tokens", json={"expires": "1h"})
        r.raise_for_status()
        once = r.json()["token"]
        r = await self.post("/hosts/join", json={"host": host}, headers={"Authorization": f"Bearer {once}"})
        r.raise_for_status()
        self.tokens[host] = r.json()["token"]

    async def join_all(self) -> None:
        sem = asyncio.Semaphore(16)

        async def one(i: int, host: str) -> None:
            async with sem:
                await self.join(host)
            self.hosts[host] = SimHost(host, f"10.{i // 250}.{i % 250}.1")
            self.dirty[host] = asyncio.Event()
            self.dirty[host].set()  # report at once: that registers the host

        await asyncio.gather(*(one(i, h) for i, h in enumerate(self.names["hosts"])))

    # -- a simulated agent ----------------------------------------------------------------

    def start_agents(self) -> None:
        for i, host in enumerate(self.hosts):
            self.tasks.append(asyncio.create_task(self.agent_poll(host, i), name=f"poll {host}"))
            self.tasks.append(asyncio.create_task(self.agent_report(host, i), name=f"report {host}"))

    async def agent_poll(self, host: str, index: int) -> None:
        sim, token = self.hosts[host], self.tokens[host]
        loop = asyncio.get_running_loop()
        # a fleet's agents do not start in the same millisecond
        await asyncio.sleep(self.args.heartbeat * index / max(len(self.hosts), 1))
        while True:
            try:
                status, body = await self.polls.request(
                    "GET", f"/agents/{host}/desired?after={sim.desired_version}&wait=30", token)
                if status != 200:
                    self.error(f"desired {status}")
                    await asyncio.sleep(1)
                    continue
                doc = json.loads(body)
            except WIRE_ERRORS as exc:
                self.error(f"desired {type(exc).__name__}")
                await asyncio.sleep(1)
                continue
            changed, new = sim.apply(doc, time.time())
            if changed:
                self.dirty[host].set()
            for iid in new:
                loop.call_later(self.args.ready_delay, self._ready, host, iid)

    def _ready(self, host: str, iid: str) -> None:
        if self.hosts[host].ready(iid, time.time()):
            self.dirty[host].set()

    async def agent_report(self, host: str, index: int) -> None:
        sim, dirty = self.hosts[host], self.dirty[host]
        token = self.tokens[host]
        # spread the fleet's heartbeats over the period, as independently started agents are
        await asyncio.sleep(self.args.heartbeat * index / max(len(self.hosts), 1))
        while True:
            try:
                async with asyncio.timeout(self.args.heartbeat):
                    await dirty.wait()
            except TimeoutError:
                pass
            dirty.clear()
            body = json.dumps(sim.status()).encode()
            t = time.perf_counter()
            try:
                status, _ = await self.reports.request("PUT", f"/agents/{host}/status", token, body, timeout=30)
                ok = status == 200
                if not ok:
                    self.error(f"status {status}")
            except WIRE_ERRORS as exc:
                self.error(f"status {type(exc).__name__}")
                ok = False
            if ok:
                self.reports_sent += 1
                if self.recording:
                    self.put_latency.append(time.perf_counter() - t)
            else:
                dirty.set()
                await asyncio.sleep(1)

    # -- a simulated router ---------------------------------------------------------------

    async def router_tokens(self) -> list[tuple[str, str]]:
        out = []
        for i in range(self.args.routers):
            rid = f"sim-router-{i:02d}"
            r = await self.post(f"/hosts/{rid}/join-tokens", json={"role": "router"})
            r.raise_for_status()
            out.append((rid, r.json()["token"]))
        return out

    def start_routers(self, routers: list[tuple[str, str]]) -> None:
        for rid, token in routers:
            self.table_version[rid] = 0
            self.tasks.append(asyncio.create_task(self.router(rid, token), name=f"router {rid}"))

    async def router(self, rid: str, token: str) -> None:
        while True:
            try:
                status, body = await self.router_http.request(
                    "GET", f"/routing?after={self.table_version[rid]}&wait=30&router={rid}", token)
                at = time.perf_counter()
                if status != 200:
                    self.error(f"routing {status}")
                    await asyncio.sleep(1)
                    continue
                table = json.loads(body)
            except WIRE_ERRORS as exc:
                self.error(f"routing {type(exc).__name__}")
                await asyncio.sleep(1)
                continue
            if table["version"] == self.table_version[rid]:
                continue
            self.table_version[rid] = table["version"]
            view = self.views[rid] = routed(table)
            for w in self.watches:
                w.offer(rid, view, at)
            self.table_arrived.set()

    # -- measuring ------------------------------------------------------------------------

    async def watch_lag(self) -> None:
        """How late the simulation's own event loop wakes (it must keep up for the figures to hold)."""
        while True:
            t = time.perf_counter()
            await asyncio.sleep(0.1)
            if self.recording:
                self.lag.append(time.perf_counter() - t - 0.1)

    async def progress(self, every: float = 15.0) -> None:
        """A line on stderr every ``every`` seconds: reports sent, tables, errors so far."""
        start, sent = time.monotonic(), self.reports_sent
        while True:
            await asyncio.sleep(every)
            routed = min((total_routed(v) for v in self.views.values()), default=0)
            print(f"[{time.monotonic() - start:6.0f} s] reports/s {(self.reports_sent - sent) / every:.1f} "
                  f"routed {routed} tables {sorted(set(self.table_version.values()))[-3:]} errors {self.errors}",
                  file=sys.stderr, flush=True)
            sent = self.reports_sent

    async def until(self, cond: Callable[[], bool], timeout: float, what: str) -> bool:
        deadline = time.monotonic() + timeout
        while not cond():
            left = deadline - time.monotonic()
            if left <= 0:
                self.error(f"timed out: {what}")
                return False
            self.table_arrived.clear()
            try:
                async with asyncio.timeout(min(left, 1.0)):
                    await self.table_arrived.wait()
            except TimeoutError:
                pass
        return True

    def all_routers(self, cond: Callable[[dict[tuple[str, str], dict[int, tuple[int, int]]]], bool]) -> bool:
        return len(self.views) == self.args.routers and all(cond(v) for v in self.views.values())

    async def change(self, what: str, call: Callable[[], Any],
                     holds: Callable[[dict[tuple[str, str], dict[int, tuple[int, int]]]], bool]) -> tuple[Watch, float]:
        """Make one routing change with ``call`` (an API request) and wait until every router holds it."""
        watch = Watch(what, holds, time.perf_counter(), set(self.views))
        self.watches.append(watch)
        r = await call()
        request_s = time.perf_counter() - watch.t0
        if r.status_code not in (200, 201):
            self.error(f"{what} {r.status_code}: {r.text[:200]}")
        deadline = time.monotonic() + self.args.change_timeout
        while not watch.done and time.monotonic() < deadline:
            self.table_arrived.clear()
            try:
                async with asyncio.timeout(0.5):
                    await self.table_arrived.wait()
            except TimeoutError:
                pass
        self.watches.remove(watch)
        if not watch.done:
            self.error(f"timed out: {what}")
        return watch, request_s

    async def close(self) -> None:
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.admin.aclose()
        for w in (self.polls, self.reports, self.router_http):
            w.close()


async def build_images(sim: Simulation, names: dict[str, Any], src_root: Path) -> dict[str, str]:
    """One image per app (images belong to an app): a minimal app, no dependencies, no test command."""
    from conveyor.build.archive import pack_directory

    digests: dict[str, str] = {}
    sem = asyncio.Semaphore(4)

    async def one(app: str) -> None:
        src = src_root / app
        src.mkdir(parents=True)
        (src / "conveyor.toml").write_text(app_manifest(app, names["envs"], sim.args.instances))
        (src / "app.py").write_text("print('never run: the agents are simulated')\n")
        async with sem:
            r = await sim.post("/apps", json={"name": app})
            if r.status_code not in (201, 409):
                raise RuntimeError(f"POST /apps {app}: {r.status_code} {r.text}")
            r = await sim.post(f"/apps/{app}/builds", content=pack_directory(src),
                                     headers={"Content-Type": "application/gzip"})
            if r.status_code != 201:
                raise RuntimeError(f"build of {app}: {r.status_code} {r.text}")
            bid = r.json()["id"]
            deadline = time.monotonic() + sim.args.setup_timeout
            while time.monotonic() < deadline:
                rb = await sim.get(f"/builds/{bid}")
                if rb.status_code != 200:
                    sim.error(f"GET /builds {rb.status_code}")
                    await asyncio.sleep(1)
                    continue
                b = rb.json()
                if b["state"] in ("succeeded", "failed"):
                    if b["state"] != "succeeded":
                        raise RuntimeError(f"build of {app} failed: {b}")
                    digests[app] = b["image"]["digest"]
                    return
                await asyncio.sleep(0.5)
            raise RuntimeError(f"build of {app} did not end in time")

    await asyncio.gather(*(one(a) for a in names["apps"]))
    return digests


async def run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    names = layout(args.hosts, args.apps, args.envs, args.instances)
    result: dict[str, Any] = {
        "benchmark": "control_plane_scale",
        "simulation": {
            "what": "SIMULATED agents and routers (one asyncio process, a minimal HTTP/1.1 client); the control plane is a real "
                    "`conveyor server` process over real HTTP",
            "hosts": args.hosts, "instances": names["instances"], "apps": args.apps, "envs_per_app": args.envs,
            "instances_per_env": args.instances, "routers": args.routers, "heartbeat_s": args.heartbeat,
            "ready_delay_s": args.ready_delay,
        },
        "store": "postgresql" if args.database_url else "sqlite",
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
    }
    server = Server(root, args.database_url)
    sim: Simulation | None = None
    try:
        server.wait_up()
        sim = Simulation(server.url, args, names)
        t = time.perf_counter()
        await sim.join_all()
        join_s = time.perf_counter() - t
        sim.start_agents()
        sim.tasks.append(asyncio.create_task(sim.watch_lag(), name="lag"))
        sim.tasks.append(asyncio.create_task(sim.progress(), name="progress"))
        sim.start_routers(await sim.router_tokens())
        t = time.perf_counter()
        digests = await build_images(sim, names, root / "src")
        build_s = time.perf_counter() - t

        # -- every environment deployed: 5,000 instances placed, ready and routed
        t = time.perf_counter()
        sem = asyncio.Semaphore(args.setup_concurrency)

        async def deploy(app: str, env: str) -> None:
            async with sem:  # a few environments at a time, each until its deployment has ended
                r = await sim.post(f"/apps/{app}/deployments", json={"image": digests[app], "env": env})
                if r.status_code != 201:
                    sim.error(f"deploy {r.status_code}: {r.text[:200]}")
                    return
                dep, deadline = r.json()["id"], time.monotonic() + args.setup_timeout
                while time.monotonic() < deadline:
                    rd = await sim.get(f"/deployments/{dep}")
                    state = rd.json().get("state") if rd.status_code == 200 else None
                    if state in ("succeeded", "failed", "rolled_back", "cancelled"):
                        if state != "succeeded":
                            sim.error(f"setup deploy {state}: {str(rd.json().get('reason'))[:120]}")
                        return
                    await asyncio.sleep(1)

        await asyncio.gather(*(deploy(a, e) for a in names["apps"] for e in names["envs"]))
        deployed_s = time.perf_counter() - t
        everything = names["instances"]
        await sim.until(lambda: sim.all_routers(lambda v: total_routed(v) >= everything), args.setup_timeout,
                        f"every router routing {everything} instances")
        result["setup"] = {"join_s": round(join_s, 1), "build_s": round(build_s, 1), "deploys_s": round(deployed_s, 1),
                           "deploys": len(names["apps"]) * len(names["envs"]), "deploy_concurrency": args.setup_concurrency,
                           "all_routed_s": round(time.perf_counter() - t, 1),
                           "routed": min((total_routed(v) for v in sim.views.values()), default=0)}
        if sim.errors.get(f"timed out: every router routing {everything} instances"):
            result["errors"] = sim.errors
            return result
        await asyncio.sleep(args.settle)

        # -- idle window: heartbeats only, the prober running
        ctx = multiprocessing.get_context("spawn")
        pid = server.proc.pid
        with ctx.Pool(1) as pool:
            probing = pool.apply_async(probe, (server.url, names["apps"], names["hosts"], args.idle + args.busy_max, args.probe_rate,
                                               str(root / "stop-probe")))
            sim.recording = True
            reports0, cpu0, t0 = sim.reports_sent, cpu_seconds(pid), time.perf_counter()
            await asyncio.sleep(args.idle)
            idle_wall = time.perf_counter() - t0
            idle = {"seconds": round(idle_wall, 1), "cores": round((cpu_seconds(pid) - cpu0) / idle_wall, 3),
                    "agent_reports_per_s": round((sim.reports_sent - reports0) / idle_wall, 1)}

            # -- routing changes: scale down, scale up, deploys
            cpu0, t0 = cpu_seconds(pid), time.perf_counter()
            rng = random.Random(5)
            targets = rng.sample([(a, e) for a in names["apps"] for e in names["envs"]], args.changes)
            downs: list[Watch] = []
            ups: list[Watch] = []
            scale_ms: list[float] = []
            n = args.instances
            for app, env in targets:
                key = (app, env)
                w, req = await sim.change(
                    "scale down", lambda app=app, env=env: sim.post(f"/apps/{app}/scale", json={"env": env, "counts": [f"web={n - 1}"]}),
                    lambda v, key=key: sum(serving(v, key).values()) == n - 1)
                downs.append(w)
                scale_ms.append(req)
                w, req = await sim.change(
                    "scale up", lambda app=app, env=env: sim.post(f"/apps/{app}/scale", json={"env": env, "counts": [f"web={n}"]}),
                    lambda v, key=key: sum(serving(v, key).values()) == n)
                ups.append(w)
                scale_ms.append(req)
            deploys: list[Watch] = []
            deploy_ms: list[float] = []
            for app, env in targets[: args.deploys]:
                key = (app, env)
                current = max(next(iter(sim.views.values())).get(key, {}) or {0: None})
                new = current + 1
                w, req = await sim.change(
                    "deploy", lambda app=app, env=env: sim.post(f"/apps/{app}/deployments",
                                                                     json={"image": digests[app], "env": env}),
                    lambda v, key=key, new=new: serving(v, key) == {new: n})
                deploys.append(w)
                deploy_ms.append(req)
            busy_wall = time.perf_counter() - t0
            busy = {"seconds": round(busy_wall, 1), "cores": round((cpu_seconds(pid) - cpu0) / busy_wall, 3)}
            sim.recording = False
            (root / "stop-probe").touch()
            probed = probing.get(timeout=args.idle + args.busy_max + 60)

        result["api_ms"] = {k: quantiles(v, 1000) for k, v in probed.items() if k != "errors"}
        result["api_ms"]["PUT /agents/{host}/status (simulated agents)"] = quantiles(sim.put_latency, 1000)
        result["api_ms"]["POST /apps/{app}/scale"] = quantiles(scale_ms, 1000)
        result["api_ms"]["POST /apps/{app}/deployments"] = quantiles(deploy_ms, 1000)
        result["api_ms"]["prober_errors"] = len(probed["errors"])
        result["control_plane_cpu"] = {"idle": idle, "during_changes": busy,
                                       "note": "CPU seconds per second of the server process (1.0 = one core busy)"}

        def summary(ws: list[Watch]) -> dict[str, Any]:
            delays = [d for w in ws for d in w.delays()]
            last = [max(w.delays()) for w in ws if w.done]
            return {"changes": len(ws), "all_routers_held_it": sum(w.done for w in ws),
                    "per_router": quantiles(delays, 1, 3), "last_router": quantiles(last, 1, 3)}

        result["routing_change_s"] = {"scale_down": summary(downs), "scale_up": summary(ups), "deploy": summary(deploys),
                                      "note": "from the API call to each simulated router's long-poll returning a table "
                                              "with the change; scale_up and deploy include the simulated agents' "
                                              f"{args.ready_delay} s to ready"}
        result["load_average_at_end"] = os.getloadavg()  # the machine is shared: what else ran
        result["simulation"]["loop_lag_ms"] = quantiles(sim.lag, 1000)
        result["simulation"]["cpu_s_per_s"] = None
        result["errors"] = sim.errors
        return result
    except BaseException:
        print(f"control_plane_scale: failed; the server's log ends:\n{server.log.read_text(errors='replace')[-4000:]}\n"
              f"the simulation's errors: {sim.errors if sim is not None else None}", file=sys.stderr)
        raise
    finally:
        if sim is not None:
            await sim.close()
        server.stop()
        result.setdefault("server_log_tail", server.log.read_text(errors="replace")[-1500:] if server.proc.returncode not in (0, -15) else "")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hosts", type=int, default=500, help="simulated hosts")
    ap.add_argument("--apps", type=int, default=50, help="apps (one image built for each)")
    ap.add_argument("--envs", type=int, default=5, help="environments per app")
    ap.add_argument("--instances", type=int, default=20, help="instances per environment")
    ap.add_argument("--routers", type=int, default=10, help="simulated routers")
    ap.add_argument("--heartbeat", type=float, default=5.0, help="seconds between a simulated agent's reports")
    ap.add_argument("--ready-delay", type=float, default=0.5, help="seconds a simulated instance takes to be ready")
    ap.add_argument("--idle", type=float, default=30.0, help="seconds of the idle window (heartbeats only)")
    ap.add_argument("--busy-max", type=float, default=120.0, help="the prober's budget for the changes' window")
    ap.add_argument("--changes", type=int, default=8, help="environments scaled down then up again")
    ap.add_argument("--deploys", type=int, default=3, help="blue/green deploys measured")
    ap.add_argument("--probe-rate", type=float, default=20.0, help="the prober's calls per second")
    ap.add_argument("--setup-concurrency", type=int, default=10, help="environments deployed at once during setup")
    ap.add_argument("--settle", type=float, default=5.0, help="seconds between setup and measuring")
    ap.add_argument("--setup-timeout", type=float, default=900.0, help="bound on builds and on placing everything")
    ap.add_argument("--change-timeout", type=float, default=60.0, help="bound on one routing change reaching every router")
    ap.add_argument("--database-url", default=None, help="e.g. postgresql+psycopg://…; default SQLite in the data dir")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # `timeout` or kill: still stop the server
    with tempfile.TemporaryDirectory(prefix="cvy-scale-bench-") as tmp:
        t = time.perf_counter()
        res = asyncio.run(run(args, Path(tmp)))
        res["wall_s"] = round(time.perf_counter() - t, 1)
        import resource

        res["simulation"]["cpu_s"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_utime
                                           + resource.getrusage(resource.RUSAGE_SELF).ru_stime, 1)
        res["simulation"].pop("cpu_s_per_s", None)
    return res


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
