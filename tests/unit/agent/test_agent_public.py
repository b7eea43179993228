"""The package's public surface is exactly what it says."""

from __future__ import annotations

import inspect

import conveyor.agent


def test_all_is_exact() -> None:
    public = {name for name, value in vars(conveyor.agent).items() if not name.startswith("_") and not inspect.ismodule(value)}
    assert set(conveyor.agent.__all__) == public
    assert sorted(conveyor.agent.__all__) == conveyor.agent.__all__
    assert callable(conveyor.agent.main)  # the function, not the module of the same name
