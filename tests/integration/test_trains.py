"""Deploy trains end to end: a real platform (server, agent, router), a real local git repository,
real builds of each commit and real canaries judged on traffic sent through the router.

* a train of 4 commits whose third makes the app fail 30 % of its requests: the batch's canary
  fails, the train bisects, names the culprit with its verdict and leaves the good prefix live; the
  culprit's revert conflicts with the fourth commit (both change VERSION), so the fourth stays blocked
  and the train says why;
* a train of 4 commits whose second is bad and whose later commits touch other files: after the
  culprit, the newest commit is built with the culprit reverted, canaried and shipped: the router serves
  commits 3 and 4's changes and not commit 2's;
* commits queued while a train's deployment runs ride the next train, ``max_commits`` per train;
* bad input (unknown app, repository or commit: 404; commits not in history order, ``max_commits`` out
  of range in the commit's conveyor.toml: 422): a clear error, and no train, build or deployment;
* the control plane SIGKILLed during a try: the train resumes and ends as it would have.

Canary steps are 3 s, the bake 2 s, so the module stays around two minutes.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from cvy_platform import Platform, Traffic, wait_for
from test_progressive import _live, canary_toml

pytestmark = pytest.mark.integration

GIT = ["git", "-c", "user.name=Ada Tester", "-c", "user.email=ada@example.com", "-c", "init.defaultBranch=main"]


def toml(max_commits: int | None = None) -> str:
    text = canary_toml(d1="3s", d2="3s", bake="2s")
    if max_commits is not None:
        text = text.replace('strategy = "canary"\n', f'strategy = "canary"\nmax_commits = {max_commits}\n', 1)
    return text


def make_repo(p: Platform, app: str, manifest: str) -> Path:
    """A git repository of the sample app at v1 (already live): the base the train's commits follow."""
    src = p.app_copy(app, "v1", conveyor__toml=manifest)
    subprocess.run([*GIT, "init", "-q", str(src)], check=True)
    subprocess.run([*GIT, "-C", str(src), "add", "-A"], check=True)
    subprocess.run([*GIT, "-C", str(src), "commit", "-q", "-m", "v1"], check=True)
    return src


def commit(repo: Path, version: str, message: str, **files: str) -> str:
    (repo / "VERSION").write_text(version + "\n")
    for name, content in files.items():
        (repo / name.replace("__", ".")).write_text(content)
    subprocess.run([*GIT, "-C", str(repo), "add", "-A"], check=True)
    subprocess.run([*GIT, "-C", str(repo), "commit", "-q", "-m", message], check=True)
    return subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], check=True, capture_output=True,
                          text=True).stdout.strip()


def enqueue(p: Platform, app: str, repo: Path, shas: list[str]) -> list[dict[str, Any]]:
    r = p.api.post(f"/apps/{app}/trains", json={"repo": str(repo), "commits": [{"sha": s} for s in shas]})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def train(p: Platform, train_id: int) -> dict[str, Any]:
    return p.api.get(f"/trains/{train_id}").json()  # type: ignore[no-any-return]


def until_ended(p: Platform, train_id: int, timeout: float) -> dict[str, Any]:
    try:
        return wait_for(lambda: (t := train(p, train_id))["state"] in ("shipped", "blocked", "halted") and t,  # type: ignore[no-any-return]
                        timeout, 0.2, f"train {train_id} to end")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {train(p, train_id)}") from None


