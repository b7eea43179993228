"""Images through the CLI and API of a real platform: build, inspect, promote unchanged, git, GC."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from cvy_platform import Platform

pytestmark = pytest.mark.integration


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          env={"GIT_AUTHOR_NAME": "Ada", "GIT_AUTHOR_EMAIL": "ada@example.com",
                               "GIT_COMMITTER_NAME": "Ada", "GIT_COMMITTER_EMAIL": "ada@example.com",
                               "PATH": "/usr/bin:/bin"}).stdout.strip()


def test_build_json_show_logs_list_and_reproducible_digest(shared_platform: Platform) -> None:
    p = shared_platform
    p.cli("apps", "create", "imgs", check=True)
    src = p.app_copy("imgs", "v1")
    first = p.cli_json("build", str(src), "--app", "imgs")
    assert first["id"].startswith("sha256:") and first["status"] == "passed"
    assert [layer["role"] for layer in first["layers"]] == ["app"]  # no Python deps: one layer
    again = p.cli_json("build", str(src), "--app", "imgs")
    assert again["id"] == first["id"]  # same source, same image

    listed = p.cli_json("images", "imgs")
    assert [i["digest"] for i in listed] == [first["id"]]
    shown = p.cli("images", "show", first["id"][7:19], "--logs", check=True).stdout
    assert first["id"] in shown and "tests passed" in shown

    bad = p.cli("images", "show", "abc")
    assert bad.returncode == 3 and "at least 7 hex digits" in bad.stderr


def test_promotion_ships_the_exact_image_and_git_builds_follow_the_branch(shared_platform: Platform, tmp_path: Path) -> None:
    p = shared_platform
    p.cli("apps", "create", "promo", check=True)
    repo = tmp_path / "repo"
    subprocess.run(["cp", "-r", str(p.app_copy("promo", "v1")), str(repo)], check=True)
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "first version")
    sha1 = _git(repo, "rev-parse", "HEAD")

    built = p.cli_json("build", "--git", str(repo), "--ref", "main", "--app", "promo")
    assert built["commit"]["sha"] == sha1 and built["commit"]["author"] == "Ada <ada@example.com>"
    out = p.deploy_image("promo", built["id"], "--env", "staging")
    assert out["state"] == "succeeded"
    p.served("staging.promo.localhost", "hello from v1\n")

    promoted = p.cli_json("deploy", "promo", "--env", "production", "--from", "staging", "--wait")
    assert promoted["state"] == "succeeded" and promoted["image"] == built["id"]  # no rebuild
    p.served("promo.localhost", "hello from v1\n")
    rels = p.cli_json("releases", "promo")
    assert {r["env"]: r["commit"]["sha"] for r in rels} == {"staging": sha1, "production": sha1}

    (repo / "VERSION").write_text("v2\n")
    _git(repo, "commit", "-q", "-am", "second version")
    moved = p.cli_json("build", "--git", str(repo), "--ref", "main", "--app", "promo")
    assert moved["commit"]["sha"] == _git(repo, "rev-parse", "HEAD") != sha1 and moved["id"] != built["id"]


def test_gc_keeps_images_in_use(shared_platform: Platform) -> None:
    p = shared_platform
    p.cli("apps", "create", "gcapp", check=True)
    live = p.deploy("gcapp", p.app_copy("gcapp", "v1"))
    assert live["state"] == "succeeded"
    spare = [p.cli_json("build", str(p.app_copy("gcapp", f"s{n}")), "--app", "gcapp")["id"] for n in range(2)]
    report = p.cli_json("images", "gc", "--keep", "0")
    assert report["deleted_image_rows"] >= 2
    left = {i["digest"] for i in p.cli_json("images", "gcapp")}
    assert live["image"] in left and not left & set(spare)
    # the live release still runs, and its image can still be fetched by an agent
    p.served("gcapp.localhost", "hello from v1\n")
    assert p.api.get(f"/images/{live['image']}/manifest").status_code == 200
    assert p.api.get(f"/images/{spare[0]}/manifest").status_code == 404
