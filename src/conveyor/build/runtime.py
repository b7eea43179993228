"""How an unpacked image becomes something a process can run in, isolated from Conveyor.

An image directory holds ``app/`` (the working directory), ``deps/`` (third-party
packages installed with ``pip install --target``) and ``venv/``: a tiny virtual
environment made at unpack time from the *base* interpreter (never Conveyor's
own venv), without pip and without system site-packages, whose only addition is
a ``.pth`` file naming ``deps/``. With ``venv/bin`` first on ``PATH``, ``python``
in an app's command sees the standard library, the image's dependencies and the
app, and nothing Conveyor itself has installed. Going the other way, nothing of
the app's environment enters Conveyor's interpreter.

The same code prepares images for the builder's test stage and for the agent's
image cache, so tests run against exactly what instances will run.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import venv
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from conveyor.build.archive import DEFAULT_LIMITS, ArchiveLimits, safe_extract
from conveyor.build.digest import canonical_json
from conveyor.domain.wire import ImageManifest

#: Layer roles and the sub-directory of the image each one is unpacked into.
ROLE_DIRS: dict[str, str] = {"deps": "deps", "app": "app"}

#: Variables that would let an instance's Python see something else than its image.
_PYTHON_LEAKS = (
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONSTARTUP",
    "PYTHONUSERBASE",
    "PYTHONEXECUTABLE",
    "VIRTUAL_ENV",
    "__PYVENV_LAUNCHER__",
    "CONDA_PREFIX",
    "PYTHONSAFEPATH",
)


class ImageError(RuntimeError):
    """An image cannot be prepared on this host (unknown layer role, wrong Python, ...)."""


def base_python() -> str:
    """The interpreter Conveyor's venv was made from (instances get a venv of their own from it)."""
    return getattr(sys, "_base_executable", None) or sys.executable


def python_version() -> str:
    """``'3.11'``: the Python version recorded in images that carry Python dependencies."""
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def clean_environ(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """A copy of ``base`` (default ``os.environ``) without anything that points Python elsewhere.

    Drops ``PYTHONPATH``/``PYTHONHOME``/``VIRTUAL_ENV``-like variables and the
    ``PATH`` entries of Conveyor's own virtual environment, if it runs in one.
    """
    env = dict(os.environ if base is None else base)
    for key in _PYTHON_LEAKS:
        env.pop(key, None)
    own_prefix = os.path.realpath(sys.prefix)
    in_venv = own_prefix != os.path.realpath(sys.base_prefix)
    parts = [p for p in env.get("PATH", os.defpath).split(os.pathsep) if p]
    if in_venv:
        parts = [p for p in parts if not _is_under(os.path.realpath(p), own_prefix)]
    env["PATH"] = os.pathsep.join(parts)
    return env


#: What a build step (pip, build command, test command) inherits from the
#: process that runs the build. Nothing else: the control plane's own settings
#: and secrets must not reach an app's build or test commands.
_STEP_VARS = ("PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM", "USER", "LOGNAME", "SHELL")
_STEP_PREFIXES = ("LC_",)
_PIP_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy", "SSL_CERT_FILE", "SSL_CERT_DIR")


def step_environ(base: Mapping[str, str] | None = None, *, pip: bool = False) -> dict[str, str]:
    """A minimal environment for a build step: locale, home, temp dir, ``PATH`` (cleaned).

    With ``pip=True`` also pip's own settings (``PIP_*``), proxies and CA bundles.
    """
    src = dict(os.environ if base is None else base)
    env = {k: v for k, v in src.items() if k in _STEP_VARS or k.startswith(_STEP_PREFIXES)}
    if pip:
        env.update({k: v for k, v in src.items() if k.startswith("PIP_") or k in _PIP_VARS})
    return clean_environ(env)


def _is_under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + os.sep)


