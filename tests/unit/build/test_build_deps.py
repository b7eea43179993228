"""Dependency detection and the dependency-layer cache key (pure: no pip)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.build.deps import (
    DepsCache,
    DepsError,
    DepsSpec,
    _make_relocatable,
    detect_deps,
)
from conveyor.build.queue import BuildRequest


def _key(spec: DepsSpec | None) -> str:
    assert spec is not None
    return spec.cache_key("3.11", "linux-x86_64-cpython-311-glibc2.36")


def test_requirements_key_follows_requirements_not_code(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("humanize==4.17.0\n-r more.txt\n")
    (tmp_path / "more.txt").write_text("six==1.16.0\n")
    (tmp_path / "app.py").write_text("print(1)\n")
    spec = detect_deps(tmp_path)
    assert spec is not None and spec.kind == "requirements"
    assert spec.pip_args == ("-r", "requirements.txt") and set(spec.inputs) == {"requirements.txt", "more.txt"}
    before = _key(spec)
    (tmp_path / "app.py").write_text("print(2)\n")  # code-only change
    assert _key(detect_deps(tmp_path)) == before
    (tmp_path / "more.txt").write_text("six==1.17.0\n")  # an included file changed
    changed = _key(detect_deps(tmp_path))
    assert changed != before
    spec = detect_deps(tmp_path)
    assert spec is not None
    assert spec.cache_key("3.12", "linux-x86_64-cpython-311-glibc2.36") != changed
    assert spec.cache_key("3.11", "linux-aarch64-cpython-311-glibc2.36") != changed


def test_local_wheels_are_part_of_the_key(tmp_path: Path) -> None:
    (tmp_path / "wheels").mkdir()
    (tmp_path / "wheels" / "a-1.0-py3-none-any.whl").write_bytes(b"one")
    (tmp_path / "requirements.txt").write_text("--no-index\n--find-links wheels\na==1.0\n")
    before = _key(detect_deps(tmp_path))
    (tmp_path / "wheels" / "a-1.0-py3-none-any.whl").write_bytes(b"rebuilt")
    assert _key(detect_deps(tmp_path)) != before


def test_no_dependencies(tmp_path: Path) -> None:
    assert detect_deps(tmp_path) is None
    (tmp_path / "requirements.txt").write_text("# nothing yet\n\n")
    assert detect_deps(tmp_path) is None
    (tmp_path / "requirements.txt").unlink()
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "1"\n')
    assert detect_deps(tmp_path) is None


def test_pyproject_with_and_without_lock(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "1"\ndependencies = ["humanize>=4"]\n')
    spec = detect_deps(tmp_path)
    assert spec is not None and spec.kind == "pyproject" and spec.pip_args == ("humanize>=4",)
    (tmp_path / "uv.lock").write_text(
        'version = 1\n[[package]]\nname = "humanize"\nversion = "4.17.0"\nsource = { registry = "https://pypi.org/simple" }\n'
        '[[package]]\nname = "x"\nversion = "1"\nsource = { editable = "." }\n'
    )
    locked = detect_deps(tmp_path)
    assert locked is not None and locked.kind == "pyproject+uv.lock"
    assert locked.pip_args == ("--no-deps", "humanize==4.17.0")
    (tmp_path / "requirements.lock").write_text("humanize==4.17.0\n")
    assert detect_deps(tmp_path).kind == "pyproject+requirements.lock"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"requirements.txt": "-r missing.txt\n"}, "missing.txt is included"),
        ({"requirements.txt": "-r ../../outside.txt\n"}, "outside the source"),
        ({"pyproject.toml": "[project\n"}, "pyproject.toml is not valid TOML"),
        ({"pyproject.toml": '[project]\nname="x"\n', "poetry.lock": "[[package]\n"}, "poetry.lock is not valid TOML"),
    ],
)
def test_bad_declarations_say_what_to_fix(tmp_path: Path, files: dict[str, str], message: str) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(DepsError, match=message):
        detect_deps(tmp_path)


def test_console_scripts_lose_the_build_interpreter(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "tool").write_bytes(b"#!/work/main/.venv/bin/python3.11\nimport sys\n")
    (tmp_path / "bin" / "long").write_bytes(b"#!/bin/sh\n'''exec' \"/very/long/python\" \"$0\" \"$@\"\n' '''\nimport sys\n")
    (tmp_path / "bin" / "shell").write_bytes(b"#!/bin/sh\necho hi\n")
    (tmp_path / "x-1.dist-info").mkdir()
    (tmp_path / "x-1.dist-info" / "direct_url.json").write_text("{}")
    _make_relocatable(tmp_path)
    assert (tmp_path / "bin" / "tool").read_bytes() == b"#!/usr/bin/env python\nimport sys\n"
    assert (tmp_path / "bin" / "long").read_bytes() == b"#!/usr/bin/env python\nimport sys\n"
    assert (tmp_path / "bin" / "shell").read_bytes() == b"#!/bin/sh\necho hi\n"
    assert not (tmp_path / "x-1.dist-info" / "direct_url.json").exists()


def test_build_request_needs_exactly_one_source(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        BuildRequest().worker_args()
    with pytest.raises(ValueError, match="exactly one"):
        BuildRequest(source_dir=tmp_path, git_url="x").worker_args()
    with pytest.raises(ValueError, match="git_ref"):
        BuildRequest(git_url="https://example.invalid/x.git").worker_args()
    assert BuildRequest(git_url="u", git_ref="main", run_tests=False).worker_args() == [
        "--git",
        "u",
        "--ref",
        "main",
        "--no-tests",
    ]


def test_deps_cache_prunes_least_recently_used(tmp_path: Path) -> None:
    import os

    cache = DepsCache(tmp_path)
    for i, key in enumerate(["a", "b", "c"]):
        cache.path(key).write_bytes(b"layer")
        os.utime(cache.path(key), (1000 + i, 1000 + i))
    assert cache.lookup("a") is not None  # used now: the newest
    assert [p.name for p in cache.prune(keep=2)] == ["b.tar.gz"]
    assert cache.lookup("b") is None and cache.lookup("a") and cache.lookup("c")
