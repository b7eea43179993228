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
from playwright.sync_api import expect

from e2e_platform import SCREENSHOTS, Platform, wait_for

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

    # Rollback: back to r1, announced in words before it happens, and done with the keyboard alone.
    page.goto(platform.url + "/apps/hello")
    page.locator("form[action='/apps/hello/rollback'] button").focus()
    page.keyboard.press("Enter")
    page.locator("dialog#confirm").wait_for(state="visible")
    assert "from release 2 to release 1" in page.locator("#confirm-text").inner_text()
    assert page.evaluate("document.activeElement.value") == "cancel"  # the safe choice has the focus
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    assert watch_to_the_end(page) == "succeeded"
    assert "Rollback r2 → r1" in page.locator("#live").inner_text()

    # The metrics chart has a line at the deploy and one at the rollback, labelled with release and who.
    page.goto(platform.url + "/apps/hello/metrics?env=production&window=900")
    chart = page.locator(".chart[data-kind=rate]")
    chart.wait_for()
    wait_for(lambda: chart.locator("line.marker").count() >= 3, 30, what="deploy markers on the chart")
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
                expect(page.locator("#log")).not_to_be_empty()
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


def metrics_fixture(now: float) -> dict[str, Any]:
    """The metrics API's shape: r1 serves the first 40 minutes, r2 (with more errors) the last 30."""
    step = 12
    series: dict[str, list[dict[str, Any]]] = {"1": [], "2": []}
    for i in range(300):
        t = now - 3600 + i * step
        if t < now - 1200:
            series["1"].append({"t": t, "requests": 120, "errors": 1, "p50": 0.020, "p99": 0.080})
        if t >= now - 1800:
            series["2"].append({"t": t, "requests": 240, "errors": 12, "p50": 0.025, "p99": 0.300})
    markers = [{"t": now - 1800, "kind": "deployed", "release": 2, "actor": "grace", "message": "switched", "deployment": 77},
               {"t": now - 600, "kind": "rollback", "release": 1, "actor": "linus", "message": "rolled back", "deployment": 78}]
    # 2 instances, then 4 (count 4, 3 ready first) from the deploy on
    instances = {"web": [{"t": now - 3600, "ready": 2, "count": 2}, {"t": now - 1800, "ready": 3, "count": 4},
                         {"t": now - 1790, "ready": 4, "count": 4}]}
    return {"app": "hello", "env": "production", "window": 3600, "resolution": 1, "step": step,
            "series": series, "markers": markers, "instances": instances}


