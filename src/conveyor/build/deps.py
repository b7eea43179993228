"""Python dependencies: what determines them, their cache key, and installing them.

:func:`detect_deps` looks at a source tree and returns a :class:`DepsSpec`: the
files whose content fully determines the installed dependencies (the
requirements files and what they include, or pyproject.toml's dependencies and
its lock file) and the ``pip install`` arguments to install them. The
dependency layer is cached under :meth:`DepsSpec.cache_key`, which hashes those
inputs with the Python version and platform, so a code-only change reuses the
layer (same bytes, same digest: nothing new to ship) and a changed requirement
does not. Detection and keys are pure; :func:`install_deps` runs pip.

Supported, in order of precedence:

* ``requirements.txt`` (with ``-r``/``-c`` includes and local ``--find-links``
  directories hashed into the key);
* ``pyproject.toml`` ``[project].dependencies``, pinned by a lock file when there
  is one: ``requirements.lock`` (pip-compile / ``uv pip compile`` output),
  ``pylock.toml`` (PEP 751), ``uv.lock`` or ``poetry.lock``. The project itself is
  not installed: its files are the app layer.
"""

from __future__ import annotations

import hashlib
import os
import platform as _platform
import re
import shutil
import sys
import sysconfig
import tempfile
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from conveyor.build.archive import ArchiveInfo, write_tree_archive_file
from conveyor.build.digest import canonical_dumps, sha256_file
from conveyor.build.proc import run_streaming
from conveyor.build.runtime import python_version, step_environ

#: Bump when the layout or the install flags of the deps layer change.
DEPS_FORMAT = 1

_INCLUDE_RE = re.compile(r"^\s*(-r|--requirement|-c|--constraint)[\s=]+(\S+)")
_FIND_LINKS_RE = re.compile(r"^\s*(-f|--find-links)[\s=]+(\S+)")


class DepsError(ValueError):
    """The dependency declaration cannot be used (bad TOML, missing include, ...)."""


@dataclass(frozen=True)
class DepsSpec:
    """What determines an image's Python dependencies and how to install them."""

    kind: str  # 'requirements' | 'pyproject' | 'pyproject+<lock file name>'
    inputs: dict[str, str] = field(default_factory=dict)  # relative path -> sha256 of content
    pip_args: tuple[str, ...] = ()

    def cache_key(self, python: str, platform: str) -> str:
        """Hex key of the dependency layer: inputs + install args + Python version + platform."""
        doc = {
            "format": DEPS_FORMAT,
            "kind": self.kind,
            "inputs": self.inputs,
            "pip_args": list(self.pip_args),
            "python": python,
            "platform": platform,
        }
        return hashlib.sha256(canonical_dumps(doc)).hexdigest()


def host_platform() -> str:
    """The platform part of the cache key: OS/arch, interpreter ABI and libc."""
    libc, libc_version = _platform.libc_ver()
    return f"{sysconfig.get_platform()}-{sys.implementation.cache_tag}-{libc}{libc_version}"


def _hash_file(path: Path) -> str:
    return sha256_file(path)[0]


def _requirement_lines(text: str) -> list[str]:
    lines = []
    for line in text.splitlines():
        line = line.split(" #", 1)[0].strip()
        if line and not line.startswith("#"):
            lines.append(line)
    return lines


def _collect_requirements(source_dir: Path, rel: str, inputs: dict[str, str], depth: int = 0) -> bool:
    """Hash ``rel`` and everything it includes into ``inputs``; True if it names any requirement."""
    path = source_dir / rel
    if depth > 10:
        raise DepsError(f"{rel}: requirement files include each other more than 10 levels deep")
    if not path.is_file():
        raise DepsError(f"{rel} is included by a requirements file but does not exist in the source")
    inputs[rel] = _hash_file(path)
    named = False
    for line in _requirement_lines(path.read_text(encoding="utf-8", errors="replace")):
        inc = _INCLUDE_RE.match(line)
        links = _FIND_LINKS_RE.match(line)
        if inc:
            child = os.path.normpath(os.path.join(os.path.dirname(rel), inc.group(2)))
            if child.startswith(".."):
                raise DepsError(f"{rel} includes {inc.group(2)}, which is outside the source")
            named |= _collect_requirements(source_dir, child, inputs, depth + 1) and inc.group(1) in ("-r", "--requirement")
        elif links:
            target = links.group(2)
            local = source_dir / target
            if "://" not in target and local.is_dir():
                for f in sorted(local.rglob("*")):
                    if f.is_file():
                        inputs[f.relative_to(source_dir).as_posix()] = _hash_file(f)
        elif not line.startswith("-"):
            named = True
    return named


