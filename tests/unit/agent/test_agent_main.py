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


def test_control_plane_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args([])
    assert "--control-plane" in capsys.readouterr().err


def test_log_cap_from_flag_then_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_LOG_MAX_BYTES", "1M")
    args, parser = parse(["--control-plane", "http://x", "--token", "t"])
    assert config_from_args(args, parser).log_max_bytes == 1024 * 1024
    args, parser = parse(["--control-plane", "http://x", "--token", "t", "--log-max-bytes", "512K"])
    assert config_from_args(args, parser).log_max_bytes == 512 * 1024
