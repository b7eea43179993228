"""`git push conveyor main` on a real ``conveyor up``: a real git client pushes over HTTP to
the control plane's git remote; the pre-receive hook builds, tests and ships (issue 14, item 1).

One platform for the module; each test uses its own app so they do not depend on each other.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cvy_platform import Platform

pytestmark = pytest.mark.integration

HELLO = Path(__file__).parents[2] / "examples" / "hello"


def _git_env(token: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env |= {"GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null",
            "GIT_AUTHOR_NAME": "Dev", "GIT_AUTHOR_EMAIL": "dev@example.com",
            "GIT_COMMITTER_NAME": "Dev", "GIT_COMMITTER_EMAIL": "dev@example.com"}
    if token is not None:  # the token through a credential helper reading the environment (not argv)
        env |= {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "credential.helper",
                "GIT_CONFIG_VALUE_0": '!f() { echo username=conveyor; echo "password=$PUSH_TOKEN"; }; f',
                "PUSH_TOKEN": token}
    return env


class Checkout:
    """A developer's git checkout of a copy of examples/hello, named for ``app``."""

    def __init__(self, root: Path, app: str, remote: str, token: str | None) -> None:
        self.dir = root / f"checkout-{app}"
        shutil.copytree(HELLO, self.dir)
        manifest = self.dir / "conveyor.toml"
        manifest.write_text(manifest.read_text().replace('name = "hello"', f'name = "{app}"', 1))
        self.remote, self.token = remote, token
        self.git("init", "-q", "-b", "main")
        self.git("add", "-A")
        self.git("commit", "-q", "-m", "v1")

    def git(self, *args: str, check: bool = True, token: str | None | bool = False,
            env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        env = _git_env(self.token if token is False else token) | (env_extra or {})  # type: ignore[arg-type]
        res = subprocess.run(["git", *args], cwd=self.dir, env=env, capture_output=True, text=True, timeout=300)
        if check and res.returncode != 0:
            raise AssertionError(f"git {' '.join(args)} exited {res.returncode}:\n{res.stdout}\n{res.stderr}")
        return res

    def git_input(self, *args: str, stdin: str) -> str:
        res = subprocess.run(["git", *args], cwd=self.dir, env=_git_env(self.token), input=stdin,
                             capture_output=True, text=True, timeout=60, check=True)
        return res.stdout.strip()

    def commit(self, message: str, **files: str) -> str:
        for name, content in files.items():
            (self.dir / name.replace("__", ".")).write_text(content)
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        return str(self.git("rev-parse", "HEAD").stdout.strip())

    def push(self, *args: str, token: str | None | bool = False) -> subprocess.CompletedProcess[str]:
        return self.git("push", self.remote, *args, check=False, token=token)

    def remote_head(self, branch: str = "main") -> str:
        out = self.git("ls-remote", self.remote, f"refs/heads/{branch}").stdout.split()
        return out[0] if out else ""


@pytest.fixture(scope="module")
def p(shared_platform: Platform) -> Platform:
    return shared_platform


def _app(p: Platform, name: str) -> Checkout:
    p.cli("apps", "create", name, check=True)
    return Checkout(p.root, name, f"{p.api_url}/git/{name}.git", p.token)


def _deployments(p: Platform, app: str) -> list[dict[str, Any]]:
    return p.api.get(f"/apps/{app}/deployments").json()  # type: ignore[no-any-return]


def test_push_to_main_builds_tests_and_ships_with_progress_in_order(p: Platform) -> None:
    co = _app(p, "gp-ship")
    co.commit("history before Conveyor", README__md="an old project\n")  # the first push counts its head only
    first = co.push("main")
    assert first.returncode == 0, first.stderr
    err = first.stderr
    assert "1 new commit(s)" in err
    markers = ["remote: -----> Conveyor: main of gp-ship", "remote: -----> Building #", "remote: -----> Building… done",
               "remote: -----> Tests: passed", "remote: -----> Deploying as deployment #", "remote: -----> Released v1 to production"]
    positions = [err.find(m) for m in markers]
    assert all(i >= 0 for i in positions), f"missing progress lines:\n{err}"
    assert positions == sorted(positions), f"progress out of order:\n{err}"
    assert co.remote_head() == co.git("rev-parse", "HEAD").stdout.strip()
    assert p.get("gp-ship.localhost").text.strip() == "hello from v1"
    # a second push of two commits: both counted for lead time, the trigger recorded
    co.commit("a change", VERSION="v2\n")
    head = co.commit("another change", VERSION="v3\n")
    second = co.push("main")
    assert second.returncode == 0, second.stderr
    assert "2 new commit(s)" in second.stderr
    remote = p.api.get("/apps/gp-ship/git").json()
    assert remote["url"].endswith("/git/gp-ship.git") and remote["deploy_branch"] == "main"
    latest = remote["pushes"][0]
    assert latest["state"] == "shipped" and latest["commits"] == 2 and latest["new"] == head
    events = p.api.get("/events", params={"app": "gp-ship"}).json()
    assert any("git push by admin: 2 commit(s)" in e["message"] for e in events), events
    dora = p.api.get("/dora", params={"app": "gp-ship", "since": "1d"}).json()
    assert dora["keys"]["lead_time"]["samples"] == 3  # every commit, not one per image


def test_failing_tests_reject_the_push_and_leave_the_ref(p: Platform) -> None:
    co = _app(p, "gp-fail")
    co.commit("break the tests", app__py="raise SystemExit('tests broke: no app today')\n")
    res = co.push("main")
    assert res.returncode != 0
    assert "remote: error: the tests failed" in res.stderr, res.stderr
    assert "[remote rejected] main -> main (pre-receive hook declined)" in res.stderr
    assert co.remote_head() == ""
    assert _deployments(p, "gp-fail") == []


def test_bad_tokens_unknown_app_and_viewer_are_refused_with_a_message(p: Platform) -> None:
    co = _app(p, "gp-auth")
    wrong = co.push("main", token="not-a-valid-token-at-all")
    assert wrong.returncode != 0 and "Conveyor refused the token" in wrong.stderr, wrong.stderr
    none = co.push("main", token=None)
    assert none.returncode != 0 and "terminal prompts disabled" in none.stderr + "", none.stderr
    viewer = p.cli_json("tokens", "create", "--role", "viewer", "--name", "gp-viewer")["token"]
    seen = co.push("main", token=viewer)
    assert seen.returncode != 0 and "may only read" in seen.stderr, seen.stderr
    unknown = co.git("push", f"{p.api_url}/git/gp-nosuch.git", "main", check=False)
    assert unknown.returncode != 0 and "app 'gp-nosuch' not found" in unknown.stderr, unknown.stderr
    assert co.remote_head() == "" and _deployments(p, "gp-auth") == []


def test_other_branch_is_stored_not_deployed_and_no_manifest_is_rejected(p: Platform) -> None:
    co = _app(p, "gp-branch")
    co.git("checkout", "-q", "-b", "feature")
    res = co.push("feature")
    assert res.returncode == 0, res.stderr
    assert "refs/heads/feature: stored, not deployed" in res.stderr
    assert co.remote_head("feature") and _deployments(p, "gp-branch") == []
    co.git("checkout", "-q", "main")
    co.git("rm", "-q", "conveyor.toml")
    co.git("commit", "-q", "-m", "no manifest")
    bare = co.push("main")
    assert bare.returncode != 0 and "has no conveyor.toml at its root" in bare.stderr, bare.stderr
    assert co.remote_head("main") == "" and _deployments(p, "gp-branch") == []


def test_detach_returns_once_queued_and_ships_later(p: Platform) -> None:
    co = _app(p, "gp-detach")
    ci = p.cli_json("tokens", "create", "--role", "deployer", "--app", "gp-detach", "--name", "ci-bot")["token"]
    res = co.push("-o", "detach", "main", token=ci)
    assert res.returncode == 0, res.stderr
    assert "queued (push #" in res.stderr and "Released" not in res.stderr
    push_id = int(res.stderr.split("queued (push #")[1].split(",")[0])

    from cvy_platform import wait_for

    wait_for(lambda: p.api.get(f"/pushes/{push_id}").json()["state"] in ("shipped", "failed"), timeout=120,
             what="the detached push to ship")
    push = p.api.get(f"/pushes/{push_id}").json()
    assert push["state"] == "shipped", push
    dep = p.api.get(f"/deployments/{push['deployment']}").json()
    assert dep["app"] == "gp-detach" and dep["created_by"] == "ci-bot" and dep["env"] == "production"
    events = p.api.get("/events", params={"app": "gp-detach"}).json()
    assert any(e["kind"] == "continuous_ship" and e["message"].startswith("git push by ci-bot: 1 commit(s)")
               for e in events), events
    co.commit("v2", VERSION="v2\n")
    unknown = co.push("-o", "deploy-now", "main", token=ci)
    assert unknown.returncode != 0 and "unknown push option 'deploy-now'" in unknown.stderr, unknown.stderr


def test_git_remote_add_uses_the_cli_token_and_branch_setting_moves_deploys(p: Platform) -> None:
    p.cli("apps", "create", "gp-cli", check=True)
    co = Checkout(p.root, "gp-cli", "conveyor", None)
    cli_env = {k: v for k, v in p.env.items() if k.startswith("CONVEYOR_")}

    def conveyor(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "conveyor", *args], cwd=co.dir, env=p.env, capture_output=True,
                              text=True, timeout=60)

    added = conveyor("git-remote", "gp-cli", "--add")
    assert added.returncode == 0, added.stderr
    assert added.stdout.strip() == f"{p.api_url}/git/gp-cli.git"
    assert "added remote 'conveyor'" in added.stderr
    assert p.token not in (co.dir / ".git" / "config").read_text()  # git asks the CLI for it
    pushed = co.git("push", "conveyor", "main", check=False, token=None, env_extra=cli_env)
    assert pushed.returncode == 0 and "Released v1 to production" in pushed.stderr, pushed.stderr
    # another deploy branch: main is now only stored
    bad = conveyor("git-remote", "gp-cli", "--branch", "bad..name")
    assert bad.returncode == 2 and "deploy branch 'bad..name' is invalid" in bad.stderr, bad.stderr
    assert conveyor("git-remote", "gp-cli", "--branch", "release").returncode == 0
    co.commit("v2", VERSION="v2\n")
    stored = co.git("push", "conveyor", "main", check=False, token=None, env_extra=cli_env)
    assert stored.returncode == 0 and "stored, not deployed (the deploy branch is release)" in stored.stderr
    assert len(_deployments(p, "gp-cli")) == 1


