"""The sealing key ring: seal/open, the 0600 key file, the environment key, rotation."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from conveyor.store.sealing import ENV_VAR, KEY_FILE, Sealer, SealingError


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)


def test_seal_and_open_round_trip_with_a_0600_key_file(tmp_path: Path) -> None:
    s = Sealer.for_data_dir(tmp_path)
    token = s.seal(b"hunter2")
    assert b"hunter2" not in token
    assert s.open(token) == b"hunter2"
    assert (tmp_path / KEY_FILE).stat().st_mode & 0o777 == 0o600
    # the same data dir gives the same ring (a restarted control plane opens what it sealed)
    assert Sealer.for_data_dir(tmp_path).open(token) == b"hunter2"


def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    Sealer.for_data_dir(tmp_path)
    os.chmod(tmp_path / KEY_FILE, 0o644)
    with pytest.raises(SealingError, match="chmod 600"):
        Sealer.for_data_dir(tmp_path)


def test_a_foreign_token_fails_without_saying_anything_of_it(tmp_path: Path) -> None:
    other = Sealer([Fernet.generate_key()])
    token = other.seal(b"top-secret-value")
    with pytest.raises(SealingError) as err:
        Sealer.for_data_dir(tmp_path).open(token)
    assert "top-secret-value" not in str(err.value) and token.decode() not in str(err.value)


def test_rotate_keeps_old_tokens_open_then_forget_old_drops_the_old_key(tmp_path: Path) -> None:
    s = Sealer.for_data_dir(tmp_path)
    old = s.seal(b"v")
    s.rotate()
    assert s.key_count == 2
    assert Sealer.for_data_dir(tmp_path).open(old) == b"v"  # persisted before use
    new = s.seal(s.open(old))
    s.forget_old()
    reread = Sealer.for_data_dir(tmp_path)
    assert reread.key_count == 1 and reread.open(new) == b"v"
    with pytest.raises(SealingError):
        reread.open(old)
    assert (tmp_path / KEY_FILE).stat().st_mode & 0o777 == 0o600


def test_keys_from_the_environment_win_and_cannot_be_rotated_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    k1, k2 = Fernet.generate_key(), Fernet.generate_key()
    monkeypatch.setenv(ENV_VAR, f"{k1.decode()},{k2.decode()}")
    s = Sealer.for_data_dir(tmp_path)
    assert not (tmp_path / KEY_FILE).exists()
    assert Sealer([k1]).open(s.seal(b"x")) == b"x"  # the first key seals
    assert s.open(Sealer([k2]).seal(b"y")) == b"y"  # any key opens
    with pytest.raises(SealingError, match=ENV_VAR):
        s.rotate()
    monkeypatch.setenv(ENV_VAR, "not-a-key")
    with pytest.raises(SealingError, match="not a Fernet key"):
        Sealer.for_data_dir(tmp_path)
