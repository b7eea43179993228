"""``conveyor dora`` and ``conveyor ui`` against a real ``conveyor up`` (no browser needed)."""

from __future__ import annotations

import json

import httpx
import pytest

from e2e_platform import Platform

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def test_dora_json_and_table(platform: Platform, hello: str) -> None:
    rep = json.loads(platform.cli("dora", "--json").stdout)
    assert rep["app"] is None and rep["period"] == "30d"
    keys = rep["keys"]
    assert keys["deployment_frequency"]["samples"] == 1, rep  # production r1; staging is not production
    assert keys["change_failure_rate"]["value"] == 0.0 and keys["change_failure_rate"]["band"] == "elite"
    assert keys["lead_time"]["samples"] == 1 and 600 <= keys["lead_time"]["value"] < 900  # committed 10 min before
    assert keys["lead_time"]["band"] == "elite"
    table = platform.cli("dora", "hello", "--since", "7d").stdout
    for words in ("DORA keys", "hello", "Deployment", "Lead time", "Change", "Time to", "elite"):
        assert words in table, words


def test_dora_refuses_bad_input_with_a_reason(platform: Platform, hello: str) -> None:
    bad = platform.cli("dora", "--since", "soon", check=False)
    assert bad.returncode == 2 and "not understood" in bad.stderr
    unknown = platform.cli("dora", "nope", check=False)
    assert unknown.returncode == 3 and "not found" in unknown.stderr


def test_ui_prints_a_one_time_sign_in_link(platform: Platform, hello: str) -> None:
    url = platform.cli("ui", "--print", "/apps/hello").stdout.strip()
    assert url.startswith(platform.url + "/login?code=") and "token" not in url and platform.token not in url
    with httpx.Client(follow_redirects=False, timeout=10) as browser:
        first = browser.get(url)
        assert first.status_code == 303 and first.headers["location"] == "/apps/hello"
        page = browser.get(platform.url + "/apps/hello")
        assert page.status_code == 200 and "Release history" in page.text
    again = httpx.get(url, follow_redirects=False, timeout=10)
    assert again.status_code == 400 and "already used" in again.text
    bad = platform.cli("ui", "--print", "apps/hello", check=False)
    assert bad.returncode == 2 and "must start with '/'" in bad.stderr