@dataclass(frozen=True)
class PreparedImage:
    """An image unpacked on this host.

    ``root`` is the working directory for the process; ``env`` is what to set in
    the process environment: ``PATH`` (the image's venv first, then this host's
    ``PATH`` without Conveyor's own venv), ``VIRTUAL_ENV``, and empty
    ``PYTHONPATH``/``PYTHONHOME`` (Python ignores empty values, so whatever the
    host had set is neutralised). :meth:`environ` builds a whole environment.
    """

    digest: str
    root: Path
    env: dict[str, str] = field(default_factory=dict)
    python: Path | None = None
    path_prefix: tuple[str, ...] = ()

    def environ(self, base: Mapping[str, str] | None = None, **extra: str) -> dict[str, str]:
        """The full environment for a process of this image: cleaned ``base`` + :attr:`env` + ``extra``."""
        env = clean_environ(base)
        host_path = env.get("PATH", "")
        env.update(self.env)
        env["PATH"] = os.pathsep.join([*self.path_prefix, *([host_path] if host_path else [])])
        env.update(extra)
        return env


def make_venv(venv_dir: Path, deps_dir: Path | None) -> Path:
    """Create the instance venv (no pip, no system site-packages) pointing at ``deps_dir``.

    Returns the venv's ``python``. ``deps_dir`` is written as an absolute path
    into a ``.pth`` file, so it must be where the deps will stay.
    """
    builder = venv.EnvBuilder(system_site_packages=False, clear=False, symlinks=os.name != "nt", with_pip=False)
    builder.create(str(venv_dir))
    site = venv_dir / "lib" / f"python{python_version()}" / "site-packages"
    if deps_dir is not None:
        site.mkdir(parents=True, exist_ok=True)
        (site / "_conveyor_image_deps.pth").write_text(str(deps_dir) + "\n")
    for script in ("activate", "activate.csh", "activate.fish", "Activate.ps1"):
        (venv_dir / "bin" / script).unlink(missing_ok=True)  # they name the temp path; nobody uses them
    return venv_dir / "bin" / "python"


def prepared(digest: str, image_dir: Path, manifest: ImageManifest) -> PreparedImage:
    """The :class:`PreparedImage` for an image unpacked at ``image_dir`` (no I/O)."""
    has_deps = any(layer.role == "deps" for layer in manifest.layers)
    venv_bin = image_dir / "venv" / "bin"
    path = [str(venv_bin)]
    if has_deps:
        path.append(str(image_dir / "deps" / "bin"))
    host_path = clean_environ().get("PATH", "")
    env = {
        "PATH": os.pathsep.join([*path, *([host_path] if host_path else [])]),
        "VIRTUAL_ENV": str(image_dir / "venv"),
        "PYTHONNOUSERSITE": "1",
        "PYTHONPATH": "",
        "PYTHONHOME": "",
    }
    env.update(manifest.config.env)
    return PreparedImage(digest=digest, root=image_dir / "app", env=env, python=venv_bin / "python", path_prefix=tuple(path))


def unpack_image(
    digest: str,
    manifest: ImageManifest,
    blob_path: Callable[[str], Path],
    dest: Path,
    *,
    limits: ArchiveLimits = DEFAULT_LIMITS,
) -> PreparedImage:
    """Unpack an image's layers (already verified, found by ``blob_path``) into the new directory ``dest``.

    Everything happens in a temporary sibling that is renamed to ``dest`` at the
    end; on any error nothing is left. Raises :class:`ImageError` for an image
    this host cannot run and ``FileExistsError`` if ``dest`` already exists.
    """
    if manifest.config.python and manifest.config.python != python_version():
        raise ImageError(f"image {digest} needs Python {manifest.config.python}; this host runs Python {python_version()}")
    roles = [layer.role for layer in manifest.layers]
    unknown = sorted(set(roles) - set(ROLE_DIRS))
    if unknown or len(set(roles)) != len(roles) or "app" not in roles:
        raise ImageError(f"image {digest} has layer roles {roles}; expected one 'app' layer and at most one 'deps' layer")
    if dest.exists():
        raise FileExistsError(f"image directory {dest} already exists")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".unpack-{dest.name[:16]}-", dir=dest.parent))
    try:
        for layer in manifest.layers:
            safe_extract(blob_path(layer.digest), tmp / ROLE_DIRS[layer.role], limits=limits)
        has_deps = "deps" in roles
        make_venv(tmp / "venv", dest / "deps" if has_deps else None)
        (tmp / "manifest.json").write_bytes(canonical_json(manifest))
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return prepared(digest, dest, manifest)
