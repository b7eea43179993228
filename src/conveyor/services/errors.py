"""The errors the services raise, for the doors to map (401, 403, 404, 409, 422, 429, 503) without reaching into ``store``.

Each message says what is wrong and how to fix it; the API sends it as ``detail``,
the pages show it.
"""

from __future__ import annotations

from conveyor.domain.deploy_machine import IllegalTransition
from conveyor.domain.manifest import ManifestError
from conveyor.store.repo import Conflict, NotFound

__all__ = ["Conflict", "Forbidden", "IllegalTransition", "ManifestError", "NotFound", "RegistryFull", "SignInRefused"]


class SignInRefused(Exception):
    """A credential not accepted: ``status`` 401 (``message`` says why) or 429 (``retry_after`` seconds)."""

    def __init__(self, status: int, message: str, retry_after: float = 0.0) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


class Forbidden(Exception):
    """A valid credential that may not do this (403); the message says what would be allowed."""


class RegistryFull(Exception):
    """A bounded registry (the routers') is full (503): retry once silent entries expire."""
