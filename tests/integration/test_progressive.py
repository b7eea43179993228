"""Progressive delivery end to end: canary, analysis, automatic rollback, manual control,
the deploy queue and rolling deploys, with real processes and real traffic.

One ``conveyor up`` is shared by the module; every test uses its own app, so
the tests do not interfere. Traffic comes from :class:`Traffic`: a few threads
with keep-alive clients sending a bounded number of requests at a steady rate
through the router, recording the status and the ``X-App-Version`` of each.
Steps are short (a few seconds) so the module stays well under four minutes.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from cvy_platform import Platform, Traffic, wait_for

pytestmark = pytest.mark.integration

#: A canary app: two instances, two short steps, a short bake; analysis needs 20 requests.
CANARY = """\
[run]
web = "python app.py"
[health]
path = "/healthz"
interval = "200ms"
[deploy]
strategy = "canary"
steps = [{{weight = {w1}, for = "{d1}"}}, {{weight = {w2}, for = "{d2}"}}]
bake = "{bake}"
drain_timeout = "3s"
ready_timeout = "{ready}"
[deploy.analysis]
min_requests = 20
[deploy.analysis.threshold]
min_requests = 20
[env.production]
instances = {instances}
"""


def canary_toml(w1: int = 25, d1: str = "4s", w2: int = 50, d2: str = "4s", bake: str = "3s",
                ready: str = "20s", instances: int = 2, run: str = "python app.py") -> str:
    text = CANARY.format(w1=w1, d1=d1, w2=w2, d2=d2, bake=bake, ready=ready, instances=instances)
    return text.replace('web = "python app.py"', f'web = "{run}"')


# --- helpers -------------------------------------------------------------------------


def _start(p: Platform, app: str, version: str, **files: str) -> dict[str, Any]:
    """Build and queue a deployment without waiting; returns the deployment."""
    digest = p.build_image(app, version, **files)
    r = p.api.post(f"/apps/{app}/deployments", json={"env": "production", "image": digest})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def _deploy(p: Platform, app: str, version: str, timeout: float = 90, **files: str) -> dict[str, Any]:
    """Build, deploy and follow a deployment until it ends (or pauses)."""
    dep = _start(p, app, version, **files)
    return _until(p, dep["id"], lambda d: d["state"] in _ENDED, timeout, f"deployment of {app} {version} to end")


_ENDED = {"succeeded", "failed", "rolled_back", "cancelled", "paused"}


def _live(p: Platform, app: str, toml: str, version: str = "v1") -> None:
    out = _deploy(p, app, version, conveyor__toml=toml)
    assert out["state"] == "succeeded", out
    # the router applies the new table a moment after the deployment row says so
    wait_for(lambda: p.get(f"{app}.localhost").text == f"hello from {version}\n", 10, 0.02, f"{app} {version} served")


def _releases(p: Platform, app: str) -> dict[int, str]:
    return {r["number"]: r["status"] for r in p.api.get(f"/apps/{app}/releases").json()}


def _status(p: Platform, app: str) -> dict[str, Any]:
    return p.api.get(f"/apps/{app}").json()["environments"][0]  # type: ignore[no-any-return]


def _running_releases(p: Platform, app: str) -> set[int]:
    return {i["release"] for i in _status(p, app)["instances"]}


def _dep(p: Platform, dep_id: int) -> dict[str, Any]:
    return p.api.get(f"/deployments/{dep_id}").json()  # type: ignore[no-any-return]


def _until(p: Platform, dep_id: int, cond: Any, timeout: float, what: str) -> dict[str, Any]:
    return wait_for(lambda: (d := _dep(p, dep_id)) and cond(d) and d, timeout, 0.05, what)  # type: ignore[no-any-return]


def _events(p: Platform, app: str) -> list[dict[str, Any]]:
    return p.api.get("/events", params={"app": app, "limit": 200}).json()  # type: ignore[no-any-return]


def _kinds(p: Platform, app: str) -> list[str]:
    return [e["kind"] for e in reversed(_events(p, app))]


def _served_after(traffic: Traffic, t: float) -> set[str]:
    """Versions that served requests sent from ``t`` on (waiting until some were)."""
    wait_for(lambda: traffic.count(t) >= 20, 20, 0.05, "traffic after the deployment ended")
    return traffic.versions(t)


# --- canary ------------------------------------------------------------------------


def test_good_canary_is_promoted_through_its_steps_and_bake_without_a_failed_request(shared_platform: Platform) -> None:
    p = shared_platform
    p.create_app("good")
    toml = canary_toml()
    _live(p, "good", toml)
    with Traffic(p, "good") as traffic:
        out = _deploy(p, "good", "v2", conveyor__toml=toml)
        ended = time.time()
        assert out["state"] == "succeeded", out
        assert _served_after(traffic, ended + 0.3) == {"v2"}
    assert traffic.failures() == [], traffic.failures()[:5]
    assert {"v1", "v2"} <= traffic.versions()
    # every step and the bake were analysed and passed, with their numbers
    by_step = {v["step"]: v for v in out["verdicts"] if v["outcome"] == "pass"}
    assert set(by_step) == {0, 1, -1}, [(v["step"], v["outcome"], v["reason"]) for v in out["verdicts"]]  # -1: bake
    assert by_step[-1]["judge"] == "bake" and "within its limits" in by_step[-1]["reason"]
    assert all(v["numbers"]["canary_requests"] >= 20 for v in by_step.values())
    assert not [v for v in out["verdicts"] if v["outcome"] == "fail"]
    kinds = _kinds(p, "good")
    for kind in ("canary_step", "canary_promoting", "deployed", "baked"):
        assert kind in kinds, kinds
    assert kinds.count("canary_step") == 2
    assert _releases(p, "good") == {1: "superseded", 2: "live"}
    shown = p.cli("deployments", "show", str(out["id"]), check=True).stdout
    assert "succeeded" in shown and "traffic: release 2 100%" in shown and "pass" in shown
    assert "step 1 " in shown and "bake bake: pass" in shown and "step -1" not in shown  # counted as people count


def test_broken_canary_is_rolled_back_automatically(shared_platform: Platform) -> None:
    """A canary failing 6 % of its requests: under the threshold judge's 10 % limit, so only the
    comparison with the stable release (0 %) can catch it, and the reason must name that judge."""
    p = shared_platform
    p.create_app("broken")
    toml = canary_toml(d1="30s", d2="30s")
    _live(p, "broken", toml)
    with Traffic(p, "broken") as traffic:
        out = _deploy(p, "broken", "v2", conveyor__toml=toml, behaviour__json='{"fail_rate": 0.06}')
        ended = time.time()
        assert out["state"] == "rolled_back", out
        assert _served_after(traffic, ended + 0.3) == {"v1"}
    reason = out["reason"]
    assert reason.startswith("analysis failed at step 1"), reason
    assert "Failed by sequential" in reason and "error rate" in reason and "%" in reason, reason
    (fail,) = [v for v in out["verdicts"] if v["outcome"] == "fail"]
    assert fail["numbers"]["canary_requests"] > 0
    assert fail["numbers"]["sequential.outcome"] == "fail" and fail["numbers"]["threshold.outcome"] != "fail", fail
    # every failed request was the canary's own, and there were few: it was caught fast
    failures = traffic.failures()
    assert failures and all(f[1] == 500 and f[2] == "v2" for f in failures), failures[:5]
    assert len(failures) < 60, len(failures)
    events = _events(p, "broken")
    rolled = [e for e in events if e["kind"] == "rolled_back"]
    assert rolled and "release 2 rolled back to 1" in rolled[0]["message"]
    assert _releases(p, "broken") == {1: "live", 2: "rolled_back"}
    assert _status(p, "broken")["release"] == 1
    # the canary's instances drain, then stop
    wait_for(lambda: _running_releases(p, "broken") == {1}, 20, 0.1, "the canary's instances to stop")


def test_latency_regression_is_caught(shared_platform: Platform) -> None:
    p = shared_platform
    p.create_app("slow")
    toml = canary_toml(d1="30s", d2="30s")
    _live(p, "slow", toml)
    with Traffic(p, "slow") as traffic:
        out = _deploy(p, "slow", "v2", conveyor__toml=toml, behaviour__json='{"extra_latency_ms": 150}')
        assert out["state"] == "rolled_back", out
        assert _served_after(traffic, time.time() + 0.3) == {"v1"}
    assert "latency" in out["reason"], out["reason"]
    assert traffic.failures() == [], traffic.failures()[:5]


CRASHER = """\
import os, threading
threading.Timer(3.0, lambda: os._exit(7)).start()  # serves, then dies: a crash loop once live
exec(open("app.py").read())
"""


def test_canary_in_a_crash_loop_is_rolled_back(shared_platform: Platform) -> None:
    p = shared_platform
    p.create_app("crashy")
    _live(p, "crashy", canary_toml(d1="60s", d2="60s"))
    dep = _start(p, "crashy", "v2", conveyor__toml=canary_toml(d1="60s", d2="60s", run="python crasher.py"),
                 crasher__py=CRASHER)
    done = _until(p, dep["id"], lambda d: d["state"] not in ("queued", "starting", "canary"), 60, "the rollback")
    assert done["state"] == "rolled_back", done
    assert "crash loop" in done["reason"], done["reason"]
    assert "rolled_back" in _kinds(p, "crashy")
    wait_for(lambda: p.get("crashy.localhost").text == "hello from v1\n", 5, 0.05, "v1 serving")


def test_not_enough_traffic_pauses_with_a_reason(shared_platform: Platform) -> None:
    p = shared_platform
    p.create_app("quiet")
    toml = canary_toml(d1="2s", d2="2s")
    _live(p, "quiet", toml)
    dep = _start(p, "quiet", "v2", conveyor__toml=toml)  # no traffic at all
    paused = _until(p, dep["id"], lambda d: d["state"] in ("paused", "rolled_back", "succeeded", "failed"), 40,
                    "the deployment to pause")
    assert paused["state"] == "paused", paused
    assert "Not enough traffic" in paused["reason"] and "at least 20" in paused["reason"], paused["reason"]
    assert any(v["outcome"] == "inconclusive" for v in paused["verdicts"])
    assert "deploy_paused" in _kinds(p, "quiet")
    res = p.cli("abort", "quiet", check=True)
    assert "abort" in res.stdout
    done = _until(p, dep["id"], lambda d: d["state"] == "rolled_back", 20, "abort → rolled_back")
    assert "aborted" in done["reason"]


def test_a_paused_canary_stays_watched_and_is_rolled_back_when_it_fails(shared_platform: Platform) -> None:
    p = shared_platform
    p.create_app("watched")
    toml = canary_toml(w1=25, d1="120s", d2="120s")
    _live(p, "watched", toml)
    dep = _start(p, "watched", "v2", conveyor__toml=toml, behaviour__json='{"fail_rate": 0.3}')
    _until(p, dep["id"], lambda d: d["state"] == "canary", 40, "the canary")
    assert p.api.post(f"/deployments/{dep['id']}/pause").status_code == 200
    _until(p, dep["id"], lambda d: d["state"] == "paused", 10, "paused")
    with Traffic(p, "watched", rate=80, threads=2) as traffic:  # the paused canary still takes its 25 %
        done = _until(p, dep["id"], lambda d: d["state"] != "paused", 30, "the rollback of the paused canary")
        assert _served_after(traffic, time.time() + 0.3) == {"v1"}
    assert done["state"] == "rolled_back", done
    assert done["reason"].startswith("analysis failed while paused at step 1:") and "error rate" in done["reason"]
    assert {f[2] for f in traffic.failures()} == {"v2"}


def test_manual_pause_resume_promote_full_and_abort(shared_platform: Platform) -> None:
    p = shared_platform
    p.create_app("manual")
    toml = canary_toml(w1=10, d1="120s", w2=30, d2="120s", bake="2s").replace('strategy = "canary"', 'strategy = "bluegreen"')
    _live(p, "manual", toml)
    res = p.cli("resume", "manual")
    assert res.returncode == 4 and "no deployment in progress" in res.stderr, res
    with Traffic(p, "manual", rate=60, threads=2, max_s=90) as traffic:
        res = p.cli("deploy", "manual", "--image", p.build_image("manual", "v2", conveyor__toml=toml),
                    "--strategy", "canary", "--json", check=True)  # the manifest says bluegreen
        dep = json.loads(res.stdout)
        assert dep["strategy"] == "canary"
        _until(p, dep["id"], lambda d: d["state"] == "canary" and d["progress"].get("step") == 0, 40, "canary step 1")
        res = p.cli("resume", "manual")
        assert res.returncode == 4 and "resume applies only while it is paused" in res.stderr, res
        p.cli("pause", "manual", check=True)
        d = _until(p, dep["id"], lambda d: d["state"] == "paused", 10, "paused")
        assert "paused by" in d["reason"]
        assert d["progress"]["weights"] == {"1": 90, "2": 10}  # paused holds the step's traffic split
        p.cli("resume", "manual", check=True)
        _until(p, dep["id"], lambda d: d["state"] == "canary", 10, "resumed")
        p.cli("promote", "manual", check=True)
        d = _until(p, dep["id"], lambda d: d["progress"].get("step") == 1, 10, "promoted to step 2")
        assert d["progress"]["weights"] == {"1": 70, "2": 30}
        p.cli("promote", "manual", "--full", check=True)
        d = _until(p, dep["id"], lambda d: d["state"] in ("succeeded", "rolled_back", "failed"), 40, "promoted fully")
        assert d["state"] == "succeeded", d
        assert _served_after(traffic, time.time() + 0.3) == {"v2"}

        r = p.api.post("/apps/manual/deployments", json={"env": "production", "strategy": "canary",
                                                          "image": p.build_image("manual", "v3", conveyor__toml=toml)})
        dep3 = r.json()
        _until(p, dep3["id"], lambda d: d["state"] == "canary", 40, "v3 canary")
        res = p.cli("abort", "manual", check=True)
        d = _until(p, dep3["id"], lambda d: d["state"] == "rolled_back", 10, "aborted")
        assert "aborted by" in d["reason"]
        assert _served_after(traffic, time.time() + 0.3) == {"v2"}
    assert traffic.failures() == [], traffic.failures()[:5]
    kinds = _kinds(p, "manual")
    for kind in ("deploy_pause_requested", "deploy_paused", "deploy_resumed", "deploy_promote_requested",
                 "deploy_abort_requested", "rolled_back"):
        assert kind in kinds, kinds


# --- queue --------------------------------------------------------------------------


def test_deploy_queue_positions_cancel_and_parallel_apps(shared_platform: Platform) -> None:
    p = shared_platform
    toml = canary_toml(w1=50, d1="120s", d2="2s", bake="1s")
    for app in ("qa", "qb"):
        p.create_app(app)
        _live(p, app, toml)
    first = _start(p, "qa", "v2", conveyor__toml=toml)
    _until(p, first["id"], lambda d: d["state"] == "canary", 40, "the first deployment to run")
    # the second and third deploys to the same environment wait, and say where they are in the queue
    res = p.cli("deploy", "qa", "--image", p.build_image("qa", "v3", conveyor__toml=toml), check=True)
    assert "(queued: 1 ahead)" in res.stderr, res.stderr
    second = p.api.get("/apps/qa/deployments").json()[0]
    assert second["state"] == "queued" and second["queue_position"] == 1
    third = _start(p, "qa", "v4", conveyor__toml=toml)
    assert third["state"] == "queued" and third["queue_position"] == 2
    assert p.cli_json("deployments", "cancel", str(third["id"]))["state"] == "cancelled"
    res = p.cli("deployments", "cancel", str(third["id"]))
    assert res.returncode == 4 and "only a queued deployment can be cancelled" in res.stderr, res
    # another app deploys in parallel while qa's first deployment is still in its canary
    other = _start(p, "qb", "v2", conveyor__toml=toml, behaviour__json='{"x": 1}')
    _until(p, other["id"], lambda d: d["state"] == "canary", 40, "qb's canary alongside qa's")
    assert _dep(p, first["id"])["state"] == "canary"
    assert _dep(p, second["id"])["state"] == "queued"
    for dep in (first, other):
        r = p.api.post(f"/deployments/{dep['id']}/promote", json={"full": True})
        assert r.status_code == 200, r.text
    a = _until(p, first["id"], lambda d: d["state"] == "succeeded", 40, "qa's first deployment")
    b = _until(p, second["id"], lambda d: d["state"] not in ("queued",), 20, "qa's second deployment to start")
    assert b["started_at"] >= a["finished_at"]
    assert _dep(p, third["id"])["state"] == "cancelled" and _dep(p, third["id"])["started_at"] is None
    _until(p, second["id"], lambda d: d["state"] == "canary", 40, "qa's second deployment's canary")
    assert p.api.post(f"/deployments/{second['id']}/abort").status_code == 200  # (it has a 120 s step: end it)
    _until(p, second["id"], lambda d: d["state"] == "rolled_back", 20, "qa's second deployment aborted")
    assert _releases(p, "qa") == {1: "superseded", 2: "live", 3: "rolled_back", 4: "cancelled"}


# --- rolling --------------------------------------------------------------------------

ROLLING = """\
[run]
web = "python app.py"
[health]
path = "/healthz"
interval = "200ms"
[deploy]
strategy = "rolling"
max_surge = 1
drain_timeout = "3s"
[env.production]
instances = 3
"""


def test_rolling_then_bluegreen_replace_instances_without_a_failed_request(shared_platform: Platform) -> None:
    p = shared_platform
    p.create_app("roll")
    _live(p, "roll", ROLLING)
    with Traffic(p, "roll") as traffic:
        out = _deploy(p, "roll", "v2", conveyor__toml=ROLLING)
        assert out["state"] == "succeeded", out
        assert _served_after(traffic, time.time() + 0.3) == {"v2"}
    assert traffic.failures() == [], traffic.failures()[:5]
    assert {"v1", "v2"} <= traffic.versions()
    batches = [e["message"] for e in reversed(_events(p, "roll")) if e["kind"] == "rolling_batch"]
    assert batches == ["1/3 instances of release 2 serving", "2/3 instances of release 2 serving"], batches
    assert _status(p, "roll")["release"] == 2
    wait_for(lambda: _running_releases(p, "roll") == {2}, 10, 0.1, "release 1's last instance to drain and stop")
    # blue/green (the strategy overridden per deployment): all new instances ready, then one switch
    with Traffic(p, "roll") as traffic:
        r = p.api.post("/apps/roll/deployments", json={"env": "production", "strategy": "bluegreen",
                                                       "image": p.build_image("roll", "v3", conveyor__toml=ROLLING)})
        assert r.status_code == 201 and r.json()["strategy"] == "bluegreen", r.text
        out = _until(p, r.json()["id"], lambda d: d["state"] in _ENDED, 60, "the blue/green deployment")
        assert out["state"] == "succeeded", out
        assert _served_after(traffic, time.time() + 0.3) == {"v3"}
    assert traffic.failures() == [], traffic.failures()[:5]
    served = [r[2] for r in traffic.snapshot() if r[1] == 200]
    assert served[0] == "v2" and served[-1] == "v3"


# --- readiness --------------------------------------------------------------------------

UNREADY = (  # listens, but its health check always answers 503
    "import os\nfrom http.server import BaseHTTPRequestHandler, HTTPServer\n"
    "class H(BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    "        self.send_response(503); self.send_header('Content-Length', '0'); self.end_headers()\n"
    "HTTPServer(('127.0.0.1', int(os.environ['PORT'])), H).serve_forever()\n"
)


def test_canary_that_never_becomes_ready_fails_and_moves_no_traffic(shared_platform: Platform) -> None:
    p = shared_platform
    p.create_app("unready")
    _live(p, "unready", canary_toml())
    with Traffic(p, "unready", rate=40, threads=2) as traffic:
        out = _deploy(p, "unready", "v2", conveyor__toml=canary_toml(ready="3s", run="python unready.py"),
                      unready__py=UNREADY)
    assert out["state"] == "failed", out
    assert "did not become ready within 3s" in out["reason"] and "0/1 instances ready" in out["reason"], out["reason"]
    assert traffic.failures() == [] and traffic.versions() == {"v1"}
    assert _releases(p, "unready") == {1: "live", 2: "failed"}


# --- the benchmark, with tiny parameters ----------------------------------------------------


def test_rollback_benchmark_smoke() -> None:
    """benchmarks/rollback.py runs end to end and its numbers hang together (not its goals: too small)."""
    import subprocess
    import sys

    from cvy_platform import REPO

    res = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "rollback.py"), "--rate", "60", "--first-weight", "25",
         "--repeat", "1", "--skip", "peer,good", "--max-load-s", "60"],
        capture_output=True, text=True, timeout=240, cwd=REPO,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout)
    b = out["broken"]
    assert b["state"] == "rolled_back" and "error rate" in b["reason"], b
    assert b["failed_requests"] >= 1 and b["failed_on_previous_release"] == 0 and b["transport_errors"] == 0, b
    assert 0 <= b["canary_first_to_last_request_s"] < 30 and b["new_release_requests"] >= b["failed_requests"], b
    assert set(out["met_goal"]) == {"rolled_back_every_run", "all_traffic_back_within_3s_every_run",
                                    "fewer_than_20_failed_every_run"}


# --- canary baseline and blue/green preview ---------------------------------------------


def test_canary_with_a_dedicated_baseline_compares_like_for_like(shared_platform: Platform) -> None:
    p = shared_platform
    app = "base"
    p.create_app(app)
    toml = canary_toml(w1=20, d1="4s", w2=40, d2="4s", bake="2s").replace("[deploy.analysis]", "baseline = true\n[deploy.analysis]")
    _live(p, app, toml)
    with Traffic(p, app, rate=100) as traffic:
        dep = _start(p, app, "v2", conveyor__toml=toml)
        step = _until(p, dep["id"], lambda d: d["state"] == "canary" and d["progress"].get("phase") == "step", 60,
                      "the first canary step")
        assert step["progress"]["weights"] == {"1": 60, "-1": 20, "2": 20}
        table = p.api.get("/routing").json()
        env = next(e for e in table["environments"] if e["app"] == app)
        assert sorted((r["release"], r["weight"], len(r["instances"])) for r in env["releases"]) == [
            (-1, 20, 1), (1, 60, 2), (2, 20, 1)]
        # the baseline runs release 1's code but is measured apart from it
        wait_for(lambda: "-1" in p.api.get(f"/apps/{app}/metrics", params={"window": 60}).json()["series"], 20, 0.2,
                 "baseline series")
        done = _until(p, dep["id"], lambda d: d["state"] in _ENDED, 90, "the canary to end")
    assert done["state"] == "succeeded", done
    assert traffic.failures() == []
    verdict = next(v for v in done["verdicts"] if v["outcome"] == "pass" and v["step"] == 0)
    n = verdict["numbers"]
    # compared with the baseline (same weight as the canary), not the stable release (three times it)
    assert 0 < n["sequential.baseline_requests"] < 2 * n["sequential.canary_requests"], n
    wait_for(lambda: {i["role"] for i in _status(p, app)["instances"]} == {"main"}, 30, 0.2, "baseline instances gone")


PREVIEW = """\
[run]
web = "python app.py"
[health]
path = "/healthz"
interval = "200ms"
[deploy]
strategy = "bluegreen"
pre_promotion_analysis = true
preview_for = "4s"
auto_promote_after = "1s"
drain_timeout = "3s"
[deploy.analysis]
min_requests = 20
[deploy.analysis.threshold]
min_requests = 20
[env.production]
instances = 1
"""


class PinnedTraffic(Traffic):
    """Traffic pinned to one release with the X-Conveyor-Release header (a tester previewing it)."""

    def __init__(self, p: Platform, app: str, release: int, **kw: Any) -> None:
        super().__init__(p, app, **kw)
        self.headers["X-Conveyor-Release"] = str(release)


def test_blue_green_preview_analyses_pinned_traffic_then_promotes(shared_platform: Platform) -> None:
    p = shared_platform
    app = "prev"
    p.create_app(app)
    _live(p, app, PREVIEW)
    with Traffic(p, app, rate=40, threads=2) as public, PinnedTraffic(p, app, 2, rate=40, threads=2) as pinned:
        dep = _start(p, app, "v2", conveyor__toml=PREVIEW)
        _until(p, dep["id"], lambda d: d["state"] == "preview", 60, "the preview")
        t_preview = time.time()
        # the tester sees v2 while the public, over at least 20 requests, still sees only v1
        wait_for(lambda: "v2" in pinned.versions(t_preview) and public.count(t_preview) >= 20, 20, 0.02,
                 "pinned v2 and public traffic during the preview")
        assert public.versions(t_preview) == {"v1"}
        done = _until(p, dep["id"], lambda d: d["state"] in _ENDED, 60, "the promotion")
    assert done["state"] == "succeeded", done
    assert "v2" in pinned.versions(t_preview)
    assert any(v["outcome"] == "pass" for v in done["verdicts"])
    assert public.failures() == [] and pinned.failures() == []
    wait_for(lambda: p.get(f"{app}.localhost").text == "hello from v2\n", 10, 0.05, "v2 public")


def test_blue_green_preview_of_a_broken_release_fails_and_the_public_never_sees_it(shared_platform: Platform) -> None:
    p = shared_platform
    app = "prevbad"
    p.create_app(app)
    _live(p, app, PREVIEW)
    with Traffic(p, app, rate=40, threads=2) as public, PinnedTraffic(p, app, 2, rate=60, threads=2) as pinned:
        dep = _start(p, app, "v2", conveyor__toml=PREVIEW, behaviour__json='{"fail_rate": 0.5}')
        done = _until(p, dep["id"], lambda d: d["state"] in _ENDED, 60, "the preview to fail")
    assert done["state"] == "failed" and "pre-promotion analysis failed" in done["reason"], done
    assert public.failures() == [] and public.versions() == {"v1"}
    assert pinned.count() > 0
    assert _releases(p, app)[1] == "live"
