"""Fixtures of the integration tests; the harness itself is in cvy_platform.py."""

from cvy_platform import platform_factory, shared_platform  # noqa: F401  (fixtures)
