"""Autoscaling and deployments together, with real processes through the router (issue 13, item 2).

The app answers every request after 100 ms, so 60 requests/s hold 6 in flight (more on a busy
machine): at a target of 2 per instance the autoscaler wants 3 or 4 instances. Under that load:

* a canary (25 %, then 50 %) is sized by its weight × the autoscaler's count (1, then 2 of 4),
  grows to the 50 % step's share before that weight moves to it, the stable side keeps its share
  (3, then 2), never its maximum, and no request fails;
* a broken canary is rolled back, and the stable release is back at the autoscaler's count at
  once (not after a stabilisation window), every failed request being the broken release's own;
* a blue/green deployment during autoscaling comes up at the autoscaler's count, not the
  manifest's, with no failed request.

Traffic counts transport errors as failures.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from cvy_platform import Platform, Traffic, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

APP = "surge"
TOML = """[app]
name = "surge"

[run]
web = "python app.py"

[health]
path = "/healthz"
interval = "200ms"
timeout = "2s"

[deploy]
strategy = "{strategy}"
steps = [{{weight = 25, for = "{step}"}}, {{weight = 50, for = "{step}"}}]
bake = "2s"
drain_timeout = "2s"
ready_timeout = "30s"

[deploy.analysis]
min_requests = 20

[deploy.analysis.threshold]
min_requests = 20

[env.production]
instances = 2
"""
SLOW = json.dumps({"extra_latency_ms": 100})
MAX = 8


def toml(strategy: str = "canary", step: str = "12s") -> str:
    return TOML.format(strategy=strategy, step=step)


def _web(p: Platform) -> dict[int, tuple[int, int]]:
    """release → (web instances not draining, ready ones), baselines left out."""
    out: dict[int, tuple[int, int]] = {}
    for i in p.api.get(f"/apps/{APP}/ps").json():
        if i["process"] != "web" or i["role"] != "main" or i["state"] == "draining":
            continue
        n, ready = out.get(i["release"], (0, 0))
        out[i["release"]] = (n + 1, ready + (i["state"] == "ready"))
    return out


def _total(p: Platform) -> int:
    [auto] = p.api.get(f"/apps/{APP}/autoscale").json()["autoscalers"]
    return int(auto["count"])


def _dep(p: Platform, dep_id: int) -> dict[str, Any]:
    return p.api.get(f"/deployments/{dep_id}").json()  # type: ignore[no-any-return]


def _queue(p: Platform, version: str, text: str, **files: str) -> dict[str, Any]:
    digest = p.build_image(APP, version, conveyor__toml=text, **files)
    r = p.api.post(f"/apps/{APP}/deployments", json={"env": "production", "image": digest})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def _in_step(p: Platform, dep_id: int, step: int) -> bool:
    d = _dep(p, dep_id)
    assert d["state"] in ("queued", "starting", "canary"), d
    return d["state"] == "canary" and d["progress"].get("phase") == "step" and d["progress"].get("step") == step


def _shared(p: Platform, old: int, new: int, weight: int) -> bool:
    """Both releases at their share of the autoscaler's count, every instance ready."""
    total, web = _total(p), _web(p)
    want = {old: math.ceil(total * (100 - weight) / 100), new: max(1, math.ceil(total * weight / 100))}
    return all(web.get(r) == (n, n) for r, n in want.items())


class Watch:
    """Samples (autoscaler's count, per-release web instances) every 0.2 s until stopped, and the
    deployment's canary step when it is in one (``phase == "step"``)."""

    def __init__(self, p: Platform, dep_id: int) -> None:
        self.p, self.dep_id = p, dep_id
        self.samples: list[tuple[int, dict[int, tuple[int, int]]]] = []
        self.steps: list[tuple[int | None, dict[int, tuple[int, int]]]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(0.2):
            progress = _dep(self.p, self.dep_id)["progress"]
            web = _web(self.p)
            self.samples.append((_total(self.p), web))
            self.steps.append((progress.get("step") if progress.get("phase") == "step" else None, web))

    def __enter__(self) -> Watch:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)


