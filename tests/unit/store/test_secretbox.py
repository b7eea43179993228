"""Encryption at rest (conveyor.store.secretbox): round trip, key file, environment keys, rotation."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from conveyor.store.secretbox import ENV_VAR, KEY_FILE, SecretBox, SecretError


def test_round_trip_and_a_0600_key_file_made_once(tmp_path: Path) -> None:
    box = SecretBox.for_data_dir(tmp_path, environ={})
    token = box.encrypt("-----BEGIN PRIVATE KEY-----\nabc\n")
    assert "PRIVATE KEY" not in token and "abc" not in token
    key_file = tmp_path / KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    first_key = key_file.read_text()
    again = SecretBox.for_data_dir(tmp_path, environ={})  # a restart reads the same key
    assert key_file.read_text() == first_key
    assert again.decrypt(token) == "-----BEGIN PRIVATE KEY-----\nabc\n"


def test_a_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    SecretBox.for_data_dir(tmp_path, environ={})
    (tmp_path / KEY_FILE).chmod(0o644)
    with pytest.raises(SecretError, match="readable by others .*chmod 600"):
        SecretBox.for_data_dir(tmp_path, environ={})


def test_another_key_cannot_open_it(tmp_path: Path) -> None:
    token = SecretBox([SecretBox.generate_key().encode()]).encrypt("s3cret")
    with pytest.raises(SecretError, match="cannot be decrypted"):
        SecretBox([SecretBox.generate_key().encode()]).decrypt(token)


def test_environment_keys_win_and_rotate(tmp_path: Path) -> None:
    old, new = SecretBox.generate_key(), SecretBox.generate_key()
    token = SecretBox.for_data_dir(tmp_path, environ={ENV_VAR: old}).encrypt("s3cret")
    assert not (tmp_path / KEY_FILE).exists()  # the environment's key was used, no file made
    rotated_box = SecretBox.for_data_dir(tmp_path, environ={ENV_VAR: f"{new}, {old}"})
    assert rotated_box.decrypt(token) == "s3cret"  # the old key still opens old tokens
    rotated = rotated_box.rotate(token)
    assert SecretBox([new.encode()]).decrypt(rotated) == "s3cret"  # now under the new key alone
    with pytest.raises(SecretError, match="not a Fernet key"):
        SecretBox.for_data_dir(tmp_path, environ={ENV_VAR: "not-a-key"})
