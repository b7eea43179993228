"""Flag validation: bad flags exit 2 with a message that says what to fix."""

from __future__ import annotations

import pytest

from conveyor.router.config import parse_hostport
from conveyor.router.main import build_parser, config_from_args, main


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--listen", "nope"], "--listen must be HOST:PORT"),
        (["--listen", "127.0.0.1:99999"], "--listen must be HOST:PORT"),
        (["--admin", "x:y"], "--admin must be HOST:PORT"),
        (["--workers", "0"], "--workers must be at least 1"),
        (["--head-timeout", "0"], "--head-timeout must be positive"),
        (["--control-plane", "ftp://x"], "--control-plane must be an http"),
        (["--max-head-bytes", "10"], "--max-head-bytes"),
    ],
)
def test_bad_flags(argv: list[str], match: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert match in capsys.readouterr().err


def test_missing_table_file_is_reported(tmp_path: object, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--listen", "127.0.0.1:0", "--admin", "off", "--table-file", "/nonexistent/t.json"]) == 2
    assert "/nonexistent/t.json does not exist" in capsys.readouterr().err


def test_defaults_and_env_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_TOKEN", "from-env")
    cfg = config_from_args(build_parser().parse_args([]))
    assert cfg.listen == ("127.0.0.1", 7780) and cfg.admin == ("127.0.0.1", 7781)
    assert cfg.token == "from-env" and cfg.workers == 1 and not cfg.reuse_port and cfg.metrics
    cfg = config_from_args(build_parser().parse_args(["--admin", "off", "--workers", "3", "--token", "t", "--no-metrics"]))
    assert cfg.admin is None and cfg.reuse_port and cfg.token == "t" and not cfg.metrics


def test_parse_hostport() -> None:
    assert parse_hostport(":80", "x") == ("127.0.0.1", 80)
    assert parse_hostport("[::1]:80", "x") == ("::1", 80)


def test_listen_tls_flags() -> None:
    cfg = config_from_args(build_parser().parse_args(["--listen-tls", "127.0.0.1:8443", "--tls-handshake-timeout", "2.5"]))
    assert cfg.listen_tls == ("127.0.0.1", 8443) and cfg.tls_handshake_timeout == 2.5
    assert config_from_args(build_parser().parse_args([])).listen_tls is None
    with pytest.raises(ValueError, match="--listen-tls needs a fixed port"):
        config_from_args(build_parser().parse_args(["--listen-tls", "127.0.0.1:0", "--workers", "2"]))
    with pytest.raises(ValueError, match="--listen-tls must be HOST:PORT"):
        config_from_args(build_parser().parse_args(["--listen-tls", "nonsense"]))
    with pytest.raises(ValueError, match="--tls-handshake-timeout must be positive"):
        config_from_args(build_parser().parse_args(["--tls-handshake-timeout", "0"]))