def test_progress_reaches_the_pusher_while_the_push_runs(p: Platform) -> None:
    """Streamed, not buffered: when the hook's "Deploying as deployment #N" line reaches the git client,
    that deployment is still in progress (the push has not ended)."""
    co = _app(p, "gp-live")
    proc = subprocess.Popen(["git", "push", co.remote, "main"], cwd=co.dir, env=_git_env(p.token),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    states = []
    for line in proc.stderr:
        if "-----> Deploying as deployment #" in line:
            dep_id = int(line.split("#")[1].split()[0])
            states.append(p.api.get(f"/deployments/{dep_id}").json()["state"])
            assert proc.poll() is None
    assert proc.wait(timeout=120) == 0
    assert states and states[0] != "succeeded", states


def test_hostile_repository_content_never_runs(p: Platform) -> None:
    """A pushed hook script is a blob: it never runs. A tree with a .git directory is refused by fsck.
    The repositories are ours: 0700, no hooks of their own."""
    co = _app(p, "gp-hostile")
    marker = p.root / "gp-hostile-pwned"
    evil = f"#!/bin/sh\ntouch {marker}\n"
    for name in ("hooks/pre-receive", "hooks/post-receive", "hooks/update"):
        (co.dir / name).parent.mkdir(exist_ok=True)
        (co.dir / name).write_text(evil)
        (co.dir / name).chmod(0o755)
    (co.dir / "config").write_text(f"[core]\n\thooksPath = {co.dir / 'hooks'}\n")
    co.git("add", "-A")
    co.git("commit", "-q", "-m", "hooks and config in the tree")
    res = co.push("HEAD:refs/heads/evil")
    assert res.returncode == 0, res.stderr
    assert not marker.exists()
    # a tree holding .git/hooks/pre-receive (made with git's plumbing: `git add` refuses it)
    blob = co.git("hash-object", "-w", "hooks/pre-receive").stdout.strip()
    hooks = co.git_input("mktree", stdin=f"100755 blob {blob}\tpre-receive\n")
    dotgit = co.git_input("mktree", stdin=f"040000 tree {hooks}\thooks\n")
    top = co.git_input("mktree", stdin=co.git("ls-tree", "HEAD").stdout + f"040000 tree {dotgit}\t.git\n")
    commit = co.git("commit-tree", top, "-p", "HEAD", "-m", "a .git directory").stdout.strip()
    sneaky = co.push(f"{commit}:refs/heads/main")
    assert sneaky.returncode != 0 and "hasDotgit" in sneaky.stderr, sneaky.stderr
    assert not marker.exists() and co.remote_head() == "" and _deployments(p, "gp-hostile") == []
    root = p.data_dir / "git"
    assert (root.stat().st_mode & 0o777) == 0o700
    own_hooks = root / "gp-hostile.git" / "hooks"
    assert not own_hooks.exists() or list(own_hooks.iterdir()) == []


def test_two_racing_pushes_ship_one(p: Platform) -> None:
    """Two developers push different commits on the same base at once: one ships, the other is refused
    (the hook's lock, or git's fetch-first check) and ships nothing."""
    co = _app(p, "gp-race")
    assert co.push("main").returncode == 0
    twin = p.root / "checkout-gp-race-twin"
    shutil.copytree(co.dir, twin)
    co.commit("mine", VERSION="mine\n")
    (twin / "VERSION").write_text("theirs\n")
    env = _git_env(p.token)
    subprocess.run(["git", "commit", "-q", "-am", "theirs"], cwd=twin, env=env, check=True)
    before = len(_deployments(p, "gp-race"))
    procs = [subprocess.Popen(["git", "push", co.remote, "main"], cwd=d, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for d in (co.dir, twin)]
    results = [(proc.wait(timeout=180), proc.stderr.read()) for proc in procs]  # type: ignore[union-attr]
    assert sorted(code == 0 for code, _ in results) == [False, True], results
    winner = 0 if results[0][0] == 0 else 1
    assert len(_deployments(p, "gp-race")) == before + 1, results
    loser = results[1 - winner][1]
    assert "moved to" in loser or "fetch first" in loser, loser
    assert p.get("gp-race.localhost").text.strip() == f"hello from {('mine', 'theirs')[winner]}"


def _hooks_of(app: str) -> list[int]:
    """Pids of our pre-receive hook running for ``app`` (found by the environment the control plane gave it)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            environ = (proc / "environ").read_bytes()
        except OSError:
            continue
        if b"conveyor.cli.githook" in cmdline and f"CONVEYOR_GIT_APP={app}\0".encode() in environ:
            found.append(int(proc.name))
    return found


def test_an_interrupted_push_stops_the_hook_and_moves_no_ref(p: Platform) -> None:
    from cvy_platform import wait_for

    co = _app(p, "gp-cancel")
    proc = subprocess.Popen(["git", "push", co.remote, "main"], cwd=co.dir, env=_git_env(p.token),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    assert proc.stderr is not None
    for line in proc.stderr:
        if "-----> Building #" in line:
            break
    assert _hooks_of("gp-cancel"), "the hook should be running while the build streams"
    os.killpg(proc.pid, signal.SIGINT)  # the pusher's Ctrl-C: git and its git-remote-http child
    proc.wait(timeout=10)
    wait_for(lambda: not _hooks_of("gp-cancel"), timeout=15, what="the hook to stop with its push")
    assert co.remote_head() == ""


CANARY_TOML = """[app]
name = "{app}"

[run]
web = "python app.py"

[health]
path = "/healthz"
timeout = "2s"

[deploy]
strategy = "canary"
steps = [{{ weight = 50, duration = "{step}" }}]
bake = "1s"
drain_timeout = "1s"

[env.production]
instances = 1
"""


def test_a_push_while_the_environment_deploys_rides_the_next_train(p: Platform) -> None:
    """Issue 14 item 6 for `git push`: the deploy branch moves at once (built and tested), and its commits
    wait in the next deploy train while the running deployment finishes; the train then ships them."""
    from cvy_platform import Traffic, wait_for

    co = _app(p, "gp-train")
    co.commit("canary settings", conveyor__toml=CANARY_TOML.format(app="gp-train", step="1s"))
    assert co.push("main").returncode == 0
    co.commit("a slow canary", conveyor__toml=CANARY_TOML.format(app="gp-train", step="15s"), VERSION="v2\n")
    with Traffic(p, "gp-train", rate=40, threads=2, max_s=150) as traffic:
        slow = subprocess.Popen(["git", "push", co.remote, "main"], cwd=co.dir, env=_git_env(p.token),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: any(d["state"] == "canary" for d in _deployments(p, "gp-train")), 60, 0.2,
                 "the slow canary running")
        co.commit("third", VERSION="v3\n")
        fourth = co.commit("fourth", VERSION="v4\n")
        res = co.push("main")
        assert res.returncode == 0, res.stderr
        assert "ride in train" in res.stderr, res.stderr
        assert co.remote_head() == fourth  # accepted: built and tested, on the remote at once
        assert slow.wait(timeout=120) == 0, slow.stderr.read()  # type: ignore[union-attr]
        trains = wait_for(lambda: [t for t in p.cli_json("trains", "gp-train") if t["state"] not in ("collecting", "running")],
                          150, 0.5, "the train of the third and fourth commits to end")
        assert trains[0]["state"] == "shipped", trains
        assert [c["sha"] for c in trains[0]["commits"]][-1] == fourth
        wait_for(lambda: p.get("gp-train.localhost").text.strip() == "hello from v4", 30, 0.2, "v4 served")
    assert traffic.failures() == [], traffic.failures()[:5]
