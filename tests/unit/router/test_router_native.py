"""The router's compiled build: what setup.py compiles, what the router reports, and CI's demand for it."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conveyor.router import native
from conveyor.router.native import NativeStatus

ROOT = Path(__file__).resolve().parents[3]


def test_setup_compiles_the_modules_native_reports_on() -> None:
    tree = ast.parse((ROOT / "setup.py").read_text())
    found = [
        ast.literal_eval(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "COMPILED_MODULES" for t in node.targets)
    ]
    assert found == [native.COMPILED_MODULES]
    for name in native.COMPILED_MODULES:
        assert (ROOT / "src" / "conveyor" / "router" / f"{name}.py").exists(), name


def test_modes_and_warnings() -> None:
    everything = native.COMPILED_MODULES
    assert NativeStatus(everything, (), ()).mode == "compiled"
    assert NativeStatus(everything, (), ()).warning() is None
    assert NativeStatus((), everything, ()).mode == "pure-python"
    assert NativeStatus((), everything, ()).warning() is None  # slower, but nothing to fix
    partial = NativeStatus(("http1",), everything[1:], ())
    assert partial.mode == "partly compiled" and "make install" in (partial.warning() or "")
    stale = NativeStatus(everything, (), ("exchange",))
    text = stale.warning() or ""
    assert "exchange" in text and "older than" in text and "make install" in text
    assert stale.as_dict() == {"mode": "compiled", "compiled": list(everything), "stale": ["exchange"]}


def test_the_router_under_test_is_compiled_and_current() -> None:
    """The suite tests what users run: the compiled router (pure Python is tested beside it, with
    ``--pure-python``, in tests/integration/router). Without a C compiler the install falls back to pure
    Python; that skips here, and fails under CI=true."""
    status = native.status()
    assert not status.stale, status.warning()
    if status.mode != "compiled":
        message = (
            f"the router is {status.mode}, not compiled by mypyc: install a C compiler and Python's headers "
            "(Debian packages gcc and python3-dev), then `make install`"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def test_prefer_sources_loads_the_python_files() -> None:
    code = (
        "from conveyor.router.native import prefer_sources, status\n"
        "prefer_sources()\n"
        "import conveyor.router.exchange as e\n"
        "print(status().mode, e.__file__.endswith('exchange.py'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True).stdout
    assert out.split() == ["pure-python", "True"]


def test_prefer_sources_refuses_once_a_module_is_loaded() -> None:
    code = "import conveyor.router.http1\nfrom conveyor.router.native import prefer_sources\nprefer_sources()\n"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode != 0 and "prefer_sources() after conveyor.router.http1 was imported" in run.stderr
