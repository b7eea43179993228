"""Turn a source directory into an image: deps layer, build command, app layer, tests, store.

The steps, all inside a private work directory under ``cache_dir/tmp``:

1. copy the source (minus ``.git``, ``.venv``, ``__pycache__``, ``*.pyc``, ...) to
   a staging directory, so neither the build command nor pip can touch the
   developer's files;
2. the Python dependencies (:mod:`conveyor.build.deps`): a cached layer when
   requirements/lock, Python version and platform are unchanged, else
   ``pip install --target``;
3. ``[build] command``, with the dependencies importable;
4. the app layer: a reproducible archive of the staging directory;
5. ``[test] command`` against the built image, unpacked exactly as an agent
   would unpack it (same files, same deps, same isolated Python, a free
   ``PORT``). A failing test does not fail the build: the image is kept and the
   result says ``test_status='failed'`` so that deploying it can be refused;
6. layers into the store, then the manifest. The image exists only once its
   manifest does, so a build that fails at any step leaves no image (a layer
   stored by then is unreferenced and garbage-collected like any other).

Nothing here depends on the process it runs in; :mod:`conveyor.build.worker`
runs it in a separate process for the build queue.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from conveyor.build.archive import (
    DEFAULT_EXCLUDES,
    iter_tree,
    safe_extract,
    write_tree_archive_file,
)
from conveyor.build.deps import DepsCache, DepsError, detect_deps, install_deps
from conveyor.build.digest import manifest_digest, sha256_file
from conveyor.build.proc import StepTimeout, free_port, run_streaming
from conveyor.build.runtime import (
    make_venv,
    python_version,
    step_environ,
    unpack_image,
)
from conveyor.build.sources import CommitInfo, describe_directory
from conveyor.build.store import ArtifactStore
from conveyor.domain.wire import ImageConfig, ImageManifest, LayerRef
from conveyor.sandbox import StepSandbox

TestStatus = Literal["passed", "failed", "none"]


class BuildError(RuntimeError):
    """A build failed; ``step`` says where ('manifest', 'deps', 'build', 'package', 'test', 'store')."""

    def __init__(self, step: str, message: str) -> None:
        super().__init__(f"build failed at step {step!r}: {message}")
        self.step = step
        self.message = message


@dataclass(frozen=True)
class LayerResult:
    digest: str
    size: int
    role: str
    reused: bool  # the store already had this layer before this build: nothing new to ship
    cached: bool = False  # deps only: taken from the dependency cache, pip did not run


@dataclass
class BuildResult:
    """The outcome of a build that produced an image (tests passed, failed or absent)."""

    image: str
    manifest: ImageManifest
    layers: list[LayerResult]
    commit: CommitInfo
    test_status: TestStatus
    app: str | None = None
    test_exit_code: int | None = None
    durations: dict[str, float] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return sum(layer.size for layer in self.layers)

    def to_dict(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "app": self.app,
            "manifest": self.manifest.model_dump(mode="json"),
            "layers": [vars(layer) for layer in self.layers],
            "size": self.size,
            "commit": self.commit.to_dict(),
            "test_status": self.test_status,
            "test_exit_code": self.test_exit_code,
            "durations": self.durations,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BuildResult:
        return cls(
            image=d["image"],
            app=d.get("app"),
            manifest=ImageManifest.model_validate(d["manifest"]),
            layers=[LayerResult(**layer) for layer in d["layers"]],
            commit=CommitInfo.from_dict(d.get("commit") or {}),
            test_status=d["test_status"],
            test_exit_code=d.get("test_exit_code"),
            durations=dict(d.get("durations") or {}),
        )


def load_app_manifest(source_dir: Path) -> Any:
    """The app's ``conveyor.toml`` (via :func:`conveyor.domain.manifest.load_manifest`)."""
    from conveyor.domain.manifest import load_manifest

    return load_manifest(source_dir)


