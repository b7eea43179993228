"""build_image end to end with real pip (local wheels, no network), real git, real test commands."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conveyor_build_helpers import app_with_local_dep, git, init_repo, write_app

from conveyor.build.builder import BuildError, build_image
from conveyor.build.sources import describe_directory
from conveyor.build.store import ArtifactStore

Log = tuple[list[str], Callable[[str], None]]


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "store")


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    d = tmp_path / "cache"
    d.mkdir()
    return d


@pytest.fixture
def log_lines() -> tuple[list[str], Callable[[str], None]]:
    lines: list[str] = []
    return lines, lines.append


def _quiet(_: str) -> None:
    pass


def test_same_source_gives_the_same_image_digest(tmp_path: Path) -> None:
    src = app_with_local_dep(tmp_path / "src", test="python app.py")
    first = build_image(src, ArtifactStore(tmp_path / "s1"), cache_dir=tmp_path / "c1", log=_quiet)
    # Another checkout of the same files, with other mtimes and modes, another store and a cold cache.
    copy = app_with_local_dep(tmp_path / "copy", test="python app.py")
    os.utime(copy / "app.py", (1_000, 1_000))
    (copy / "__pycache__").mkdir()
    (copy / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"junk")
    second = build_image(copy, ArtifactStore(tmp_path / "s2"), cache_dir=tmp_path / "c2", log=_quiet)
    assert first.image == second.image
    assert [layer.digest for layer in first.layers] == [layer.digest for layer in second.layers]
    assert [layer.role for layer in first.layers] == ["deps", "app"]
    assert first.manifest.config.python and first.manifest.config.processes == {"web": "python app.py"}
    assert first.test_status == "passed"


def test_code_only_change_reuses_deps_layer_changed_requirement_does_not(
    tmp_path: Path, store: ArtifactStore, cache_dir: Path, log_lines: Log
) -> None:
    lines, log = log_lines
    src = app_with_local_dep(tmp_path / "src", "1.0")
    cold = build_image(src, store, cache_dir=cache_dir, log=log)
    assert not cold.layers[0].cached and not cold.layers[0].reused
    assert any("Successfully installed minidep-1.0" in line for line in lines)

    lines.clear()
    (src / "app.py").write_text("import minidep\nprint('changed', minidep.VALUE)\n")
    warm = build_image(src, store, cache_dir=cache_dir, log=log)
    deps, app = warm.layers
    assert deps.role == "deps" and deps.cached and deps.reused and deps.digest == cold.layers[0].digest
    assert app.role == "app" and not app.reused and app.digest != cold.layers[1].digest
    assert warm.image != cold.image
    assert not any("Successfully installed" in line for line in lines), "pip ran on a code-only change"

    app_with_local_dep(src, "1.1")  # a changed requirement
    bumped = build_image(src, store, cache_dir=cache_dir, log=log)
    assert not bumped.layers[0].cached and bumped.layers[0].digest != cold.layers[0].digest
    assert any("Successfully installed minidep-1.1" in line for line in lines)


def test_failing_tests_keep_the_image_marked_failed(
    tmp_path: Path, store: ArtifactStore, cache_dir: Path, log_lines: Log
) -> None:
    lines, log = log_lines
    src = write_app(tmp_path / "src", test="python check.py", extra={"check.py": "print('boom in test')\nraise SystemExit(3)\n"})
    result = build_image(src, store, cache_dir=cache_dir, log=log)
    assert result.test_status == "failed" and result.test_exit_code == 3
    assert store.has_manifest(result.image)
    assert "boom in test" in lines
    assert result.to_dict()["test_status"] == "failed"


def test_test_stage_runs_against_the_image_with_a_free_port(tmp_path: Path, store: ArtifactStore, cache_dir: Path) -> None:
    src = app_with_local_dep(tmp_path / "src", test="python check.py", build="python build.py")
    (src / "build.py").write_text("import minidep\nopen('built.txt', 'w').write(minidep.VALUE)\n")
    (src / "check.py").write_text(
        "import os, socket, sys, minidep\n"
        "s = socket.socket()\n"
        "s.bind(('127.0.0.1', int(os.environ['PORT'])))\n"
        "assert sys.prefix.endswith('venv'), sys.prefix\n"
        "assert open('built.txt').read() == 'minidep 1.0'\n"
    )
    result = build_image(src, store, cache_dir=cache_dir, log=_quiet)
    assert result.test_status == "passed", result
    assert not (src / "built.txt").exists(), "the build command wrote into the developer's directory"
    assert "build" in result.durations and "test" in result.durations


@pytest.mark.parametrize(
    ("kind", "step"),
    [("build-command", "build"), ("pip", "deps"), ("manifest", "manifest")],
)
def test_a_build_that_fails_midway_leaves_no_half_image(
    tmp_path: Path, store: ArtifactStore, cache_dir: Path, kind: str, step: str
) -> None:
    src = app_with_local_dep(tmp_path / "src", build="python app.py" if kind != "build-command" else "exit 7")
    if kind == "pip":
        (src / "requirements.txt").write_text("--no-index\n--find-links wheels\nminidep==9.9\n")
    if kind == "manifest":
        (src / "conveyor.toml").write_text("[run\n")
    with pytest.raises(BuildError) as err:
        build_image(src, store, cache_dir=cache_dir, log=_quiet)
    assert err.value.step == step
    if kind == "build-command":
        assert "exited with code 7" in str(err.value)
    assert list(store.manifests()) == [] and list(store.blobs()) == []
    assert list((store.root / "tmp").iterdir()) == []
    assert not (cache_dir / "tmp").exists() or list((cache_dir / "tmp").iterdir()) == []
    if (cache_dir / "deps").exists():
        assert not [p for p in (cache_dir / "deps").iterdir() if p.name.startswith("pip-")]


def test_commit_info_and_dirty_flag(tmp_path: Path, store: ArtifactStore, cache_dir: Path) -> None:
    src = write_app(tmp_path / "src")
    assert describe_directory(src).sha is None
    init_repo(src)
    clean = build_image(src, store, cache_dir=cache_dir, log=_quiet)
    assert clean.commit.sha == git(src, "rev-parse", "HEAD") and not clean.commit.dirty
    assert clean.commit.author == "Ada Lovelace <ada@example.com>" and clean.commit.message == "first commit"
    assert clean.commit.time is not None and abs(clean.commit.time - time.time()) < 3600
    (src / "__pycache__").mkdir()
    (src / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"junk")
    assert not describe_directory(src).dirty  # not part of the image: not a change
    (src / "app.py").write_text("print('uncommitted')\n")
    dirty = build_image(src, store, cache_dir=cache_dir, log=_quiet)
    assert dirty.commit.dirty and dirty.commit.sha == clean.commit.sha and dirty.image != clean.image


def test_build_and_test_steps_do_not_see_the_builders_secrets(
    tmp_path: Path, store: ArtifactStore, cache_dir: Path, log_lines: Log, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines, log = log_lines
    monkeypatch.setenv("CONVEYOR_TOKEN", "s3cret-token")
    monkeypatch.setenv("PYTHONPATH", "/somewhere/else")
    show = "import os; print('token=' + os.environ.get('CONVEYOR_TOKEN', '-'), 'pp=' + os.environ.get('PYTHONPATH', '-'))"
    src = write_app(tmp_path / "src", build="python show.py", test="python show.py", extra={"show.py": show + "\n"})
    result = build_image(src, store, cache_dir=cache_dir, log=log)
    assert result.test_status == "passed"
    shown = [line for line in lines if line.startswith("token=")]
    assert len(shown) == 2 and all("s3cret" not in line and "/somewhere" not in line for line in shown), shown
