"""`make demo`: the platform on this machine, the sample app deployed, switched,
rolled back, canaried and — when broken — rolled back automatically.

Everything goes through the real thing: `conveyor up` (control plane, agent and
router as separate processes), the `conveyor` CLI, and HTTP through the router.
The demo's own traffic is bounded (at most 120 requests/s, only while a step runs).
When the story is told, the platform stays up until Ctrl-C.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / ".demo"
PY = sys.executable

CANARY_TOML = """\
[app]
name = "hello"

[run]
web = "python app.py"

[health]
path = "/healthz"
timeout = "2s"

[deploy]
strategy = "canary"
steps = [{weight = 20, for = "10s"}, {weight = 50, for = "10s"}]
bake = "6s"

[deploy.analysis]
min_requests = 30

[deploy.analysis.threshold]
min_requests = 30

[env.production]
instances = 2
"""


#: ANSI styles only on a terminal: `make demo > demo.log` gets plain text.
COLOUR = sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def bold(text: str, code: str = "1") -> str:
    return f"\033[{code}m{text}\033[0m" if COLOUR else text


def say(text: str) -> None:
    print("\n" + bold(f"==> {text}", "1;36"), flush=True)


def mix(counts: Counter[str]) -> str:
    """``Counter({"v1": 120, "HTTP 500": 3})`` → ``v1: 120, HTTP 500: 3`` (versions first)."""
    return ", ".join(f"{k}: {v}" for k, v in sorted(counts.items(), key=lambda kv: (not kv[0].startswith("v"), kv[0]))) or "none"


def _die_with_parent() -> None:
    """Linux: the platform gets SIGTERM if this demo process dies, however it dies."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def pick(port: int) -> int:
    if port_free(port) and port_free(port + 1):
        return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Traffic:
    """Bounded background traffic through the router, counting versions and failures per second."""

    def __init__(self, url: str, host: str, rate: float = 40.0, clients: int = 3) -> None:
        self.url, self.host, self.rate = url, host, rate
        self.on = threading.Event()
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.window: Counter[str] = Counter()
        self.total: Counter[str] = Counter()
        for _ in range(clients):  # each client: its own keep-alive connection, ``rate`` requests/s at most
            threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        with httpx.Client(timeout=5) as client:
            next_at = time.monotonic()
            while not self.stop.is_set():
                if not self.on.wait(0.2):
                    next_at = time.monotonic()
                    continue
                next_at += 1.0 / self.rate
                try:
                    r = client.get(self.url, headers={"Host": self.host})
                    key = r.text.strip().removeprefix("hello from ") if r.status_code == 200 else f"HTTP {r.status_code}"
                except httpx.HTTPError as exc:
                    key = type(exc).__name__
                with self.lock:
                    self.window[key] += 1
                    self.total[key] += 1
                time.sleep(max(0.0, next_at - time.monotonic()))

    def take(self) -> Counter[str]:
        with self.lock:
            out, self.window = self.window, Counter()
        return out


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-m", "conveyor", *args], env=env, text=True, capture_output=True)


