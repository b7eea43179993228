"""Fixtures for the router's integration tests (helpers live in router_helpers.py)."""

from __future__ import annotations

import re
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from router_helpers import HERE, PY, Backend, Procs, Router, read_first_line

@pytest.fixture
def procs() -> Iterator[Procs]:
    ps = Procs()
    try:
        yield ps
    finally:
        ps.cleanup()


@pytest.fixture
def backend(procs: Procs) -> Callable[..., Backend]:
    def start(name: str = "b1") -> Backend:
        p = procs.spawn([PY, str(HERE / "backend_app.py"), "0", name])
        line = read_first_line(p)
        return Backend(name, int(line.rsplit(" ", 1)[1]), p)

    return start


@pytest.fixture
def router_build() -> str:
    """Which router to start: the installed one (``installed``: compiled when the install could) or
    ``pure-python`` (its sources: ``--pure-python``). A test module overrides this to run both."""
    return "installed"


@pytest.fixture
def router(procs: Procs, tmp_path: Path, router_build: str) -> Callable[..., Router]:
    def start(table: dict[str, Any] | None = None, *flags: str, workers: int = 1) -> Router:
        tpath = tmp_path / f"table-{len(procs.procs)}.json"
        args = [PY, "-m", "conveyor.router", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--router-id", "r-test"]
        if table is not None:
            tpath.write_text(json.dumps(table))
            args += ["--table-file", str(tpath)]
        if workers > 1:
            args += ["--workers", str(workers)]
        args += list(flags)
        if router_build == "pure-python":
            args.append("--pure-python")
        errp = tmp_path / f"router-{len(procs.procs)}.err"
        p = procs.spawn(args, stderr=open(errp, "wb"))  # noqa: SIM115 - closed with the process
        line = read_first_line(p, timeout=30)
        m = re.search(r"listening on http://[^:]+:(\d+) admin http://[^:]+:(\d+)", line)
        assert m, line
        if router_build == "pure-python" and workers == 1:
            assert line.rstrip().endswith("(pure-python)"), line
        tls = re.search(r" tls https://[^:]+:(\d+)", line)
        return Router(int(m.group(1)), int(m.group(2)), p, tpath, errp, int(tls.group(1)) if tls else None)

    return start


