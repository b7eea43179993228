"""The web UI in a real Chromium against a real ``conveyor up``.

Sign in, open the app, press Deploy, watch the live deployment page reach its
end without a reload, press Rollback, and see the deploy lines on the metrics
chart. Screenshots of the main pages (desktop and phone width) are kept in
artifacts/screenshots/ for people to look at.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from conftest import SCREENSHOTS, Platform, app_source, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]
DONE = '#live [data-state="succeeded"], #live [data-state="failed"], #live [data-state="rolled_back"]'


def shot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def sign_in(page: Any, platform: Platform, token: str) -> None:
    page.goto(platform.url + "/apps/hello")
    assert "/login" in page.url  # not signed in yet: sent to the sign-in page, and back afterwards
    page.fill("#token", token)
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_url(re.compile(r"/apps/hello$"))


def confirm(page: Any, expect: str) -> None:
    dialog = page.locator("dialog#confirm")
    dialog.wait_for(state="visible")
    assert expect in page.locator("#confirm-text").inner_text()
    page.click("#confirm-ok")


def watch_to_the_end(page: Any) -> str:
    """Wait on the live page for a final state, and prove the page was never reloaded."""
    page.wait_for_url(re.compile(r"/deployments/\d+$"))
    page.evaluate("window.__sameDocument = true")
    page.wait_for_selector(DONE, timeout=120_000)
    assert page.evaluate("window.__sameDocument === true"), "the page reloaded instead of updating live"
    return str(page.locator("#live [data-state]").get_attribute("data-state"))


@pytest.fixture(scope="module")
def hello(platform: Platform) -> str:
    """hello/production runs v1 (r1); v2 is built and runs in staging, ready to be deployed from the UI."""
    platform.cli("apps", "create", "hello")
    platform.cli("deploy", "hello", "--source", str(app_source(platform.root, "v1")), "--wait")
    platform.cli("deploy", "hello", "--source", str(app_source(platform.root, "v2")), "--env", "staging", "--wait")
    return "hello"


def test_deploy_watch_rollback_and_see_markers(platform: Platform, browser: Any, hello: str) -> None:

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    sign_in(page, platform, platform.token)
    shot(page, "app-1280")

    # Deploy: the newest image (v2, running in staging) to production, with the confirmation first.
    form = page.locator("form[action='/apps/hello/deploy']")
    form.locator("select[name=strategy]").select_option("bluegreen")
    form.locator("button[type=submit]").click()
    confirm(page, "to production as a new release, strategy bluegreen")
    assert watch_to_the_end(page) == "succeeded"
    assert "r2 100%" in page.locator("#live").inner_text()
    shot(page, "deployment-1280")

    # Rollback: back to r1, announced in words before it happens.
    page.goto(platform.url + "/apps/hello")
    page.click("form[action='/apps/hello/rollback'] button")
    confirm(page, "from release 2 to release 1")
    assert watch_to_the_end(page) == "succeeded"
    assert "Rollback r2 → r1" in page.locator("#live").inner_text()

    # The metrics chart has a line at the deploy and one at the rollback, labelled with release and who.
    page.goto(platform.url + "/apps/hello/metrics?env=production&window=900")
    chart = page.locator(".chart[data-kind=rate]")
    chart.wait_for()
    wait_for(lambda: chart.locator("line.marker").count() >= 3, 30, "deploy markers on the chart")
    labels = chart.locator(".marker-label").all_text_contents()
    assert any("r2 · admin" in t for t in labels), labels
    assert any(t.startswith("↶ r1 · admin") for t in labels), labels
    shot(page, "metrics-1280")
    assert errors == []
    page.close()


def test_main_pages_at_desktop_and_phone_width(platform: Platform, browser: Any, hello: str) -> None:
    for width in (1280, 390):
        page = browser.new_page(viewport={"width": width, "height": 900 if width > 500 else 844})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(platform.url + "/login")
        page.fill("#token", platform.token)
        page.click("form[action='/login'] button[type=submit]")
        page.wait_for_url(platform.url + "/")
        for path, name in (("/", "overview"), ("/apps/hello", "app"), ("/deployments/1", "deployment"),
                           ("/hosts", "hosts"), ("/audit", "audit"), ("/dora?app=hello", "dora"),
                           ("/builds/1", "build"), ("/apps/hello/logs", "logs"),
                           ("/apps/hello/metrics", "metrics")):
            page.goto(platform.url + path)
            assert page.locator("h1").first.is_visible(), path
            if name == "build":
                page.wait_for_function("document.getElementById('log').textContent.length > 0")
            if name == "metrics":
                page.wait_for_selector(".chart svg")
            # nothing sticks out sideways on a phone
            overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
            assert overflow <= 1, f"{path} is {overflow}px wider than a {width}px screen"
            shot(page, f"{name}-{width}")
        assert errors == []
        page.close()


def test_a_wrong_token_is_refused_in_the_browser(platform: Platform, browser: Any) -> None:
    page = browser.new_page()
    page.goto(platform.url + "/login")
    page.fill("#token", "not-a-token")
    page.click("form[action='/login'] button[type=submit]")
    assert "not valid" in page.locator(".flash.bad").inner_text()
    page.close()
