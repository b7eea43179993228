"""A webhook push that arrives while the environment deploys rides in the next deploy train
(issue 14: "commits pushed while a deployment runs are batched into the next one"), in process
with a real bare git repository."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

from web_site import ADMIN, Site

from conveyor.domain.webhooks import github_signature

AUTH = {"Authorization": f"Bearer {ADMIN}"}
EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "hello"


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True,
                          env={"GIT_AUTHOR_NAME": "Ada", "GIT_AUTHOR_EMAIL": "ada@example.test", "GIT_COMMITTER_NAME": "Ada",
                               "GIT_COMMITTER_EMAIL": "ada@example.test", "PATH": "/usr/bin:/bin",
                               "HOME": str(cwd)}).stdout.strip()


def _repo(tmp_path: Path) -> tuple[Path, str]:
    work, bare = tmp_path / "work", tmp_path / "origin.git"
    shutil.copytree(EXAMPLE, work)
    _git(work, "init", "-q", "-b", "main")
    _git(work, "add", "-A")
    _git(work, "commit", "-q", "-m", "first")
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    _git(work, "push", "-q", str(bare), "main")
    return bare, _git(work, "rev-parse", "HEAD")


def test_a_push_during_a_deployment_rides_the_next_train(web: Site, tmp_path: Path) -> None:
    bare, sha = _repo(tmp_path)
    reg = web.client.put("/api/v1/apps/hello/repo", json={"url": str(bare), "branch": "main"}, headers=AUTH)
    assert reg.status_code == 200, reg.text
    secret = reg.json()["secret"]
    running = web.deploy("hello", "production", web.add_image("hello", "a"))  # open: production is busy
    body = json.dumps({"ref": "refs/heads/main", "before": "0" * 40, "after": sha,
                       "repository": {"clone_url": str(bare), "full_name": "ada/hello"}}).encode()
    headers = {"Content-Type": "application/json", "X-GitHub-Event": "push", "X-GitHub-Delivery": "d-1",
               "X-Hub-Signature-256": github_signature(secret, body)}
    r = web.client.post("/api/v1/hooks/hello", content=body, headers=headers)
    assert r.status_code == 202, r.text

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        [d] = web.client.get("/api/v1/apps/hello/repo", headers=AUTH).json()["deliveries"]
        if d["outcome"] != "building":
            break
        time.sleep(0.1)
    assert d["outcome"] == "batched" and "rides in train" in d["reason"], d
    trains = web.client.get("/api/v1/apps/hello/trains", headers=AUTH).json()
    assert [t["state"] for t in trains] == ["collecting"]
    assert [c["sha"] for c in trains[0]["commits"]] == [sha]
    # nothing was deployed beside the running deployment: the train waits for it
    deps = web.client.get("/api/v1/apps/hello/deployments", headers=AUTH).json()
    assert [x["id"] for x in deps] == [running["id"]]
