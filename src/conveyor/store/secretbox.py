"""Encryption at rest for secrets the control plane keeps (certificate keys, app secrets).

Why Fernet (``cryptography``): authenticated symmetric encryption with a
timestamped, versioned token format, and ``MultiFernet`` for key rotation: the
first key encrypts, every key decrypts, so a new key can be put in front and
old tokens re-encrypted at leisure (:meth:`SecretBox.rotate`). A copy of the
database alone reveals nothing; the key lives apart from it.

Where the key comes from, first match wins:

* ``CONVEYOR_SECRET_KEYS`` in the environment: comma-separated Fernet keys,
  the first one encrypts (for fleets and rotation);
* the file ``secret.key`` in the data directory (one key per line, the first
  encrypts), created on first use with mode 0600. A file readable by others is
  refused: fix its mode.

Usage: ``box = SecretBox.for_data_dir(data_dir)``, ``token = box.encrypt("...")``,
``box.decrypt(token)``. A token the keys cannot open raises :class:`SecretError`.
"""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

ENV_VAR = "CONVEYOR_SECRET_KEYS"
KEY_FILE = "secret.key"


class SecretError(Exception):
    """A secret that cannot be opened, or keys that cannot be used; the message says what to fix."""


class SecretBox:
    """Encrypts and decrypts short strings with the control plane's keys."""

    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise SecretError("no encryption key: set CONVEYOR_SECRET_KEYS or let the data directory hold secret.key")
        try:
            self._fernet = MultiFernet([Fernet(k) for k in keys])
        except ValueError as e:
            raise SecretError(f"an encryption key is not a Fernet key (32 url-safe base64 bytes): {e}") from e

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode("ascii")

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode()
        except (InvalidToken, UnicodeError) as e:
            raise SecretError(
                "a stored secret cannot be decrypted with the keys in force: was secret.key or "
                "CONVEYOR_SECRET_KEYS replaced without keeping the old key after the new one?"
            ) from e

    def rotate(self, token: str) -> str:
        """``token`` re-encrypted with the first key (after a new key was put in front)."""
        try:
            return self._fernet.rotate(token.encode("ascii")).decode("ascii")
        except InvalidToken as e:
            raise SecretError("a stored secret cannot be decrypted with the keys in force") from e

    @staticmethod
    def generate_key() -> str:
        return Fernet.generate_key().decode("ascii")

    @classmethod
    def for_data_dir(cls, data_dir: Path, environ: dict[str, str] | None = None) -> SecretBox:
        """The box for this control plane: keys from the environment, else from ``data_dir/secret.key``."""
        env = os.environ if environ is None else environ
        given = env.get(ENV_VAR, "").strip()
        if given:
            return cls([k.strip().encode() for k in given.split(",") if k.strip()])
        return cls(_file_keys(Path(data_dir) / KEY_FILE))


_create_lock = threading.Lock()


def _file_keys(path: Path) -> list[bytes]:
    with _create_lock:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass  # another process made it first
            else:
                with os.fdopen(fd, "w") as f:
                    f.write(Fernet.generate_key().decode("ascii") + "\n")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise SecretError(f"{path} is readable by others (mode {mode:o}): run `chmod 600 {path}`")
    keys = [line.strip().encode() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    if not keys:
        raise SecretError(f"{path} holds no key: delete it to have a new one made (secrets encrypted with the old key are lost)")
    return keys
