"""The UI's pure helpers, called directly: health, progress, controls, formatting, trend bars."""

from __future__ import annotations

import re

import pytest

from conveyor.web import render
from conveyor.web.deploy_pages import buttons_for
from conveyor.web.insights import trend_svg
from conveyor.services.views import deployment_progress, env_health


def inst(release: int, state: str) -> dict[str, object]:
    return {"release": release, "state": state}


@pytest.mark.parametrize(("release", "instances", "health"), [
    (None, [], "idle"),
    (1, [inst(1, "ready"), inst(1, "ready")], "healthy"),
    (1, [inst(1, "ready"), inst(1, "crashloop")], "degraded"),
    (1, [inst(1, "starting")], "down"),
    (1, [], "down"),
    (2, [inst(1, "ready"), inst(2, "ready")], "healthy"),  # old warm instances do not count
])
def test_env_health(release: int | None, instances: list[dict[str, object]], health: str) -> None:
    assert env_health(release, instances) == health


def dep(state: str, **kw: object) -> dict[str, object]:
    return {"state": state, "params": kw.pop("params", {}), "progress": kw.pop("progress", {}), **kw}


def test_progress_of_queued_blue_green_canary_and_finished_deployments() -> None:
    assert deployment_progress(dep("queued", queue_position=2)) == {"percent": 0, "label": "queued (2 ahead)"}
    assert deployment_progress(dep("starting", params={"instances": 4}), ready_new=2) == {
        "percent": 45, "label": "2/4 new instances ready"}
    assert deployment_progress(dep("starting", params={"instances": 2}), ready_new=0)["percent"] == 5
    canary = dep("canary", params={"steps": [{"weight": 10}, {"weight": 50}, {"weight": 100}]},
                 progress={"step": 1, "phase": "step"})
    assert deployment_progress(canary) == {"percent": 38, "label": "step 2 of 3"}
    paused = dep("paused", params={"steps": [{"weight": 10}]}, progress={"step": 0})
    assert deployment_progress(paused)["label"] == "paused at step 1 of 1"
    assert deployment_progress(dep("rolled_back")) == {"percent": 100, "label": "rolled back"}


def test_controls_follow_the_state_and_what_the_api_offers() -> None:
    everything = {"promote", "pause", "resume", "abort", "cancel"}
    assert buttons_for("queued", everything) == ["cancel"]
    assert buttons_for("canary", everything) == ["promote", "promote-full", "pause", "abort"]
    assert buttons_for("paused", everything) == ["resume", "promote", "promote-full", "abort"]
    assert buttons_for("starting", everything) == ["abort"]
    assert buttons_for("succeeded", everything) == []
    assert buttons_for("canary", {"cancel"}) == []  # an API without those routes: no buttons at all


def test_formatting_filters() -> None:
    now = 1_000_000.0
    assert render.reltime(None) == "—"
    assert render.reltime(now - 2, now) == "just now"
    assert render.reltime(now - 90, now) == "2 min ago"
    assert render.reltime(now + 7200, now) == "in 2 h"
    assert render.duration(0.25) == "250 ms"
    assert render.duration(4.2) == "4.2 s"
    assert render.duration(125) == "2 min 5 s"
    assert render.duration(90000) == "1 d 1 h"
    assert render.size(1470) == "1.4 KiB" and render.size(12) == "12 B"
    assert render.short("sha256:abcdef0123456789") == "abcdef012345"
    assert render.author({"author": "Ada Lovelace <ada@example.com>"}) == "Ada Lovelace"
    assert render.first_line("one\ntwo") == "one"
    assert render.look("rolled_back") == ("↶", "bad") and render.look("whatever") == ("•", "muted")


def test_every_state_has_an_icon_as_well_as_a_colour() -> None:
    for state, (icon, tone) in render.STATE_LOOK.items():
        assert icon.strip(), state
        assert tone in {"good", "bad", "warn", "busy", "muted"}


def test_trend_bars_have_titles_and_an_empty_bar_for_no_data() -> None:
    key = {"name": "lead_time", "buckets": [
        {"start": 0.0, "end": 86400.0, "value": 3600.0, "samples": 2},
        {"start": 86400.0, "end": 172800.0, "value": None, "samples": 0},
        {"start": 172800.0, "end": 259200.0, "value": 7200.0, "samples": 1},
    ]}
    svg = str(trend_svg(key))
    assert svg.startswith("<svg") and 'aria-label="Lead time for changes per period"' in svg
    assert svg.count("<rect") == 3 and 'class="none"' in svg
    assert "no data" in svg and "2.0 h (1 samples)" in svg
    heights = [float(h) for h in re.findall(r'<rect x="[^"]+" y="[^"]+" width="[^"]+" height="([^"]+)"', svg)]
    assert max(heights) == pytest.approx(52.0) and heights[0] == pytest.approx(26.0)
