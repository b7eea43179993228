"""Run the router from its Python sources although compiled (mypyc) copies sit beside them.

The router's request path is compiled when the install could (setup.py) and
runs as plain Python otherwise: both must behave the same. Tests start this
script instead of ``python -m conveyor.router`` to exercise the plain-Python
fallback on a machine where the compiled modules exist.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType

from conveyor.router.native import COMPILED_MODULES

_NAMES = {f"conveyor.router.{m}" for m in COMPILED_MODULES}


class SourceFirst:
    """A meta-path finder that picks ``name.py`` over a compiled ``name.*.so`` for the router's modules."""

    @classmethod
    def find_spec(cls, name: str, path: Sequence[str] | None = None, target: ModuleType | None = None) -> ModuleSpec | None:
        if name not in _NAMES:
            return None
        for entry in path or ():
            source = Path(entry) / f"{name.rsplit('.', 1)[1]}.py"
            if source.exists():
                return importlib.util.spec_from_file_location(name, source)
        return None


sys.meta_path.insert(0, SourceFirst)  # type: ignore[arg-type]

from conveyor.router.main import main  # noqa: E402 - after the finder, on purpose

raise SystemExit(main())