def deploy_watching(args: list[str], env: dict[str, str], traffic: Traffic | None, label: str) -> dict:
    """Run `conveyor deploy ... --wait --json`, printing the traffic mix every second meanwhile."""
    if traffic is not None:
        traffic.take()
        traffic.on.set()
    api = httpx.Client(base_url=env["CONVEYOR_URL"] + "/api/v1",
                       headers={"Authorization": f"Bearer {env['CONVEYOR_TOKEN']}"}, timeout=10)
    before = api.get("/apps/hello/deployments", params={"limit": 1}).json()
    newer_than = before[0]["id"] if before else 0
    proc = subprocess.Popen([PY, "-m", "conveyor", *args, "--wait", "--json"], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    shown = 0
    while proc.poll() is None:
        time.sleep(1.0)
        if traffic is not None:
            counts = traffic.take()
            line = mix(counts) if counts else "(no requests)"
            print(f"   [{label}] traffic last second → {line}", flush=True)
        try:
            deps = [d for d in api.get("/apps/hello/deployments", params={"limit": 1}).json() if d["id"] > newer_than]
            verdicts = deps[0].get("verdicts") or [] if deps else []
            for v in verdicts[shown:]:
                if v["outcome"] != "continue":
                    where = "bake" if v["step"] < 0 else f"step {v['step'] + 1}"
                    print(f"   {bold('verdict')} {where}: {v['outcome']} — {v['reason']}", flush=True)
            shown = len(verdicts)
        except httpx.HTTPError:
            pass
    out, err = proc.communicate()
    if traffic is not None:
        traffic.on.clear()
    if proc.returncode not in (0, 1) or not out.strip():  # 1 with a document: a deployment that failed
        print(err, file=sys.stderr)
        raise SystemExit(f"conveyor {' '.join(args)} failed ({proc.returncode})")
    return json.loads(out)


def main() -> int:
    if DEMO.exists():
        shutil.rmtree(DEMO)
    (DEMO / "src").mkdir(parents=True)
    api_port, router_port = pick(7700), pick(7780)
    env = {**os.environ, "CONVEYOR_CONFIG": str(DEMO / "client.json"),
           "CONVEYOR_URL": f"http://127.0.0.1:{api_port}", "PYTHONUNBUFFERED": "1"}
    token = "demo-" + os.urandom(6).hex()
    env["CONVEYOR_TOKEN"] = token

    say(f"Starting the platform: conveyor up --data-dir {DEMO / 'data'}")
    up = subprocess.Popen([PY, "-m", "conveyor", "up", "--data-dir", str(DEMO / "data"), "--api-port", str(api_port),
                           "--router-port", str(router_port), "--admin-token", token],
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          preexec_fn=_die_with_parent)
    assert up.stdout is not None
    for line in up.stdout:
        print("   " + line.rstrip(), flush=True)
        if "Press Ctrl-C" in line:
            break
    threading.Thread(target=lambda: [None for _ in up.stdout], daemon=True).start()  # type: ignore[union-attr]

    def stop(*_: object) -> None:
        say("Stopping the platform…")
        up.send_signal(signal.SIGTERM)
        try:
            up.wait(40)
        except subprocess.TimeoutExpired:
            up.kill()
        print("   Stopped: the platform, its agent, router and app instances are down. "
              f"Its data stays in {DEMO} until the next `make demo`.", flush=True)
        raise SystemExit(0)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    router = f"http://127.0.0.1:{router_port}/"
    traffic = Traffic(router, "hello.localhost")

    def source(version: str, canary: bool = False, fail_rate: float = 0.0) -> Path:
        d = DEMO / "src" / (version + ("-canary" if canary else ""))
        shutil.copytree(REPO / "examples" / "hello", d)
        (d / "VERSION").write_text(version + "\n")
        if canary:
            (d / "conveyor.toml").write_text(CANARY_TOML)
        if fail_rate:
            (d / "behaviour.json").write_text(json.dumps({"fail_rate": fail_rate}))
        return d

    say("conveyor apps create hello")
    print("   " + cli("apps", "create", "hello", env=env).stdout.strip())

    say("Deploying v1 (build → test → image → blue/green deploy)")
    d = deploy_watching(["deploy", "hello", "--source", str(source("v1"))], env, None, "v1")
    print(f"   deployment #{d['id']}: {d['state']}, release {d['release']}, image {d['image'][:19]}")

    say("Deploying v2 blue/green while traffic flows: watch the responses switch at once, with no errors")
    d = deploy_watching(["deploy", "hello", "--source", str(source("v2")), "--strategy", "bluegreen"], env, traffic, "v1→v2")
    print(f"   deployment #{d['id']}: {d['state']}, release {d['release']}")

    say("Rolling back to v1: v1 is still warm, so this is a routing change")
    t0 = time.monotonic()
    d = deploy_watching(["rollback", "hello"], env, traffic, "rollback")
    print(f"   rollback #{d['id']}: {d['state']} in {time.monotonic() - t0:.2f}s (including the CLI's start-up)")

    say("Shipping v2 again as a canary: 20% then 50% of traffic, each step analysed, then promoted and baked")
    d = deploy_watching(["deploy", "hello", "--source", str(source("v2", canary=True))], env, traffic, "canary")
    print(f"   deployment #{d['id']}: {d['state']}, release {d['release']}")
    if d["state"] != "succeeded":  # e.g. paused for lack of traffic on a very slow machine: finish it by hand
        print("   (promoting it by hand: conveyor promote hello --full)")
        cli("promote", "hello", "--full", env=env)
        httpx.get(f"{env['CONVEYOR_URL']}/api/v1/deployments/{d['id']}", params={"wait": 30},
                  headers={"Authorization": f"Bearer {token}"}, timeout=40)

    say("Shipping a broken v3 (30% of its requests fail) as a canary: analysis catches it and rolls it back")
    d = deploy_watching(["deploy", "hello", "--source", str(source("v3", canary=True, fail_rate=0.3))], env, traffic, "v3 canary")
    print(f"   deployment #{d['id']}: {bold(d['state'])} — {d['reason']}")

    total = traffic.total
    failed = sum(v for k, v in total.items() if not k.startswith("v"))
    say(f"Demo traffic: {sum(total.values())} requests, {failed} failed ({mix(total)})")
    print(f"""
   Open the web UI:     http://127.0.0.1:{api_port}/   (token: {token})
   Open the app:        http://hello.localhost:{router_port}/
   Try the CLI:         export PATH="$PWD/.venv/bin:$PATH" CONVEYOR_CONFIG="$PWD/.demo/client.json"
                        conveyor context && conveyor status hello   (see the README's "Using it")
   Metrics:             http://127.0.0.1:{router_port + 1}/metrics

   The platform stays up. Press Ctrl-C to stop it.""", flush=True)
    while up.poll() is None:
        time.sleep(1)
    return up.returncode or 0


if __name__ == "__main__":
    sys.exit(main())
