"""examples/greeter with a real PyPI dependency: build, rebuild after a code change, run it isolated.

The only tests that install from PyPI; they share one build cache for the session.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from conveyor.build.builder import BuildResult, build_image
from conveyor.build.imagecache import ImageCache
from conveyor.build.proc import free_port
from conveyor.build.runtime import python_version
from conveyor.build.store import ArtifactStore

GREETER = Path(__file__).resolve().parents[3] / "examples" / "greeter"


@pytest.fixture(scope="session")
def greeter_builds(tmp_path_factory: pytest.TempPathFactory) -> tuple[ArtifactStore, BuildResult, BuildResult, list[str]]:
    root = tmp_path_factory.mktemp("greeter")
    src = root / "src"
    shutil.copytree(GREETER, src)
    store = ArtifactStore(root / "store")
    lines: list[str] = []
    cold = build_image(src, store, cache_dir=root / "cache", log=lines.append)
    app_py = src / "app.py"
    app_py.write_text(app_py.read_text().replace("hello from greeter", "hi from greeter"))
    warm = build_image(src, store, cache_dir=root / "cache", log=lines.append)
    return store, cold, warm, lines


def test_greeter_builds_with_its_pypi_dependency_and_a_code_change_ships_one_small_layer(
    greeter_builds: tuple[ArtifactStore, BuildResult, BuildResult, list[str]],
) -> None:
    store, cold, warm, lines = greeter_builds
    assert cold.test_status == "passed" and warm.test_status == "passed", "\n".join(lines)
    assert any("Successfully installed humanize-4.17.0" in line for line in lines)
    assert cold.manifest.config.python == python_version()
    cold_deps, cold_app = cold.layers
    warm_deps, warm_app = warm.layers
    assert warm_deps.digest == cold_deps.digest and warm_deps.cached and warm_deps.reused
    assert warm_app.digest != cold_app.digest and not warm_app.reused
    new_bytes = sum(layer.size for layer in warm.layers if not layer.reused) + len(store.manifest_bytes(warm.image))
    assert new_bytes < 0.05 * (warm.size + len(store.manifest_bytes(warm.image)))


def test_greeter_runs_isolated_and_serves_http(
    tmp_path: Path, greeter_builds: tuple[ArtifactStore, BuildResult, BuildResult, list[str]]
) -> None:
    store, _, warm, _ = greeter_builds
    image = ImageCache(tmp_path / "agent").ensure(
        warm.image, store.manifest_bytes, lambda d, p: shutil.copyfile(store.blob_path(d), p)
    )
    env = image.environ()
    probe = subprocess.run(
        ["python", "-c", "import fastapi"], cwd=image.root, env=env, check=False, capture_output=True, text=True, timeout=60
    )
    assert probe.returncode != 0 and "No module named 'fastapi'" in probe.stderr
    port = free_port()
    proc = subprocess.Popen(
        warm.manifest.config.processes["web"], shell=True, cwd=image.root, env={**env, "PORT": str(port)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        body = ""
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as resp:
                    body = resp.read().decode()
                break
            except OSError:
                assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
                time.sleep(0.05)
        assert body.startswith("hi from greeter v1, up for"), body
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the shell and the app
        proc.wait(10)
        if proc.stdout:
            proc.stdout.close()
