"""Config vars and secrets end to end, with real processes: a change is a release of the same image,
the value reaches the instances through the router, a rollback restores it, ``--no-deploy`` stages,
and after the whole cycle the secret's value is in no API response, page, log or file."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from typing import Any

import httpx
import pytest

from cvy_platform import Platform

pytestmark = pytest.mark.integration

HOST = "shop.localhost"
SECRET = "pw-7c1e0d-integration-secret-never-shown"
MANIFEST_VALUE = "manifest-default-value-3b9f"

APP_PY = '''
import hashlib, os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        pw = os.environ.get("DB_PASSWORD")
        body = ("log=%s pw=%s api=%s\\n" % (os.environ.get("LOG_LEVEL", "-"),
                hashlib.sha256(pw.encode()).hexdigest()[:12] if pw is not None else "-",
                os.environ.get("API_TOKEN", "-"))).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass

ThreadingHTTPServer((os.environ["HOST"], int(os.environ["PORT"])), H).serve_forever()
'''

MANIFEST = f'''
[app]
name = "shop"

[run]
web = "python app.py"

[deploy]
bake = "1s"
drain_timeout = "1s"

[env.production]
instances = 1
vars = {{ API_TOKEN = "{MANIFEST_VALUE}" }}
'''


def _cli(p: Platform, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "conveyor", *args], input=stdin, capture_output=True, text=True,
                          env=p.env, timeout=180, cwd=p.root)


def _json(res: subprocess.CompletedProcess[str]) -> Any:
    assert res.returncode == 0, f"exit {res.returncode}:\n{res.stdout}\n{res.stderr}"
    return json.loads(res.stdout)


def _pw(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:12]


def test_config_and_secret_ship_as_releases_roll_back_and_never_leak(platform_factory: Any) -> None:
    p: Platform = platform_factory()
    p.start()
    p.cli("apps", "create", "shop", check=True)
    src = p.app_copy("shop", "v1", app__py=APP_PY, conveyor__toml=MANIFEST)
    res = p.cli("deploy", "shop", "--source", str(src), "--wait", "--json")
    assert res.returncode == 0, res.stderr
    # a manifest var named like a secret is warned about, pointing to config set --secret
    assert "vars.API_TOKEN looks like a secret" in res.stderr and "--secret API_TOKEN" in res.stderr
    p.served(HOST, f"log=- pw=- api={MANIFEST_VALUE}\n")

    # a secret from stdin (out of shell history) ships as release 2 of the same image
    dep = _json(_cli(p, "config", "set", "shop", "--secret", "--stdin", "DB_PASSWORD", "--wait", "--json", stdin=SECRET + "\n"))
    assert dep["state"] == "succeeded" and dep["release"] == 2, dep
    releases = p.api.get("/apps/shop/releases").json()
    assert releases[0]["image"] == releases[1]["image"]  # same image, new config
    p.served(HOST, f"log=- pw={_pw(SECRET)} api={MANIFEST_VALUE}\n")

    # a plain var: release 3; set values win over the manifest's
    dep = _json(_cli(p, "config", "set", "shop", "LOG_LEVEL=debug", f"API_TOKEN=override", "--wait", "--json"))
    assert dep["state"] == "succeeded" and dep["release"] == 3
    p.served(HOST, f"log=debug pw={_pw(SECRET)} api=override\n")
    history = p.api.get("/apps/shop/releases").json()
    assert history[0]["config"]["changes"]["set"] == ["API_TOKEN", "LOG_LEVEL"]
    assert history[1]["config"]["changes"] == {"set": ["DB_PASSWORD"], "unset": [], "secret": True, "by": "admin"}
    assert history[1]["config"]["secret_keys"] == ["DB_PASSWORD"]
    table = subprocess.run([sys.executable, "-m", "conveyor", "releases", "shop"], capture_output=True, text=True,
                           env={**p.env, "COLUMNS": "200"}, timeout=60, cwd=p.root).stdout  # keys changed, never values
    assert "DB_PASSWORD set (secret)" in table and "LOG_LEVEL set" in table and SECRET not in table

    # a rollback restores image *and* config, and the set vars with them (the next deploy ships those)
    back = _json(_cli(p, "rollback", "shop", "--wait", "--json"))
    assert back["state"] == "succeeded" and back["release"] == 2
    p.served(HOST, f"log=- pw={_pw(SECRET)} api={MANIFEST_VALUE}\n")
    listed = {v["key"]: v for v in _json(_cli(p, "config", "list", "shop", "--json"))}
    assert set(listed) == {"API_TOKEN", "DB_PASSWORD"} and listed["API_TOKEN"]["source"] == "manifest"
    assert listed["DB_PASSWORD"]["secret"] and listed["DB_PASSWORD"]["value"] is None

    # --no-deploy stages: no release, nothing served changes; the next deploy picks it up
    staged = _json(_cli(p, "config", "set", "shop", "LOG_LEVEL=info", "--no-deploy", "--json"))
    assert staged["staged"] and staged["deployment"] is None
    assert len(p.api.get("/apps/shop/releases").json()) == 4 - 1  # releases 1..3 (the rollback made none)
    p.served(HOST, f"log=- pw={_pw(SECRET)} api={MANIFEST_VALUE}\n")
    image = history[0]["image"]
    assert p.deploy_image("shop", image)["state"] == "succeeded"
    p.served(HOST, f"log=info pw={_pw(SECRET)} api={MANIFEST_VALUE}\n")

    # a secret cannot be read back, by any door
    got = _cli(p, "config", "get", "shop", "DB_PASSWORD")
    assert got.returncode == 4 and "cannot be read back" in got.stderr and SECRET not in got.stdout + got.stderr
    human = _cli(p, "config", "list", "shop")
    assert human.returncode == 0 and "DB_PASSWORD" in human.stdout and SECRET not in human.stdout

    # ... and the value is nowhere after the whole cycle: API responses, pages, logs, files
    seen: list[str] = []
    for path in ["/apps/shop", "/apps/shop/summary", "/apps/shop/releases", "/apps/shop/images", "/apps/shop/builds",
                 "/apps/shop/deployments", "/events?limit=500", "/apps/shop/config", "/hosts", "/overview",
                 f"/images/{image}", f"/images/{image}/manifest", "/apps/shop/logs?env=production"]:
        r = p.api.get(path)
        assert r.status_code == 200, (path, r.status_code, r.text[:200])
        seen.append(r.text)
    for d in p.api.get("/apps/shop/deployments").json():
        seen.append(p.api.get(f"/deployments/{d['id']}/view").text)
    assert MANIFEST_VALUE not in p.api.get("/apps/shop/images").text  # [env.X] vars: names only
    with httpx.Client(base_url=p.api_url, follow_redirects=True, timeout=30) as browser:
        link = p.api.post("/ui/login-link").json()["path"]
        assert browser.get(link).status_code == 200
        for page in ["/", "/apps/shop", f"/deployments/{dep['id']}", "/hosts"]:
            r = browser.get(page)
            assert r.status_code == 200, page
            seen.append(r.text)
        app_page = browser.get("/apps/shop").text  # the UI shows the config, the secret masked
        assert "DB_PASSWORD" in app_page and "•••••• secret" in app_page and "LOG_LEVEL" in app_page
    for text in seen:
        assert SECRET not in text
    for f in p.root.rglob("*"):
        if f.is_file() and not f.is_symlink():
            assert SECRET.encode() not in f.read_bytes(), f"the secret is in clear in {f}"
    agent_state = (p.data_dir / "agent" / "agent-state.json")
    assert b"DB_PASSWORD" in agent_state.read_bytes() and agent_state.stat().st_mode & 0o777 == 0o600


def test_config_set_bad_input_changes_nothing(shared_platform: Platform) -> None:
    p = shared_platform
    p.cli("apps", "create", "plain", check=True)
    for args, needle, code in [
        (["NOEQUALS"], "is not KEY=VALUE", 2),
        (["9LIVES=1"], "not a valid environment variable name", 2),
        (["BIG=" + "x" * 40000], "the limit is 32768", 2),
    ]:
        res = _cli(p, "config", "set", "plain", *args)
        assert res.returncode == code and needle in res.stderr, (args, res.returncode, res.stderr)
    assert _cli(p, "config", "list", "plain", "--json").returncode == 3  # no environment was created
    res = _cli(p, "config", "set", "nope", "A=1")
    assert res.returncode == 3 and "conveyor apps create nope" in res.stderr


GREETER_PY = '''
import os, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

if os.environ.get("CRASH"):  # a bad config: serves, then dies (a crash loop once live)
    threading.Timer(3.0, lambda: os._exit(7)).start()

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = ("greeting=%s crash=%s\\n" % (os.environ.get("GREETING", "-"), os.environ.get("CRASH", "-"))).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass

ThreadingHTTPServer((os.environ["HOST"], int(os.environ["PORT"])), H).serve_forever()
'''

CANARY_MANIFEST = '''
[app]
name = "greeter"

[run]
web = "python app.py"

[health]
path = "/healthz"
interval = "200ms"

[deploy]
strategy = "canary"
steps = [{weight = 25, for = "60s"}, {weight = 50, for = "60s"}]
bake = "1s"
drain_timeout = "1s"
ready_timeout = "20s"

[env.production]
instances = 2
'''


def test_an_automatic_rollback_of_a_config_release_restores_the_previous_config(shared_platform: Platform) -> None:
    """A config change whose release crash-loops is rolled back by the platform, not by a person: the
    instances serving afterwards see the previous values, and so does the next deploy (the set vars
    went back with the release, so the bad value is not shipped again)."""
    p = shared_platform
    host = "greeter.localhost"
    p.cli("apps", "create", "greeter", check=True)
    src = p.app_copy("greeter", "v1", app__py=GREETER_PY, conveyor__toml=CANARY_MANIFEST)
    first = p.deploy("greeter", src)
    assert first["state"] == "succeeded", first
    image = first["image"]
    # release 2: GREETING=old, shipped blue/green (a canary without traffic would wait for it)
    assert _json(_cli(p, "config", "set", "greeter", "GREETING=old", "--no-deploy", "--json"))["staged"]
    assert p.deploy_image("greeter", image, "--strategy", "bluegreen")["state"] == "succeeded"
    p.served(host, "greeting=old crash=-\n")

    # release 3: GREETING=new and CRASH=1, a canary that crash-loops once live: rolled back automatically
    res = _cli(p, "config", "set", "greeter", "GREETING=new", "CRASH=1", "--wait", "--json")
    dep = json.loads(res.stdout)
    assert res.returncode == 1 and dep["state"] == "rolled_back" and dep["release"] == 3, (res.returncode, dep)
    assert "crash loop" in dep["reason"], dep["reason"]

    # the instances serving now run with release 2's config, and every request sees it
    for _ in range(20):
        p.served(host, "greeting=old crash=-\n")
    # the set vars are release 2's again: GREETING back to old, CRASH gone (names only in the event)
    listed = {v["key"]: v for v in _json(_cli(p, "config", "list", "greeter", "--json"))}
    assert set(listed) == {"GREETING"} and listed["GREETING"]["value"] == "old", listed
    restored = [e for e in p.api.get("/events?limit=500").json() if e["kind"] == "config_restored" and e["app"] == "greeter"]
    assert len(restored) == 1 and restored[0]["data"]["keys"] == ["CRASH", "GREETING"], restored

    # the next deploy ships release 2's config, not the one that failed: new instances see the old values
    again = p.deploy_image("greeter", image, "--strategy", "bluegreen")
    assert again["state"] == "succeeded" and again["release"] == 4, again
    p.served(host, "greeting=old crash=-\n")
    cfg = next(r for r in p.api.get("/apps/greeter/releases").json() if r["number"] == 4)["config"]
    assert cfg["env_keys"].count("GREETING") == 1 and "CRASH" not in cfg["env_keys"], cfg
