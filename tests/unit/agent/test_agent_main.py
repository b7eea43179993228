"""Command-line parsing: clear errors for bad flags."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from conveyor.agent.main import build_parser, config_from_args


def parse(argv: list[str]) -> tuple[argparse.Namespace, argparse.ArgumentParser]:
    parser = build_parser()
    return parser.parse_args(argv), parser


def test_defaults_and_token_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CONVEYOR_TOKEN", "from-env")
    args, parser = parse(["--control-plane", "http://127.0.0.1:8000", "--data-dir", str(tmp_path)])
    config = config_from_args(args, parser)
    assert config.token == "from-env"
    assert config.address == "127.0.0.1"
    assert config.host
    assert config.data_dir == tmp_path.resolve()
    assert config.stop_grace == 10.0


def test_flag_token_beats_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_TOKEN", "from-env")
    args, parser = parse(["--control-plane", "http://x", "--token", "flag", "--host", "h9", "--address", "10.0.0.9", "--stop-grace", "2"])
    config = config_from_args(args, parser)
    assert (config.token, config.host, config.address, config.stop_grace) == ("flag", "h9", "10.0.0.9", 2.0)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--control-plane", "http://x"], "no API token"),
        (["--control-plane", "ftp://x", "--token", "t"], "http:// or https://"),
        (["--control-plane", "http://x", "--token", "t", "--address", "not-an-ip"], "IPv4"),
        (["--control-plane", "http://x", "--token", "t", "--stop-grace", "-1"], "stop-grace"),
        (["--control-plane", "http://x", "--token", "t", "--log-max-bytes", "lots"], "--log-max-bytes"),
    ],
)
def test_bad_flags_say_what_to_fix(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    monkeypatch.delenv("CONVEYOR_TOKEN", raising=False)
    args, parser = parse(argv)
    with pytest.raises(SystemExit) as exc:
        config_from_args(args, parser)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_control_plane_is_required(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CONVEYOR_TOKEN", "t" * 20)
    args, parser = parse([])
    with pytest.raises(SystemExit):
        config_from_args(args, parser)
    err = capsys.readouterr().err
    assert "--join URL TOKEN" in err and "--control-plane URL" in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--join", "http://cp", "tok", "--token", "x"], "--join brings its own credential"),
        (["--join", "http://cp", "tok", "--control-plane", "http://other"], "give one"),
        (["--join", "http://cp", "tok", "--label", "role"], "--label: label 'role': write key=value"),
        (["--join", "http://cp", "tok", "--label", "a=1", "--label", "a=2"], "a is given twice"),
        (["--join", "http://cp", "tok", "--capacity", "-1"], "--capacity must be 0 or more"),
        (["--join", "http://cp", "tok", "--memory", "lots"], "--memory"),
    ],
)
def test_joining_and_capacity_flags_say_what_to_fix(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                                    argv: list[str], message: str) -> None:
    monkeypatch.delenv("CONVEYOR_TOKEN", raising=False)
    args, parser = parse(argv)
    with pytest.raises(SystemExit) as exc:
        config_from_args(args, parser)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_labels_capacity_and_memory_reach_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONVEYOR_TOKEN", raising=False)
    args, parser = parse(["--join", "http://cp:1", "tok", "--label", "role=web", "--label", "zone=a",
                          "--capacity", "8", "--memory", "2G"])
    cfg = config_from_args(args, parser)
    assert cfg.control_plane == "http://cp:1" and cfg.labels == {"role": "web", "zone": "a"}
    assert cfg.capacity == 8 and cfg.memory == 2 * 1024**3


def test_log_cap_from_flag_then_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_LOG_MAX_BYTES", "1M")
    args, parser = parse(["--control-plane", "http://x", "--token", "t"])
    assert config_from_args(args, parser).log_max_bytes == 1024 * 1024
    args, parser = parse(["--control-plane", "http://x", "--token", "t", "--log-max-bytes", "512K"])
    assert config_from_args(args, parser).log_max_bytes == 512 * 1024