def test_metrics_chart_draws_series_markers_and_hover_values(platform: Platform, browser: Any, hello: str) -> None:
    import json
    import time

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(platform.url + "/login")
    page.fill("#token", platform.token)
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_url(platform.url + "/")
    body = json.dumps(metrics_fixture(time.time()))
    page.route("**/api/v1/apps/hello/metrics?*", lambda route: route.fulfill(
        status=200, content_type="application/json", body=body))
    page.goto(platform.url + "/apps/hello/metrics?env=production&window=3600")
    rate = page.locator(".chart[data-kind=rate]")
    rate.locator("path.series").first.wait_for(state="attached")  # a flat line has no height: "hidden"
    assert rate.locator("path.series[data-release='1']").count() == 1
    assert rate.locator("path.series[data-release='2']").count() == 1
    labels = rate.locator(".marker-label").all_text_contents()
    assert "▲ r2 · grace" in labels and "↶ r1 · linus" in labels
    axis = " ".join(rate.locator("text.axis").all_text_contents())
    assert "req/s" in axis
    assert "20 req/s" in axis or "20" in axis  # 240 requests per 12 s step = 20 req/s at the top
    errors_axis = " ".join(page.locator(".chart[data-kind=errors] text.axis").all_text_contents())
    assert "%" in errors_axis
    # hover over the last quarter: both releases' values appear, with units
    rate.scroll_into_view_if_needed()
    box = rate.locator("svg").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.75, box["y"] + box["height"] * 0.6)
    tip = rate.locator(".tip")
    tip.wait_for(state="visible")
    assert "r2: 20.0 req/s" in tip.inner_text()
    p99 = page.locator(".chart[data-kind=p99]")
    p99.scroll_into_view_if_needed()  # below the fold since the capacity chart comes first
    pbox = p99.locator("svg").bounding_box()
    page.mouse.move(pbox["x"] + pbox["width"] * 0.75, pbox["y"] + pbox["height"] * 0.6)
    assert "r2: 300 ms" in p99.locator(".tip").inner_text()
    # instance count against load: the ready instances as steps, the load, the deploy markers
    capacity = page.locator(".chart[data-kind=capacity]")
    assert capacity.locator("path.series.instances[data-process='web']").count() == 1
    assert capacity.locator("path.series.count[data-process='web']").count() == 1
    assert capacity.locator("path.series.load").count() == 1
    assert "▲ r2 · grace" in capacity.locator(".marker-label").all_text_contents()
    assert "req/s" in " ".join(capacity.locator("text.load-axis").all_text_contents())
    capacity.scroll_into_view_if_needed()
    cbox = capacity.locator("svg").bounding_box()
    page.mouse.move(cbox["x"] + cbox["width"] * 0.75, cbox["y"] + cbox["height"] * 0.6)
    tip = capacity.locator(".tip").inner_text()
    assert "web: 4 ready (count 4)" in tip and "load: 20.0 req/s" in tip, tip
    shot(page, "metrics-with-traffic-1280")
    page.close()


def test_canary_pause_and_abort_from_the_live_page(platform: Platform, browser: Any, hello: str) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(platform.url + "/login?next=/apps/hello")
    page.fill("#token", platform.token)
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_url(re.compile(r"/apps/hello$"))
    form = page.locator("form[action='/apps/hello/deploy']")
    form.locator("select[name=strategy]").select_option("canary")
    form.locator("button[type=submit]").click()
    confirm(page, "strategy canary")
    page.wait_for_url(re.compile(r"/deployments/\d+$"))
    page.evaluate("window.__sameDocument = true")
    page.wait_for_selector('#live [data-state="canary"]', timeout=60_000)
    assert "10% of traffic" in page.locator("#live").inner_text()
    page.click('#live button[data-action="pause"]')
    confirm(page, "hold the current traffic split")
    page.wait_for_selector('#live [data-state="paused"]', timeout=30_000)
    page.click('#live button[data-action="abort"]')
    confirm(page, "move all traffic back to release")
    page.wait_for_selector('#live [data-state="rolled_back"]', timeout=60_000)
    assert page.evaluate("window.__sameDocument === true")
    text = page.locator("#live").inner_text()
    assert "rolled back" in text and "Why:" in text
    shot(page, "deployment-canary-aborted-1280")
    assert errors == []
    page.close()


def test_metrics_page_draws_real_traffic_through_the_router(platform: Platform, browser: Any, hello: str) -> None:
    import httpx

    with httpx.Client(timeout=10) as client:
        for _ in range(60):  # bounded: a little traffic to production through the real router
            resp = client.get(f"http://127.0.0.1:{platform.router_port}/", headers={"Host": "hello.localhost"})
            assert resp.status_code == 200
    current = str(platform.api("GET", "/apps/hello")["environments"][0]["release"])

    def scraped() -> bool:
        series = platform.api("GET", "/apps/hello/metrics", params={"env": "production", "window": 900})["series"]
        return sum(p["requests"] for p in series.get(current, [])) >= 60

    wait_for(scraped, 60, what="the scraper to record the requests")
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(platform.url + "/login?next=/apps/hello/metrics%3Fwindow%3D900")
    page.fill("#token", platform.token)
    page.click("form[action='/login'] button[type=submit]")
    rate = page.locator(".chart[data-kind=rate]")
    rate.locator(f"path.series[data-release='{current}']").wait_for(state="attached")
    assert "no requests in this window" not in rate.inner_text()
    # the orchestrator's recorded instance counts, drawn against the same load
    capacity = page.locator(".chart[data-kind=capacity]")
    capacity.locator("path.series.instances[data-process='web']").wait_for(state="attached")
    assert capacity.locator("path.series.load").count() == 1
    assert "no instance counts in this window" not in capacity.inner_text()
    shot(page, "metrics-real-traffic-1280")
    page.close()


