"""Fixtures: ``platform`` (module-scoped ``conveyor up``), ``browser`` (Chromium, via
Playwright with its executable path), ``hello`` (an app with two images, seeded through the API)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from e2e_platform import CHROMIUM, CHROMIUM_ARGS, Platform, app_source, need_chromium


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    p = Platform(tmp_path_factory.mktemp("platform"))
    try:
        p.start()
        yield p
    finally:
        p.stop_all()


@pytest.fixture(scope="module")
def browser(platform: Platform) -> Iterator[Any]:
    need_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def hello(platform: Platform) -> str:
    """hello/production runs v1 (r1); v2 is built and runs in staging, ready to be deployed from the UI."""
    platform.cli("apps", "create", "hello")
    platform.deploy("hello", platform.build("hello", app_source(platform.root, "v1")), "production")
    platform.deploy("hello", platform.build("hello", app_source(platform.root, "v2")), "staging")
    return "hello"
