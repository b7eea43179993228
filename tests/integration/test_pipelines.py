"""Pipelines, approvals, locks and freezes end to end (issue 14, items 3 and 4): a real ``conveyor up``,
the CLI and the API, real builds, and traffic through the router.

One platform for the module; each test uses its own app. Bakes are 1 s so promotions come quickly.
"""

from __future__ import annotations

from typing import Any

import pytest

from cvy_platform import Platform, wait_for

pytestmark = pytest.mark.integration

#: staging → production; ``{approval}`` true: production waits for a person.
PIPELINE = """\
[run]
web = "python app.py"
[health]
path = "/healthz"
interval = "200ms"
[deploy]
bake = "1s"
drain_timeout = "1s"
[env.staging]
instances = 1
[env.production]
instances = 1
after = "staging"
approval = {approval}
"""


def _dep(p: Platform, dep_id: int) -> dict[str, Any]:
    return p.api.get(f"/deployments/{dep_id}").json()  # type: ignore[no-any-return]


def _until(p: Platform, dep_id: int, cond: Any, timeout: float, what: str) -> dict[str, Any]:
    return wait_for(lambda: (d := _dep(p, dep_id)) and cond(d) and d, timeout, 0.05, what)  # type: ignore[no-any-return]


def _deps(p: Platform, app: str, env: str) -> list[dict[str, Any]]:
    return p.api.get(f"/apps/{app}/deployments", params={"env": env}).json()  # type: ignore[no-any-return]


def _env(p: Platform, app: str, env: str) -> dict[str, Any]:
    return next(e for e in p.api.get(f"/apps/{app}").json()["environments"] if e["name"] == env)


def _kinds(p: Platform, app: str) -> list[str]:
    return [e["kind"] for e in reversed(p.api.get("/events", params={"app": app, "limit": 300}).json())]


def _to_staging(p: Platform, app: str, digest: str) -> dict[str, Any]:
    r = p.api.post(f"/apps/{app}/deployments", json={"env": "staging", "image": digest})
    assert r.status_code == 201, r.text
    done = _until(p, r.json()["id"], lambda d: d["finished_at"] is not None, 60, f"{app} staging deployment")
    assert done["state"] == "succeeded", done
    return done


def _promoted(p: Platform, app: str, digest: str, timeout: float = 30) -> dict[str, Any]:
    """The production deployment the pipeline made for ``digest``."""
    return wait_for(lambda: next((d for d in _deps(p, app, "production") if d["image"] == digest), None), timeout,
                    0.05, f"the pipeline's deployment of {digest[7:19]} to production")  # type: ignore[no-any-return]