def _pins_from_lock(lock: Path) -> list[str]:
    """``name==version`` for every third-party package in a TOML lock file."""
    try:
        doc = tomllib.loads(lock.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise DepsError(f"{lock.name} is not valid TOML: {exc}") from exc
    packages = doc.get("packages") or doc.get("package") or []
    pins: list[str] = []
    for pkg in packages:
        name, version = pkg.get("name"), pkg.get("version")
        source = pkg.get("source") or {}
        if isinstance(source, dict) and ("editable" in source or "virtual" in source or "directory" in source):
            continue  # the project itself (uv.lock)
        if pkg.get("category") == "dev":
            continue  # old poetry.lock dev dependencies
        if not name or not version:
            continue
        pins.append(f"{name}=={version}")
    return sorted(set(pins))


def detect_deps(source_dir: Path) -> DepsSpec | None:
    """The dependency declaration of a source tree, or ``None`` when it has no Python dependencies."""
    if (source_dir / "requirements.txt").is_file():
        inputs: dict[str, str] = {}
        if not _collect_requirements(source_dir, "requirements.txt", inputs):
            return None
        return DepsSpec("requirements", inputs, ("-r", "requirements.txt"))
    pyproject = source_dir / "pyproject.toml"
    if not pyproject.is_file():
        return None
    try:
        project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
    except tomllib.TOMLDecodeError as exc:
        raise DepsError(f"pyproject.toml is not valid TOML: {exc}") from exc
    declared = [str(d) for d in project.get("dependencies", [])]
    if (source_dir / "requirements.lock").is_file():
        inputs = {"pyproject.toml": _hash_file(pyproject)}
        _collect_requirements(source_dir, "requirements.lock", inputs)
        return DepsSpec("pyproject+requirements.lock", inputs, ("-r", "requirements.lock"))
    for lock_name in ("pylock.toml", "uv.lock", "poetry.lock"):
        lock = source_dir / lock_name
        if lock.is_file():
            pins = _pins_from_lock(lock)
            if not pins:
                return None
            inputs = {"pyproject.toml": _hash_file(pyproject), lock_name: _hash_file(lock)}
            return DepsSpec(f"pyproject+{lock_name}", inputs, ("--no-deps", *pins))
    if not declared:
        return None
    return DepsSpec("pyproject", {"pyproject.toml": _hash_file(pyproject)}, tuple(declared))


# ---------------------------------------------------------------------------
# Installing and caching
# ---------------------------------------------------------------------------


class DepsCache:
    """Dependency layers on disk, keyed by :meth:`DepsSpec.cache_key` (written atomically)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root) / "deps"
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        return self.root / f"{key}.tar.gz"

    def lookup(self, key: str) -> Path | None:
        p = self.path(key)
        if not p.is_file():
            return None
        try:
            os.utime(p)  # recently used: :meth:`prune` keeps it
        except FileNotFoundError:
            return None
        return p

    def prune(self, keep: int = 20) -> list[Path]:
        """Delete all but the ``keep`` most recently used layers; return what was deleted.

        A layer deleted here is only rebuilt (by pip) when next needed; images
        that use it keep their own copy in the artifact store.
        """
        layers = sorted(self.root.glob("*.tar.gz"), key=lambda p: p.stat().st_mtime, reverse=True)
        removed = layers[keep:]
        for p in removed:
            p.unlink(missing_ok=True)
        return removed


def install_deps(
    spec: DepsSpec,
    source_dir: Path,
    cache: DepsCache,
    *,
    log: Callable[[str], None],
    timeout_s: float = 1800.0,
) -> tuple[Path, ArchiveInfo | None]:
    """Return the deps layer archive for ``spec``, from the cache or by running pip.

    The second element is ``None`` on a cache hit (the layer was reused) and the
    new archive's info on a miss. pip runs with the source directory as its
    working directory so relative paths in requirement files work.
    """
    key = spec.cache_key(python_version(), host_platform())
    hit = cache.lookup(key)
    if hit is not None:
        log(f"deps: cache hit {key[:12]} ({spec.kind}), reusing the dependency layer")
        return hit, None
    log(f"deps: cache miss {key[:12]} ({spec.kind}), installing with pip")
    work = Path(tempfile.mkdtemp(prefix="pip-", dir=cache.root))
    try:
        target = work / "deps"
        argv = [
            sys.executable, "-m", "pip", "install",
            "--target", str(target),
            "--no-compile", "--no-input", "--disable-pip-version-check",
            "--no-warn-script-location", "--progress-bar", "off",
            *spec.pip_args,
        ]  # fmt: skip
        env = step_environ(pip=True)
        env["PIP_NO_INPUT"] = "1"
        code = run_streaming(argv, cwd=source_dir, env=env, log=log, timeout_s=timeout_s)
        if code != 0:
            raise DepsError(f"pip install failed with exit code {code} ({spec.kind}); see the build log above")
        target.mkdir(exist_ok=True)
        _make_relocatable(target)
        info = write_tree_archive_file(target, cache.path(key), excludes=("__pycache__", "*.pyc"))
        log(f"deps: layer {info.digest[:19]} {info.size} bytes, {info.files} entries")
        return cache.path(key), info
    finally:
        shutil.rmtree(work, ignore_errors=True)


_SHEBANG_RE = re.compile(rb"^#!.*python[0-9.]*(\s.*)?$")


def _make_relocatable(target: Path) -> None:
    """Drop what ties installed packages to this build's paths.

    Console scripts get ``#!/usr/bin/env python`` (the image's venv python is
    first on ``PATH``), not the absolute interpreter pip ran with, which would
    be Conveyor's own. ``direct_url.json`` records temp paths; it is dropped.
    """
    for f in target.glob("*.dist-info/direct_url.json"):
        f.unlink()
    bin_dir = target / "bin"
    if not bin_dir.is_dir():
        return
    for script in bin_dir.iterdir():
        if not script.is_file() or script.is_symlink():
            continue
        data = script.read_bytes()
        first, sep, rest = data.partition(b"\n")
        if first.startswith(b"#!/bin/sh") and rest.startswith(b"'''exec'"):
            _, _, rest = rest.partition(b"' '''\n")  # pip's long-path trampoline
            script.write_bytes(b"#!/usr/bin/env python\n" + rest)
        elif _SHEBANG_RE.match(first):
            script.write_bytes(b"#!/usr/bin/env python" + sep + rest)
