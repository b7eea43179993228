"""The CLI's local parts: checks before uploading, deployment display, error phrasing, context."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import conveyor.cli.main  # noqa: F401  (the command modules register themselves on import of main)
from conveyor.cli.client import CliError, _validation_message, credentials_hint
from conveyor.cli.deploy import check_local, deployment_lines, figure, step_label
from conveyor.config import load_client_config

REPO = Path(__file__).resolve().parents[3]


def test_local_checks_name_what_to_fix(tmp_path: Path) -> None:
    with pytest.raises(CliError, match="--strategy 'yolo' is not a strategy: use one of bluegreen, rolling, canary"):
        check_local("hello", None, "production", "yolo")
    with pytest.raises(CliError, match="--env 'Prod' is not an environment name"):
        check_local("hello", None, "Prod", None)
    with pytest.raises(CliError, match="has no conveyor.toml .*conveyor init"):
        check_local("hello", tmp_path, "production", None)
    (tmp_path / "conveyor.toml").write_text('[run]\nweb = "python app.py"\n[health]\ntimeout = "soon"\n')
    with pytest.raises(CliError, match=r"conveyor.toml: \[health\] timeout"):
        check_local("hello", tmp_path, "production", None)
    check_local("hello", REPO / "examples" / "hello", "production", "canary")  # a good one passes


def test_deploy_with_a_bad_strategy_fails_before_contacting_anything(tmp_path: Path) -> None:
    # No control plane at this URL: the local check must answer first (exit 2), not "cannot reach" (exit 5).
    env = {**os.environ, "CONVEYOR_URL": "http://127.0.0.1:9", "CONVEYOR_TOKEN": "x", "CONVEYOR_CONFIG": str(tmp_path / "c.json")}
    res = subprocess.run([sys.executable, "-m", "conveyor", "deploy", "hello", "--source", str(REPO / "examples" / "hello"),
                          "--strategy", "yolo"], capture_output=True, text=True, env=env, timeout=60)
    assert res.returncode == 2 and "not a strategy" in res.stderr and "body." not in res.stderr


def test_validation_errors_lose_their_body_prefix() -> None:
    assert _validation_message({"loc": ["body", "strategy"], "msg": "Input should be 'canary'"}) == "strategy: input should be 'canary'"
    assert _validation_message({"loc": ["query", "lines"], "msg": "Bad"}) == "lines: bad"


def test_deployment_show_counts_steps_from_one_names_the_bake_and_rounds() -> None:
    d = {"id": 7, "app": "hello", "env": "production", "kind": "deploy", "from_release": 1, "release": 2,
         "strategy": "canary", "state": "succeeded", "reason": "", "started_at": 100.0, "finished_at": 142.4,
         "progress": {"weights": {"2": 100}, "step": 2},
         "params": {"steps": [{"weight": 20, "for": 10.0}, {"weight": 50, "for": 10.0}], "bake": 6.0},
         "verdicts": [
             {"step": 0, "judge": "sequential", "outcome": "pass", "reason": "fine",
              "numbers": {"sequential.canary_error_rate": 0.0717616, "canary_requests": 55}},
             {"step": -1, "judge": "history", "outcome": "pass", "reason": "baked", "numbers": {}},
         ]}
    text = "\n".join(deployment_lines(d))
    assert "step 1: 20% of traffic for 10 s" in text and "step 2: 50% of traffic for 10 s" in text
    assert "bake 6.0 s" in text and "took 42 s" in text
    assert "step 1 sequential" in text and "bake history" in text and "step -1" not in text and "step 0 " not in text
    assert "canary error rate 0.0718" in text and "canary requests 55" in text and "0.0717616" not in text
    assert step_label(None) == "-" and figure(3.0) == "3" and figure(1234.56) == "1235"


def test_credentials_hint_and_context_say_where_the_cli_looked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg_path = tmp_path / "client.json"
    monkeypatch.setenv("CONVEYOR_CONFIG", str(cfg_path))
    monkeypatch.delenv("CONVEYOR_URL", raising=False)
    monkeypatch.delenv("CONVEYOR_TOKEN", raising=False)
    cfg = load_client_config()
    assert cfg.token is None and cfg.url_source == "default"
    hint = credentials_hint(cfg)
    assert "conveyor up" in hint and "CONVEYOR_CONFIG=$PWD/.demo/client.json" in hint and "conveyor context" in hint
    cfg_path.write_text(json.dumps({"url": "http://127.0.0.1:9", "token": "tok-123456789"}))
    cfg = load_client_config()
    assert cfg.url_source == str(cfg_path) and cfg.token_source == str(cfg_path)
    res = subprocess.run([sys.executable, "-m", "conveyor", "context", "--json"], capture_output=True, text=True,
                         env={**os.environ}, timeout=60)
    doc = json.loads(res.stdout)
    assert res.returncode == 5 and doc["url"] == "http://127.0.0.1:9" and doc["url_from"] == str(cfg_path)
    assert doc["reachable"] is False and doc["token"] == "tok-1234…"


def test_deployment_show_says_a_train_canary_is_the_head_with_the_culprit_reverted() -> None:
    culprit = {"sha": "c" * 40, "message": "bad", "outcome": "fail", "verdict": "error rate 30%"}
    d = {"id": 9, "app": "hello", "env": "production", "kind": "deploy", "from_release": 1, "release": 2,
         "strategy": "canary", "state": "succeeded", "reason": "", "started_at": 100.0, "finished_at": 120.0,
         "progress": {}, "params": {}, "verdicts": [],
         "train": {"id": 3, "state": "shipped", "position": 3, "sha": "d" * 40, "reverted": True, "outcome": "pass",
                   "culprit": culprit}}
    text = "\n".join(deployment_lines(d))
    assert f"commit #4 {'d' * 12} with {'c' * 12} reverted" in text, text
    d["train"]["reverted"] = False
    assert "reverted" not in "\n".join(deployment_lines(d))
