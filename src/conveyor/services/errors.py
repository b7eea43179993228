"""The errors the services raise, for the doors to map (404, 409, 422) without reaching into ``store``.

Each message says what is wrong and how to fix it; the API sends it as ``detail``,
the pages show it.
"""

from __future__ import annotations

from conveyor.domain.deploy_machine import IllegalTransition
from conveyor.domain.manifest import ManifestError
from conveyor.store.repo import Conflict, NotFound

__all__ = ["Conflict", "IllegalTransition", "ManifestError", "NotFound"]
