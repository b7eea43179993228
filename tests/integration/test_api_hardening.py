"""A real ``conveyor server`` (uvicorn on a loopback port) against hostile and broken clients.

Uploads that end early leave no file (a client gone mid-body, a malformed chunked body, a 413,
a 422) and start-up removes what a killed server left; a slowloris client gets the router's
408 after the head timeout while the API keeps answering; a small upload with a huge tar
header is refused without the server's memory following the header's size; out-of-range ids
and malformed parameters are 4xx with a message, never a 500.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import socket
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from api_server import TOKEN, Server
from cvy_platform import wait_for

pytestmark = pytest.mark.integration


def _running(root: Path) -> Iterator[Server]:
    s = Server(root)
    s.start()
    try:
        assert s.api.post("/apps", json={"name": "hello"}).status_code == 201
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the module's tests (each leaves it as it found it: app 'hello', no upload)."""
    yield from _running(tmp_path_factory.mktemp("server"))


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[Server]:
    """A server of the test's own, which it may stop and restart."""
    yield from _running(tmp_path)


def _source_tgz(files: dict[str, bytes], dirs: tuple[str, ...] = ()) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            tar.addfile(info)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


GOOD = {"conveyor.toml": b'[run]\nweb = "python app.py"\n', "app.py": b"print('hi')\n"}


def _raw(port: int, head: bytes, body: bytes = b"", *, read: bool = False) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(head + body)
        if not read:
            return b""
        s.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


def _upload_head(port: int, extra: str) -> bytes:
    return (f"POST /api/v1/apps/hello/builds HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Type: application/gzip\r\n{extra}\r\n").encode()


