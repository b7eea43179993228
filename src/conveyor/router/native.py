"""Is the router's request path running compiled (mypyc) or as plain Python, and is the compiled copy current?

setup.py compiles :data:`COMPILED_MODULES` with mypyc when it can (see its
docstring for why). An editable install puts each compiled module beside its
source, and Python imports the compiled one first: after an edit to, say,
``exchange.py`` the router would keep running the old code until the package
is rebuilt. :func:`status` notices that (compiled file older than its source),
the router prints it at start and reports it on ``/healthz``, and the test
suite fails on it, so a stale build is never mistaken for the code in front of
you. Rebuild with ``make install`` (or ``pip install -e .``).

:func:`prefer_sources` (``conveyor router --pure-python``) runs the plain
Python sources even where a compiled build is installed: to rule the build out
when chasing a bug, and to test that both behave the same.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.machinery import ModuleSpec
from types import ModuleType

#: The modules setup.py compiles (a test keeps the two lists equal).
COMPILED_MODULES = ("balancer", "exchange", "http1", "metrics", "proxy", "table", "upstream")


@dataclass(frozen=True)
class NativeStatus:
    """Which router modules are compiled, and which compiled ones are older than their source."""

    compiled: tuple[str, ...]
    pure: tuple[str, ...]
    stale: tuple[str, ...]

    @property
    def mode(self) -> str:
        """``compiled``, ``pure-python`` or ``partly compiled`` (the last one is a broken build)."""
        if not self.pure:
            return "compiled"
        return "pure-python" if not self.compiled else "partly compiled"

    def warning(self) -> str | None:
        """A sentence for a person when something needs fixing, else None."""
        if self.stale:
            return (
                f"the compiled router modules {', '.join(self.stale)} are older than their sources, so the router "
                "runs the old code: rebuild with `make install` (or `pip install -e .`)"
            )
        if self.mode == "partly compiled":
            return f"only some router modules are compiled ({', '.join(self.compiled)}): rebuild with `make install`"
        return None

    def as_dict(self) -> dict[str, object]:
        return {"mode": self.mode, "compiled": list(self.compiled), "stale": list(self.stale)}


def _is_compiled(path: str | None) -> bool:
    return bool(path) and not str(path).endswith(".py")


def _in_source_tree(path: str) -> bool:
    """An editable install (the compiled file sits in src/ of a checkout); an installed wheel's files
    all carry its install time and cannot be stale."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(path))))
    return os.path.exists(os.path.join(root, "setup.py"))


def status() -> NativeStatus:
    """Look at the imported router modules (importing them if needed)."""
    compiled: list[str] = []
    pure: list[str] = []
    stale: list[str] = []
    for name in COMPILED_MODULES:
        module = importlib.import_module(f"conveyor.router.{name}")
        path = getattr(module, "__file__", None)
        if not _is_compiled(path):
            pure.append(name)
            continue
        compiled.append(name)
        if _in_source_tree(str(path)):
            source = os.path.join(os.path.dirname(str(path)), f"{name}.py")
            if os.path.exists(source) and os.path.getmtime(source) > os.path.getmtime(str(path)) + 1.0:
                stale.append(name)
    return NativeStatus(tuple(compiled), tuple(pure), tuple(stale))


class _SourceFirst:
    """A meta-path finder that picks ``name.py`` over a compiled ``name.*.so`` for the compiled router modules."""

    names = frozenset(f"conveyor.router.{m}" for m in COMPILED_MODULES)

    @classmethod
    def find_spec(cls, name: str, path: Sequence[str] | None = None, target: ModuleType | None = None) -> ModuleSpec | None:
        if name not in cls.names:
            return None
        for entry in path or ():
            source = os.path.join(entry, f"{name.rsplit('.', 1)[1]}.py")
            if os.path.exists(source):
                return importlib.util.spec_from_file_location(name, source)
        return None


def prefer_sources() -> None:
    """Import the router's modules from their Python sources from now on (``--pure-python``).

    Must run before any of them is imported: a module already loaded compiled
    stays compiled, and mixing would be confusing, so that raises RuntimeError.
    """
    loaded = [n for n in sorted(_SourceFirst.names) if n in sys.modules]
    if loaded:
        raise RuntimeError(f"prefer_sources() after {', '.join(loaded)} was imported")
    if _SourceFirst not in sys.meta_path:
        sys.meta_path.insert(0, _SourceFirst)  # type: ignore[arg-type]
