"""The integration tests' platform: ``conveyor up`` (tests/conveyor_up.py), used like a user
uses it, only through the CLI, the HTTP API and the router."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conveyor_up import REPO, UpPlatform, free_port, wait_for

__all__ = ["Platform", "Traffic", "free_port", "platform_factory", "shared_platform", "wait_for"]

EXAMPLES = REPO / "examples"


class Platform(UpPlatform):
    """The integration tests' platform: the CLI, the API client, and HTTP through the router."""

    def __init__(self, root: Path, host: str = "127.0.0.1") -> None:
        super().__init__(root, token="test-admin-token", host=host)
        self.api = httpx.Client(base_url=f"{self.api_url}/api/v1",
                                headers={"Authorization": f"Bearer {self.token}"}, timeout=30)

    def child_pid(self, name: str) -> int:
        """The pid of the up's child process ``server``, ``agent`` or ``router``."""
        pattern = {
            "server": f"-m conveyor server --data-dir {self.data_dir} ",
            "agent": f"-m conveyor agent .* --data-dir {self.data_dir}/agent",
            "router": f"-m conveyor router --listen {self.host}:{self.router_port} ",
        }[name]
        out = subprocess.run(["pgrep", "-f", "--", pattern], capture_output=True, text=True)
        pids = [int(p) for p in out.stdout.split()]
        assert pids, f"no {name} process found"
        return min(pids)

    # -- using it ----------------------------------------------------------

    def cli_json(self, *args: str) -> Any:
        res = self.cli(*args, "--json", check=True)
        return json.loads(res.stdout)

    def url(self, path: str = "/") -> str:
        return f"http://{self.host}:{self.router_port}{path}"

    def get(self, host: str, path: str = "/", client: httpx.Client | None = None) -> httpx.Response:
        c = client or httpx
        return c.get(self.url(path), headers={"Host": host}, timeout=10)  # type: ignore[attr-defined]

    def served(self, host: str, text: str) -> None:
        """The router serves ``text`` at ``host`` now, with no waiting: ``deploy --wait`` returns
        only once every live router holds the deployment's routing table (GET /routers)."""
        got = self.get(host).text
        assert got == text, f"{host} served {got!r}, expected {text!r} right after the deployment ended"

    def instances(self, app: str, env: str = "production") -> list[dict[str, Any]]:
        """The environment's instance rows as GET /apps/{app} shows them (host, state, release...)."""
        [row] = [e for e in self.api.get(f"/apps/{app}").json()["environments"] if e["name"] == env]
        return row["instances"]  # type: ignore[no-any-return]

    def routed(self, app: str) -> dict[str, str]:
        """Instance id → address, of ``app``'s instances the routing table sends traffic to."""
        table = self.api.get("/routing").json()
        return {i["id"]: i["address"] for e in table["environments"] if e["app"] == app
                for r in e["releases"] for i in r["instances"]}

    def app_copy(self, name: str = "hello", version: str = "v1", **files: str) -> Path:
        """A copy of examples/hello with a VERSION and extra or replaced files."""
        dest = self.root / "src" / f"{name}-{version}-{time.monotonic_ns()}"
        shutil.copytree(EXAMPLES / "hello", dest)
        (dest / "VERSION").write_text(version + "\n")
        manifest = dest / "conveyor.toml"  # its [app] name must be the app it is built for (else 422)
        manifest.write_text(manifest.read_text().replace('name = "hello"', f'name = "{name}"', 1))
        for fname, content in files.items():
            (dest / fname.replace("__", ".")).write_text(content)
        return dest

    def create_app(self, app: str) -> None:
        """Create ``app`` through the API (the CLI's own test is elsewhere; it costs a second)."""
        r = self.api.post("/apps", json={"name": app})
        assert r.status_code == 201, r.text

    def build_image(self, app: str, version: str, **files: str) -> str:
        """Build a copy of examples/hello through the API; the image's digest."""
        from conveyor.build.archive import pack_directory

        src = self.app_copy(app, version, **files)
        r = self.api.post(f"/apps/{app}/builds", content=pack_directory(src), headers={"Content-Type": "application/gzip"})
        assert r.status_code == 201, r.text
        build = wait_for(lambda: (b := self.api.get(f"/builds/{r.json()['id']}").json())["state"] in ("succeeded", "failed")
                         and b, 90, 0.05, f"the build of {app} {version}")
        assert build["state"] == "succeeded", build
        return build["image"]["digest"]  # type: ignore[no-any-return]

    def deploy(self, app: str, source: Path, *extra: str) -> dict[str, Any]:
        return self._deploy_json("deploy", app, "--source", str(source), "--wait", "--json", *extra)

    def deploy_image(self, app: str, image: str, *extra: str) -> dict[str, Any]:
        return self._deploy_json("deploy", app, "--image", image, "--wait", "--json", *extra)

    def _deploy_json(self, *args: str) -> dict[str, Any]:
        res = self.cli(*args)
        try:
            return json.loads(res.stdout) | {"_exit": res.returncode, "_stderr": res.stderr}
        except json.JSONDecodeError:
            raise AssertionError(f"deploy printed no JSON (exit {res.returncode}):\n{res.stdout}\n{res.stderr}") from None


@pytest.fixture
def platform_factory(tmp_path: Path) -> Iterator[Callable[[], Platform]]:
    made: list[Platform] = []

    def make() -> Platform:
        p = Platform(tmp_path / f"p{len(made)}")
        p.root.mkdir(parents=True)
        made.append(p)
        return p

    yield make
    for p in made:
        p.stop_all()


@pytest.fixture(scope="module")
def shared_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """One platform for the tests of a module that do not restart or kill it."""
    root = tmp_path_factory.mktemp("platform")
    p = Platform(root)
    p.start()
    yield p
    p.stop_all()


class Traffic:
    """``threads`` keep-alive clients sending ``rate`` requests/s in total for at most ``max_s`` seconds."""

    def __init__(self, p: Platform, app: str, rate: float = 100.0, threads: int = 4, max_s: float = 60.0) -> None:
        self.url = p.url("/")
        self.headers = {"Host": f"{app}.localhost"}
        self.period = threads / rate
        self.max_s = max_s
        self.stop_flag = threading.Event()
        self.lock = threading.Lock()
        #: (send time, status or exception name, version header, body)
        self.results: list[tuple[float, int | str, str, str]] = []
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def _run(self, index: int) -> None:
        start = time.monotonic() + index * self.period / len(self.threads)
        n = 0
        with httpx.Client(timeout=10) as client:
            while not self.stop_flag.is_set() and time.monotonic() - start < self.max_s:
                due = start + n * self.period
                n += 1
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                sent = time.time()
                try:
                    r = client.get(self.url, headers=self.headers)
                    row = (sent, r.status_code, r.headers.get("x-app-version", ""), r.text.strip())
                except httpx.HTTPError as exc:
                    row = (sent, type(exc).__name__, "", str(exc))
                with self.lock:
                    self.results.append(row)

    def __enter__(self) -> Traffic:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_flag.set()
        for t in self.threads:
            t.join(20)

    def snapshot(self) -> list[tuple[float, int | str, str, str]]:
        with self.lock:
            return sorted(self.results)

    def failures(self) -> list[tuple[float, int | str, str, str]]:
        return [r for r in self.snapshot() if r[1] != 200]

    def versions(self, since: float = 0.0) -> set[str]:
        return {r[2] for r in self.snapshot() if r[0] >= since and r[1] == 200}

    def count(self, since: float = 0.0) -> int:
        return sum(1 for r in self.snapshot() if r[0] >= since)
