"""Tenancy and security on a real ``conveyor up`` (issue 15): files, processes, credentials, hostile apps.

One platform per module: a neighbour app ("hello") serves under constant traffic
while a hostile app ("evil", tests/integration/hostile_app) tries every attack of
the issue from inside its instance. Each attack must be contained, the neighbour
must answer every request, and the platform must keep working.

The sandbox tests need bubblewrap: without it they skip saying so, except under
``CI=true`` where they fail (.ci/run installs it).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from cvy_platform import Platform, wait_for

pytestmark = pytest.mark.integration

HOSTILE = Path(__file__).parent / "hostile_app"
SECRET = "neighbour-secret-5f1c2a"


def _need_sandbox() -> None:
    from conveyor.agent.sandbox import sandbox_warning

    why = sandbox_warning()
    if why is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"the sandbox is required in CI: {why}")
    pytest.skip(why)


class Traffic:
    """Requests to one app through the router, in a loop, until stopped; every outcome kept."""

    def __init__(self, p: Platform, host: str) -> None:
        self.p, self.host = p, host
        self.stop = threading.Event()
        self.results: list[int | str] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=10) as c:
            while not self.stop.is_set():
                try:
                    self.results.append(c.get(self.p.url("/"), headers={"Host": self.host}).status_code)
                except httpx.HTTPError as exc:
                    self.results.append(type(exc).__name__)
                time.sleep(0.01)

    def __enter__(self) -> Traffic:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(15)

    @property
    def failed(self) -> list[int | str]:
        return [r for r in self.results if r != 200]


def _instances(p: Platform, app: str) -> list[dict[str, Any]]:
    hosts = p.api.get("/hosts").json()["hosts"]
    return [i for h in hosts for i in h["instances"] if i.get("app") == app]


@pytest.fixture(scope="module")
def plat(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("tenancy")
    p = Platform(root)
    # A client.json of another platform is already there: `up` must not overwrite it.
    (root / "client.json").write_text(json.dumps({"url": "http://other:1", "token": "someone-elses"}))
    p.start()
    yield p
    p.stop_all()


def test_files_are_private_and_no_token_is_shown(plat: Platform) -> None:
    d = plat.data_dir
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    for f in ("admin-token", "conveyor.db", "agent-join-token", "router-join-token"):
        assert stat.S_IMODE((d / f).stat().st_mode) == 0o600, f
    wait_for(lambda: (d / "agent" / "agent-state.json").exists(), 30, what="the agent's state file")
    assert stat.S_IMODE((d / "agent" / "agent-state.json").stat().st_mode) == 0o600
    assert stat.S_IMODE((d / "agent").stat().st_mode) == 0o700
    # Not printed at start, not in any process's command line, not in the agent's or router's environment.
    assert plat.token not in plat.log().replace(f"--admin-token {plat.token}", "")
    for name in ("server", "agent", "router"):
        pid = plat.child_pid(name)
        assert plat.token.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes(), name
        if name != "server":
            assert plat.token.encode() not in Path(f"/proc/{pid}/environ").read_bytes(), name
    # The other platform's client.json is kept, and `up` says so.
    assert json.loads((plat.root / "client.json").read_text())["token"] == "someone-elses"
    assert "left it as it is" in plat.log()


def test_agent_and_router_hold_only_their_join_tokens(plat: Platform) -> None:
    agent_token = (plat.data_dir / "agent-join-token").read_text().strip()
    router_token = (plat.data_dir / "router-join-token").read_text().strip()
    who = {t: httpx.get(f"{plat.api_url}/api/v1/whoami", headers={"Authorization": f"Bearer {t}"}).json()
           for t in (agent_token, router_token)}
    assert (who[agent_token]["role"], who[agent_token]["host"]) == ("agent", "local")
    assert (who[router_token]["role"], who[router_token]["host"]) == ("router", "local")
    for t in (agent_token, router_token):
        assert httpx.get(f"{plat.api_url}/api/v1/apps", headers={"Authorization": f"Bearer {t}"}).status_code == 403
    routers = plat.api.get("/routers").json()["routers"]
    assert [r["id"] for r in routers] == ["local"]


def test_metrics_and_the_router_table_need_a_credential(plat: Platform) -> None:
    assert httpx.get(f"{plat.api_url}/metrics").status_code == 401
    assert httpx.get(f"{plat.api_url}/metrics", headers={"Authorization": f"Bearer {plat.token}"}).status_code == 200
    admin = f"http://127.0.0.1:{plat.admin_port}/table"
    assert httpx.get(admin).status_code == 401
    assert httpx.get(admin, headers={"Authorization": "Bearer guess"}).status_code == 401
    router_token = (plat.data_dir / "router-join-token").read_text().strip()
    assert "version" in httpx.get(admin, headers={"Authorization": f"Bearer {router_token}"}).json()


def test_a_forged_router_registration_fails(plat: Platform) -> None:
    viewer = plat.cli_json("tokens", "create", "--role", "viewer", "--name", "attacker")["token"]
    r = httpx.get(f"{plat.api_url}/api/v1/routing", params={"router": "fake", "admin": "http://127.0.0.1:9/"},
                  headers={"Authorization": f"Bearer {viewer}"})
    assert r.status_code == 403
    assert [x["id"] for x in plat.api.get("/routers").json()["routers"]] == ["local"]


def _hostile_source(plat: Platform, neighbour_pid: int) -> Path:
    dest = plat.root / "src" / f"evil-{time.monotonic_ns()}"
    shutil.copytree(HOSTILE, dest)
    targets = {
        "EVIL_DATA_DIR": str(plat.data_dir), "EVIL_CLIENT_CONFIG": str(plat.root / "client.json"),
        "EVIL_ADMIN_TOKEN_SHA256": hashlib.sha256(plat.token.encode()).hexdigest(), "EVIL_ROUTER_PORT": str(plat.router_port),
        "EVIL_AGENT_PID": str(plat.child_pid("agent")), "EVIL_ROUTER_PID": str(plat.child_pid("router")),
        "EVIL_SERVER_PID": str(plat.child_pid("server")), "EVIL_NEIGHBOUR_PID": str(neighbour_pid),
        "EVIL_PIDS_LIMIT": "64",
    }
    env_vars = "\n".join(f'{k} = "{v}"' for k, v in targets.items())
    (dest / "conveyor.toml").write_text(f"""