def test_a_canary_shares_the_autoscalers_count_by_weight_and_a_rollback_restores_it_at_once(
        platform_factory: Callable[[], Platform]) -> None:
    p = platform_factory()
    p.start()
    p.create_app(APP)
    dep = p.deploy(APP, p.app_copy(APP, "v1", conveyor__toml=toml(), behaviour__json=SLOW))
    assert dep["state"] == "succeeded", dep
    p.cli_json("autoscale", APP, "--min", "2", "--max", str(MAX), "--target-inflight", "2", "--window", "3s",
               "--up-period", "2s", "--down-window", "60s", "--down-period", "5s")

    with Traffic(p, APP, rate=60, threads=12, max_s=300) as traffic:
        wait_for(lambda: _total(p) >= 3 and _web(p).get(1, (0, 0))[1] >= _total(p), 60, 0.5,
                 "the autoscaler at 3+ instances, all ready, under 60 requests/s (6 in flight, target 2)")

        # a good canary: sized by its weight, step by step; the stable side keeps its share
        good = _queue(p, "v2", toml(), behaviour__json=SLOW)
        with Watch(p, good["id"]) as watch:
            wait_for(lambda: _in_step(p, good["id"], 0), 60, 0.1, "the canary's first step (25 %)")
            wait_for(lambda: _shared(p, 1, 2, 25), 10, 0.2, "the canary at 25 % of the count, the stable side at 75 %")
            wait_for(lambda: _in_step(p, good["id"], 1), 30, 0.1, "the canary's second step (50 %)")
            wait_for(lambda: _shared(p, 1, 2, 50), 10, 0.2, "the canary at 50 % of the count, the stable side at 50 %")
            done = wait_for(lambda: (d := _dep(p, good["id"])) and d["state"] not in ("starting", "canary", "baking")
                            and d, 60, 0.2, "the canary to be promoted")
        assert done["state"] == "succeeded", done
        during = [(total, web) for total, web in watch.samples if 2 in web and 1 in web]
        assert during, watch.samples
        # the stable side never grew past the autoscaler's count, nor to the policy's maximum
        assert all(web[1][0] <= total and web[1][0] < MAX for total, web in during), during
        # never both at full size
        assert not [(total, web) for total, web in during if web[1][0] >= total and web[2][0] >= total], during
        assert traffic.failures() == [], traffic.failures()[:5]
        # grow, then move the weight: read before the step, the canary already had the 50 % step's
        # share of 3-4 (2) ready when its weight moved (it had 1 at 25 %; a new one takes ~1 s)
        first = next(web for step, web in watch.steps if step == 1)
        assert first[2][1] >= 2, watch.steps
        kinds = [e["kind"] for e in p.api.get("/events", params={"app": APP}).json()]
        assert "canary_sizing" in kinds, kinds
        wait_for(lambda: _web(p).get(2) == (_total(p), _total(p)), 20, 0.2, "release 2 at the autoscaler's count")

        # a broken canary: rolled back, and the stable release is back at the count at once
        broken = _queue(p, "v3", toml(step="30s"), behaviour__json=json.dumps({"extra_latency_ms": 100, "fail_rate": 0.5}))
        wait_for(lambda: _in_step(p, broken["id"], 0), 60, 0.1, "the broken canary's first step")
        wait_for(lambda: _shared(p, 2, 3, 25) or _dep(p, broken["id"])["state"] != "canary", 8, 0.1,
                 "the stable side at its 75 % share")
        out = wait_for(lambda: (d := _dep(p, broken["id"])) and d["state"] not in ("canary", "paused") and d,
                       60, 0.05, "the broken canary's rollback")
        assert out["state"] == "rolled_back", out
        total = _total(p)
        assert _web(p).get(2, (0, 0))[0] == total, (_web(p), total)  # asked for at once: in the rollback itself
        wait_for(lambda: _web(p).get(2) == (total, total), 15, 0.2, "the stable release ready at the count")
        failures = traffic.failures()
        assert all(f[1] == 500 and f[2] == "v3" for f in failures), failures[:5]

        # a blue/green deployment during autoscaling: the new release comes up at the autoscaler's count
        since = time.time()
        blue = _queue(p, "v4", toml(strategy="bluegreen"), behaviour__json=SLOW)
        out = wait_for(lambda: (d := _dep(p, blue["id"])) and d["state"] not in ("queued", "starting") and d,
                       60, 0.1, "the blue/green deployment")
        assert out["state"] == "succeeded", out
        assert out["params"]["instances"] > 2, out["params"]  # the autoscaler's count, not the manifest's 2
        wait_for(lambda: _web(p).get(4) == (_total(p), _total(p)), 20, 0.2, "release 4 at the autoscaler's count")
        assert [f for f in traffic.failures() if f[0] >= since] == [], traffic.failures()[-5:]
