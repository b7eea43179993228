"""The real image path: an image built by conveyor.build, served by the (stub) control plane,
fetched, verified and unpacked by the agent's ImageCacheProvider, then run."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import pytest
from agent_harness import REPO, World

from conveyor.build.builder import build_image
from conveyor.build.store import ArtifactStore

pytestmark = pytest.mark.integration


def build_hello(world: World) -> str:
    src = world.tmp / "hello-src"
    shutil.copytree(REPO / "examples" / "hello", src)
    store = ArtifactStore(world.tmp / "store")
    result = build_image(src, store, cache_dir=world.tmp / "build-cache", log=lambda _: None, run_tests=False)
    world.cp.store = store
    return result.image


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
    return dict(e.split("=", 1) for e in raw.split("\0") if "=" in e)


def test_agent_fetches_verifies_unpacks_and_runs_a_built_image(world: World) -> None:
    digest = build_hello(world)
    world.cp.set_instances([world.spec("web-1", image=digest)])
    (world.tmp / "images.json").unlink()
    world.start_agent(use_image_map=False)
    inst = world.wait_state("web-1", "ready", timeout=60)
    assert httpx.get(f"http://127.0.0.1:{inst.port}/", timeout=5).text == "hello from v1\n"
    cwd = Path(os.readlink(f"/proc/{inst.pid}/cwd"))
    assert cwd.is_relative_to(world.data_dir / "images")  # unpacked into the agent's image cache
    env = environ_of(inst.pid)
    assert env["PATH"].split(":")[1].startswith(str(world.data_dir / "images"))  # the image's venv comes first
    assert "VIRTUAL_ENV" in env and env["VIRTUAL_ENV"].startswith(str(world.data_dir))


def test_corrupt_layer_fails_the_instance_with_a_clear_message(world: World) -> None:
    digest = build_hello(world)
    world.cp.corrupt_blobs = True
    world.cp.set_instances([world.spec("web-1", image=digest)])
    world.start_agent(use_image_map=False)
    failed = world.wait_state("web-1", "failed", timeout=60)
    assert "sha256" in failed.message and "retrying" in failed.message
    world.cp.corrupt_blobs = False  # fixed on the control plane: the retry succeeds
    world.wait_state("web-1", "ready", timeout=60)


def test_unknown_image_fails_with_the_control_planes_answer(world: World) -> None:
    build_hello(world)
    world.cp.set_instances([world.spec("web-1", image="sha256:" + "9" * 64)])
    world.start_agent(use_image_map=False)
    failed = world.wait_state("web-1", "failed", timeout=30)
    assert "404" in failed.message
