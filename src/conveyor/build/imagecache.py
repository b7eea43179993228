"""The agent's image cache: fetch what is missing by digest, verify it, unpack it once.

Layout under ``root``::

    blobs/        an ArtifactStore of verified layers (shared between images)
    images/<hex>/ one unpacked image: app/, deps/, venv/, manifest.json
    locks/<hex>   one lock file per image being prepared

:meth:`ImageCache.ensure` is idempotent and safe to call from several threads or
processes at once: a per-image ``flock`` serialises preparation, the unpack
happens in a temporary directory renamed into place at the end (so an image
directory that exists is complete), and every fetched byte is checked against
the digest that named it before it is used. The fetchers are plain callables so
the agent can pass its HTTP client and tests can pass an :class:`ArtifactStore`.
"""

from __future__ import annotations

import fcntl
import inspect
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from conveyor.build.archive import DEFAULT_LIMITS, ArchiveLimits
from conveyor.build.digest import DigestError, check_digest, digest_hex, parse_manifest
from conveyor.build.runtime import PreparedImage, prepared, unpack_image
from conveyor.build.store import ArtifactStore

FetchManifest = Callable[[str], bytes]
#: ``fetch_blob(digest, path)`` writes the layer to ``path``. A one-argument
#: ``fetch_blob(digest) -> bytes`` is accepted too (simpler for small layers).
FetchBlob = Callable[[str, Path], None] | Callable[[str], bytes]


def _arity(fn: Callable[..., object]) -> int:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 2
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return 2
    return sum(1 for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))


class ImageCache:
    """Unpacked images on one host, keyed by image digest."""

    def __init__(self, root: Path, *, limits: ArchiveLimits = DEFAULT_LIMITS) -> None:
        self.root = Path(root)
        self.blobs = ArtifactStore(self.root / "blobs")
        self._images = self.root / "images"
        self._locks = self.root / "locks"
        self._limits = limits
        for d in (self._images, self._locks):
            d.mkdir(parents=True, exist_ok=True)

    def image_dir(self, digest: str) -> Path:
        return self._images / digest_hex(digest)

    def has(self, digest: str) -> bool:
        return (self.image_dir(digest) / "manifest.json").is_file()

    def get(self, digest: str) -> PreparedImage | None:
        """The prepared image if it is already unpacked here, else ``None`` (no fetching)."""
        d = self.image_dir(digest)
        try:
            manifest = parse_manifest((d / "manifest.json").read_bytes(), expected=digest)
        except FileNotFoundError:
            return None
        return prepared(digest, d, manifest)

    def ensure(self, image_digest: str, fetch_manifest: FetchManifest, fetch_blob: FetchBlob) -> PreparedImage:
        """Make the image runnable here and return it.

        ``fetch_manifest(digest) -> bytes`` returns the manifest's canonical JSON;
        ``fetch_blob(digest, path)`` writes a layer's bytes to ``path``. Both are
        called only for what is missing, and their results are verified:
        a wrong byte raises :class:`DigestMismatchError` and nothing is kept.
        """
        check_digest(image_digest)
        ready = self.get(image_digest)
        if ready is not None:
            return ready
        with self._lock(image_digest):
            ready = self.get(image_digest)
            if ready is not None:
                return ready
            manifest = parse_manifest(fetch_manifest(image_digest), expected=image_digest)
            for layer in manifest.layers:
                if not self.blobs.has(layer.digest):
                    self._fetch_layer(layer.digest, fetch_blob)
                actual = self.blobs.size(layer.digest)
                if actual != layer.size:
                    raise DigestError(f"layer {layer.digest} is {actual} bytes but the image manifest says {layer.size}")
            return unpack_image(image_digest, manifest, self.blobs.blob_path, self.image_dir(image_digest), limits=self._limits)

    def _fetch_layer(self, digest: str, fetch_blob: FetchBlob) -> None:
        tmpdir = Path(tempfile.mkdtemp(prefix="fetch-", dir=self.root))
        try:
            part = tmpdir / "blob"
            if _arity(fetch_blob) >= 2:
                fetch_blob(digest, part)  # type: ignore[call-arg]
            else:
                data = fetch_blob(digest)  # type: ignore[call-arg]
                if not isinstance(data, bytes | bytearray):
                    raise TypeError(f"fetch_blob({digest!r}) returned {type(data).__name__}, expected bytes")
                part.write_bytes(data)
            self.blobs.put_file(part, expected=digest)  # verifies, then renames into place
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)

    @contextmanager
    def _lock(self, digest: str) -> Iterator[None]:
        with open(self._locks / digest_hex(digest), "a+b") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    def images(self) -> list[str]:
        return sorted("sha256:" + p.name for p in self._images.iterdir() if len(p.name) == 64)

    def remove(self, digest: str) -> bool:
        """Delete one unpacked image (its layers stay until :meth:`gc`). The caller must not be running it."""
        with self._lock(digest):
            d = self.image_dir(digest)
            if not d.exists():
                return False
            trash = Path(tempfile.mkdtemp(prefix=".trash-", dir=self._images))
            d.rename(trash / "image")  # atomic: the image vanishes at once, then is deleted
            shutil.rmtree(trash, ignore_errors=True)
            return True

    def gc(self, keep: set[str]) -> list[str]:
        """Remove unpacked images not in ``keep`` and layers none of the kept images use."""
        removed = [d for d in self.images() if d not in keep and self.remove(d)]
        used: set[str] = set()
        for d in keep:
            image = self.get(d)
            if image is not None:
                used.update(layer.digest for layer in parse_manifest((self.image_dir(d) / "manifest.json").read_bytes()).layers)
        for blob in list(self.blobs.blobs()):
            if blob not in used:
                self.blobs.blob_path(blob).unlink(missing_ok=True)
        return removed
