"""Fixtures of the web UI tests: ``anon`` (not signed in), ``web`` (admin), ``viewer`` (read-only)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.services import apps as app_service
from web_site import ADMIN, VIEWER, Site, make_site, sign_in


@pytest.fixture
def anon(tmp_path: Path) -> Iterator[Site]:
    yield from make_site(tmp_path)


@pytest.fixture
def web(tmp_path: Path) -> Iterator[Site]:
    for site in make_site(tmp_path):
        sign_in(site, ADMIN)
        with site.cp.engine.begin() as conn:
            app_service.create_app(conn, "hello", actor="admin")
        yield site


@pytest.fixture
def viewer(tmp_path: Path) -> Iterator[Site]:
    for site in make_site(tmp_path):
        sign_in(site, VIEWER)
        with site.cp.engine.begin() as conn:
            app_service.create_app(conn, "hello", actor="admin")
        yield site