def test_approval_gates_production_and_ships_the_same_image(shared_platform: Platform) -> None:
    p = shared_platform
    p.create_app("piped")
    v1 = p.build_image("piped", "v1", conveyor__toml=PIPELINE.format(approval="true"))
    staged = _to_staging(p, "piped", v1)
    waiting = _promoted(p, "piped", v1)
    assert waiting["state"] == "awaiting_approval", waiting
    assert waiting["approval"]["state"] == "pending" and waiting["approval"]["from_deployment"] == staged["id"]
    assert waiting["created_by"] == "pipeline" and waiting["params"]["pipeline"]["from_env"] == "staging"
    assert _env(p, "piped", "production")["awaiting_approval"] == [waiting["id"]]
    assert _env(p, "piped", "production")["release"] is None  # nothing deployed while it waits
    shown = p.cli("deployments", "show", str(waiting["id"]), check=True).stdout
    assert "awaiting approval" in shown and f"conveyor approve piped {waiting['id']}" in shown, shown
    assert "pipeline:" in shown and "staging:" in shown and "production (after staging, approval)" in shown, shown
    status = p.cli("status", "piped", check=True).stdout
    assert f"awaiting approval: deployment #{waiting['id']}" in status, status

    # a viewer may look, not approve
    viewer = p.cli_json("tokens", "create", "--role", "viewer", "--name", "piped-viewer")["token"]
    r = p.api.post(f"/deployments/{waiting['id']}/approve", json={}, headers={"Authorization": f"Bearer {viewer}"})
    assert r.status_code == 403, r.text
    assert _dep(p, waiting["id"])["state"] == "awaiting_approval"

    # approving something that waits for nothing: refused, nothing changed
    bad = p.cli("approve", "piped", str(staged["id"]))
    assert bad.returncode == 4 and "waits for no approval" in bad.stderr, bad.stderr

    out = p.cli("approve", "piped", str(waiting["id"]), "--reason", "release notes checked", check=True).stdout
    assert "approved" in out
    done = _until(p, waiting["id"], lambda d: d["finished_at"] is not None, 60, "the approved production deployment")
    assert done["state"] == "succeeded", done
    assert done["approval"]["state"] == "approved" and done["approval"]["by"] and done["approval"]["at"]
    assert done["approval"]["reason"] == "release notes checked"
    assert done["image"] == staged["image"] == v1  # the same image, no rebuild
    wait_for(lambda: p.get("piped.localhost").text == "hello from v1\n", 10, 0.05, "production serving v1")
    approved = [e for e in p.api.get("/events", params={"app": "piped", "kind": "deploy_approved"}).json()]
    assert approved and approved[0]["actor"] and "release notes checked" in approved[0]["message"]

    # v2: staging ships, production waits again; reject → nothing deployed
    v2 = p.build_image("piped", "v2", conveyor__toml=PIPELINE.format(approval="true"))
    _to_staging(p, "piped", v2)
    second = _promoted(p, "piped", v2)
    assert second["state"] == "awaiting_approval"
    p.cli("reject", "piped", str(second["id"]), "--reason", "not on a Friday", check=True)
    rejected = _dep(p, second["id"])
    assert rejected["state"] == "cancelled" and rejected["approval"]["state"] == "rejected", rejected
    assert "not on a Friday" in rejected["reason"]
    assert _env(p, "piped", "production")["image"] == v1
    assert p.get("piped.localhost").text == "hello from v1\n"
    assert {i["release"] for i in _env(p, "piped", "production")["instances"]} == {done["release"]}
    again = p.cli("approve", "piped", str(second["id"]))
    assert again.returncode == 4, again.stderr  # decided already: no second decision
    assert "deploy_rejected" in _kinds(p, "piped")
    # never promoted twice: still exactly one production deployment of each image
    prod = _deps(p, "piped", "production")
    assert sorted(d["image"] for d in prod) == sorted([v1, v2]), prod


def test_automatic_promotion_locks_and_forced_deploys(shared_platform: Platform) -> None:
    p = shared_platform
    p.create_app("flow")
    toml = PIPELINE.format(approval="false")
    v1 = p.build_image("flow", "v1", conveyor__toml=toml)
    # bad input changes nothing: unknown env, unknown app, no reason
    assert p.cli("lock", "flow", "--env", "prodution", "--reason", "x").returncode == 3
    assert p.cli("lock", "nosuchapp", "--reason", "x").returncode == 3
    assert p.api.get("/apps/flow/locks").json() == []

    _to_staging(p, "flow", v1)  # creates staging; production does not exist yet
    first = _promoted(p, "flow", v1)
    assert first["created_by"] == "pipeline" and first["approval"] is None
    done = _until(p, first["id"], lambda d: d["finished_at"] is not None, 60, "the automatic promotion")
    assert done["state"] == "succeeded", done
    wait_for(lambda: p.get("flow.localhost").text == "hello from v1\n", 10, 0.05, "production serving v1")

    # a lock holds the next automatic promotion
    locked = p.cli("lock", "flow", "--env", "production", "--reason", "database migration", check=True)
    assert "database migration" in locked.stdout
    apps_out = p.cli("apps", "list", check=True).stdout
    assert "database migration" in apps_out, apps_out
    v2 = p.build_image("flow", "v2", conveyor__toml=toml)
    staged = _to_staging(p, "flow", v2)
    held = wait_for(lambda: (d := _dep(p, staged["id"])) and any("held" in s["waiting"] for s in d["pipeline"]) and d,
                    20, 0.1, "the pipeline to say production is held by the lock")
    stage = next(s for s in held["pipeline"] if s["env"] == "production")
    assert "database migration" in stage["waiting"] and stage["deployment"] is None
    assert not [d for d in _deps(p, "flow", "production") if d["image"] == v2]

    # a manual deploy is refused without --force, allowed with it (recorded)
    refused = p.cli("deploy", "flow", "--image", v2, "--env", "production")
    assert refused.returncode == 4 and "locked by" in refused.stderr and "database migration" in refused.stderr, refused.stderr
    assert not [d for d in _deps(p, "flow", "production") if d["image"] == v2]
    forced = p.deploy_image("flow", v2, "--env", "production", "--force")
    assert forced["state"] == "succeeded", forced
    assert forced["params"]["forced"]["by"] and "database migration" in forced["params"]["forced"]["past"]
    assert "deploy_forced" in _kinds(p, "flow")
    wait_for(lambda: p.get("flow.localhost").text == "hello from v2\n", 10, 0.05, "production serving v2")

    # unlock: the next image flows through by itself again
    p.cli("unlock", "flow", "--env", "production", check=True)
    assert p.api.get("/apps/flow/locks").json() == []
    v3 = p.build_image("flow", "v3", conveyor__toml=toml)
    _to_staging(p, "flow", v3)
    third = _promoted(p, "flow", v3)
    assert _until(p, third["id"], lambda d: d["finished_at"] is not None, 60, "v3 promoted")["state"] == "succeeded"
    kinds = _kinds(p, "flow")
    assert kinds.count("pipeline_promoted") == 2 and "locked" in kinds and "unlocked" in kinds, kinds


