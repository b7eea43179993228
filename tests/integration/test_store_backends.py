"""The control plane on both SQL backends: SQLite (embedded default) and a real PostgreSQL.

The same flow runs against each: migrations, an app, an image, a deployment
driven by the real orchestrator from agent reports posted to the real API, the
routing table, a rollback, the release history and the metrics series. A
throwaway PostgreSQL cluster is created with Debian's postgresql binaries
(initdb + pg_ctl, as the postgres user) on a free port.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient
from sqlalchemy import create_engine, insert

from conveyor.server import create_app
from conveyor.config import ServerSettings
from conveyor.domain.histogram import Histogram
from conveyor.store import instance_counts, repo, series
from conveyor.store.db import migrate
from conveyor.store.tables import images

from cvy_platform import free_port, wait_for

pytestmark = pytest.mark.integration
TOKEN = {"Authorization": "Bearer adm"}


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    bindir = _pg_bin()
    if bindir is None:
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL is needed: apt-get install postgresql")
        pytest.skip("needs PostgreSQL (apt-get install postgresql)")
    # pytest's temp dirs are private to root; the postgres user needs a directory of its own
    root = Path(tempfile.mkdtemp(prefix="conveyor-pg-"))
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    shutil.chown(root, "postgres")
    shutil.chown(sock, "postgres")
    port = free_port()

    def as_postgres(*cmd: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["runuser", "-u", "postgres", "--", *cmd], capture_output=True, text=True, check=True)

    as_postgres(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync")
    as_postgres(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "-o",
                f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
    try:
        as_postgres(str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "conveyor")
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/conveyor"
    finally:
        subprocess.run(["runuser", "-u", "postgres", "--", str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate",
                        "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestClient]:
    url = None if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    app = create_app(ServerSettings(data_dir=tmp_path, admin_token="adm", database_url=url))
    with TestClient(app) as c:
        yield c


def _report(c: TestClient, states: dict[str, str], ports: dict[str, int]) -> None:
    desired = c.get("/api/v1/agents/h1/desired", headers=TOKEN).json()
    body = {"host": "h1", "address": "10.0.0.7", "desired_version": desired["version"],
            "instances": [{"id": i["id"], "state": states.get(f"r{i['release']}", "starting"),
                           "port": ports.setdefault(i["id"], 40000 + len(ports))} for i in desired["instances"]]}
    assert c.put("/api/v1/agents/h1/status", json=body, headers=TOKEN).status_code == 200


def test_deploy_route_rollback_and_series_on_each_backend(client: TestClient) -> None:
    c = client
    cp = c.app.state.cp  # type: ignore[attr-defined]
    assert c.post("/api/v1/apps", json={"name": "hello"}, headers=TOKEN).status_code == 201
    ports: dict[str, int] = {}
    _report(c, {}, ports)  # the agent registers
    digests = []
    with cp.engine.begin() as conn:
        app_id = repo.get_app(conn, "hello")["id"]
        for n in (1, 2):
            digest = "sha256:" + f"{n}" * 64
            digests.append(digest)
            conn.execute(insert(images).values(
                digest=digest, app_id=app_id, manifest={"schema_version": 1, "layers": [], "config": {}},
                app_manifest={"run": {"web": "python app.py"}, "env": {"production": {"instances": 2}}},
                size=1, test_status="passed", commit={"sha": f"{n}" * 40, "time": time.time() - 60}, created_at=time.time()))

    for n, digest in enumerate(digests, 1):
        dep = c.post("/api/v1/apps/hello/deployments", json={"env": "production", "image": digest}, headers=TOKEN).json()

        def deployed(dep_id: int = dep["id"], release: int = n) -> bool:
            _report(c, {f"r{r}": "ready" for r in range(1, release + 1)}, ports)
            return c.get(f"/api/v1/deployments/{dep_id}", headers=TOKEN).json()["state"] == "succeeded"

        wait_for(deployed, 20, 0.1, f"deployment of release {n}")

    table = c.get("/api/v1/routing", headers=TOKEN).json()
    (env,) = table["environments"]
    assert [(r["release"], r["weight"], len(r["instances"])) for r in env["releases"]] == [(2, 100, 2)]
    assert all(i["address"].startswith("10.0.0.7:") for i in env["releases"][0]["instances"])

    rb = c.post("/api/v1/apps/hello/rollback", json={"env": "production"}, headers=TOKEN).json()
    wait_for(lambda: c.get(f"/api/v1/deployments/{rb['id']}", headers=TOKEN).json()["state"] == "succeeded", 20, 0.1,
             "rollback")
    rels = {r["number"]: r["status"] for r in c.get("/api/v1/apps/hello/releases", headers=TOKEN).json()}
    assert rels == {1: "live", 2: "rolled_back"}
    newer = c.get("/api/v1/routing", params={"after": table["version"]}, headers=TOKEN).json()
    assert newer["version"] > table["version"] and newer["environments"][0]["releases"][0]["release"] == 1

    # metrics series: points add up, and the API merges them into steps
    h = Histogram()
    for v in (0.01, 0.02, 0.5):
        h.record(v)
    now = float(int(time.time()))
    with cp.engine.begin() as conn:
        env_id = repo.get_env(conn, app_id, "production")["id"]
        for _ in range(2):
            series.add_point(conn, env_id, 1, 1, now - 5, 3, 1, h)
    m = c.get("/api/v1/apps/hello/metrics", params={"env": "production", "window": 60}, headers=TOKEN).json()
    (point,) = m["series"]["1"]
    assert point["requests"] == 6 and point["errors"] == 2 and abs(point["p99"] - 0.5) / 0.5 < 0.05
    assert [mk["kind"] for mk in m["markers"]] == ["deployed", "deployed", "rollback"]
    # instance counts: the orchestrator recorded them as they changed; pruning keeps each newest row
    web = m["instances"]["web"]
    assert web and web[-1]["count"] == 2 and all(p["ready"] >= 0 for p in web), web
    with cp.engine.begin() as conn:
        instance_counts.prune(conn, time.time() + 3600)
    with cp.engine.connect() as conn:
        assert list(instance_counts.newest(conn, env_id)) == ["web"]
        assert len(instance_counts.window(conn, env_id, 0.0)["web"]) == 1


def test_only_one_replica_gets_the_lease_on_postgresql(postgres_url: str) -> None:
    """Two replicas race for a free orchestrator lease on PostgreSQL, 20 times, forced to overlap:
    both open a transaction and pass a barrier; whichever UPDATE runs first is then held between
    its UPDATE and its COMMIT until the other is seen blocked on the row lock (pg_stat_activity),
    so every round really has both writers in flight at once. (Both cannot sit past their UPDATE
    together: the second one's UPDATE is exactly what waits.) Exactly one may win each round."""
    from sqlalchemy import text, update

    from conveyor.store.tables import leases

    engine = create_engine(postgres_url)
    migrate(engine)
    db = postgres_url.rsplit("/", 1)[1]

    def blocked_on_a_lock() -> bool:
        with engine.connect() as conn:
            return bool(conn.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = :db AND wait_event_type = 'Lock'"
            ), {"db": db}).scalar())

    for round_ in range(20):
        with engine.begin() as conn:  # free: expired long ago, held by nobody
            conn.execute(update(leases).where(leases.c.name == "orchestrator").values(holder="", expires_at=0.0))
        barrier = threading.Barrier(2)
        order: list[str] = []
        won: list[str] = []
        errors: list[BaseException] = []
        guard = threading.Lock()

        def race(me: str) -> None:
            try:
                with engine.begin() as conn:
                    conn.execute(text("SELECT 1"))  # the transaction is open on the server
                    barrier.wait(10)
                    took = repo.take_lease(conn, "orchestrator", me, 4_000_000_000.0 + round_, 5.0)
                    with guard:
                        order.append(me)
                        first = len(order) == 1
                    if first:  # hold between UPDATE and COMMIT until the other writer waits on our row
                        wait_for(blocked_on_a_lock, 20, 0.01, "the other writer to block on the lease row")
                    if took:
                        won.append(me)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=race, args=(name,)) for name in ("a", "b")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors
        assert len(won) == 1, (round_, won)
    with engine.begin() as conn:  # give it back: the module's other tests share this database
        repo.release_lease(conn, "orchestrator", won[0])
    engine.dispose()


