"""`conveyor git-credential` (git's credential helper protocol) and `git-remote --add` outside a checkout,
and the hook's refusals that need no control plane (real processes, no server)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conveyor.cli.githook import run

A, B = "a" * 40, "b" * 40


def _conveyor(*args: str, cwd: Path, stdin: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CONVEYOR_", "GIT_"))}
    return subprocess.run([sys.executable, "-m", "conveyor", *args], cwd=cwd, input=stdin, capture_output=True,
                          text=True, timeout=60, env=base | {"HOME": str(cwd)} | env)


def test_git_credential_answers_get_with_the_cli_token_and_keeps_nothing(tmp_path: Path) -> None:
    got = _conveyor("git-credential", "get", cwd=tmp_path, stdin="protocol=http\nhost=127.0.0.1:7700\n\n",
                    CONVEYOR_URL="http://127.0.0.1:7700", CONVEYOR_TOKEN="cvt_1_secret-of-the-cli")
    assert got.returncode == 0 and got.stdout == "username=conveyor\npassword=cvt_1_secret-of-the-cli\n"
    stored = _conveyor("git-credential", "store", cwd=tmp_path, stdin="password=x\n\n",
                       CONVEYOR_TOKEN="cvt_1_secret-of-the-cli")
    assert stored.returncode == 0 and stored.stdout == "" and list(tmp_path.iterdir()) == []
    none = _conveyor("git-credential", "get", cwd=tmp_path, stdin="\n", CONVEYOR_CONFIG=str(tmp_path / "none.json"))
    assert none.returncode == 0 and none.stdout == ""  # git then says authentication failed


def test_git_remote_add_outside_a_checkout_says_what_to_do(tmp_path: Path) -> None:
    # no control plane answers either: the first error wins, and it names what to fix
    res = _conveyor("git-remote", "hello", "--add", cwd=tmp_path, CONVEYOR_URL="http://127.0.0.1:9",
                    CONVEYOR_TOKEN="cvt_1_secret-of-the-cli")
    assert res.returncode == 5 and "cannot reach the control plane" in res.stderr


def test_the_hook_refuses_bad_updates_before_calling_anything(capsys) -> None:  # type: ignore[no-untyped-def]
    env = {"CONVEYOR_GIT_APP": "hello", "CONVEYOR_GIT_BRANCH": "main", "CONVEYOR_GIT_API": "http://127.0.0.1:9",
           "CONVEYOR_GIT_TOKEN": "t"}
    assert run(env, f"{A} {B} refs/pull/1/head\n") == 1
    assert "only branches (refs/heads/…) and tags (refs/tags/…) may be pushed" in capsys.readouterr().err
    assert run(env, f"{A} {'0' * 40} refs/heads/main\n") == 1
    assert "the deploy branch 'main' cannot be deleted" in capsys.readouterr().err
    assert run(env | {"GIT_PUSH_OPTION_COUNT": "1", "GIT_PUSH_OPTION_0": "yolo"}, f"{A} {B} refs/heads/main\n") == 1
    assert "unknown push option 'yolo'" in capsys.readouterr().err
    assert run(env, "garbage\n") == 1
    assert "malformed" in capsys.readouterr().err
