"""Helpers of the web UI tests: an in-process control plane with a temp data dir, seeded through the service functions.

``web`` gives a TestClient signed in as admin (session cookie), ``anon`` one
that is not signed in, and helpers to seed images (rows as a finished build
leaves them) and to move a deployment to a final state the way the
orchestrator would.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import warnings

with warnings.catch_warnings():  # starlette warns that its TestClient will move from httpx to httpx2
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient
from sqlalchemy import insert, select, update

from conveyor.server import create_app
from conveyor.config import ServerSettings
from conveyor.services import deployments as service
from conveyor.domain.manifest import parse_manifest
from conveyor.store import repo
from conveyor.store.tables import apps, deployments, environments, images, releases

ADMIN = "admin-token-for-tests"
VIEWER = "viewer-token-for-tests"
MANIFEST = {"app": {"name": "hello"}, "run": {"web": "python app.py"},
            "env": {"production": {"instances": 2}, "staging": {"instances": 1}}}


@dataclass
class Site:
    client: TestClient
    app: Any

    @property
    def cp(self) -> Any:
        return self.app.state.cp

    def csrf(self, path: str = "/") -> str:
        html = self.client.get(path).text
        m = re.search(r'name="csrf" value="([0-9a-f]+)"', html) or re.search(r'data-csrf="([0-9a-f]+)"', html)
        assert m, f"no CSRF token on {path}"
        return m.group(1)

    def add_image(self, app: str, sha: str, *, test_status: str = "passed", commit_time: float | None = None,
                  message: str = "a change") -> str:
        digest = "sha256:" + (sha * 64)[:64]
        with self.cp.engine.begin() as conn:
            app_id = repo.get_app(conn, app)["id"]
            conn.execute(insert(images).values(
                digest=digest, app_id=app_id, manifest={"schema_version": 1, "layers": [
                    {"digest": "sha256:" + "e" * 64, "size": 2048, "role": "app"}], "config": {}},
                app_manifest=parse_manifest(MANIFEST).model_dump(mode="json", by_alias=True),
                size=2048, test_status=test_status,
                commit={"sha": (sha * 40)[:40], "author": "Ada <ada@example.com>", "message": message,
                        "time": commit_time if commit_time is not None else time.time() - 3600, "dirty": False},
                build_id=None, created_at=time.time()))
        return digest

    def deploy(self, app: str, env: str, digest: str, actor: str = "admin") -> dict[str, Any]:
        with self.cp.engine.begin() as conn:
            return service.queue_deploy(conn, app, env, digest, actor=actor, origin="127.0.0.1")

    def finish(self, dep_id: int, state: str = "succeeded", reason: str = "") -> None:
        """Do what the orchestrator does when a deployment ends (enough for the pages)."""
        now = time.time()
        with self.cp.engine.begin() as conn:
            dep = conn.execute(select(deployments).where(deployments.c.id == dep_id)).mappings().one()
            conn.execute(update(deployments).where(deployments.c.id == dep_id).values(
                state=state, started_at=dep["started_at"] or now, finished_at=now, reason=reason))
            if state == "succeeded":
                conn.execute(update(environments).where(environments.c.id == dep["env_id"]).values(
                    current_release=dep["to_release"], routes={str(dep["to_release"]): 100}))
                if dep["from_release"] is not None:
                    conn.execute(update(releases).where(releases.c.env_id == dep["env_id"],
                                                        releases.c.number == dep["from_release"])
                                 .values(status="superseded", retired_at=now))
                conn.execute(update(releases).where(releases.c.env_id == dep["env_id"],
                                                    releases.c.number == dep["to_release"])
                             .values(status="live", live_at=now))
            app_name, env_name = repo.app_env_names(conn, dep["env_id"])
            kind = {"succeeded": "deployed" if dep["kind"] == "deploy" else "rollback"}.get(state, "deploy_failed")
            repo.record_event(conn, kind, f"deployment {dep_id} {state}", app=app_name, env=env_name,
                              actor="conveyor", data={"deployment": dep_id, "release": dep["to_release"]})


async def _stop_orchestrator(cp: Any) -> None:
    """The pages are tested on a still history: deployments change only when a test says so."""
    for task in cp.tasks:
        if task.get_name() == "orchestrator":
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def make_site(tmp_path: Path) -> Iterator[Site]:
    app = create_app(ServerSettings(data_dir=tmp_path / "data", admin_token=ADMIN, build_workers=1))
    app.state.cp.viewer_tokens.add(VIEWER)
    with TestClient(app, base_url="http://testserver", follow_redirects=False) as client:
        client.portal.call(_stop_orchestrator, app.state.cp)  # type: ignore[union-attr]
        yield Site(client, app)


def sign_in(site: Site, token: str) -> None:
    page = site.client.get("/login")
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text).group(1)  # type: ignore[union-attr]
    resp = site.client.post("/login", data={"token": token, "csrf": csrf, "next": "/"})
    assert resp.status_code == 303, resp.text


def app_id(site: Site, name: str = "hello") -> int:
    with site.cp.engine.connect() as conn:
        return int(conn.execute(select(apps.c.id).where(apps.c.name == name)).scalar_one())