def test_aborted_and_refused_uploads_leave_no_file(server: Server) -> None:
    port = server.port
    # a client that disconnects mid-body: 10 MB announced, 2 MB sent
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(_upload_head(port, "Content-Length: 10000000\r\n") + b"\0" * 2_000_000)
        wait_for(lambda: server.uploads, 30, 0.05, "the upload to reach the disk")
    wait_for(lambda: server.uploads == [], 30, 0.1, "the aborted upload's file to be removed")
    # a malformed chunked body (a chunk size that is not hex)
    out = _raw(port, _upload_head(port, "Transfer-Encoding: chunked\r\n"), b"4\r\nabcd\r\nZZ\r\n", read=True)
    assert out == b"" or out.startswith(b"HTTP/1.1 400"), out[:200]
    wait_for(lambda: server.uploads == [], 30, 0.1, "the malformed upload's file to be removed")
    # a body that is not an archive (422), one whose conveyor.toml is a directory (422), one too large (413)
    r = server.api.post("/apps/hello/builds", content=b"not a tarball", headers={"Content-Type": "application/gzip"})
    assert r.status_code == 422 and "archive was rejected" in r.json()["detail"]
    r = server.api.post("/apps/hello/builds", content=_source_tgz({"app.py": b""}, dirs=("conveyor.toml",)),
                        headers={"Content-Type": "application/gzip"})
    assert r.status_code == 422 and "conveyor.toml: expected a file, found a directory" in r.json()["detail"]
    big = gzip.compress(b"")  # the limit is on bytes received, so send more than it as zeros
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.sendall(_upload_head(port, f"Content-Length: {(257 << 20) + len(big)}\r\n"))
        sent, chunk = 0, b"\0" * (1 << 20)
        try:
            while sent < 257 << 20:
                s.sendall(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered 413 and closed
    wait_for(lambda: server.uploads == [], 30, 0.1, "the oversized upload's file to be removed")
    assert server.proc is not None and server.proc.poll() is None


def test_a_restarted_server_removes_uploads_a_killed_one_left(own_server: Server) -> None:
    leftover = own_server.data_dir / "uploads" / "tmpabandoned.tar.gz"
    leftover.write_bytes(b"\0" * 1024)
    assert own_server.proc is not None
    own_server.proc.kill()  # as a crash or the OOM killer would
    own_server.proc.wait(10)
    own_server.start()
    assert own_server.uploads == []


def test_an_upload_naming_another_app_or_with_bad_commit_info_is_refused(server: Server) -> None:
    named = _source_tgz({**GOOD, "conveyor.toml": b'[app]\nname = "billing"\n[run]\nweb = "python app.py"\n'})
    r = server.api.post("/apps/hello/builds", content=named, headers={"Content-Type": "application/gzip"})
    assert r.status_code == 422 and "conveyor.toml: [app] name: this source is the app 'billing'" in r.json()["detail"]
    for bad in ("[]", "3", '"x"', '{"time": "nan"}', "{"):
        r = server.api.post("/apps/hello/builds", params={"commit": bad}, content=_source_tgz(GOOD),
                            headers={"Content-Type": "application/gzip"})
        assert r.status_code == 422 and r.json()["detail"].startswith("commit: expected a JSON object"), (bad, r.text)
    assert server.uploads == []


def test_a_huge_tar_header_is_refused_before_it_is_read(server: Server) -> None:
    """A ~65 KB upload whose PAX header claims 200 MB: refused by name, and the server's peak
    memory does not grow by anything like the header (it used to grow by several times it)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("conveyor.toml")
        info.size = len(GOOD["conveyor.toml"])
        info.pax_headers = {"comment": "x" * (200 << 20)}
        tar.addfile(info, io.BytesIO(GOOD["conveyor.toml"]))
    body = gzip.compress(raw.getvalue(), 1)
    del raw
    assert len(body) < 1 << 20
    before = server.peak_rss_mib()
    r = server.api.post("/apps/hello/builds", content=body, headers={"Content-Type": "application/gzip"})
    assert r.status_code == 422 and "header-too-large" in r.json()["detail"], r.text
    grew = server.peak_rss_mib() - before
    assert grew < 50, f"peak memory grew by {grew:.0f} MiB for a 200 MiB header"
    assert server.uploads == []


def test_a_slowloris_client_gets_408_and_the_api_keeps_answering(server: Server) -> None:
    """40 connections dribbling a request head one byte a second: each is answered 408 and closed
    after the head timeout (10 s, the router's), and /healthz answers meanwhile."""
    conns = []
    for _ in range(40):
        s = socket.create_connection(("127.0.0.1", server.port), timeout=60)
        s.sendall(b"GET /api/v1/apps HTTP/1.1\r\n")
        conns.append(s)
    started = time.monotonic()
    answers: dict[int, tuple[float, bytes]] = {}

    def dribble_and_read(i: int, s: socket.socket) -> None:
        s.settimeout(1.0)
        got = b""
        while time.monotonic() - started < 40:
            try:
                s.sendall(b"X")
            except OSError:
                pass
            try:
                chunk = s.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                break
            if not chunk:
                break
            got += chunk
        answers[i] = (time.monotonic() - started, got)

    threads = [threading.Thread(target=dribble_and_read, args=(i, s)) for i, s in enumerate(conns)]
    for t in threads:
        t.start()
    slowest = 0.0
    while any(t.is_alive() for t in threads):
        t0 = time.monotonic()
        assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
        slowest = max(slowest, time.monotonic() - t0)
        time.sleep(0.5)
    for s in conns:
        s.close()
    assert len(answers) == 40
    for elapsed, got in answers.values():
        assert got.startswith(b"HTTP/1.1 408"), got[:100]
        assert 9.0 <= elapsed <= 25.0, elapsed
    assert slowest < 1.0, f"/healthz took {slowest:.2f}s during the slowloris"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/deployments/9223372036854775808", None),
        ("POST", "/deployments/99999999999999999999999/abort", None),
        ("POST", "/deployments/9223372036854775808/cancel", None),
        ("GET", "/builds/9223372036854775808", None),
        ("GET", "/builds/-9223372036854775809/log", None),
        ("POST", "/apps/hello/rollback", {"env": "production", "release": -(10**24)}),
        ("POST", "/apps/hello/rollback", {"env": "production", "release": 2**63}),
        ("PUT", "/agents/h1/status", {"host": "h1", "address": "127.0.0.1", "desired_version": 2**63, "instances": []}),
    ],
)
def test_out_of_range_ids_are_4xx_with_a_message(server: Server, method: str, path: str, body: object) -> None:
    r = server.api.request(method, path, json=body)
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    detail = r.json()["detail"]
    assert detail and ("2^63" in json.dumps(detail) or "less than or equal" in json.dumps(detail)
                       or "greater than or equal" in json.dumps(detail)), detail
    assert "Internal Server Error" not in r.text and os.path.exists(server.data_dir)


@pytest.mark.parametrize(
    ("toml", "message"),
    [("a = " + "[" * 500 + "]" * 500 + "\n", "conveyor.toml: "),
     ('[run]\nweb = "python app.py"\n[deploy]\nbake = nan\n', "conveyor.toml: [deploy] bake: expected a duration"),
     ('[run]\nweb = "python app.py"\n[env.production]\nvars = { "A=B" = "1" }\n', "expected a variable name")],
)
def test_the_cli_refuses_a_bad_manifest_before_uploading_without_a_traceback(
    server: Server, tmp_path: Path, toml: str, message: str
) -> None:
    import subprocess
    import sys

    (tmp_path / "conveyor.toml").write_text(toml)
    (tmp_path / "app.py").write_text("print('hi')\n")
    env = {**os.environ, "CONVEYOR_URL": server.url, "CONVEYOR_TOKEN": TOKEN,
           "CONVEYOR_CONFIG": str(tmp_path / "client.json")}
    res = subprocess.run([sys.executable, "-m", "conveyor", "deploy", "hello", "--source", str(tmp_path)],
                         capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    assert message in res.stderr and "Traceback" not in res.stderr + res.stdout, res.stderr
    assert server.uploads == []
