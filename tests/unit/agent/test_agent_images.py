"""Image providers: the directory fake and the ImageCache-backed one (against a mock transport)."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import httpx
import pytest

from conveyor.agent.images import DirectoryImageProvider, ImageCacheProvider, ImageError

DIGEST = "sha256:" + "c" * 64


def test_directory_provider(tmp_path: Path) -> None:
    provider = DirectoryImageProvider({DIGEST: tmp_path}, env={DIGEST: {"A": "1"}})
    assert provider.prepare(DIGEST) == (tmp_path, {"A": "1"})
    with pytest.raises(ImageError, match="not known"):
        provider.prepare("sha256:" + "d" * 64)
    with pytest.raises(ImageError, match="does not exist"):
        DirectoryImageProvider({DIGEST: tmp_path / "nope"}).prepare(DIGEST)


def test_directory_provider_from_file(tmp_path: Path) -> None:
    f = tmp_path / "map.json"
    f.write_text(json.dumps({DIGEST: {"root": str(tmp_path), "env": {"B": "2"}}}))
    assert DirectoryImageProvider.from_file(f).prepare(DIGEST) == (tmp_path, {"B": "2"})
    f.write_text("[1, 2]")
    with pytest.raises(ImageError, match="JSON object"):
        DirectoryImageProvider.from_file(f)
    f.write_text("{not json")
    with pytest.raises(ImageError, match="cannot read image map"):
        DirectoryImageProvider.from_file(f)
    f.write_text(json.dumps({DIGEST: 3}))
    with pytest.raises(ImageError, match="must be a directory path"):
        DirectoryImageProvider.from_file(f)


def _fake_imagecache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    calls: list[str] = []

    class PreparedImage:
        def __init__(self, root: Path, env: dict[str, str]) -> None:
            self.root, self.env = root, env

    class ImageCache:
        def __init__(self, root: Path) -> None:
            self.root = root

        def ensure(self, digest, fetch_manifest, fetch_blob):  # type: ignore[no-untyped-def]
            calls.append(digest)
            manifest = fetch_manifest(digest)
            part = self.root / "part"
            fetch_blob("sha256:" + "e" * 64, part)
            return PreparedImage(self.root / digest, {"M": manifest.decode(), "B": part.read_text()})

    module = types.ModuleType("conveyor.build.imagecache")
    module.ImageCache = ImageCache  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "conveyor.build.imagecache", module)
    return calls


def test_imagecache_provider_fetches_with_token(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls = _fake_imagecache(monkeypatch, tmp_path)
    seen: list[tuple[str, str | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.path, request.headers.get("authorization")))
        if request.url.path.startswith("/api/v1/images/"):
            return httpx.Response(200, content=b"manifest")
        return httpx.Response(200, content=b"blob")

    provider = ImageCacheProvider("http://cp:1/", "tok", tmp_path, transport=httpx.MockTransport(handler))
    root, env = provider.prepare(DIGEST)
    assert root == tmp_path / DIGEST and env == {"M": "manifest", "B": "blob"}
    assert calls == [DIGEST]
    assert seen == [(f"/api/v1/images/{DIGEST}/manifest", "Bearer tok"), ("/api/v1/blobs/sha256:" + "e" * 64, "Bearer tok")]
    provider.close()


def test_imagecache_provider_reports_fetch_failures(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _fake_imagecache(monkeypatch, tmp_path)
    provider = ImageCacheProvider(
        "http://cp:1", "tok", tmp_path, transport=httpx.MockTransport(lambda r: httpx.Response(404, text="no such image"))
    )
    with pytest.raises(ImageError, match="answered 404"):
        provider.prepare(DIGEST)

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    provider = ImageCacheProvider("http://cp:1", "tok", tmp_path, transport=httpx.MockTransport(refuse))
    with pytest.raises(ImageError, match="cannot fetch image"):
        provider.prepare(DIGEST)


def test_blob_fetch_failure_is_an_image_error(tmp_path: Path) -> None:
    provider = ImageCacheProvider("http://cp:1", "tok", tmp_path, transport=httpx.MockTransport(lambda r: httpx.Response(500, text="disk full")))
    with pytest.raises(ImageError, match="answered 500"):
        provider.fetch_blob("sha256:" + "e" * 64, tmp_path / "x")


def test_imagecache_provider_reports_a_missing_cache_module(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "conveyor.build.imagecache", None)  # import fails
    provider = ImageCacheProvider("http://cp:1", "tok", tmp_path)
    with pytest.raises(ImageError, match="image cache unavailable"):
        provider.prepare(DIGEST)
    provider.close()