def test_a_batch_with_a_bad_commit_is_bisected_and_the_good_prefix_ships(shared_platform: Platform) -> None:
    p = shared_platform
    p.create_app("bisect")
    manifest = toml()
    _live(p, "bisect", manifest)
    repo = make_repo(p, "bisect", manifest)
    shas = [commit(repo, "v2", "v2: wording"),
            commit(repo, "v3", "v3: faster"),
            commit(repo, "v4", "v4: new cache (breaks 30% of requests)", behaviour__json='{"fail_rate": 0.3}'),
            commit(repo, "v5", "v5: docs")]
    with Traffic(p, "bisect", rate=100, max_s=240):
        (queued,) = enqueue(p, "bisect", repo, shas)
        assert [c["sha"] for c in queued["commits"]] == shas
        t = until_ended(p, queued["id"], 200)
    assert t["state"] == "blocked", t
    culprit = t["culprit"]
    assert culprit["sha"] == shas[2] and culprit["outcome"] == "fail", culprit
    assert culprit["verdict"].startswith("analysis failed"), culprit
    assert culprit["message"].startswith("v4")
    # the whole batch (#4), then the midpoint #2 (passes: ships v3), then #3: the culprit
    # and then #4 with #3 reverted: its build stops at the conflict (no canary)
    assert [(s["position"], s["outcome"], s["reverted"]) for s in t["steps"]] == [
        (3, "fail", False), (1, "pass", False), (2, "fail", False), (3, "build_failed", True)], t["steps"]
    assert t["canaries"] == 3
    assert t["shipped"] == 1 and t["shipped_sha"] == shas[1]
    assert [c["status"] for c in t["commits"]] == ["shipped", "shipped", "culprit", "blocked"]
    assert t["reason"].startswith(f"the culprit's revert conflicts with later commits: {shas[3][:12]} stay "
                                  "blocked until a fix is pushed"), t["reason"]
    assert "VERSION" in t["reason"] and culprit["revert"] == "build_failed"
    wait_for(lambda: p.get("bisect.localhost").text == "hello from v3\n", 10, 0.05, "the good prefix (v3) served")
    deps = {d["id"]: d for d in p.api.get("/apps/bisect/deployments").json()}
    culprit_dep = deps[culprit["deployment_id"]]
    assert culprit_dep["state"] == "rolled_back" and culprit_dep["strategy"] == "canary"
    assert culprit_dep["train"]["culprit"]["sha"] == shas[2]
    # the culprit as an event a notification can carry
    events = p.api.get("/events", params={"app": "bisect", "limit": 200}).json()
    (found,) = [e for e in events if e["kind"] == "train_culprit"]
    assert found["data"]["culprit"]["sha"] == shas[2] and found["data"]["shipped"] == shas[1]
    assert found["data"]["blocked"] == [shas[3]]
    # the CLI: the train list and the culprit's deployment
    listed = p.cli("trains", "bisect", check=True).stdout
    assert "blocked" in listed and "culprit" in listed and shas[2][:12] in listed, listed
    shown = p.cli("deployments", "show", str(culprit["deployment_id"]), check=True).stdout
    assert "culprit" in shown and shas[2][:12] in shown, shown
    assert p.cli_json("trains", "bisect")[0]["culprit"]["sha"] == shas[2]


FEATURES_ROUTE = """        if self.path == "/features":
            self._send(200, (",".join(sorted(f.name for f in HERE.glob("feature-*"))) + "\\n").encode())
            return
"""


