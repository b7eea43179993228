"""Content addresses: ``sha256:<64 hex>`` digests and the canonical JSON of a manifest.

Everything Conveyor ships between processes (layers, image manifests) is named
by the sha256 of its bytes, so a receiver can verify what it got without
trusting the sender. This module is the one place that spells those rules, so
that the builder, the artifact store and the agent's image cache cannot drift
apart. It does no I/O beyond hashing a file it is given.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, BinaryIO

from conveyor.domain.wire import ImageManifest

_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
_CHUNK = 1 << 20


class DigestError(ValueError):
    """A string is not a digest, or content does not match the digest it claims."""


class DigestMismatchError(DigestError):
    """Content was fetched or stored under a digest it does not have."""

    def __init__(self, what: str, expected: str, actual: str) -> None:
        super().__init__(f"{what}: expected {expected}, got content with digest {actual}")
        self.expected = expected
        self.actual = actual


def is_digest(value: str) -> bool:
    """True if ``value`` is a well-formed ``sha256:<64 lower-case hex>`` digest."""
    return bool(_DIGEST_RE.match(value))


def check_digest(value: str) -> str:
    """Return ``value`` if it is a well-formed digest, else raise :class:`DigestError`.

    Digests become file names in the store and the image cache; validating them
    here is what keeps a request like ``../../etc/passwd`` from naming a path.
    """
    if not isinstance(value, str) or not _DIGEST_RE.match(value):
        raise DigestError(f"not a digest: {value!r} (expected 'sha256:' followed by 64 lower-case hex digits)")
    return value


def digest_hex(digest: str) -> str:
    """The 64 hex digits of a validated digest (used as a file name)."""
    return check_digest(digest).split(":", 1)[1]


def sha256_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sha256_stream(stream: BinaryIO) -> tuple[str, int]:
    """Digest and length of everything left in ``stream``."""
    h = hashlib.sha256()
    n = 0
    while chunk := stream.read(_CHUNK):
        h.update(chunk)
        n += len(chunk)
    return "sha256:" + h.hexdigest(), n


def sha256_file(path: Path) -> tuple[str, int]:
    """Digest and size of a file."""
    with open(path, "rb") as f:
        return sha256_stream(f)


def canonical_json(manifest: ImageManifest) -> bytes:
    """The canonical bytes of a manifest: sorted keys, no spaces, UTF-8, every field present.

    Every field is written (defaults included) so that two builds that agree on
    content agree on bytes whatever Pydantic considers "set".
    """
    return canonical_dumps(manifest.model_dump(mode="json"))


def canonical_dumps(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def manifest_digest(manifest: ImageManifest) -> str:
    """The image digest: sha256 of the manifest's canonical JSON."""
    return sha256_bytes(canonical_json(manifest))


def parse_manifest(data: bytes, expected: str | None = None) -> ImageManifest:
    """Parse manifest bytes, verifying them against ``expected`` first when given."""
    if expected is not None:
        actual = sha256_bytes(data)
        if actual != check_digest(expected):
            raise DigestMismatchError("image manifest", expected, actual)
    try:
        return ImageManifest.model_validate_json(data)
    except ValueError as exc:
        raise DigestError(f"image manifest is not valid: {exc}") from exc
