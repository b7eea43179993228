"""Build the router's request path into C with mypyc, and fall back to pure Python when that cannot be done.

Why: every request crosses ``conveyor.router`` (proxy, exchange, upstream,
http1, balancer, table) some 25 Python calls deep. Compiled by mypyc, from the
same typed sources, the router spends about half the CPU per request (see
benchmarks/router.py); that is the difference between ~0.5x and ~0.7x of
HAProxy's throughput on one core. Nothing else is compiled: the control plane,
agent and CLI are not on a per-request path.

The compiled modules are optional. Without a C compiler or Python's headers,
or with ``CONVEYOR_PURE_PYTHON=1``, the install still succeeds and the router
runs the same code as plain Python (slower). ``conveyor.router.native`` says
which one is in use and whether the compiled copy is older than its source.

Everything else about the package (metadata, dependencies, data files) lives
in pyproject.toml.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
#: Kept in step with conveyor.router.native.COMPILED_MODULES (a test checks it).
COMPILED_MODULES = ("balancer", "exchange", "http1", "metrics", "proxy", "table", "upstream")
SOURCES = [f"src/conveyor/router/{name}.py" for name in COMPILED_MODULES]


def _warn(message: str) -> None:
    print(f"conveyor setup: {message}", file=sys.stderr)


class OptionalBuildExt(build_ext):
    """build_ext that gives up cleanly: no compiler means a pure-Python router, not a failed install."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as e:  # noqa: BLE001 - CCompilerError, missing Python.h, PlatformError...
            _warn(f"could not compile the router ({type(e).__name__}: {e}); it will run as pure Python (slower)")
            for path in self.get_outputs():
                if os.path.exists(path):
                    os.remove(path)
            self.extensions = []


def native_extensions() -> list:
    if os.environ.get("CONVEYOR_PURE_PYTHON") == "1":
        _warn("CONVEYOR_PURE_PYTHON=1: the router is not compiled")
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        _warn("mypyc is not installed; the router will run as pure Python (slower)")
        return []
    cwd = os.getcwd()
    os.chdir(ROOT)  # mypyc names modules from paths relative to here
    try:
        return mypycify(
            ["--ignore-missing-imports", "--follow-imports=silent", *SOURCES],
            opt_level="3",
            group_name="conveyor_router",
        )
    except (Exception, SystemExit) as e:  # noqa: BLE001 - mypy exits on a type error
        _warn(f"mypyc could not translate the router ({e}); it will run as pure Python (slower)")
        return []
    finally:
        os.chdir(cwd)


setup(ext_modules=native_extensions(), cmdclass={"build_ext": OptionalBuildExt})