def test_the_good_commits_after_the_culprit_ship_with_the_culprit_reverted(shared_platform: Platform) -> None:
    p = shared_platform
    p.create_app("without")
    manifest = toml()
    _live(p, "without", manifest)
    repo = make_repo(p, "without", manifest)
    app_py = (repo / "app.py").read_text()
    marker = '        self._send(200, f"hello from {VERSION}\\n".encode())'
    assert marker in app_py
    # commit 1 serves /features (the feature-* files of its tree); each later commit adds one; the 2nd also
    # makes the app fail 30 % of its requests, and touches nothing the later ones change (a clean revert)
    shas = [commit(repo, "v2", "c1: /features", app__py=app_py.replace(marker, FEATURES_ROUTE + marker)),
            commit(repo, "v2", "c2: feature 2 (breaks 30% of requests)", behaviour__json='{"fail_rate": 0.3}',
                   **{"feature-2": "2"}),
            commit(repo, "v4", "c3: feature 3", **{"feature-3": "3"}),
            commit(repo, "v5", "c4: feature 4", **{"feature-4": "4"})]
    with Traffic(p, "without", rate=100, max_s=240):
        (queued,) = enqueue(p, "without", repo, shas)
        t = until_ended(p, queued["id"], 200)
    assert t["state"] == "shipped", t
    culprit = t["culprit"]
    assert culprit["sha"] == shas[1] and culprit["outcome"] == "fail" and culprit["revert"] == "pass", culprit
    # the batch (#4) fails, #2 fails, #1 passes (ships c1): the culprit is #2; then #4 with #2 reverted passes
    assert [(s["position"], s["outcome"], s["reverted"]) for s in t["steps"]] == [
        (3, "fail", False), (1, "fail", False), (0, "pass", False), (3, "pass", True)], t["steps"]
    assert t["canaries"] == 4 and t["shipped"] == 3
    assert [c["status"] for c in t["commits"]] == ["shipped", "culprit", "shipped", "shipped"]
    # through the router: commits 3 and 4's changes, not commit 2's (no feature-2, no failures)
    wait_for(lambda: p.get("without.localhost", "/features").text == "feature-3,feature-4\n", 10, 0.05,
             "the reverted head served")
    answers = [p.get("without.localhost", "/features") for _ in range(40)]
    assert {(r.status_code, r.text, r.headers["X-App-Version"]) for r in answers} == {
        (200, "feature-3,feature-4\n", "v5")}  # 30 % failing would show in 40 requests (0.7**40 < 1e-6)
    # the live image says what it is: the head's sha, with the culprit reverted
    live = [d for d in p.api.get("/apps/without/deployments").json() if d["state"] == "succeeded"][0]
    image = p.api.get(f"/builds/{t['steps'][-1]['build_id']}").json()["image"]
    assert live["image"] == image["digest"], (live, image)
    assert image["commit"]["sha"] == shas[3] and image["commit"]["reverted"] == shas[1], image["commit"]
    assert f"{shas[1][:12]} reverted" in image["commit"]["message"]
    events = p.api.get("/events", params={"app": "without", "limit": 200}).json()
    (found,) = [e for e in events if e["kind"] == "train_culprit"]
    assert found["data"]["blocked"] == [] and found["data"]["shipped_without_culprit"] == shas[2:]


def test_commits_queued_while_a_train_deploys_ride_the_next_train_capped(shared_platform: Platform) -> None:
    p = shared_platform
    p.create_app("batch")
    manifest = toml(max_commits=2)
    _live(p, "batch", manifest)
    repo = make_repo(p, "batch", manifest)
    first = commit(repo, "v2", "v2")
    with Traffic(p, "batch", rate=100, max_s=240):
        (t1,) = enqueue(p, "batch", repo, [first])
        wait_for(lambda: any(s["deployment_id"] for s in train(p, t1["id"])["steps"]), 60, 0.1,
                 "the first train's canary deployment")
        later = [commit(repo, "v3", "v3"), commit(repo, "v4", "v4"), commit(repo, "v5", "v5")]
        t2, t3 = enqueue(p, "batch", repo, later)  # the cap: 2 + 1
        assert [c["sha"] for c in t2["commits"]] == later[:2] and [c["sha"] for c in t3["commits"]] == later[2:]
        assert t2["state"] == t3["state"] == "collecting" and train(p, t1["id"])["state"] == "running"
        assert t2["max_commits"] == 2
        # a redelivered push adds nothing
        assert enqueue(p, "batch", repo, later) == []
        ended = [until_ended(p, t["id"], 150) for t in (t1, t2, t3)]
    assert [t["state"] for t in ended] == ["shipped"] * 3, ended
    assert [t["canaries"] for t in ended] == [1, 1, 1]  # a good batch costs one canary
    assert ended[1]["started_at"] >= ended[0]["finished_at"]  # the next train waited for the first
    assert ended[2]["started_at"] >= ended[1]["finished_at"]
    wait_for(lambda: p.get("batch.localhost").text == "hello from v5\n", 10, 0.05, "v5 served")


