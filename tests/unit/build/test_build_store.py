"""ArtifactStore: content addressing, atomic writes, verification, GC; digests and manifests."""

from __future__ import annotations

import io
import os
import threading
import time
from pathlib import Path

import pytest

from conveyor.build.digest import (
    DigestError,
    DigestMismatchError,
    canonical_json,
    check_digest,
    manifest_digest,
    parse_manifest,
    sha256_bytes,
)
from conveyor.build.store import ArtifactStore
from conveyor.domain.wire import ImageConfig, ImageManifest, LayerRef


def test_put_has_open_size(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    digest = store.put(b"hello")
    assert digest == sha256_bytes(b"hello")
    assert store.has(digest) and store.size(digest) == 5
    with store.open(digest) as f:
        assert f.read() == b"hello"
    assert store.put(b"hello") == digest  # idempotent
    assert list(store.blobs()) == [digest]
    assert not store.has(sha256_bytes(b"other"))
    with pytest.raises(FileNotFoundError, match="not in the store"):
        store.open(sha256_bytes(b"other"))


def test_expected_digest_mismatch_stores_nothing(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    wrong = sha256_bytes(b"something else")
    with pytest.raises(DigestMismatchError, match="expected sha256:"):
        store.put(b"tampered", expected=wrong)
    assert list(store.blobs()) == [] and list((tmp_path / "tmp").iterdir()) == []


def test_a_write_that_dies_midway_leaves_no_half_blob(tmp_path: Path) -> None:
    class Dying(io.BytesIO):
        """A download that breaks after two chunks."""

        calls = 0

        def read(self, n: int | None = -1) -> bytes:
            self.calls += 1
            if self.calls > 2:
                raise OSError("connection reset")
            return b"data" * 1000

    store = ArtifactStore(tmp_path)
    with pytest.raises(OSError, match="connection reset"):
        store.put_stream(Dying())
    assert list(store.blobs()) == [] and list((tmp_path / "tmp").iterdir()) == []


@pytest.mark.parametrize("bad", ["../../etc/passwd", "sha256:abc", "md5:" + "0" * 32, "sha256:" + "G" * 64, ""])
def test_bad_digests_are_refused_before_touching_the_disk(tmp_path: Path, bad: str) -> None:
    store = ArtifactStore(tmp_path)
    with pytest.raises(DigestError, match="not a digest"):
        store.has(bad)
    with pytest.raises(DigestError):
        check_digest(bad)


def test_concurrent_puts_of_the_same_blob(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    data = os.urandom(200_000)
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(store.put(data))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1 and len(results) == 8
    with store.open(results[0]) as f:
        assert f.read() == data


def _image(store: ArtifactStore, *payloads: bytes) -> tuple[str, ImageManifest]:
    layers = [LayerRef(digest=store.put(p), size=len(p), role="app") for p in payloads]
    manifest = ImageManifest(layers=layers, config=ImageConfig(processes={"web": "python app.py"}))
    return store.put_manifest(manifest), manifest


def test_manifests_are_content_addressed(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    digest, manifest = _image(store, b"layer")
    assert digest == manifest_digest(manifest) == sha256_bytes(store.manifest_bytes(digest))
    assert store.get_manifest(digest) == manifest
    assert store.image_size(digest) == 5 + len(canonical_json(manifest))
    same = ImageManifest.model_validate_json(canonical_json(manifest))
    assert manifest_digest(same) == digest
    with pytest.raises(DigestMismatchError):
        parse_manifest(store.manifest_bytes(digest) + b" ", expected=digest)


def test_manifest_needs_its_layers(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    manifest = ImageManifest(layers=[LayerRef(digest=sha256_bytes(b"x"), size=1, role="app")])
    with pytest.raises(FileNotFoundError, match="not in the store"):
        store.put_manifest(manifest)
    assert list(store.manifests()) == []


def test_gc_keeps_what_kept_images_use(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    keep, keep_m = _image(store, b"shared", b"only-kept")
    drop, _ = _image(store, b"shared", b"only-dropped")
    orphan = store.put(b"orphan, young")
    (tmp_path / "tmp" / "blob-stale").write_bytes(b"half")
    report = store.gc({keep}, grace_s=0.0, now=time.time() + 1)
    assert report.removed_manifests == [drop]
    assert sorted(report.removed_blobs) == sorted([sha256_bytes(b"only-dropped"), orphan])
    assert report.removed_tmp == 1 and report.freed_bytes > 0
    assert store.has_manifest(keep) and all(store.has(layer.digest) for layer in keep_m.layers)

    young = store.put(b"a build's layer, manifest not written yet")
    report = store.gc({keep}, grace_s=3600.0)
    assert store.has(young) and report.removed_blobs == []
