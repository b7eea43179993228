"""Where instance images come from: one small interface and two implementations.

The supervisor only needs "give me a directory and an environment for this
digest". :class:`ImageCacheProvider` gets them from ``conveyor.build``'s image
cache (which fetches from the control plane, verifies every digest and unpacks
safely); :class:`DirectoryImageProvider` maps digests to existing directories,
for tests and for running an app from a checkout without building it.

``prepare`` is synchronous and may block (downloads, unpacking); the
supervisor calls it in a worker thread.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

import httpx

from conveyor.domain.wire import API_PREFIX


class ImageError(Exception):
    """The image cannot be prepared; the message says why and is shown to the user."""


class ImageProvider(Protocol):
    """Turns an image digest into ``(root directory, environment)`` ready to run."""

    def prepare(self, digest: str) -> tuple[Path, dict[str, str]]: ...


class DirectoryImageProvider:
    """Maps digests to directories that already exist (no fetching, no unpacking)."""

    def __init__(self, images: Mapping[str, Path | str], env: Mapping[str, Mapping[str, str]] | None = None) -> None:
        self._images = {digest: Path(root) for digest, root in images.items()}
        self._env = {digest: dict(e) for digest, e in (env or {}).items()}

    @classmethod
    def from_file(cls, path: Path) -> DirectoryImageProvider:
        """Load ``{"sha256:...": "/dir", ...}`` (or ``{"sha256:...": {"root": ..., "env": {...}}}``)."""
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ImageError(f"cannot read image map {path}: {exc}; expected JSON {{digest: directory}}") from exc
        if not isinstance(raw, dict):
            raise ImageError(f"image map {path} must be a JSON object {{digest: directory}}")
        images: dict[str, Path] = {}
        env: dict[str, dict[str, str]] = {}
        for digest, value in raw.items():
            if isinstance(value, str):
                images[digest] = Path(value)
            elif isinstance(value, dict) and isinstance(value.get("root"), str):
                images[digest] = Path(value["root"])
                env[digest] = {str(k): str(v) for k, v in dict(value.get("env") or {}).items()}
            else:
                raise ImageError(f"image map {path}: entry {digest!r} must be a directory path or {{'root': ..., 'env': {{...}}}}")
        return cls(images, env)

    def prepare(self, digest: str) -> tuple[Path, dict[str, str]]:
        root = self._images.get(digest)
        if root is None:
            raise ImageError(f"image {digest} is not known to this agent's image map")
        if not root.is_dir():
            raise ImageError(f"image {digest}: directory {root} does not exist")
        return root, dict(self._env.get(digest, {}))


class ImageCacheProvider:
    """Prepares images with :class:`conveyor.build.imagecache.ImageCache`, fetching from the control plane.

    ``conveyor.build`` is imported on first use so that the agent starts (and
    its other instances keep running) even if that import fails; the failure
    becomes the FAILED message of the instances that need an image.
    """

    def __init__(
        self,
        control_plane: str,
        token: str | None,
        cache_root: Path,
        *,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            base_url=control_plane.rstrip("/") + API_PREFIX,
            headers=headers,
            timeout=timeout,
            transport=transport,
        )
        self._root = cache_root
        self._cache: object | None = None
        self._lock = threading.Lock()
        self._opened: set[str] = set()  # images already opened up for sandboxed users
        self._digest_locks: dict[str, threading.Lock] = {}

    def _fetch(self, kind: str, digest: str, suffix: str = "") -> bytes:
        try:
            response = self._http.get(f"/{kind}/{digest}{suffix}")
        except httpx.HTTPError as exc:
            raise ImageError(f"cannot fetch {kind[:-1]} {digest} from the control plane: {exc!r}") from exc
        if response.status_code != 200:
            raise ImageError(
                f"cannot fetch {kind[:-1]} {digest}: control plane answered {response.status_code} {response.text[:200]!r}"
            )
        return response.content

    def fetch_manifest(self, digest: str) -> bytes:
        return self._fetch("images", digest, "/manifest")

    def fetch_blob(self, digest: str, path: Path) -> None:
        """Stream a layer to ``path`` (layers can be large; the cache verifies the digest)."""
        try:
            with self._http.stream("GET", f"/blobs/{digest}") as response:
                if response.status_code != 200:
                    response.read()
                    raise ImageError(
                        f"cannot fetch blob {digest}: control plane answered {response.status_code} {response.text[:200]!r}"
                    )
                with open(path, "wb") as f:
                    for block in response.iter_bytes(1 << 20):
                        f.write(block)
        except httpx.HTTPError as exc:
            raise ImageError(f"cannot fetch blob {digest} from the control plane: {exc!r}") from exc

    def prepare(self, digest: str) -> tuple[Path, dict[str, str]]:
        with self._lock:
            if self._cache is None:
                try:
                    from conveyor.build.imagecache import ImageCache
                except Exception as exc:  # noqa: BLE001 - any import failure is reported the same way
                    raise ImageError(f"image cache unavailable (conveyor.build.imagecache): {exc!r}") from exc
                self._cache = ImageCache(self._root)
            lock = self._digest_locks.setdefault(digest, threading.Lock())
        with lock:  # two instances of one image: prepare it once
            try:
                prepared = self._cache.ensure(digest, self.fetch_manifest, self.fetch_blob)  # type: ignore[attr-defined]
            except ImageError:
                raise
            except Exception as exc:  # noqa: BLE001 - the cache's errors become the instance's message
                raise ImageError(f"cannot prepare image {digest}: {exc}") from exc
            root = Path(prepared.root)
            if digest not in self._opened:
                open_for_instances(root.parent if root.name == "app" else root)
                self._opened.add(digest)
        return root, dict(prepared.env)

    def close(self) -> None:
        self._http.close()


def open_for_instances(image_dir: Path) -> None:
    """Make an unpacked image's directories traversable (0755) by the sandboxed app users.

    Unpacking goes through private temporary directories (0700); the image is safe to
    open up inside: the agent's data dir above it is 0700, and a sandbox binds only
    its own image.
    """
    for dirpath, _dirs, _files in os.walk(image_dir):
        st = os.stat(dirpath)
        if st.st_mode & 0o055 != 0o055:
            os.chmod(dirpath, (st.st_mode | 0o755) & 0o7777)