def test_bad_input_is_refused_and_nothing_is_queued(shared_platform: Platform) -> None:
    p = shared_platform
    p.create_app("refuse")
    repo = make_repo(p, "refuse", toml())
    good = commit(repo, "v2", "v2")

    def refused(app: str, body: dict[str, Any], status: int, words: str) -> None:
        r = p.api.post(f"/apps/{app}/trains", json=body)
        assert r.status_code == status, r.text
        assert words in r.json()["detail"], r.json()

    refused("nope", {"repo": str(repo), "commits": [{"sha": good}]}, 404, "nope")
    refused("refuse", {"repo": str(p.root / "no-such-repo"), "commits": [{"sha": good}]}, 404, "cannot be fetched")
    refused("refuse", {"repo": str(repo), "commits": [{"sha": "0123456789abcdef0123456789abcdef01234567"}]}, 404,
            "is not in repository")
    newer = commit(repo, "v3", "v3")
    refused("refuse", {"repo": str(repo), "commits": [{"sha": newer}, {"sha": good}]}, 422, "one line of history")
    bad_cap = commit(repo, "v4", "cap", conveyor__toml=toml(max_commits=0))
    refused("refuse", {"repo": str(repo), "commits": [{"sha": bad_cap}]}, 422, "max_commits")
    r = p.api.post("/apps/refuse/trains", json={"repo": str(repo), "commits": []})
    assert r.status_code == 422
    assert p.api.get("/apps/refuse/trains").json() == []
    assert p.api.get("/apps/refuse/deployments").json() == []
    assert p.api.get("/apps/refuse/builds").json() == []
    r = p.api.get("/trains/999999")
    assert r.status_code == 404 and "not found" in r.json()["detail"]
    res = p.cli("trains", "nope")
    assert res.returncode != 0 and "nope" in (res.stdout + res.stderr)
    res = p.cli("trains", "refuse", "--git", str(repo))
    assert res.returncode == 2 and "--git needs the commits" in res.stderr, res
    res = p.cli("trains", "refuse", "--git", str(repo), "0123456789abcdef0123456789abcdef01234567")
    assert res.returncode != 0 and "is not in repository" in res.stderr, res
    assert "no deploy trains yet" in p.cli("trains", "refuse", check=True).stdout
    assert p.api.get("/apps/refuse/trains").json() == []


def test_a_train_survives_its_control_plane_killed_mid_try(shared_platform: Platform) -> None:
    """SIGKILL the control plane while a try's build runs: `conveyor up` restarts it, the build it lost
    is built again (not blamed on the commit), and the train ends as it would have. (Last in the module:
    it restarts the shared platform's server.)"""
    import os
    import signal

    p = shared_platform
    p.create_app("survive")
    manifest = toml()
    _live(p, "survive", manifest)
    # a build that takes 3 s, so the kill lands while it runs
    repo = make_repo(p, "survive", manifest + '[build]\ncommand = "python -c \'import time; time.sleep(3)\'"\n')
    shas = [commit(repo, "v2", "v2"), commit(repo, "v3", "v3 (bad)", behaviour__json='{"fail_rate": 0.3}')]
    with Traffic(p, "survive", rate=100, max_s=240):
        (queued,) = enqueue(p, "survive", repo, shas)
        lost = wait_for(lambda: (s := train(p, queued["id"])["steps"]) and s[0]["build_id"], 60, 0.05, "the first build")
        assert p.api.get(f"/builds/{lost}").json()["state"] == "running"
        server = p.child_pid("server")
        os.kill(server, signal.SIGKILL)
        wait_for(lambda: p.child_pid("server") != server and p.api.get("/apps").status_code == 200, 60, 0.2,
                 "control plane back")
        t = until_ended(p, queued["id"], 150)
    assert t["state"] == "blocked", t
    assert t["culprit"]["sha"] == shas[1] and t["shipped_sha"] == shas[0], t
    assert [(s["position"], s["outcome"]) for s in t["steps"]] == [(1, "fail"), (0, "pass")], t["steps"]
    assert t["steps"][0]["build_id"] != lost  # built again
    assert "interrupted by a control-plane restart" in p.api.get(f"/builds/{lost}").json()["error"]
    wait_for(lambda: p.get("survive.localhost").text == "hello from v2\n", 10, 0.05, "the good prefix (v2) served")
