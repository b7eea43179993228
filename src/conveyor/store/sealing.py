"""Encryption at rest for values nobody may read back (config secrets): ``seal``, ``open``, ``rotate``.

Why Fernet through ``cryptography``'s ``MultiFernet``: authenticated encryption
(AES-128-CBC + HMAC-SHA256) from a well-kept library, and a key *ring*: the
first key seals, every key opens. That is the Kubernetes EncryptionConfiguration
model for rotation: ``rotate()`` puts a new key first while the old ones still
open, the caller re-seals every stored value (``seal(open(token))``), then
``forget_old()`` drops the old keys.

Where the keys live, newest first:

* ``CONVEYOR_SECRETS_KEY`` in the environment (comma-separated Fernet keys), for
  installs that keep keys in their own secret store; such a ring cannot be
  rotated from here (the error says to change the variable);
* else the file ``secrets.key`` in the data directory (one key a line, mode
  0600), created on first use.

The module is deliberately small and knows nothing of what it seals, so other
at-rest secrets (a certificate's private key) can share it.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

__all__ = ["ENV_VAR", "KEY_FILE", "Sealer", "SealingError"]

ENV_VAR = "CONVEYOR_SECRETS_KEY"
KEY_FILE = "secrets.key"


class SealingError(RuntimeError):
    """A key is missing or malformed, or a sealed value cannot be opened with any key of the ring."""


def _parse_keys(text: str, source: str) -> list[bytes]:
    keys = [k.strip().encode() for k in text.replace(",", "\n").splitlines() if k.strip()]
    if not keys:
        raise SealingError(f"{source} holds no key")
    for k in keys:
        try:
            Fernet(k)
        except (ValueError, TypeError):
            raise SealingError(f"{source}: not a Fernet key (32 url-safe base64-encoded bytes)") from None
    return keys


class Sealer:
    """A key ring: seals with its first key, opens with any."""

    def __init__(self, keys: list[bytes], path: Path | None = None) -> None:
        if not keys:
            raise SealingError("a sealer needs at least one key")
        self._keys = list(keys)
        self._path = path  # None: keys came from the environment, not rotatable here
        self._ring = MultiFernet([Fernet(k) for k in self._keys])

    @classmethod
    def for_data_dir(cls, data_dir: Path) -> Sealer:
        """The ring from ``CONVEYOR_SECRETS_KEY``, else from ``data_dir/secrets.key`` (made 0600 if absent)."""
        env = os.environ.get(ENV_VAR, "").strip()
        if env:
            return cls(_parse_keys(env, ENV_VAR))
        path = data_dir / KEY_FILE
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(Fernet.generate_key() + b"\n")
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise SealingError(f"{path} is readable by others (mode {mode:o}): run `chmod 600 {path}`")
        return cls(_parse_keys(path.read_text(), str(path)), path)

    @property
    def key_count(self) -> int:
        return len(self._keys)

    def seal(self, plain: bytes) -> bytes:
        """``plain`` encrypted and authenticated with the newest key."""
        return self._ring.encrypt(plain)

    def open(self, sealed: bytes) -> bytes:
        """The plain bytes of a sealed value; ``SealingError`` (never the value) when no key opens it."""
        try:
            return self._ring.decrypt(sealed)
        except InvalidToken:
            raise SealingError("a sealed value cannot be opened with any key: was the key file replaced?") from None

    def rotate(self) -> None:
        """Put a new key first (it seals from now on); the old keys still open. Persisted before use."""
        if self._path is None:
            raise SealingError(
                f"the keys come from ${ENV_VAR}: rotate by putting a new key first in it and restarting"
            )
        keys = [Fernet.generate_key(), *self._keys]
        self._write(keys)

    def forget_old(self) -> None:
        """Keep only the newest key: call once every stored value is re-sealed with it."""
        if self._path is not None and len(self._keys) > 1:
            self._write(self._keys[:1])

    def _write(self, keys: list[bytes]) -> None:
        assert self._path is not None
        tmp = self._path.with_name(f".{self._path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(b"".join(k + b"\n" for k in keys))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._path)
        self._keys = keys
        self._ring = MultiFernet([Fernet(k) for k in keys])
