"""The agent's image cache: fetch by digest, verify, unpack once, run isolated from Conveyor."""

from __future__ import annotations

import io
import subprocess
import tarfile
import threading
from collections import Counter
from pathlib import Path

import pytest
from conveyor_build_helpers import app_with_local_dep, write_app

from conveyor.build.archive import ArchiveError, pack_directory
from conveyor.build.builder import BuildResult, build_image
from conveyor.build.digest import DigestMismatchError, canonical_json, sha256_bytes
from conveyor.build.imagecache import ImageCache
from conveyor.build.runtime import ImageError
from conveyor.build.store import ArtifactStore
from conveyor.domain.wire import ImageConfig, ImageManifest, LayerRef


@pytest.fixture
def built(tmp_path: Path) -> tuple[ArtifactStore, BuildResult]:
    store = ArtifactStore(tmp_path / "store")
    src = app_with_local_dep(tmp_path / "src")
    return store, build_image(src, store, cache_dir=tmp_path / "cache", log=lambda _: None)


class Fetcher:
    """Serves a store like the control plane would, counting what is asked for."""

    def __init__(self, store: ArtifactStore) -> None:
        self.store = store
        self.calls: Counter[str] = Counter()
        self.lock = threading.Lock()

    def manifest(self, digest: str) -> bytes:
        with self.lock:
            self.calls[digest] += 1
        return self.store.manifest_bytes(digest)

    def blob(self, digest: str, path: Path) -> None:
        with self.lock:
            self.calls[digest] += 1
        with self.store.open(digest) as f:
            path.write_bytes(f.read())


def _run(prepared_env: dict[str, str], cwd: Path, code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["python", "-c", code], cwd=cwd, env=prepared_env, check=False, capture_output=True, text=True, timeout=60
    )


def test_instances_see_their_deps_and_nothing_of_conveyor(tmp_path: Path, built: tuple[ArtifactStore, BuildResult]) -> None:
    store, result = built
    fetch = Fetcher(store)
    image = ImageCache(tmp_path / "agent").ensure(result.image, fetch.manifest, fetch.blob)
    assert (image.root / "app.py").is_file() and image.root.name == "app"

    # The host environment tries hard to leak Conveyor's packages into the instance.
    import fastapi

    leaky = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(fastapi.__file__).parent.parent), "HOME": str(tmp_path)}
    env = image.environ(leaky)
    ok = _run(env, image.root, "import sys, minidep; print(minidep.VALUE); print(sys.prefix)")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.splitlines() == ["minidep 1.0", str(image.root.parent / "venv")]
    leak = _run(env, image.root, "import fastapi")
    assert leak.returncode != 0 and "No module named 'fastapi'" in leak.stderr
    # The same holds when a caller only overlays image.env onto its own environment.
    overlay = {**leaky, **image.env}
    assert _run(overlay, image.root, "import fastapi").returncode != 0
    assert _run(overlay, image.root, "import minidep").returncode == 0
    # And the app runs as its process command would run it.
    run = subprocess.run(
        result.manifest.config.processes["web"],
        shell=True,
        cwd=image.root,
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0 and run.stdout == "minidep 1.0\n", run.stderr


def test_ensure_fetches_once_and_is_idempotent_under_concurrency(
    tmp_path: Path, built: tuple[ArtifactStore, BuildResult]
) -> None:
    store, result = built
    fetch = Fetcher(store)
    cache = ImageCache(tmp_path / "agent")
    roots: list[Path] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            roots.append(cache.ensure(result.image, fetch.manifest, fetch.blob).root)
        except BaseException as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [] and len(set(roots)) == 1 and len(roots) == 6
    assert fetch.calls[result.image] == 1 and all(fetch.calls[layer.digest] == 1 for layer in result.layers)
    # A second cache sharing nothing fetches again; the first one never does.
    cache.ensure(result.image, fetch.manifest, fetch.blob)
    assert fetch.calls[result.image] == 1
    assert cache.images() == [result.image]
    assert not [p for p in (tmp_path / "agent" / "images").iterdir() if p.name.startswith(".")]


def test_one_argument_fetch_blob_returning_bytes_is_accepted(tmp_path: Path, built: tuple[ArtifactStore, BuildResult]) -> None:
    store, result = built

    def blob(digest: str) -> bytes:
        with store.open(digest) as f:
            return f.read()

    image = ImageCache(tmp_path / "agent").ensure(result.image, store.manifest_bytes, blob)
    assert (image.root / "app.py").is_file()


def test_tampered_bytes_are_refused_and_nothing_is_kept(tmp_path: Path, built: tuple[ArtifactStore, BuildResult]) -> None:
    store, result = built
    cache = ImageCache(tmp_path / "agent")

    def evil_blob(digest: str, path: Path) -> None:
        with store.open(digest) as f:
            data = bytearray(f.read())
        data[-10] ^= 0xFF
        path.write_bytes(bytes(data))

    with pytest.raises(DigestMismatchError, match="expected sha256:"):
        cache.ensure(result.image, store.manifest_bytes, evil_blob)
    with pytest.raises(DigestMismatchError, match="image manifest"):
        cache.ensure(result.image, lambda d: store.manifest_bytes(d).replace(b"python app.py", b"python evil.py"), evil_blob)
    assert cache.images() == [] and list(cache.blobs.blobs()) == []
    assert not [p for p in (tmp_path / "agent").iterdir() if p.name.startswith("fetch-")]
    # The honest fetcher still works afterwards.
    fetch = Fetcher(store)
    assert cache.ensure(result.image, fetch.manifest, fetch.blob).root.is_dir()


def test_a_hostile_layer_with_a_correct_digest_is_refused(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "store")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("../../escape.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    layer = store.put(buf.getvalue())
    manifest = ImageManifest(layers=[LayerRef(digest=layer, size=len(buf.getvalue()), role="app")])
    image = store.put_manifest(manifest)
    assert image == sha256_bytes(canonical_json(manifest))
    cache = ImageCache(tmp_path / "agent")
    fetch = Fetcher(store)
    with pytest.raises(ArchiveError) as err:
        cache.ensure(image, fetch.manifest, fetch.blob)
    assert err.value.rule == "parent-traversal" and err.value.member == "../../escape.txt"
    assert cache.images() == [] and list((tmp_path / "agent" / "images").iterdir()) == []
    assert not list(tmp_path.rglob("escape.txt"))


def test_remove_and_gc(tmp_path: Path, built: tuple[ArtifactStore, BuildResult]) -> None:
    store, result = built
    cache = ImageCache(tmp_path / "agent")
    fetch = Fetcher(store)
    cache.ensure(result.image, fetch.manifest, fetch.blob)
    assert cache.gc({result.image}) == [] and cache.has(result.image)
    assert cache.gc(set()) == [result.image]
    assert not cache.has(result.image) and list(cache.blobs.blobs()) == []


def test_an_image_for_another_python_is_refused_clearly(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "store")
    layer = store.put(pack_directory(write_app(tmp_path / "src")))
    manifest = ImageManifest(
        layers=[LayerRef(digest=layer, size=store.size(layer), role="app")], config=ImageConfig(python="2.7")
    )
    image = store.put_manifest(manifest)
    cache = ImageCache(tmp_path / "agent")
    with pytest.raises(ImageError, match="needs Python 2.7; this host runs Python 3"):
        cache.ensure(image, store.manifest_bytes, lambda d: store.blob_path(d).read_bytes())
    assert cache.images() == [] and list((tmp_path / "agent" / "images").iterdir()) == []
