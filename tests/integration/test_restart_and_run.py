"""`conveyor restart` (rolling, no new release, no failed request under load) and `conveyor run`'s
bad input, with real processes through the router."""

from __future__ import annotations

import time

import pytest

from cvy_platform import Platform
from test_walking_skeleton import TrafficLoop

pytestmark = pytest.mark.integration

HOST = "hello.localhost"


def test_rolling_restart_replaces_every_instance_with_no_failed_request(shared_platform: Platform) -> None:
    p = shared_platform
    p.cli("apps", "create", "hello", check=True)
    out = p.deploy("hello", p.app_copy("hello", "v1"))
    assert out["state"] == "succeeded", out
    before = {r["id"] for r in p.cli_json("ps", "hello") if r["state"] == "ready"}
    assert len(before) == 2
    releases = len(p.api.get("/apps/hello/releases").json())
    with TrafficLoop(p, HOST) as load:
        time.sleep(0.5)
        done = p.cli_json("restart", "hello", "--wait")
        time.sleep(0.5)
    assert done["done"] and done["processes"] == ["web"]
    assert load.failures == [], load.failures[:5]
    assert len(load.served()) > 50 and set(load.served()) == {"hello from v1"}
    after = [r for r in p.cli_json("ps", "hello") if r["state"] != "draining"]
    assert len(after) == 2 and not before & {r["id"] for r in after}  # every instance is new
    assert len(p.api.get("/apps/hello/releases").json()) == releases  # no new release
    kinds = [e["kind"] for e in p.api.get("/events", params={"app": "hello"}).json()]
    assert "restart_requested" in kinds and "restarted" in kinds

    res = p.cli("restart", "hello", "--process", "mailer")
    assert res.returncode == 2 and "process type 'mailer' is unknown" in res.stderr


def test_run_bad_input(shared_platform: Platform) -> None:
    p = shared_platform
    p.cli("apps", "create", "empty", check=True)
    p.cli("config", "set", "empty", "A=1", "--no-deploy", check=True)  # the environment exists, no release
    res = p.cli("run", "empty", "--", "echo", "hi")
    assert res.returncode == 4 and "has no release to run a command in" in res.stderr
    res = p.cli("run", "nope", "--", "echo", "hi")
    assert res.returncode == 3 and "conveyor apps create nope" in res.stderr
    res = p.cli("run", "empty", "--timeout", "soon", "--", "echo")
    assert res.returncode == 2 and "--timeout" in res.stderr
    assert not [e for e in p.api.get("/events", params={"app": "empty"}).json() if e["kind"] == "run_started"]
