"""GET /apps/{app}/logs and POST /agents/{host}/logs in process: merge by time, live instances,
health checks hidden, --since, the per-instance cap on the control plane, followers per token."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert

from conveyor.server import create_app
from conveyor.services.logs import FollowerLimit, health_pattern, parse_since
from conveyor.config import ServerSettings
from conveyor.logfile import stamp
from conveyor.store import repo
from conveyor.store.tables import instances, releases

ADMIN = {"Authorization": "Bearer adm"}
T0 = 1_796_000_000.0


@pytest.fixture
def client(tmp_path: Path):  # type: ignore[no-untyped-def]
    settings = ServerSettings(data_dir=tmp_path, admin_token="adm", log_max_bytes=16 * 1024)
    app = create_app(settings)
    with TestClient(app) as c:
        c.portal.call(_stop_orchestrator, app.state.cp)  # type: ignore[union-attr]  # instance rows stay as written
        assert c.post("/api/v1/apps", json={"name": "hello"}, headers=ADMIN).status_code == 201
        cp = app.state.cp
        with cp.engine.begin() as conn:
            env = repo.get_env(conn, repo.get_app(conn, "hello")["id"], "production", create=True)
            conn.execute(insert(releases).values(env_id=env["id"], number=1, image_digest="sha256:" + "0" * 64, status="live",
                                                 config={"health": {"path": "/healthz"}}, created_at=T0))
            for iid in ("hello-production-r1-aaaa", "hello-production-r1-bbbb"):
                conn.execute(insert(instances).values(id=iid, env_id=env["id"], release=1, host="h1", role="main", created_at=T0))
        c.app_state = app.state  # type: ignore[attr-defined]
        yield c


async def _stop_orchestrator(cp: object) -> None:
    for task in cp.tasks:  # type: ignore[attr-defined]
        if task.get_name() == "orchestrator":
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def ship(client: TestClient, instance: str, lines: list[tuple[float, str]], offset: int | None = None) -> int:
    """Post stamped lines as an agent does; return the next offset."""
    data = "".join(f"{stamp(t)} {text}\n" for t, text in lines)
    off = client.offset.get(instance, 0) if offset is None else offset  # type: ignore[attr-defined]
    r = client.post("/api/v1/agents/h1/logs", headers=ADMIN,
                    json={"host": "h1", "chunks": [{"instance": instance, "offset": off, "data": data}]})
    assert r.status_code == 200, r.text
    client.offset[instance] = off + len(data.encode())  # type: ignore[attr-defined]
    return client.offset[instance]  # type: ignore[attr-defined,no-any-return]


@pytest.fixture(autouse=True)
def _offsets(client: TestClient) -> None:
    client.offset = {}  # type: ignore[attr-defined]


def logs(client: TestClient, **params: object) -> list[str]:
    r = client.get("/api/v1/apps/hello/logs", params=params, headers=ADMIN)
    assert r.status_code == 200, r.text
    return r.text.splitlines()


def test_lines_of_live_instances_merged_by_time_without_health_checks(client: TestClient) -> None:
    a, b = "hello-production-r1-aaaa", "hello-production-r1-bbbb"
    ship(client, a, [(T0 + 1, "a one"), (T0 + 3, '127.0.0.1 "GET /healthz HTTP/1.1" 200 -'), (T0 + 4, "a four")])
    ship(client, b, [(T0 + 2, "b two"), (T0 + 5, "b five")])
    ship(client, "hello-production-r0-dead", [(T0 + 2.5, "from a gone instance")])
    got = logs(client)
    assert got == [f"{stamp(T0 + 1)} {a}| a one", f"{stamp(T0 + 2)} {b}| b two", f"{stamp(T0 + 4)} {a}| a four",
                   f"{stamp(T0 + 5)} {b}| b five"]
    assert any("GET /healthz" in line for line in logs(client, health=True))
    assert any("from a gone instance" in line for line in logs(client, all=True))
    assert [line.split("| ")[1] for line in logs(client, lines=2)] == ["a four", "b five"]
    assert [line.split("| ")[1] for line in logs(client, since=stamp(T0 + 3.5)[:19])] == ["a four", "b five"]
    assert [line.split("| ")[1] for line in logs(client, grep="five")] == ["b five"]


def test_bad_since_is_a_clear_422(client: TestClient) -> None:
    r = client.get("/api/v1/apps/hello/logs", params={"since": "yesterday-ish"}, headers=ADMIN)
    assert r.status_code == 422 and "since" in str(r.json()["detail"])


def test_the_control_plane_keeps_at_most_the_cap_per_instance_and_marks_gaps(client: TestClient, tmp_path: Path) -> None:
    a = "hello-production-r1-aaaa"
    for i in range(400):  # ~40 KB into a 16 KB cap
        ship(client, a, [(T0 + i, f"line {i} " + "x" * 60)])
    kept = sum(p.stat().st_size for p in (tmp_path / "logs").glob(f"{a}.log*"))
    assert kept <= 16 * 1024
    assert logs(client, lines=1)[0].endswith("line 399 " + "x" * 60)
    ship(client, a, [(T0 + 500, "after a gap")], offset=client.offset[a] + 100_000)  # type: ignore[attr-defined]
    tail = [line.split("| ", 1)[1] for line in logs(client, lines=2)]
    assert "100000 bytes of output missing" in tail[0] and tail[1] == "after a gap"
    # The same chunk again (at-least-once delivery) is not stored twice.
    ship(client, a, [(T0 + 500, "after a gap")], offset=client.offset[a] - len(f"{stamp(T0 + 500)} after a gap\n"))  # type: ignore[attr-defined]
    assert [line.split("| ", 1)[1] for line in logs(client, lines=2)][1:] == ["after a gap"]
    assert logs(client, lines=3)[0].split("| ", 1)[1] != "after a gap"


def test_health_pattern_matches_common_access_log_formats() -> None:
    pat = health_pattern(["/healthz"])
    assert pat is not None
    assert pat.search('127.0.0.1 - - [02/Dec/2026 07:30:01] "GET /healthz HTTP/1.1" 200 -')
    assert pat.search('INFO:     127.0.0.1:5000 - "GET /healthz?x=1 HTTP/1.1" 200 OK')
    assert not pat.search('"GET /healthzone HTTP/1.1" 200')
    assert not pat.search('"GET / HTTP/1.1" 200')
    assert health_pattern([]) is None


def test_parse_since() -> None:
    assert parse_since("10m", T0) == stamp(T0 - 600)
    assert parse_since("2026-12-02T07:30", T0) == "2026-12-02T07:30"
    assert parse_since("2026-12-02", T0) == "2026-12-02T00:00:00"
    with pytest.raises(ValueError, match="10m"):
        parse_since("soonish", T0)


def test_follower_limit_per_token() -> None:
    lim = FollowerLimit(per_token=2)
    assert lim.acquire("t1") and lim.acquire("t1") and not lim.acquire("t1")
    assert lim.acquire("t2")
    lim.release("t1")
    assert lim.acquire("t1")
    lim.release("t1"), lim.release("t1"), lim.release("t2")
    assert lim.active == {}


def test_a_log_batch_with_names_no_file_can_have_is_stored_without_them(client: TestClient) -> None:
    """Schema-valid names that cannot be file names (NUL, a lone surrogate, 200+ bytes) were a 422 from
    the filesystem ("embedded null byte"), which schemathesis rightly called a valid request refused:
    they are skipped like any unsafe name, and a chunk whose data holds a lone surrogate is kept."""
    bad = ["a\x00b", "\ud800", "ü" * 120, "../x", ".hidden"]
    body = {"host": "h1", "chunks": [{"instance": n, "offset": 0, "data": "x\n"} for n in bad]
            + [{"instance": "hello-production-r1-aaaa", "offset": 0, "data": "ok \ud800\n"}]}
    r = client.post("/api/v1/agents/h1/logs", content=_json_with_surrogates(body),
                    headers={**ADMIN, "Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    assert r.json() == {"written": len("ok ?\n")}


def _json_with_surrogates(body: object) -> bytes:
    """JSON as a client may send it: a lone surrogate escaped as \\ud800 (valid JSON, not valid UTF-8)."""
    import json

    return json.dumps(body, ensure_ascii=True).encode()
