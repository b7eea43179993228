"""The platform's files are private from their first byte, and a user's client config is not overwritten."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from conveyor import config


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_the_data_dir_is_0700_and_the_admin_token_0600(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    real_open = config.os.open

    def spy(path: object, flags: int, m: int = 0o777) -> int:
        seen.append(m)
        return real_open(path, flags, m)  # type: ignore[arg-type]

    monkeypatch.setattr(config.os, "open", spy)
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    token = config.load_or_create_token(data, None)
    assert mode(data) == 0o700
    assert mode(data / "admin-token") == 0o600 and seen == [0o600]  # created 0600, never chmod-ed after
    assert config.load_or_create_token(data, None) == token
    with pytest.raises(ValueError, match="--admin-token: too short"):
        config.load_or_create_token(data, "short")
    with pytest.raises(ValueError, match="--admin-token: token too long"):
        config.load_or_create_token(data, "x" * 300)
    assert config.load_or_create_token(data, "a-long-enough-token") == "a-long-enough-token"
    assert mode(data / "admin-token") == 0o600


def test_client_config_of_another_platform_is_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "cfg" / "client.json"
    monkeypatch.setenv("CONVEYOR_CONFIG", str(path))
    assert config.save_client_config("http://a:1", "tok-a", None) == (path, "written")
    assert mode(path) == 0o600 and mode(path.parent) == 0o700
    assert config.save_client_config("http://a:1", "tok-a", None) == (path, "unchanged")
    assert config.save_client_config("http://b:2", "tok-b", None) == (path, "kept")
    assert json.loads(path.read_text())["token"] == "tok-a"
    assert config.save_client_config("http://b:2", "tok-b", None, replace=True) == (path, "written")
    assert json.loads(path.read_text())["token"] == "tok-b"