def test_freeze_windows_refuse_deploys_and_bad_windows_are_refused(shared_platform: Platform) -> None:
    p = shared_platform
    p.create_app("icy")
    v1 = p.build_image("icy", "v1", conveyor__toml=PIPELINE.format(approval="false"))
    bad = p.cli("freeze", "add", "icy", "--window", "Friday afternoon", "--tz", "Europe/Paris")
    assert bad.returncode == 2 and "window:" in bad.stderr and "DAY HH:MM -> DAY HH:MM" in bad.stderr, bad.stderr
    bad_tz = p.cli("freeze", "add", "icy", "--window", "Fri 16:00 -> Mon 08:00", "--tz", "Mars/Olympus")
    assert bad_tz.returncode == 2 and "tz:" in bad_tz.stderr, bad_tz.stderr
    assert p.api.get("/apps/icy/freezes").json() == []
    # a one-off window around now, in Paris time
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    now = datetime.now(ZoneInfo("Europe/Paris"))
    window = f"{(now - timedelta(hours=1)):%Y-%m-%dT%H:%M} -> {(now + timedelta(hours=1)):%Y-%m-%dT%H:%M}"
    f = p.cli_json("freeze", "add", "icy", "--window", window, "--tz", "Europe/Paris", "--reason", "year-end")
    assert f["active"], f
    refused = p.cli("deploy", "icy", "--image", v1, "--env", "staging")
    assert refused.returncode == 4 and "frozen" in refused.stderr and "year-end" in refused.stderr, refused.stderr
    p.cli("freeze", "remove", "icy", str(f["id"]), check=True)
    _to_staging(p, "icy", v1)


CRASHER = """\
import os, threading
threading.Timer(3.0, lambda: os._exit(7)).start()  # serves, then dies: a crash loop once live
exec(open("app.py").read())
"""

CANARY = """\
[run]
web = "{run}"
[health]
path = "/healthz"
interval = "200ms"
[deploy]
strategy = "canary"
steps = [{{weight = 50, for = "60s"}}]
bake = "1s"
drain_timeout = "1s"
[env.production]
instances = 1
"""


def test_an_automatic_rollback_locks_continuous_deployment(shared_platform: Platform) -> None:
    p = shared_platform
    p.create_app("crashing")
    v1 = p.build_image("crashing", "v1", conveyor__toml=CANARY.format(run="python app.py"))
    assert p.deploy_image("crashing", v1)["state"] == "succeeded"
    v2 = p.build_image("crashing", "v2", conveyor__toml=CANARY.format(run="python crasher.py"), crasher__py=CRASHER)
    r = p.api.post("/apps/crashing/deployments", json={"env": "production", "image": v2})
    assert r.status_code == 201, r.text
    dep = _until(p, r.json()["id"], lambda d: d["finished_at"] is not None, 60, "the crash-loop rollback")
    assert dep["state"] == "rolled_back", dep
    (lock,) = p.api.get("/apps/crashing/locks").json()
    assert lock["kind"] == "rollback" and lock["env"] == "production" and lock["deployment"] == dep["id"]
    assert f"deployment {dep['id']} was rolled back automatically" in lock["reason"] and "crash loop" in lock["reason"]
    status = p.cli("status", "crashing", check=True).stdout
    assert "locked" in status and "automatic deploys only" in status, status
    # it stops automatic deploys (the gate the pushes, webhooks and trains ask), not a person's fix
    again = p.deploy_image("crashing", v1, "--strategy", "bluegreen")
    assert again["state"] == "succeeded" and not again["params"].get("forced"), again
    p.cli("unlock", "crashing", "--env", "production", check=True)
    assert p.api.get("/apps/crashing/locks").json() == []
