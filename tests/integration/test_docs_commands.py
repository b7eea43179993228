"""The README's and "Deploy your own app"'s commands, pasted in order, work (issue 17, items 1 and 9).

Each page's ```sh blocks are run as one bash script (``set -euo pipefail``, each command
echoed), in a workspace laid out like this repository after ``make demo``: ``.venv`` and
``examples`` are this repository's, and ``.demo/client.json`` points at a real ``conveyor up``
started by the harness on free ports. The only liberties taken, all mechanical:

* lines starting with ``make `` are not run: the harness's platform stands in for ``make demo``
  (for the README, it also creates and deploys ``hello`` as the demo does);
* the documented default ports 7700 (API) and 7780 (router) become the harness's free ports;
* CONVEYOR_URL, CONVEYOR_TOKEN and CONVEYOR_CONFIG are removed from the environment and HOME
  is empty, so the CLI finds the platform only the way the page tells a reader to.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from cvy_platform import REPO, Platform

pytestmark = pytest.mark.integration


def sh_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```", markdown, flags=re.MULTILINE | re.DOTALL)


def script(markdown: str, api_port: int, router_port: int) -> str:
    lines = []
    for block in sh_blocks(markdown):
        for line in block.splitlines():
            if line.startswith("make "):
                continue
            lines.append(line.replace(":7780", f":{router_port}").replace(":7700", f":{api_port}"))
    return "set -euo pipefail\nset -x\n" + "\n".join(lines) + "\n"


def workspace(p: Platform) -> tuple[Path, dict[str, str]]:
    ws = p.root / "ws"
    (ws / ".demo").mkdir(parents=True)
    (ws / ".venv").symlink_to(REPO / ".venv")
    (ws / "examples").symlink_to(REPO / "examples")
    (ws / ".demo" / "client.json").write_text(json.dumps(
        {"url": p.api_url, "token": p.token, "router_url": f"http://127.0.0.1:{p.router_port}"}))
    (p.root / "home").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env["HOME"] = str(p.root / "home")
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin"  # the page itself puts .venv/bin first
    return ws, env


def run_page(p: Platform, page: Path, prelude: str = "", timeout: float = 900) -> str:
    if shutil.which("curl") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("curl is not installed (Debian package curl): the pages' commands use it")
        pytest.skip("curl is not installed (Debian package curl): the pages' commands use it")
    ws, env = workspace(p)
    text = prelude + script(page.read_text(), p.api_port, p.router_port)
    (p.root / f"{page.stem}.sh").write_text(text)
    log = p.root / f"{page.stem}.log"  # a file, not a pipe: a background loop of the page cannot hold it open
    with log.open("w") as f:
        res = subprocess.run(["bash", "-c", text], cwd=ws, env=env, stdout=f, stderr=subprocess.STDOUT, timeout=timeout)
    out = log.read_text()
    assert res.returncode == 0, f"{page.name}: a command failed (exit {res.returncode}); the last lines:\n{out[-6000:]}"
    return out


@pytest.mark.timeout(900)
def test_readme_commands_work_in_order_after_the_demo(platform_factory) -> None:  # type: ignore[no-untyped-def]
    p: Platform = platform_factory()
    p.start()
    # What `make demo` leaves: the app hello, deployed.
    p.cli("apps", "create", "hello", check=True)
    assert p.deploy("hello", p.app_copy())["state"] == "succeeded"
    out = run_page(p, REPO / "README.md")
    assert "reachable, token accepted" in out
    assert f"127.0.0.1:{p.api_port}" in out  # context names the demo's control plane


@pytest.mark.timeout(900)
def test_deploy_your_own_app_page_works_in_order(platform_factory) -> None:  # type: ignore[no-untyped-def]
    p: Platform = platform_factory()
    p.start()
    # The README's first line, as the page asks.
    readme_first = sh_blocks((REPO / "README.md").read_text())[1].splitlines()[0]
    assert readme_first.startswith("export PATH=") and "CONVEYOR_CONFIG" in readme_first
    out = run_page(p, REPO / "docs" / "deploy-your-own-app.md", prelude=readme_first + "\n")
    assert out.count("hello from flaskapp v1") >= 2, out[-4000:]  # before the canary, and after the rollback
    assert "a Flask app (app in app), served by gunicorn" in out
    assert "step 1: 20% of traffic for 20 s" in out and "bake" in out
