"""Helpers for image build tests: tiny apps, local wheels (no network), git repos."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

PYTHON = sys.executable


def write_wheel(dest_dir: Path, name: str, version: str, module_src: str) -> Path:
    """A minimal pure-Python wheel for ``name`` (a single module), so pip needs no network."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}.py": module_src.encode(),
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: conveyor-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{dist}/RECORD,,")
    files[f"{dist}/RECORD"] = ("\n".join(record) + "\n").encode()
    wheel = dest_dir / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for path, data in files.items():
            z.writestr(zipfile.ZipInfo(path, date_time=(1980, 1, 1, 0, 0, 0)), data)
    return wheel


def write_app(
    root: Path,
    *,
    name: str = "demo",
    app_py: str = "print('hello')\n",
    test: str | None = None,
    build: str | None = None,
    requirements: str | None = None,
    extra: dict[str, str] | None = None,
) -> Path:
    """A small app directory with a conveyor.toml."""
    root.mkdir(parents=True, exist_ok=True)
    toml = f'[app]\nname = "{name}"\n\n[run]\nweb = "python app.py"\n'
    if build:
        toml += f"\n[build]\ncommand = '{build}'\n"
    if test:
        toml += f"\n[test]\ncommand = '{test}'\n"
    (root / "conveyor.toml").write_text(toml)
    (root / "app.py").write_text(app_py)
    if requirements is not None:
        (root / "requirements.txt").write_text(requirements)
    for rel, text in (extra or {}).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def app_with_local_dep(root: Path, version: str = "1.0", *, test: str | None = None, build: str | None = None) -> Path:
    """An app depending on ``minidep==version`` from a vendored wheel (``--no-index``)."""
    write_wheel(root / "wheels", "minidep", version, f"VALUE = 'minidep {version}'\n")
    return write_app(
        root,
        app_py="import minidep\nprint(minidep.VALUE)\n",
        requirements=f"--no-index\n--find-links wheels\nminidep=={version}\n",
        test=test,
        build=build,
    )


def git(cwd: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Ada Lovelace",
        "GIT_AUTHOR_EMAIL": "ada@example.com",
        "GIT_COMMITTER_NAME": "Ada Lovelace",
        "GIT_COMMITTER_EMAIL": "ada@example.com",
        "GIT_CONFIG_NOSYSTEM": "1",
        "HOME": str(cwd),
    }
    out = subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True)
    return out.stdout.strip()


def init_repo(root: Path) -> None:
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "first commit")
