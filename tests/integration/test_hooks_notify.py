"""Webhooks in and notifications out on a real platform (``conveyor up``).

Webhooks: a real bare git repository (a file path URL) registered with `conveyor repo set`; signed
GitHub and GitLab push events build and deploy the pushed commit; forged ones (no signature, a wrong
one, a replayed delivery id, another repository, another branch, a huge body) change nothing.

Notifications: real HTTP receivers on loopback get signed JSON (HMAC checked here) and Slack messages
for a real deployment; a receiver that is down, then answers 500, then comes back gets its
notifications with retries logged, and the deployment is not delayed by it.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from conveyor.domain.notifications import verify_signature
from conveyor.domain.webhooks import github_signature
from cvy_platform import Platform, free_port, wait_for

pytestmark = pytest.mark.integration


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          env={"GIT_AUTHOR_NAME": "Ada", "GIT_AUTHOR_EMAIL": "ada@example.com",
                               "GIT_COMMITTER_NAME": "Ada", "GIT_COMMITTER_EMAIL": "ada@example.com",
                               "PATH": "/usr/bin:/bin"}).stdout.strip()


def _bare_repo(p: Platform, tmp_path: Path, app: str) -> tuple[Path, Path, str]:
    """A work tree of the hello app pushed to a bare repository; (work tree, bare repository, sha of main)."""
    work, bare = tmp_path / "work", tmp_path / "origin.git"
    subprocess.run(["cp", "-r", str(p.app_copy(app, "v1")), str(work)], check=True)
    _git(work, "init", "-q", "-b", "main")
    _git(work, "add", "-A")
    _git(work, "commit", "-q", "-m", "first version")
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    _git(work, "push", "-q", str(bare), "main")
    return work, bare, _git(work, "rev-parse", "HEAD")


def _push_event(url: str, sha: str, branch: str = "main") -> bytes:
    return json.dumps({"ref": f"refs/heads/{branch}", "before": "0" * 40, "after": sha,
                       "repository": {"clone_url": url, "full_name": "ada/pushy"}}).encode()


def _github(secret: str | None, body: bytes, delivery: str, event: str = "push") -> dict[str, str]:
    h = {"Content-Type": "application/json", "X-GitHub-Event": event, "X-GitHub-Delivery": delivery}
    if secret is not None:
        h["X-Hub-Signature-256"] = github_signature(secret, body)
    return h


def test_signed_pushes_deploy_and_forged_ones_change_nothing(shared_platform: Platform, tmp_path: Path) -> None:
    p = shared_platform
    p.cli("apps", "create", "pushy", check=True)
    work, bare, sha = _bare_repo(p, tmp_path, "pushy")

    bad = p.cli("repo", "set", "pushy", "not a url")
    assert bad.returncode == 2 and "is not a repository URL" in bad.stderr
    bad = p.cli("repo", "set", "pushy", str(bare), "--branch", "a..b")
    assert bad.returncode == 2 and "is not a branch name" in bad.stderr
    assert p.cli("repo", "show", "pushy").returncode == 3  # nothing was registered

    reg = p.cli_json("repo", "set", "pushy", str(bare), "--branch", "main")
    secret, hook = reg["secret"], reg["webhook_url"]
    assert hook == f"{p.api_url}/api/v1/hooks/pushy" and len(secret) >= 40
    assert "secret" not in p.cli("repo", "show", "pushy", check=True).stdout.lower().split("webhook url")[1]
    assert p.cli_json("repo", "show", "pushy")["secret"] is None  # shown once only

    url = f"file://{bare}"
    body = _push_event(url, sha)
    with httpx.Client(timeout=10) as http:
        # forged: no signature, a wrong one, an app that does not exist (same answer: no probing)
        unsigned = http.post(hook, content=body, headers=_github(None, body, "f-1"))
        wrong = http.post(hook, content=body, headers=_github("guessed", body, "f-2"))
        ghost = http.post(f"{p.api_url}/api/v1/hooks/no-such-app", content=body, headers=_github(secret, body, "f-3"))
        gitlab_wrong = http.post(hook, content=body, headers={"X-Gitlab-Event": "Push Hook", "X-Gitlab-Event-UUID": "g-0",
                                                              "X-Gitlab-Token": "guessed"})
        assert [r.status_code for r in (unsigned, wrong, ghost, gitlab_wrong)] == [401] * 4
        assert len({r.json()["detail"] for r in (unsigned, wrong, ghost, gitlab_wrong)}) == 1
        assert "not signed with this webhook's secret" in unsigned.json()["detail"]
        # a body over the bound is refused before anything else
        huge = b"{" + b" " * (2 * 1024 * 1024) + b"}"
        assert http.post(hook, content=huge, headers=_github(secret, huge, "f-4")).status_code == 413
        # signed, but for another repository or another branch
        other_repo = _push_event("https://github.com/evil/other.git", sha)
        r = http.post(hook, content=other_repo, headers=_github(secret, other_repo, "f-5"))
        assert r.status_code == 422 and "another repository" in r.json()["detail"]
        other_branch = _push_event(url, sha, branch="feature")
        r = http.post(hook, content=other_branch, headers=_github(secret, other_branch, "f-6"))
        assert r.status_code == 200 and r.json()["outcome"] == "ignored" and "'feature'" in r.json()["reason"]
        ping = http.post(hook, content=b'{"zen": "hi"}', headers=_github(secret, b'{"zen": "hi"}', "f-7", event="ping"))
        assert ping.status_code == 200 and ping.json()["outcome"] == "pong"
        # nothing was built or deployed by any of them
        assert p.api.get("/apps/pushy/deployments").json() == []
        assert p.cli_json("images", "pushy") == []

        # a signed push of main: built from the bare repository, then deployed
        t0 = time.monotonic()
        shipped = http.post(hook, content=body, headers=_github(secret, body, "push-1"))
        assert shipped.status_code == 202 and shipped.json()["outcome"] == "building"
        replay = http.post(hook, content=body, headers=_github(secret, body, "push-1"))
        assert replay.status_code == 409 and "received before" in replay.json()["detail"]

    def deployed() -> dict[str, Any] | None:
        deps = p.api.get("/apps/pushy/deployments").json()
        return deps[0] if deps and deps[0]["state"] == "succeeded" else None

    dep = wait_for(deployed, timeout=120, interval=0.3, what="the pushed commit deployed")
    took = time.monotonic() - t0
    assert len(p.api.get("/apps/pushy/deployments").json()) == 1  # the replay built nothing
    image = p.cli_json("images", "pushy")[0]
    assert image["digest"] == dep["image"] and image["commit"]["sha"] == sha
    wait_for(lambda: p.get("pushy.localhost").text == "hello from v1\n", timeout=10, what="v1 served")
    shown = p.cli_json("repo", "show", "pushy")["deliveries"]
    by_id = {d["delivery"]: d for d in shown}
    assert by_id["push-1"]["outcome"] == "deploying" and by_id["push-1"]["deployment_id"] == dep["id"]
    assert {by_id[k]["outcome"] for k in ("f-5", "f-6", "f-7")} == {"refused", "ignored", "pong"}
    assert "f-1" not in by_id and "f-3" not in by_id  # unsigned deliveries are not even remembered
    print(f"push → deployment succeeded in {took:.1f} s")

    # GitLab: the next commit, its token header and its event UUID
    (work / "VERSION").write_text("v2\n")
    _git(work, "commit", "-q", "-am", "second version")
    _git(work, "push", "-q", str(bare), "main")
    sha2 = _git(work, "rev-parse", "HEAD")
    gl = json.dumps({"object_kind": "push", "ref": "refs/heads/main", "after": sha2, "checkout_sha": sha2,
                     "project": {"git_http_url": str(bare)}}).encode()
    r = httpx.post(hook, content=gl, timeout=10, headers={"X-Gitlab-Event": "Push Hook", "X-Gitlab-Event-UUID": "gl-1",
                                                          "X-Gitlab-Token": secret, "Content-Type": "application/json"})
    assert r.status_code == 202, r.text
    wait_for(lambda: p.get("pushy.localhost").text == "hello from v2\n", timeout=120, interval=0.3, what="v2 served")

    # removed: the same signed delivery is refused like a forged one
    p.cli("repo", "remove", "pushy", check=True)
    after = httpx.post(hook, content=body, headers=_github(secret, body, "push-9"), timeout=10)
    assert after.status_code == 401


# -- notifications ---------------------------------------------------------------------------------


class Receiver:
    """An HTTP receiver on loopback that records what it gets and answers ``status`` (settable)."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.status = 200
        self.got: list[dict[str, Any]] = []
        self.server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> Receiver:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                outer.got.append({"headers": {k.lower(): v for k, v in self.headers.items()}, "body": body,
                                  "status": outer.status, "at": time.time()})
                self.send_response(outer.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def kinds(self) -> list[str]:
        """The event kinds of the JSON messages answered 200 (a Slack message's title instead)."""
        out = []
        for g in self.got:
            if g["status"] == 200:
                doc = json.loads(g["body"])
                out.append(doc.get("kind") or doc["text"].split(" — ")[0])
        return out


def test_signed_json_and_slack_notifications_of_a_real_deployment(shared_platform: Platform) -> None:
    p = shared_platform
    p.cli("apps", "create", "noti", check=True)
    plain, slack = Receiver().start(), Receiver().start()
    try:
        # bad input: clear errors, nothing added
        bad = p.cli("notify", "add", "noti", "ftp://127.0.0.1/x")
        assert bad.returncode == 2 and "http:// or https://" in bad.stderr
        bad = p.cli("notify", "add", "noti", plain.url, "--events", "deploy,deploys")
        assert bad.returncode == 2 and "unknown event 'deploys'" in bad.stderr
        direct = p.api.post("/apps/noti/notifications/targets", json={"url": "file:///etc/passwd"})
        assert direct.status_code == 422 and "http:// or https://" in direct.json()["detail"]
        assert p.cli_json("notify", "list", "noti") == []

        target = p.cli_json("notify", "add", "noti", plain.url)
        secret = target["secret"]
        p.cli_json("notify", "add", "noti", slack.url, "--kind", "slack", "--events", "deploy")
        assert [t["kind"] for t in p.cli_json("notify", "list", "noti")] == ["json", "slack"]
        assert all(t["secret"] is None for t in p.cli_json("notify", "list", "noti"))

        tested = p.cli("notify", "test", "noti", str(target["id"]))
        assert tested.returncode == 0 and "Delivered" in tested.stdout

        out = p.deploy("noti", p.app_copy("noti", "v1"))
        assert out["state"] == "succeeded"
        wait_for(lambda: {"image_built", "deploy_started", "deployed"} <= set(plain.kinds()), timeout=20,
                 what="json notifications of the build and the deployment")
        wait_for(lambda: {"Deploy started", "Deploy succeeded"} <= set(slack.kinds()), timeout=20, what="slack notifications")
    finally:
        plain.stop()
        slack.stop()

    for g in plain.got:
        h = g["headers"]
        assert verify_signature(secret, h["x-conveyor-timestamp"], g["body"], h["x-conveyor-signature-256"], now=time.time())
        assert not verify_signature("wrong", h["x-conveyor-timestamp"], g["body"], h["x-conveyor-signature-256"], now=time.time())
    done = next(json.loads(g["body"]) for g in plain.got if json.loads(g["body"])["kind"] == "deployed")
    assert done["app"] == "noti" and done["deployment"] == out["id"]
    assert done["links"]["deployment"] == f"{p.api_url}/deployments/{out['id']}"
    assert done["links"]["rollback"] == f"{p.api_url}/apps/noti#env-production"
    assert set(slack.kinds()) <= {"Deploy started", "Deploy succeeded"}  # --events deploy: no build, no test
    msg = next(json.loads(g["body"]) for g in slack.got if "Deploy succeeded" in json.loads(g["body"])["text"])
    assert msg["blocks"][0]["type"] == "section"
    assert {"Open deployment", "Roll back"} <= {b["text"]["text"] for b in msg["blocks"][-1]["elements"]}
    assert not any("x-conveyor-signature-256" in g["headers"] for g in slack.got)

    # the app page's Notifications section and its JSON twin show the same delivery log
    twin = p.api.get("/apps/noti/summary").json()["notifications"]
    assert [t["kind"] for t in twin["targets"]] == ["json", "slack"]
    assert {"deployed", "notification_test"} <= {n["kind"] for n in twin["log"] if n["status"] == "delivered"}
    with httpx.Client(base_url=p.api_url, follow_redirects=True, timeout=30) as browser:
        assert browser.get(p.api.post("/ui/login-link").json()["path"]).status_code == 200
        page = browser.get("/apps/noti")
    assert page.status_code == 200 and "Notifications" in page.text and "nothing sent yet" not in page.text
    assert "notification_test" in page.text and "Deploy on push" in page.text


def test_a_receiver_down_then_failing_gets_retries_and_never_delays_a_deployment(shared_platform: Platform) -> None:
    p = shared_platform
    p.cli("apps", "create", "flaky", check=True)
    baseline = time.monotonic()
    assert p.deploy("flaky", p.app_copy("flaky", "v1"))["state"] == "succeeded"
    without = time.monotonic() - baseline

    rx = Receiver()  # not listening yet: connections are refused
    p.cli_json("notify", "add", "flaky", rx.url, "--events", "deploy")
    t0 = time.monotonic()
    out = p.deploy("flaky", p.app_copy("flaky", "v2"))
    with_down = time.monotonic() - t0
    assert out["state"] == "succeeded"
    assert with_down < without + 15, f"the deploy took {with_down:.1f} s with the receiver down vs {without:.1f} s"

    def log() -> list[dict[str, Any]]:
        return p.cli_json("notifications", "log", "flaky")

    def retried(n: int) -> list[dict[str, Any]] | None:
        rows = [r for r in log() if r["kind"] == "deployed"]
        return rows if rows and rows[0]["attempts"] >= n and rows[0]["status"] == "retrying" else None

    rows = wait_for(lambda: retried(2), timeout=20, interval=0.3, what="two failed attempts while the receiver is down")
    row = rows[0]
    assert row["status_code"] is None and row["error"] and row["next_at"] > row["last_at"]
    shown = p.cli("notifications", "log", "flaky", check=True).stdout
    assert "retrying" in shown

    rx.status = 500
    rx.start()
    try:
        rows = wait_for(lambda: [r for r in log() if r["kind"] == "deployed" and r["status_code"] == 500], timeout=30,
                        interval=0.3, what="an attempt answered 500")
        assert rows[0]["status"] == "retrying" and "HTTP 500" in rows[0]["error"]
        rx.status = 200
        done = wait_for(lambda: [r for r in log() if r["kind"] == "deployed" and r["status"] == "delivered"],
                        timeout=70, interval=0.5, what="delivery once the receiver is back")
        assert done[0]["status_code"] == 200 and done[0]["attempts"] >= 3 and done[0]["next_at"] is None
    finally:
        rx.stop()
    seen = [g["at"] for g in rx.got if json.loads(g["body"])["kind"] == "deployed"]
    gaps = [b - a for a, b in zip(seen, seen[1:], strict=False)]
    assert gaps and all(g >= 3.5 for g in gaps), f"retries came {gaps} s apart: no backoff"  # 4 s, then 8 s
    print(f"deploy without a target {without:.1f} s, with the receiver down {with_down:.1f} s; "
          f"attempts {done[0]['attempts']}; gaps between attempts the receiver saw {[round(g, 1) for g in gaps]}")
