"""The package's public surface is exactly what __all__ says, and importing it stays light."""

from __future__ import annotations

import subprocess
import sys
from types import ModuleType

from conveyor import build


def test_all_is_exact_and_sorted() -> None:
    public = {name for name, value in vars(build).items() if not name.startswith("_") and not isinstance(value, ModuleType)}
    assert set(build.__all__) == public
    assert build.__all__ == sorted(build.__all__)


def test_importing_the_package_pulls_in_no_control_plane_code() -> None:
    code = "import sys, conveyor.build; print(sorted(m for m in sys.modules if m.startswith(('conveyor.api', 'conveyor.store', 'fastapi', 'sqlalchemy'))))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]"