def _hammer(c: TestClient, n: int, send) -> list[int]:  # type: ignore[no-untyped-def]
    """Send ``n`` requests at once (``send(i) -> Response``) from ``n`` threads held at a barrier."""
    barrier = threading.Barrier(n)
    codes: list[int] = []

    def one(i: int) -> None:
        barrier.wait(30)
        codes.append(send(i).status_code)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(codes) == n, f"only {len(codes)} of {n} requests answered"
    return codes


@pytest.fixture(params=["sqlite", "postgresql"])
def lenient_client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestClient]:
    """Like ``client``, but a server error comes back as a 500 (as a real client sees it) instead of raising."""
    url = None if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    if url is not None:  # a fresh database per test: the module's tests share the cluster
        name = f"c{os.getpid()}_{int(time.time() * 1e6)}"
        admin = create_engine(url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
        admin.dispose()
        url = url.rsplit("/", 1)[0] + "/" + name
    app = create_app(ServerSettings(data_dir=tmp_path, admin_token="adm", database_url=url))
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def test_concurrent_deploys_and_app_creations_get_2xx_or_409(lenient_client: TestClient) -> None:
    """20 deployments at once to an environment that does not exist yet, and 20 creations of one app:
    every request is queued (201) or refused as a conflict (409), never a 500, and the releases are
    numbered 1..20 without a gap or a duplicate."""
    c = lenient_client
    cp = c.app.state.cp  # type: ignore[attr-defined]
    assert c.post("/api/v1/apps", json={"name": "hello"}, headers=TOKEN).status_code == 201
    digest = "sha256:" + "7" * 64
    with cp.engine.begin() as conn:
        conn.execute(insert(images).values(
            digest=digest, app_id=repo.get_app(conn, "hello")["id"],
            manifest={"schema_version": 1, "layers": [], "config": {}},
            app_manifest={"run": {"web": "python app.py"}}, size=1, test_status="passed", commit={},
            created_at=time.time()))
    for round_ in range(2):
        env = f"fresh{round_}"
        codes = _hammer(c, 20, lambda i: c.post("/api/v1/apps/hello/deployments",
                                                json={"env": env, "image": digest}, headers=TOKEN))
        assert sorted(codes) == [201] * 20, codes
        numbers = sorted(d["release"] for d in c.get("/api/v1/apps/hello/deployments",
                                                     params={"env": env}, headers=TOKEN).json())
        assert numbers == list(range(1, 21))
    for round_ in range(3):
        name = f"twin{round_}"
        codes = _hammer(c, 20, lambda i: c.post("/api/v1/apps", json={"name": name}, headers=TOKEN))
        assert sorted(codes) == [201] + [409] * 19, (codes, [a["name"] for a in c.get("/api/v1/apps", headers=TOKEN).json()])
    names = [a["name"] for a in c.get("/api/v1/apps", headers=TOKEN).json()]
    assert names == ["hello", "twin0", "twin1", "twin2"]
