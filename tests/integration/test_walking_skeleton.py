"""The walking skeleton end to end: build → deploy → route → roll back, real processes.

Every test talks to a real ``conveyor up`` (control plane, agent and router as
separate processes) through the CLI, the HTTP API and the router.
"""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest

from cvy_platform import Platform, wait_for

pytestmark = pytest.mark.integration

HOST = "hello.localhost"


def _deployed(p: Platform, app: str, version: str, **files: str) -> dict:
    out = p.deploy(app, p.app_copy(app, version, **files))
    assert out["_exit"] == 0 and out["state"] == "succeeded", out
    return out


class TrafficLoop:
    """A client sending requests through the router in a loop, recording every outcome."""

    def __init__(self, p: Platform, host: str) -> None:
        self.p, self.host = p, host
        self.stop = threading.Event()
        self.results: list[tuple[float, int | str, str]] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:  # keep-alive connection reused across switches
            while not self.stop.is_set():
                try:
                    r = client.get(self.p.url("/"), headers={"Host": self.host})
                    self.results.append((time.monotonic(), r.status_code, r.text.strip()))
                except httpx.HTTPError as exc:
                    self.results.append((time.monotonic(), type(exc).__name__, ""))
                time.sleep(0.005)

    def __enter__(self) -> TrafficLoop:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(15)

    @property
    def failures(self) -> list[tuple[float, int | str, str]]:
        return [r for r in self.results if r[1] != 200]

    def served(self) -> list[str]:
        return [r[2] for r in self.results if r[1] == 200]


def test_deploy_status_releases_and_logs(shared_platform: Platform) -> None:
    p = shared_platform
    created = p.cli_json("apps", "create", "hello")
    assert created["name"] == "hello"
    out = _deployed(p, "hello", "v1")
    assert out["release"] == 1 and out["image"].startswith("sha256:") and isinstance(out["id"], int)

    p.served(HOST, "hello from v1\n")
    assert p.get(f"production.{HOST}").text == "hello from v1\n"

    status = p.cli_json("status", "hello")
    (prod,) = status["environments"]
    assert prod["name"] == "production" and prod["release"] == 1 and prod["image"] == out["image"]
    assert [i["state"] for i in prod["instances"]] == ["ready", "ready"]  # examples/hello asks for 2

    human = p.cli("status", "hello", check=True).stdout
    assert "production" in human and "ready" in human

    rels = p.cli_json("releases", "hello")
    assert [(r["env"], r["number"], r["status"]) for r in rels] == [("production", 1, "live")]

    logs = wait_for(lambda: (t := p.cli("logs", "hello", "--env", "production").stdout) and "listening" in t and t,
                    30, 0.2, "instance output in conveyor logs")
    assert "hello v1 listening on 127.0.0.1:" in logs


def test_unknown_host_is_404_and_unknown_app_is_a_clear_error(shared_platform: Platform) -> None:
    p = shared_platform
    r = p.get("nope.localhost")
    assert r.status_code == 404 and "nope.localhost" in r.text

    res = p.cli("deploy", "ghost", "--source", str(p.app_copy()), "--wait")
    assert res.returncode == 3, res
    assert "app 'ghost' not found" in res.stderr and "conveyor apps create ghost" in res.stderr

    res = p.cli("status", "ghost")
    assert res.returncode == 3 and "not found" in res.stderr


def test_malformed_manifest_is_rejected_and_changes_nothing(shared_platform: Platform) -> None:
    p = shared_platform
    p.cli("apps", "create", "badapp")
    before = p.api.get("/apps/badapp/images").json()
    src = p.app_copy("badapp", "v1", conveyor__toml='[run]\nweb = "python app.py"\n[health]\ntimeout = "soon"\n')
    res = p.cli("deploy", "badapp", "--source", str(src), "--wait")
    assert res.returncode == 2, res
    assert "conveyor.toml: [health] timeout" in res.stderr and '"2s"' in res.stderr
    # The API refuses it the same way when a client skips the local check.
    from conveyor.build.archive import pack_directory

    r = p.api.post("/apps/badapp/builds", content=pack_directory(src), headers={"Content-Type": "application/gzip"})
    assert r.status_code == 422 and "[health] timeout" in r.json()["detail"]
    assert p.api.get("/apps/badapp/images").json() == before
    assert p.api.get("/apps/badapp/deployments").json() == []


def test_bad_api_payloads_get_clear_errors(shared_platform: Platform) -> None:
    p = shared_platform
    r = p.api.post("/apps", json={"name": "Not Valid!"})
    assert r.status_code == 422 and "lower-case" in r.json()["detail"]
    r = p.api.post("/apps", json={"nom": "x"})
    assert r.status_code == 422
    r = p.api.post("/apps/hello/deployments", json={"env": "production", "image": "sha256:00"})
    assert r.status_code == 404 and "too short" in r.json()["detail"]
    r = p.api.post("/apps/hello/builds", content=b"this is not a tarball", headers={"Content-Type": "application/gzip"})
    assert r.status_code == 422 and "corrupt archive" in r.json()["detail"]
    r = httpx.get(f"http://127.0.0.1:{p.api_port}/api/v1/apps")
    assert r.status_code == 401


