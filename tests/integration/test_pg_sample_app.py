"""The issue's sample app with a real database (examples/pgjobs) on a throwaway PostgreSQL cluster
that checks passwords (scram-sha-256): the password is a Conveyor secret, the schema migration is
the release phase, a worker consumes the jobs the web process enqueues.

v1, then v2 (whose migration adds a column its code uses) under load with no failed request; a
release whose migration fails leaves v2 serving with nothing moved; `conveyor run` of a management
command prints its output and returns its exit code."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cvy_platform import EXAMPLES, Platform, free_port, wait_for
from test_walking_skeleton import TrafficLoop

pytestmark = pytest.mark.integration

HOST = "pgjobs.localhost"
PASSWORD = "pg-secret-5e1a7c-not-in-any-file"


@pytest.fixture(scope="module")
def pg() -> Iterator[dict[str, str]]:
    """A PostgreSQL cluster on a free port with password authentication, role and database ``app``."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found or not shutil.which("psql"):
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL is needed: apt-get install postgresql")
        pytest.skip("needs PostgreSQL (apt-get install postgresql)")
    bindir = Path(found[-1]).parent
    root = Path(tempfile.mkdtemp(prefix="conveyor-pgapp-"))
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    (root / "pw").write_text("postgres-superuser-pw\n")
    for p in (root, sock, root / "pw"):
        shutil.chown(p, "postgres")
    port = free_port()

    def as_postgres(*cmd: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["runuser", "-u", "postgres", "--", *cmd], capture_output=True, text=True, check=True, **kw)

    as_postgres(str(bindir / "initdb"), "-D", str(data), "-A", "scram-sha-256", "-U", "postgres",
                f"--pwfile={root / 'pw'}", "--no-sync")
    as_postgres(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "-o",
                f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
    try:
        env = {**os.environ, "PGPASSWORD": "postgres-superuser-pw"}
        psql = ["psql", "-X", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-v", "ON_ERROR_STOP=1", "-c"]
        subprocess.run([*psql, f"CREATE ROLE app LOGIN PASSWORD '{PASSWORD}'"], env=env, check=True, capture_output=True)
        subprocess.run([*psql, "CREATE DATABASE app OWNER app"], env=env, check=True, capture_output=True)
        yield {"PGHOST": "127.0.0.1", "PGPORT": str(port), "PGUSER": "app", "PGDATABASE": "app"}
    finally:
        subprocess.run(["runuser", "-u", "postgres", "--", str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate",
                        "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def _source(p: Platform, version: str, **files: str) -> Path:
    dest = p.root / "src" / f"pgjobs-{version}-{time.monotonic_ns()}"
    shutil.copytree(EXAMPLES / "pgjobs", dest)
    (dest / "VERSION").write_text(version + "\n")
    for name, content in files.items():
        path = dest / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return dest


def _run(p: Platform, *cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "conveyor", "run", "pgjobs", "--timeout", "60s", "--", *cmd],
                          capture_output=True, text=True, env=p.env, timeout=120, cwd=p.root)


def test_pgjobs_release_phase_worker_secret_and_run(pg: dict[str, str], platform_factory: Any) -> None:
    p: Platform = platform_factory()
    p.start()
    p.cli("apps", "create", "pgjobs", check=True)
    p.cli("config", "set", "pgjobs", "--no-deploy", *(f"{k}={v}" for k, v in pg.items()), check=True)
    res = subprocess.run([sys.executable, "-m", "conveyor", "config", "set", "pgjobs", "--secret", "--no-deploy",
                          "--stdin", "DB_PASSWORD"], input=PASSWORD, capture_output=True, text=True, env=p.env, cwd=p.root)
    assert res.returncode == 0, res.stderr

    v1 = p.deploy("pgjobs", _source(p, "v1"))
    assert v1["state"] == "succeeded", v1
    assert "schema ready for v1" in (v1["release_output"] or "")
    assert p.get(HOST).text.startswith("v1 job ")
    stats = _run(p, "python", "manage.py", "stats")
    assert stats.returncode == 0 and "columns: done_by,id,payload" in stats.stdout, stats
    wait_for(lambda: "done: 0" not in _run(p, "python", "manage.py", "stats").stdout, 60, 0.5,
             "the worker to do a job")

    # v2: its migration adds the column its code writes; under load, no failed request
    v2_src = _source(p, "v2", USES_PRIORITY="1",
                     **{"migrations/001_priority.sql": "ALTER TABLE jobs ADD COLUMN IF NOT EXISTS priority int"})
    with TrafficLoop(p, HOST) as load:
        time.sleep(1.0)
        v2 = p.deploy("pgjobs", v2_src)
        time.sleep(1.0)
    assert v2["state"] == "succeeded", v2
    assert "applying 001_priority.sql" in (v2["release_output"] or "")
    assert load.failures == [], load.failures[:5]
    served = load.served()
    assert len(served) > 20 and {s.split()[0] for s in served} == {"v1", "v2"} and served[-1].startswith("v2 job")
    stats = _run(p, "python", "manage.py", "stats")
    assert stats.returncode == 0 and "columns: done_by,id,payload,priority" in stats.stdout
    first = stats.stdout

    # a release whose migration fails: deployment failed, nothing moved, v2 keeps serving
    v3 = p.deploy("pgjobs", _source(p, "v3", USES_PRIORITY="1",
                                    **{"migrations/002_broken.sql": "ALTER TABLE no_such_table ADD COLUMN x int"}))
    assert v3["state"] == "failed" and "release command" in v3["reason"] and "exited with code 1" in v3["reason"], v3
    assert "no_such_table" in v3["reason"] or "no_such_table" in (v3["release_output"] or "")
    assert p.get(HOST).text.startswith("v2 job ")
    ps = p.cli_json("ps", "pgjobs")
    assert {r["release"] for r in ps if r["process"] in ("web", "worker")} == {2}

    # `conveyor run`: its output, its exit code
    failed = _run(p, "python", "manage.py", "exit", "7")
    assert failed.returncode == 7 and "exiting with 7" in failed.stdout
    assert "jobs:" in first and _run(p, "python", "manage.py", "stats").returncode == 0
    events = p.api.get("/events", params={"app": "pgjobs", "limit": 200}).json()
    assert any(e["kind"] == "run_started" and "manage.py exit 7" in e["message"] for e in events)

    # the password is a secret: in no file of the platform, in clear
    for f in p.root.rglob("*"):
        if f.is_file() and not f.is_symlink():
            assert PASSWORD.encode() not in f.read_bytes(), f"the database password is in clear in {f}"
