"""Canary verdicts users can trust, on real processes (issue 10, items 6 and 9).

One ``conveyor up`` is shared by the module; each test uses its own app. Load is
:class:`Traffic` from the progressive-delivery tests: keep-alive clients at a
steady, bounded rate through the router.

* A release byte for byte identical to the live one (the same image, deployed
  again) is canaried several times in a row under load, with the *default*
  analysis: every canary must be promoted. Issue 10 saw 4 of 4 such canaries
  of a sub-millisecond app rolled back ("80 % of canary requests were slower
  than 0.3 ms ..."): fresh instances are colder than the warm old release.
* A release that regresses during the bake (its error rate rises to 4 %, under
  the threshold judge's 10 % limit but far above the previous release's 0 %)
  is rolled back during the bake by the history judge, which compares the bake
  with the previous release's own traffic from before it.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import pytest

from cvy_platform import Platform, Traffic, wait_for
from test_progressive import _dep, _live, _until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: Default analysis (no [deploy.analysis] table); short steps so the module stays quick.
AA = """\
[run]
web = "python app.py"
[health]
path = "/healthz"
interval = "200ms"
[deploy]
strategy = "canary"
steps = [{weight = 20, for = "10s"}, {weight = 50, for = "6s"}]
bake = "3s"
drain_timeout = "2s"
[env.production]
instances = 2
"""

ENDED = {"succeeded", "failed", "rolled_back", "cancelled", "paused"}


def _deploy_image(p: Platform, app: str, digest: str, timeout: float = 120) -> dict[str, Any]:
    r = p.api.post(f"/apps/{app}/deployments", json={"env": "production", "image": digest})
    assert r.status_code == 201, r.text
    return _until(p, r.json()["id"], lambda d: d["state"] in ENDED, timeout, f"deployment of {app} to end")


def test_an_identical_release_is_promoted_every_time_under_load(shared_platform: Platform) -> None:
    """Item 6: the same image, canaried three times in a row at ~150 requests/s, default analysis."""
    p = shared_platform
    app = "same"
    p.create_app(app)
    _live(p, app, AA)
    digest = p.api.get(f"/apps/{app}/releases").json()[0]["image"]
    outcomes = []
    with Traffic(p, app, rate=150, threads=6, max_s=240) as traffic:
        wait_for(lambda: traffic.count() >= 150, 20, 0.05, "load to flow")
        for _ in range(3):
            out = _deploy_image(p, app, digest)
            outcomes.append((out["state"], out["reason"]))
            if out["state"] != "succeeded":
                break
    assert [s for s, _ in outcomes] == ["succeeded"] * 3, outcomes
    assert traffic.failures() == [], traffic.failures()[:5]
    releases = p.api.get(f"/apps/{app}/releases").json()
    assert len({r["image"] for r in releases}) == 1 and len(releases) == 4  # byte-identical, four releases


#: The benchmark-style app for the bake test: answers at once; once the file TRIGGER exists, 4 %
#: of its answers are 500s (a regression that appears after promotion: a leak, a cache expiring).
#: Regresses once the test starts listening on a loopback port (the trigger): a sandboxed instance has
#: its own /tmp, so a file the test made would never appear to it; the network is shared.
DEGRADING = '''\
import os, random, socket, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
VERSION = open("VERSION").read().strip()
TRIGGER = {trigger!r}
REGRESSED = threading.Event()


def watch():
    while not REGRESSED.is_set():
        try:
            socket.create_connection(("127.0.0.1", TRIGGER), timeout=0.2).close()
            REGRESSED.set()
        except OSError:
            time.sleep(0.1)


threading.Thread(target=watch, daemon=True).start()


class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # as the sample app: else head and body wait on delayed ACKs (+40 ms)

    def do_GET(self):
        bad = self.path != "/healthz" and REGRESSED.is_set() and random.random() < 0.04
        body = f"hello from {{VERSION}}\\n".encode()
        self.send_response(500 if bad else 200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-App-Version", VERSION)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


s = ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H)
s.daemon_threads = True
s.serve_forever()
'''

BAKE = AA.replace('bake = "3s"', 'bake = "60s"').replace('steps = [{weight = 20, for = "10s"}, {weight = 50, for = "6s"}]',
                                                       'steps = [{weight = 50, for = "4s"}]')


def test_a_release_that_regresses_during_the_bake_is_rolled_back_by_the_history_judge(
    shared_platform: Platform, tmp_path: Path
) -> None:
    """Item 9: the bake compares the new release with the previous one's own error rate."""
    p = shared_platform
    app = "bakes"
    p.create_app(app)
    trigger = socket.socket()
    trigger.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused until trigger.listen()
    toml = BAKE.replace('web = "python app.py"', 'web = "python degrading.py"')
    files = {"conveyor__toml": toml, "degrading__py": DEGRADING.format(trigger=trigger.getsockname()[1])}
    _live(p, app, BAKE)  # v1: the sample app, no errors
    with Traffic(p, app, rate=100, threads=4, max_s=180) as traffic:
        wait_for(lambda: traffic.count() >= 500, 30, 0.1, "the previous release's reference traffic")
        digest = p.build_image(app, "v2", **files)
        r = p.api.post(f"/apps/{app}/deployments", json={"env": "production", "image": digest})
        assert r.status_code == 201, r.text
        dep_id = r.json()["id"]
        baking = _until(p, dep_id, lambda d: d["state"] in ENDED | {"baking"}, 90, "the canary to be promoted")
        assert baking["state"] == "baking", (baking["state"], baking["reason"])  # healthy through its canary step
        t_regress = time.time()
        trigger.listen()
        try:
            done = _until(p, dep_id, lambda d: d["state"] in ENDED, 50, "the bake to end")
        finally:
            trigger.close()
    assert done["state"] == "rolled_back", done
    reason = done["reason"]
    assert reason.startswith("regression during the bake") and "history" in reason, reason
    (fail,) = [v for v in done["verdicts"] if v["outcome"] == "fail"]
    assert fail["step"] == -1 and fail["judge"] == "bake", fail
    assert fail["numbers"]["history.outcome"] == "fail" and fail["numbers"]["threshold.outcome"] != "fail", fail
    # the errors it saw were under the threshold judge's 10 % limit: only the comparison caught them
    new = [r for r in traffic.snapshot() if r[0] >= t_regress and r[2] == "v2"]
    rate = sum(1 for r in new if r[1] == 500) / max(1, len(new))
    assert 0 < rate < 0.10, (rate, len(new))
    assert fail["at"] - t_regress < 40, fail["at"] - t_regress
    wait_for(lambda: p.get(f"{app}.localhost").text == "hello from v1\n", 10, 0.05, "v1 serving again")
    assert _dep(p, dep_id)["state"] == "rolled_back"