def test_zero_downtime_across_five_deploys_and_a_rollback(shared_platform: Platform) -> None:
    p = shared_platform
    if not p.api.get("/apps").json() or "zd" not in [a["name"] for a in p.api.get("/apps").json()]:
        p.cli("apps", "create", "zd", check=True)
    _deployed(p, "zd", "v1")
    with TrafficLoop(p, "zd.localhost") as loop:
        for n in range(2, 7):
            out = _deployed(p, "zd", f"v{n}")
            assert out["release"] == n
            # the switch is visible to the client right after the deployment ends
            wait_for(lambda n=n: loop.served() and loop.served()[-1] == f"hello from v{n}", 5, 0.02, f"v{n} served")
        rb = p.cli_json("rollback", "zd", "--wait")
        assert rb["state"] == "succeeded" and rb["release"] == 5
        wait_for(lambda: loop.served()[-1] == "hello from v5", 5, 0.01, "rollback to v5 served")
    assert loop.failures == [], f"{len(loop.failures)} failed requests, first: {loop.failures[:3]}"
    served = loop.served()
    assert len(served) > 100
    # versions only move forward in order, then back once: no flapping between releases
    order = [v for i, v in enumerate(served) if i == 0 or served[i - 1] != v]
    assert order == [f"hello from v{n}" for n in (1, 2, 3, 4, 5, 6, 5)], order


def test_rollback_to_warm_release_is_a_routing_change(shared_platform: Platform) -> None:
    p = shared_platform
    p.cli("apps", "create", "warm", check=True)
    _deployed(p, "warm", "v1")
    _deployed(p, "warm", "v2")
    p.served("warm.localhost", "hello from v2\n")
    t0 = time.monotonic()
    r = p.api.post("/apps/warm/rollback", json={"env": "production"})
    assert r.status_code == 201, r.text
    wait_for(lambda: p.get("warm.localhost").text == "hello from v1\n", 5, 0.005, "v1 served after rollback")
    elapsed = time.monotonic() - t0
    assert elapsed < 1.0, f"rollback to a warm release took {elapsed:.3f}s"
    dep = p.api.get(f"/deployments/{r.json()['id']}").json()
    assert dep["state"] == "succeeded" and dep["kind"] == "rollback"
    rels = {x["number"]: x["status"] for x in p.cli_json("releases", "warm")}
    assert rels == {1: "live", 2: "rolled_back"}
    # nothing left to roll back to: a clear conflict, exit 4
    res = p.cli("rollback", "warm")
    assert res.returncode == 4 and "no previous release" in res.stderr


def test_release_that_never_becomes_ready_fails_and_old_keeps_serving(shared_platform: Platform) -> None:
    p = shared_platform
    p.cli("apps", "create", "nr", check=True)
    _deployed(p, "nr", "v1")
    manifest = (
        '[run]\nweb = "python unready.py"\n[health]\npath = "/healthz"\ntimeout = "1s"\n'
        '[deploy]\nready_timeout = "4s"\n[env.production]\ninstances = 1\n'
    )
    unready = (  # listens, but its health check always answers 503
        "import os\nfrom http.server import BaseHTTPRequestHandler, HTTPServer\n"
        "class H(BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        "        self.send_response(503); self.send_header('Content-Length', '0'); self.end_headers()\n"
        "HTTPServer(('127.0.0.1', int(os.environ['PORT'])), H).serve_forever()\n"
    )
    with TrafficLoop(p, "nr.localhost") as loop:
        out = p.deploy("nr", p.app_copy("nr", "v2", conveyor__toml=manifest, unready__py=unready))
    assert out["_exit"] == 1 and out["state"] == "failed"
    assert "did not become ready within 4s" in out["reason"]
    assert loop.failures == [] and set(loop.served()) == {"hello from v1"}
    status = p.cli_json("status", "nr")["environments"][0]
    assert status["release"] == 1 and {i["release"] for i in status["instances"]} == {1}
    rels = {x["number"]: x["status"] for x in p.cli_json("releases", "nr")}
    assert rels == {1: "live", 2: "failed"}