def test_logs_page_tails_new_output_live_and_filters(platform: Platform, browser: Any, hello: str) -> None:
    import uuid

    import httpx

    marker = f"/tail-{uuid.uuid4().hex[:10]}"
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(platform.url + "/login?next=" + "/apps/hello/logs%3Fenv%3Dproduction%26grep%3Dtail-")
    page.fill("#token", platform.token)
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_url(re.compile(r"/apps/hello/logs"))
    expect(page.locator("#log-status")).to_contain_text("following")
    page.evaluate("window.__sameDocument = true")
    httpx.get(f"http://127.0.0.1:{platform.router_port}{marker}", headers={"Host": "hello.localhost"}, timeout=10)
    expect(page.locator("#log")).to_contain_text(marker, timeout=30_000)
    text = page.locator("#log").inner_text()
    assert "healthz" not in text  # the filter holds: only lines containing "tail-"
    assert page.evaluate("window.__sameDocument === true")
    page.close()


def test_overview_shows_a_deployment_in_flight_and_its_end_without_reload(
    platform: Platform, browser: Any, hello: str
) -> None:
    image = platform.api("GET", "/apps/hello/images")[0]["digest"]
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(platform.url + "/login")
    page.fill("#token", platform.token)
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_url(platform.url + "/")
    page.evaluate("window.__sameDocument = true")
    dep = platform.api("POST", "/apps/hello/deployments", json={"env": "production", "image": image,
                                                                "strategy": "canary"})
    row = page.locator(f"a[href='/deployments/{dep['id']}']").first
    expect(row).to_be_visible(timeout=30_000)
    expect(page.locator("[role=progressbar]").first).to_be_visible()
    platform.api("POST", f"/deployments/{dep['id']}/abort")
    expect(page.get_by_text("Nothing is deploying right now.")).to_be_visible(timeout=30_000)
    assert page.evaluate("window.__sameDocument === true")
    page.close()


def test_build_page_follows_a_running_build_and_shows_its_result(
    platform: Platform, browser: Any, hello: str
) -> None:
    """A build whose tests take a few seconds: its log streams in, then the page shows the image."""
    from conveyor.build.archive import pack_directory
    from e2e_platform import app_source

    src = app_source(platform.root, "slow")
    manifest = src / "conveyor.toml"
    manifest.write_text(re.sub(r'(?m)^command = .*$',
                               'command = "python -c \\"import time; print(\'testing\', flush=True); time.sleep(6)\\""',
                               manifest.read_text()))
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(platform.url + "/login")
    page.fill("#token", platform.token)
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_url(platform.url + "/")
    build = platform.api("POST", "/apps/hello/builds", content=pack_directory(src),
                         headers={"Content-Type": "application/gzip"})
    page.goto(platform.url + f"/builds/{build['id']}")
    assert "succeeded" not in page.locator("[data-build-state]").inner_text()  # its tests take 6 s
    expect(page.locator("#log-status")).to_contain_text("following")
    expect(page.locator("#log")).to_contain_text("testing", timeout=30_000)
    expect(page.locator("[data-build-state]")).to_contain_text("succeeded", timeout=60_000)
    expect(page.locator("#log")).to_contain_text("tests passed")
    assert "Layers" in page.locator("main").inner_text()
    page.close()
