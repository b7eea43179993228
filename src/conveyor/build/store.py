"""The artifact store: content-addressed blobs (layers) and image manifests on disk.

Layout under ``root``::

    blobs/sha256/<hex>        layer archives, named by the sha256 of their bytes
    manifests/sha256/<hex>    image manifests (canonical JSON), named likewise
    tmp/                      files being written

Every write goes to ``tmp/`` first, is hashed and fsynced there, and is renamed
into place only when its digest is known (and matches the one expected), so a
reader never sees half a blob and a crash leaves at most a temp file that
:meth:`ArtifactStore.gc` removes. Writing the same content twice is a no-op
apart from refreshing the blob's mtime, which protects a blob a build just
reused from a concurrent :meth:`~ArtifactStore.gc` (see ``grace_s``).

An image exists exactly when its manifest does; the builder writes layers first
and the manifest last, so a build that dies midway leaves no image.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from conveyor.build.digest import (
    DigestMismatchError,
    canonical_json,
    check_digest,
    digest_hex,
    parse_manifest,
)
from conveyor.domain.wire import ImageManifest

_CHUNK = 1 << 20


@dataclass
class GcReport:
    """What :meth:`ArtifactStore.gc` did."""

    removed_manifests: list[str] = field(default_factory=list)
    removed_blobs: list[str] = field(default_factory=list)
    freed_bytes: int = 0
    kept_manifests: int = 0
    kept_blobs: int = 0
    removed_tmp: int = 0


class ArtifactStore:
    """Blobs and manifests on a local filesystem, safe for concurrent writers (threads or processes)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._blobs = self.root / "blobs" / "sha256"
        self._manifests = self.root / "manifests" / "sha256"
        self._tmp = self.root / "tmp"
        for d in (self._blobs, self._manifests, self._tmp):
            d.mkdir(parents=True, exist_ok=True)

    # -- blobs ---------------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        """Where the blob lives (whether or not it exists yet)."""
        return self._blobs / digest_hex(digest)

    def has(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def size(self, digest: str) -> int:
        """Size in bytes; ``FileNotFoundError`` naming the digest when absent."""
        try:
            return self.blob_path(digest).stat().st_size
        except FileNotFoundError:
            raise FileNotFoundError(f"blob {digest} is not in the store at {self.root}") from None

    def open(self, digest: str) -> BinaryIO:
        """Open a blob for reading; ``FileNotFoundError`` naming the digest when absent."""
        try:
            return open(self.blob_path(digest), "rb")
        except FileNotFoundError:
            raise FileNotFoundError(f"blob {digest} is not in the store at {self.root}") from None

    def put(self, data: bytes, expected: str | None = None) -> str:
        """Store bytes; return their digest. ``expected`` (if given) must match."""
        return self.put_stream(io.BytesIO(data), expected)

    def put_file(self, path: Path, expected: str | None = None) -> str:
        """Store a copy of a file; return its digest."""
        with open(path, "rb") as f:
            return self.put_stream(f, expected)

    def put_stream(self, stream: BinaryIO, expected: str | None = None) -> str:
        """Store everything read from ``stream``; return its digest.

        With ``expected``, a mismatch raises :class:`DigestMismatchError` and
        stores nothing.
        """
        if expected is not None:
            check_digest(expected)
            if self.has(expected):
                self._touch(self.blob_path(expected))
                return expected
        h = hashlib.sha256()
        fd, tmp = tempfile.mkstemp(prefix="blob-", dir=self._tmp)
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := stream.read(_CHUNK):
                    h.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            digest = "sha256:" + h.hexdigest()
            if expected is not None and digest != expected:
                raise DigestMismatchError("blob", expected, digest)
            final = self.blob_path(digest)
            if final.is_file():
                os.unlink(tmp)
                self._touch(final)
            else:
                os.chmod(tmp, 0o644)
                os.replace(tmp, final)
            return digest
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def blobs(self) -> Iterator[str]:
        for p in self._blobs.iterdir():
            if len(p.name) == 64:
                yield "sha256:" + p.name

    # -- manifests -------------------------------------------------------------

    def manifest_path(self, digest: str) -> Path:
        return self._manifests / digest_hex(digest)

    def has_manifest(self, digest: str) -> bool:
        return self.manifest_path(digest).is_file()

    def put_manifest(self, manifest: ImageManifest) -> str:
        """Store a manifest (its layers must already be stored); return the image digest."""
        missing = [layer.digest for layer in manifest.layers if not self.has(layer.digest)]
        if missing:
            raise FileNotFoundError(f"cannot store image: layers {missing} are not in the store")
        data = canonical_json(manifest)
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        final = self.manifest_path(digest)
        if final.is_file():
            return digest
        fd, tmp = tempfile.mkstemp(prefix="manifest-", dir=self._tmp)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, final)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return digest

    def manifest_bytes(self, digest: str) -> bytes:
        """The manifest's canonical JSON (what ``GET /api/v1/images/{digest}`` serves)."""
        try:
            return self.manifest_path(digest).read_bytes()
        except FileNotFoundError:
            raise FileNotFoundError(f"image {digest} is not in the store at {self.root}") from None

    def get_manifest(self, digest: str) -> ImageManifest:
        return parse_manifest(self.manifest_bytes(digest), expected=digest)

    def manifests(self) -> Iterator[str]:
        for p in self._manifests.iterdir():
            if len(p.name) == 64:
                yield "sha256:" + p.name

    def image_size(self, digest: str) -> int:
        """Total bytes of an image: its layers plus its manifest."""
        m = self.get_manifest(digest)
        return sum(layer.size for layer in m.layers) + self.manifest_path(digest).stat().st_size

    # -- retention -------------------------------------------------------------

    def gc(self, keep: set[str], *, grace_s: float = 3600.0, now: float | None = None) -> GcReport:
        """Delete every image not in ``keep`` and every blob no kept image uses.

        Blobs (and temp files) younger than ``grace_s`` seconds are spared even
        when unreferenced: they may belong to a build that has written its
        layers but not yet its manifest.
        """
        for d in keep:
            check_digest(d)
        now = time.time() if now is None else now
        report = GcReport()
        referenced: set[str] = set()
        for digest in list(self.manifests()):
            if digest in keep:
                try:
                    referenced.update(layer.digest for layer in self.get_manifest(digest).layers)
                    report.kept_manifests += 1
                    continue
                except (ValueError, FileNotFoundError):
                    pass  # a corrupt manifest is not worth keeping
            path = self.manifest_path(digest)
            try:
                size = path.stat().st_size
                path.unlink()
            except FileNotFoundError:
                continue
            report.removed_manifests.append(digest)
            report.freed_bytes += size
        for digest in list(self.blobs()):
            path = self.blob_path(digest)
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            if digest in referenced or now - st.st_mtime < grace_s:
                report.kept_blobs += 1
                continue
            path.unlink(missing_ok=True)
            report.removed_blobs.append(digest)
            report.freed_bytes += st.st_size
        for tmp in self._tmp.iterdir():
            try:
                if now - tmp.stat().st_mtime >= grace_s:
                    tmp.unlink()
                    report.removed_tmp += 1
            except FileNotFoundError:
                continue
        return report

    @staticmethod
    def _touch(path: Path) -> None:
        try:
            os.utime(path)
        except FileNotFoundError:
            pass