def copy_source(src: Path, dest: Path) -> int:
    """Copy ``src`` to the new directory ``dest`` without the default excludes; return the file count."""
    dest.mkdir(parents=True)
    n = 0
    for rel, path in iter_tree(src, DEFAULT_EXCLUDES):
        st = path.lstat()
        target = dest / rel
        if stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(path), target)
        elif stat.S_ISDIR(st.st_mode):
            target.mkdir()
        elif stat.S_ISREG(st.st_mode):
            shutil.copyfile(path, target)
            os.chmod(target, 0o755 if st.st_mode & 0o111 else 0o644)
            n += 1
    return n


def build_image(
    source_dir: Path,
    store: ArtifactStore,
    *,
    cache_dir: Path,
    log: Callable[[str], None],
    commit: CommitInfo | None = None,
    run_tests: bool = True,
    build_timeout_s: float = 1800.0,
    sandbox: StepSandbox | None = None,
) -> BuildResult:
    """Build, test and store the image of ``source_dir``. Raises :class:`BuildError` on failure.

    ``commit`` describes the source's commit; by default it is read from the
    directory's git repository, if any (with ``dirty`` for uncommitted changes).
    ``sandbox``: run the app's own commands (``[build] command``, ``[test] command``) in it,
    as an unprivileged user who cannot read the control plane's data (the worker decides;
    None runs them as the worker's user).
    """
    started = time.monotonic()
    durations: dict[str, float] = {}
    source_dir = Path(source_dir).resolve()
    if not source_dir.is_dir():
        raise BuildError("manifest", f"source {source_dir} is not a directory")
    try:
        app = load_app_manifest(source_dir)
    except ValueError as exc:
        raise BuildError("manifest", str(exc)) from exc
    if commit is None:
        commit = describe_directory(source_dir)
    if commit.sha:
        log(f"==> source {source_dir} at commit {commit.sha[:12]}{' (dirty)' if commit.dirty else ''}")
    else:
        log(f"==> source {source_dir} (not a git repository)")
    (cache_dir / "tmp").mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="build-", dir=cache_dir / "tmp"))
    try:
        staging = work / "app"
        copy_source(source_dir, staging)

        # -- dependencies ---------------------------------------------------
        t = time.monotonic()
        layer_files: dict[str, Path] = {}
        layers: list[LayerRef] = []
        cached: dict[str, bool] = {}
        try:
            spec = detect_deps(staging)
        except DepsError as exc:
            raise BuildError("deps", str(exc)) from exc
        if spec is not None:
            log(f"==> dependencies ({spec.kind})")
            try:
                deps_path, info = install_deps(spec, staging, DepsCache(cache_dir), log=log, timeout_s=build_timeout_s)
            except (DepsError, StepTimeout) as exc:
                raise BuildError("deps", str(exc)) from exc
            digest, size = (info.digest, info.size) if info is not None else sha256_file(deps_path)
            layer_files[digest] = deps_path
            layers.append(LayerRef(digest=digest, size=size, role="deps"))
            cached[digest] = info is None
        else:
            log("==> no Python dependencies declared (requirements.txt / pyproject.toml)")
        durations["deps"] = time.monotonic() - t

        # -- build command ---------------------------------------------------
        if app.build_command:
            t = time.monotonic()
            log(f"==> build: {app.build_command}")
            env = _build_env(work, layer_files[layers[0].digest] if layers else None)
            try:
                code = _run_user_command(app.build_command, sandbox, work=work, cwd=staging, env=env, log=log,
                                         timeout_s=build_timeout_s)
            except StepTimeout as exc:
                raise BuildError("build", str(exc)) from exc
            if code != 0:
                raise BuildError("build", f"[build] command exited with code {code}: {app.build_command}")
            durations["build"] = time.monotonic() - t

        # -- app layer -------------------------------------------------------
        t = time.monotonic()
        try:
            app_info = write_tree_archive_file(staging, work / "app.tar.gz")
        except ValueError as exc:
            raise BuildError("package", str(exc)) from exc
        layer_files[app_info.digest] = work / "app.tar.gz"
        layers.append(LayerRef(digest=app_info.digest, size=app_info.size, role="app"))
        manifest = ImageManifest(
            layers=layers,
            config=ImageConfig(processes=app.processes, python=python_version() if spec is not None else None),
        )
        image = manifest_digest(manifest)
        log(f"==> app layer {app_info.digest[:19]} {app_info.size} bytes; image {image}")
        durations["package"] = time.monotonic() - t

        # -- tests -----------------------------------------------------------
        status: TestStatus = "none"
        test_code: int | None = None
        if app.test_command and run_tests:
            t = time.monotonic()
            status, test_code = _run_tests(app, image, manifest, layer_files, work, log, sandbox)
            durations["test"] = time.monotonic() - t
        elif app.test_command:
            log("==> tests skipped")

        # -- store: layers first, the manifest last ------------------------------
        reused = {ref.digest: store.has(ref.digest) for ref in layers}
        for ref in layers:
            store.put_file(layer_files[ref.digest], expected=ref.digest)
        stored = store.put_manifest(manifest)
        assert stored == image
        durations["total"] = time.monotonic() - started
        log(f"==> image {image} stored ({sum(r.size for r in layers)} bytes; tests: {status})")
        return BuildResult(
            image=image,
            app=app.name,
            manifest=manifest,
            layers=[
                LayerResult(
                    digest=r.digest, size=r.size, role=r.role, reused=reused[r.digest], cached=cached.get(r.digest, False)
                )
                for r in layers
            ],
            commit=commit,
            test_status=status,
            test_exit_code=test_code,
            durations=durations,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _build_env(work: Path, deps_archive: Path | None) -> dict[str, str]:
    """Environment for ``[build] command``: the image's isolated Python with its deps importable."""
    deps_dir = None
    if deps_archive is not None:
        deps_dir = work / "build-deps"
        safe_extract(deps_archive, deps_dir)
    make_venv(work / "build-venv", deps_dir)
    env = step_environ()
    bin_dirs = [str(work / "build-venv" / "bin")] + ([str(deps_dir / "bin")] if deps_dir else [])
    env["PATH"] = os.pathsep.join([*bin_dirs, env.get("PATH", "")])
    env["VIRTUAL_ENV"] = str(work / "build-venv")
    return env


def _run_tests(
    app: Any,
    image: str,
    manifest: ImageManifest,
    layer_files: dict[str, Path],
    work: Path,
    log: Callable[[str], None],
    sandbox: StepSandbox | None = None,
) -> tuple[TestStatus, int | None]:
    log(f"==> test: {app.test_command}")
    prepared = unpack_image(image, manifest, layer_files.__getitem__, work / "image")
    port = free_port()
    env = prepared.environ(step_environ(), PORT=str(port), HOST="127.0.0.1", CONVEYOR_TEST="1")
    timeout = float(getattr(getattr(app, "test", None), "timeout", 300.0) or 300.0)
    try:
        code = _run_user_command(app.test_command, sandbox, work=work, cwd=prepared.root, env=env, log=log,
                                 timeout_s=timeout)
    except StepTimeout as exc:
        log(f"==> tests FAILED: {exc}")
        return "failed", None
    if code == 0:
        log("==> tests passed")
        return "passed", 0
    log(f"==> tests FAILED (exit code {code}); the image is kept and marked failed")
    return "failed", code


def _run_user_command(command: str, sandbox: StepSandbox | None, *, work: Path, cwd: Path, env: dict[str, str],
                      log: Callable[[str], None], timeout_s: float) -> int:
    """Run one of the app's own commands: in the sandbox (``work`` handed to the build user and
    writable, ``HOME`` inside it, a private ``/tmp``), else as the worker's user."""
    if sandbox is None:
        return run_streaming(command, cwd=cwd, env=env, log=log, timeout_s=timeout_s, shell=True)
    home = work / "home"
    home.mkdir(exist_ok=True)
    argv = sandbox.command(command, work=work, cwd=cwd)
    return run_streaming(argv, cwd=cwd, env={**env, "HOME": str(home), "TMPDIR": "/tmp"}, log=log,
                         timeout_s=timeout_s)
