"""Process types with real processes: a worker ships with its release and is drained with SIGTERM when
the next one succeeds; a crash-looping worker fails the deployment and leaves the previous release
serving; `conveyor scale` changes counts without a release (web under load: no failed request);
`conveyor ps` lists every instance."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from cvy_platform import Platform, wait_for
from test_walking_skeleton import TrafficLoop

pytestmark = pytest.mark.integration

HOST = "jobs.localhost"

WEB = '''
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
VERSION = open("VERSION").read().strip()

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = ("web " + VERSION + "\\n").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass

ThreadingHTTPServer((os.environ["HOST"], int(os.environ["PORT"])), H).serve_forever()
'''

WORKER = '''
import os, signal, sys, time
VERSION = open("VERSION").read().strip()
if os.path.exists("CRASH"):
    print("worker " + VERSION + " cannot start", flush=True)
    sys.exit(3)
PREFIX = os.environ["JOURNAL_PREFIX"]  # a config var staged before the first deploy: missing, the worker dies

def note(what):  # to stdout: the sandbox gives the worker a private /tmp, its output reaches the platform's logs
    print(PREFIX + " " + what, flush=True)

def stop(*_):
    note("SIGTERM " + VERSION)
    sys.exit(0)

signal.signal(signal.SIGTERM, stop)
note("start " + VERSION)
while True:
    time.sleep(0.2)
'''

MANIFEST = '''
[app]
name = "jobs"

[run]
web = "python web.py"
worker = "python worker.py"

[deploy]
bake = "60s"  # the previous web instances stay warm: its workers must still go at once
drain_timeout = "1s"
ready_timeout = "60s"

[env.production]
instances = 1
'''


def _journal(p: Platform) -> dict[str, list[str]]:
    """Each worker instance's notes ("start v1", "SIGTERM v1"), from its output as the platform stored it."""
    logs = p.data_dir / "logs"
    found: dict[str, list[str]] = {}
    for f in sorted(logs.glob("jobs-*-worker-*.log")) if logs.exists() else []:
        notes = [line.split(f"{JOURNAL} ", 1)[1] for line in f.read_text(errors="replace").splitlines() if f"{JOURNAL} " in line]
        if notes:
            found[f.stem] = notes
    return found


#: The worker's notes start with this (the JOURNAL_PREFIX config var).
JOURNAL = "journal:"


def _ps(p: Platform) -> list[dict[str, Any]]:
    return p.cli_json("ps", "jobs", "--env", "production")


def _running(p: Platform, process: str, release: int) -> list[dict[str, Any]]:
    return [r for r in _ps(p) if r["process"] == process and r["release"] == release and r["state"] == "ready"]


def test_workers_ship_scale_and_fail_with_their_release(platform_factory: Any) -> None:
    p: Platform = platform_factory()
    p.start()
    p.cli("apps", "create", "jobs", check=True)
    p.cli("config", "set", "jobs", f"JOURNAL_PREFIX={JOURNAL}", "--no-deploy", check=True)  # staged before the first deploy

    def source(version: str, **extra: str) -> Path:
        return p.app_copy("jobs", version, web__py=WEB, worker__py=WORKER, conveyor__toml=MANIFEST, **extra)

    v1 = p.deploy("jobs", source("v1"))
    assert v1["state"] == "succeeded", v1
    p.served(HOST, "web v1\n")
    wait_for(lambda: len(_running(p, "worker", 1)) == 1, 30, 0.2, "the v1 worker to run")
    rows = _ps(p)
    assert {r["process"] for r in rows} == {"web", "worker"}
    assert all(r["host"] == "local" and r["uptime"] is not None for r in rows if r["state"] == "ready")
    human = p.cli("ps", "jobs", check=True).stdout
    assert "worker" in human and "web" in human
    # the worker is not routed: the router only knows the web instance
    routing = p.api.get("/routing").json()
    (env,) = [e for e in routing["environments"] if e["app"] == "jobs"]
    assert [len(r["instances"]) for r in env["releases"]] == [1] and "-worker-" not in json.dumps(env)

    # v2: its worker starts with it; v1's is drained with SIGTERM once v2 succeeded
    v2 = p.deploy("jobs", source("v2"))
    assert v2["state"] == "succeeded", v2
    p.served(HOST, "web v2\n")
    wait_for(lambda: any("SIGTERM v1" in lines for lines in _journal(p).values()), 30, 0.2,
             "the v1 worker to get SIGTERM")
    wait_for(lambda: len(_running(p, "worker", 2)) == 1 and not [r for r in _ps(p) if r["process"] == "worker" and r["release"] == 1],
             30, 0.2, "only the v2 worker to run")
    assert any(lines[0] == "start v2" for lines in _journal(p).values())

    # scale: workers to 2, web 1 → 4 → 1 under load (the figures), no new release, no failed request
    releases_before = len(p.api.get("/apps/jobs/releases").json())
    with TrafficLoop(p, HOST) as load:
        p.cli("scale", "jobs", "web=4", "worker=2", check=True)
        wait_for(lambda: len(_running(p, "web", 2)) == 4 and len(_running(p, "worker", 2)) == 2, 60, 0.2,
                 "4 web and 2 worker instances")
        wait_for(lambda: len(p.api.get("/routing").json()["environments"][0]["releases"][0]["instances"]) == 4, 30, 0.1,
                 "the router to know 4 instances")
        p.cli("scale", "jobs", "web=1", check=True)
        wait_for(lambda: len([r for r in _ps(p) if r["process"] == "web"]) == 1, 60, 0.2, "web back to 1")
        time.sleep(0.5)  # traffic keeps flowing after the drain ended
    assert load.failures == [], load.failures[:5]
    assert len(load.served()) > 50 and set(load.served()) == {"web v2"}
    assert len(p.api.get("/apps/jobs/releases").json()) == releases_before

    # the app page's scale control does the same (a form with the session's CSRF token)
    with httpx.Client(base_url=p.api_url, follow_redirects=True, timeout=30) as browser:
        assert browser.get(p.api.post("/ui/login-link").json()["path"]).status_code == 200
        page = browser.get("/apps/jobs").text
        assert "Process types" in page and 'name="count_worker" value="2"' in page
        csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
        r = browser.post("/apps/jobs/scale", data={"csrf": csrf, "env": "production", "count_web": "1", "count_worker": "1"})
        assert r.status_code == 200 and 'name="count_worker" value="1"' in r.text
        bad = browser.post("/apps/jobs/scale", data={"csrf": csrf, "env": "production", "count_worker": "-3"})
        assert bad.status_code == 422 and "a count is between 0 and 100" in bad.text
    wait_for(lambda: len([r for r in _ps(p) if r["process"] == "worker" and r["state"] != "draining"]) == 1, 30, 0.2,
             "one worker after scaling from the page")
    p.cli("scale", "jobs", "worker=2", check=True)
    wait_for(lambda: len(_running(p, "worker", 2)) == 2, 30, 0.2, "two workers again")

    # bad input changes nothing
    for args, needle in [(["mailer=1"], "process type 'mailer' is unknown"), (["worker=-1"], "a count is between 0 and 100")]:
        res = p.cli("scale", "jobs", *args)
        assert res.returncode == 2 and needle in res.stderr, res.stderr
    assert len(_running(p, "worker", 2)) == 2

    # v3's worker crash-loops: the deployment fails, nothing moved, v2 (web and workers) keeps running
    v3 = p.deploy("jobs", source("v3", CRASH="1"))
    assert v3["state"] == "failed" and "worker" in v3["reason"], v3
    p.served(HOST, "web v2\n")
    assert len(_running(p, "worker", 2)) == 2