[app]
name = "evil"

[run]
web = "python app.py"

[health]
path = "/healthz"

[limits]
memory = "128M"
pids = 64
cpu = 0.5

[env.production]
instances = 1

[env.production.vars]
{env_vars}
""")
    return dest


def test_hostile_app_is_contained_and_the_neighbour_keeps_serving(plat: Platform) -> None:
    _need_sandbox()
    hello = plat.root / "src" / "hello-secret"
    shutil.copytree(Path(__file__).resolve().parents[2] / "examples" / "hello", hello)
    toml = (hello / "conveyor.toml").read_text().replace("[env.production]\ninstances = 2",
                                                          f'[env.production]\ninstances = 2\n\n[env.production.vars]\nSECRET = "{SECRET}"')
    (hello / "conveyor.toml").write_text(toml)
    plat.cli("apps", "create", "hello", check=True)
    plat.cli("apps", "create", "evil", check=True)
    out = plat.deploy("hello", hello)
    assert out["_exit"] == 0 and out["state"] == "succeeded", out
    neighbour = _instances(plat, "hello")[0]
    assert neighbour["sandbox"].startswith("bubblewrap, uid ")
    with Traffic(plat, "hello.localhost") as traffic:
        out = plat.deploy("evil", _hostile_source(plat, neighbour["pid"]))
        assert out["_exit"] == 0 and out["state"] == "succeeded", out
        report = wait_for(lambda: (r := plat.get("evil.localhost", "/report").json())["done"] and r, 240, 0.5,
                          "the hostile app's report")
        time.sleep(0.5)  # a little traffic after the last attack, too (the loop counts it)
    attacks = report["attacks"]
    expected = {"agent_data_env", "admin_token", "database", "join_tokens", "client_config", "agent_state",
                "other_apps_files", "proc_environ", "write_outside", "write_own_dir", "signal_others",
                "bind_router_port", "fill_tmp", "fork_bomb", "memory"}
    assert set(attacks) == expected, attacks
    escaped = {k: v for k, v in attacks.items() if not v["contained"]}
    assert escaped == {}, json.dumps(attacks, indent=1)
    assert len(traffic.results) > 50 and traffic.failed == [], traffic.failed[:10]
    # The platform is fine: its processes live, its API answers, the neighbour serves.
    assert httpx.get(f"{plat.api_url}/healthz").status_code == 200
    assert plat.get("hello.localhost").status_code == 200
    evil = _instances(plat, "evil")[0]
    assert evil["limits"] == {"memory": 128 * 2**20, "cpu": 0.5, "pids": 64}
    assert evil["usage"]["memory_bytes"] > 0 and evil["usage"]["pids"] >= 1
    assert evil["sandbox"] != neighbour["sandbox"]  # another user


def test_an_app_over_its_memory_limit_is_reported_and_rolled_back(plat: Platform) -> None:
    _need_sandbox()
    good = plat.app_copy("hog", "v1")
    (good / "conveyor.toml").write_text((good / "conveyor.toml").read_text().replace('name = "hello"', 'name = "hog"')
                                        + '\n[limits]\nmemory = "64M"\n')
    plat.cli("apps", "create", "hog", check=True)
    out = plat.deploy("hog", good)
    assert out["_exit"] == 0 and out["state"] == "succeeded", out
    source = (good / "app.py").read_text()
    start = 'if __name__ == "__main__":\n'
    assert start in source
    # v2 allocates 512M when it starts serving (not on import: the build's test imports it).
    bad = plat.app_copy("hog", "v2", app__py=source.replace(start, start + "    hog = [bytearray(8 << 20) for _ in range(64)]\n"))
    (bad / "conveyor.toml").write_text((good / "conveyor.toml").read_text())
    out = plat.deploy("hog", bad)
    assert out["_exit"] != 0 and out["state"] in ("failed", "rolled_back"), out
    messages = [i["message"] for i in _instances(plat, "hog")]
    events = json.dumps(plat.api.get("/events", params={"app": "hog"}).json())
    assert "killed: out of memory, limit 64M" in json.dumps(out) + events + json.dumps(messages), (out, messages)
    assert plat.get("hog.localhost").text == "hello from v1\n"  # still serving the good release


def test_ps_and_audit_show_usage_isolation_and_who_did_what(plat: Platform) -> None:
    _need_sandbox()
    rows = plat.cli_json("ps", "evil")
    assert rows and all(r["app"] == "evil" for r in rows)
    assert rows[0]["limits"]["memory"] == 128 * 2**20 and rows[0]["usage"]["memory_bytes"] > 0
    wide = {**plat.env, "COLUMNS": "250"}  # Rich fits tables to the terminal: give it room
    human = subprocess.run([sys.executable, "-m", "conveyor", "ps", "evil", "--wide"], capture_output=True, text=True, env=wide,
                           timeout=60, check=True).stdout
    assert " / 128.0M" in human and "bubblewrap, uid 6" in human, human
    calls = plat.cli_json("audit", "--app", "evil", "--since", "1h")
    assert any(c["action"] == "POST /api/v1/apps/evil/builds" and c["actor"] == "admin" and c["outcome"] == "ok" for c in calls), calls
    everything = plat.cli_json("audit")
    assert any(c["action"] == "POST /api/v1/tokens" for c in everything)  # the attacker's viewer token, made above


def test_a_builds_own_commands_cannot_reach_the_platforms_credentials(plat: Platform) -> None:
    """A build runs the app's code ([build] and [test] commands): on `conveyor up` it runs sandboxed,
    the control plane's data dir masked. Each command here succeeds only if every attempt fails."""
    _need_sandbox()
    d = plat.data_dir
    probe = (f"! cat {d}/admin-token && ! cat {d}/conveyor.db && ! cat {d}/agent-join-token "
             f"&& ! touch {d}/pwned && ! touch {plat.root}/pwned && test \"$(id -u)\" != 0 && touch built.txt")
    src = plat.app_copy("builder", "v1")
    (src / "conveyor.toml").write_text((src / "conveyor.toml").read_text().replace(
        "[test]\n", f"[build]\ncommand = '{probe}'\n\n[test]\n", 1).replace(
        'command = "python -c \\"import app\\""', f"command = '{probe.replace('touch built.txt', 'test -f built.txt')}'", 1))
    assert "[build]" in (src / "conveyor.toml").read_text() and "id -u" in (src / "conveyor.toml").read_text().split("[test]")[1]
    plat.cli("apps", "create", "builder", check=True)
    built = plat.cli_json("build", str(src), "--app", "builder")
    assert built["status"] == "passed", built
    log = plat.cli("images", "show", built["id"], "--logs", check=True).stdout
    assert "the app's own commands run in bubblewrap, uid 60999" in log, log
    assert not (d / "pwned").exists() and not (plat.root / "pwned").exists()