def test_crash_loop_fails_the_deployment_quickly(shared_platform: Platform) -> None:
    p = shared_platform
    p.cli("apps", "create", "crashy", check=True)
    _deployed(p, "crashy", "v1")
    src = p.app_copy("crashy", "v2", crash__py="import sys\nprint('boom: missing DATABASE_URL', flush=True)\nsys.exit(3)\n",
                     conveyor__toml='[run]\nweb = "python crash.py"\n[health]\npath = "/healthz"\n[env.production]\ninstances = 1\n')
    t0 = time.monotonic()
    out = p.deploy("crashy", src)
    assert out["_exit"] == 1 and out["state"] == "failed", out
    assert "crashloop" in out["reason"] and "boom: missing DATABASE_URL" in out["reason"]
    assert time.monotonic() - t0 < 45
    assert p.get("crashy.localhost").text == "hello from v1\n"


def test_failed_tests_block_deploy(shared_platform: Platform) -> None:
    p = shared_platform
    p.cli("apps", "create", "untested", check=True)
    src = p.app_copy("untested", "v1", conveyor__toml='[run]\nweb = "python app.py"\n[test]\ncommand = "python -c \'raise SystemExit(1)\'"\n')
    res = p.cli("deploy", "untested", "--source", str(src), "--wait")
    assert res.returncode == 1 and "failed its tests" in res.stderr
    (img,) = p.api.get("/apps/untested/images").json()
    assert img["test_status"] == "failed"
    r = p.api.post("/apps/untested/deployments", json={"env": "production", "image": img["digest"]})
    assert r.status_code == 409 and "failed its tests" in r.json()["detail"]


def test_restart_keeps_state(platform_factory) -> None:  # type: ignore[no-untyped-def]
    p = platform_factory()
    p.start()
    p.cli("apps", "create", "hello", check=True)
    _deployed(p, "hello", "v1")
    _deployed(p, "hello", "v2")
    p.stop()
    with pytest.raises(httpx.HTTPError):
        p.get(HOST)
    t0 = time.monotonic()
    p.start()
    wait_for(lambda: p.get(HOST).text == "hello from v2\n", 60, 0.1, "v2 served after restart")
    print(f"serving again {time.monotonic() - t0:.1f}s after the restart began")
    status = p.cli_json("status", "hello")["environments"][0]
    assert status["release"] == 2


def test_data_plane_outlives_a_killed_control_plane(platform_factory) -> None:  # type: ignore[no-untyped-def]
    """SIGKILL the control plane under traffic and watch until well past the lost-host grace
    (a restarted control plane judges no host for HOST_LOST_AFTER s, then judges them by their
    reports): had it wrongly taken the agent for lost at that moment, the routes would change
    (the router's table version moves) and instances would be replaced (their pids change)."""
    import os
    import signal

    from conveyor.domain.healing import HOST_LOST_AFTER

    p = platform_factory()
    p.start()
    p.cli("apps", "create", "hello", check=True)
    _deployed(p, "hello", "v1")
    before = {i["id"]: i["port"] for i in p.cli_json("status", "hello")["environments"][0]["instances"]}
    pids_before = _instance_pids(p)
    version = _router_table_version(p)
    with TrafficLoop(p, HOST) as loop:
        server = p.child_pid("server")
        os.kill(server, signal.SIGKILL)
        # the supervisor restarts it; meanwhile the router and the agent carry on
        wait_for(lambda: p.child_pid("server") != server and p.api.get("/apps").status_code == 200, 60, 0.2,
                 "control plane back")
        back = time.monotonic()
        # keep watching for the grace and 5 s more (a lost-host judgement shows within a tick)
        versions = set()
        while time.monotonic() < back + HOST_LOST_AFTER + 5:
            versions.add(_router_table_version(p))
            assert _instance_pids(p) == pids_before, "instances were restarted or replaced"
            time.sleep(0.5)
        assert versions == {version}, f"the routing table changed after the restart: {version} -> {versions}"
        assert sum(1 for r in loop.results if r[0] >= back + HOST_LOST_AFTER) >= 50, "too little traffic past the grace"
    assert loop.failures == [], loop.failures[:3]
    after = {i["id"]: i["port"] for i in p.cli_json("status", "hello")["environments"][0]["instances"]}
    assert after == before  # same instances on the same ports: nothing restarted, nothing duplicated
    agent_state = json.loads((p.data_dir / "agent" / "agent-state.json").read_text())
    assert sorted(agent_state["processes"]) == sorted(before)


def _router_table_version(p: Platform) -> int:
    """The version of the routing table the router holds (its admin port's /metrics.json)."""
    return int(httpx.get(f"http://{p.host}:{p.admin_port}/metrics.json", timeout=5).json()["table_version"])


def _instance_pids(p: Platform) -> dict[str, int]:
    """Instance id -> pid, as the agent recorded them (agent-state.json)."""
    doc = json.loads((p.data_dir / "agent" / "agent-state.json").read_text())
    return {iid: int(rec["pid"]) for iid, rec in (doc.get("processes") or {}).items()}
