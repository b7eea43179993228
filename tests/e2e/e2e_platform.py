"""A real ``conveyor up`` on free loopback ports and a real headless Chromium (Debian's package).

The fixtures using these are in this directory's conftest.py.

Skips with the package to install when /usr/bin/chromium is missing, except
under CI=true where a missing browser is a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from conveyor_up import REPO, UpPlatform, wait_for

__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "SCREENSHOTS", "Platform", "app_source", "need_chromium", "wait_for"]

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = REPO / "artifacts" / "screenshots"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


class Platform(UpPlatform):
    """The browser tests' platform: ``url`` is the web UI; ``api``/``build``/``deploy`` drive it directly."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, token="e2e-admin-token-0")  # --admin-token needs 16 characters or more
        self.url = self.api_url

    def cli(self, *args: str, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return super().cli(*args, check=check, timeout=timeout)

    def api(self, method: str, path: str, **kw: Any) -> Any:
        import httpx

        headers = {"Authorization": f"Bearer {self.token}", **kw.pop("headers", {})}
        resp = httpx.request(method, f"{self.url}/api/v1{path}", headers=headers, timeout=60, **kw)
        assert resp.status_code < 400, f"{method} {path}: {resp.status_code} {resp.text}"
        return resp.json()

    def build(self, app: str, source: Path, committed_ago: float = 600.0) -> str:
        """Upload a source (as a commit made ``committed_ago`` seconds ago), wait for its build, return the digest."""
        import hashlib

        from conveyor.build.archive import pack_directory

        data = pack_directory(source)
        commit = {"sha": hashlib.sha1(data).hexdigest(), "author": "E2E <e2e@example.com>",
                  "message": f"{source.name}: a change", "time": time.time() - committed_ago, "dirty": False}
        build = self.api("POST", f"/apps/{app}/builds", content=data, params={"commit": json.dumps(commit)},
                         headers={"Content-Type": "application/gzip"})
        done = wait_for(lambda: (b := self.api("GET", f"/builds/{build['id']}"))["state"] in ("succeeded", "failed")
                        and b, 120, 0.1, f"build {build['id']}")
        assert done["state"] == "succeeded", done
        return str(done["image_digest"])

    def deploy(self, app: str, image: str, env: str) -> dict[str, Any]:
        """Deploy through the API and wait for the deployment to end."""
        dep = self.api("POST", f"/apps/{app}/deployments", json={"env": env, "image": image})
        final = wait_for(lambda: (d := self.api("GET", f"/deployments/{dep['id']}"))["state"]
                         in ("succeeded", "failed", "rolled_back", "cancelled") and d, 120, 0.1, f"deployment {dep['id']}")
        assert final["state"] == "succeeded", final
        return dict(final)


def need_chromium() -> None:
    if not CHROMIUM.exists():
        if os.environ.get("CI") == "true":
            pytest.fail("needs chromium (apt-get install chromium): /usr/bin/chromium is missing")
        pytest.skip("needs chromium (apt-get install chromium)")


def app_source(root: Path, version: str) -> Path:
    dest = root / f"hello-{version}"
    if not dest.exists():
        shutil.copytree(REPO / "examples" / "hello", dest)
        (dest / "VERSION").write_text(version + "\n")
    return dest
