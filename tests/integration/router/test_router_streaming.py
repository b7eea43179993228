"""Large bodies stream through in bounded memory, both directions."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from router_helpers import Backend, Router, make_table

pytestmark = pytest.mark.integration

SIZE = 200 * 1024 * 1024
MEMORY_BUDGET = 120 * 1024 * 1024  # peak RSS of the router process


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def _blocks(total: int, block: bytes) -> Iterator[bytes]:
    left = total
    while left:
        part = block[: min(left, len(block))]
        left -= len(part)
        yield part


def test_200mb_upload_and_download_bounded_memory(backend: Callable[..., Backend], router: Callable[..., Router]) -> None:
    r = router(make_table(1, [(1, 100, [backend("b1")])]))
    block = bytes(range(256)) * 1024
    expected = hashlib.sha256()
    for part in _blocks(SIZE, block):
        expected.update(part)
    c = http.client.HTTPConnection("127.0.0.1", r.port, timeout=60)
    # Upload, chunked.
    c.request("POST", "/sink", body=_blocks(SIZE, block), headers={"Host": "hello.localhost"}, encode_chunked=True)
    resp = c.getresponse()
    got = json.loads(resp.read())
    assert got == {"bytes": SIZE, "sha256": expected.hexdigest()}
    # Upload, Content-Length.
    c.request("POST", "/sink", body=_blocks(SIZE, block), headers={"Host": "hello.localhost", "Content-Length": str(SIZE)})
    assert json.loads(c.getresponse().read())["bytes"] == SIZE
    # Download, Content-Length and chunked; read slowly at first so backpressure must hold.
    for path in ("/big", "/bigchunked"):
        c.request("GET", f"{path}?n={SIZE}", headers={"Host": "hello.localhost"})
        resp = c.getresponse()
        n = 0
        while chunk := resp.read(1 << 20):
            n += len(chunk)
        assert n == SIZE
    c.close()
    assert peak_rss(r.proc.pid) < MEMORY_BUDGET, f"router peak RSS {peak_rss(r.proc.pid) / 2**20:.0f} MiB"


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("CONVEYOR_ROUTER_1GB") != "1", reason="1 GB streaming runs with CONVEYOR_ROUTER_1GB=1")
def test_1gb_download_bounded_memory(backend: Callable[..., Backend], router: Callable[..., Router]) -> None:
    r = router(make_table(1, [(1, 100, [backend("b1")])]))
    c = http.client.HTTPConnection("127.0.0.1", r.port, timeout=120)
    total = 1024**3
    c.request("GET", f"/bigchunked?n={total}", headers={"Host": "hello.localhost"})
    resp = c.getresponse()
    n = 0
    while chunk := resp.read(1 << 20):
        n += len(chunk)
    assert n == total
    c.request("POST", "/sink", body=_blocks(total, b"z" * 65536), headers={"Host": "hello.localhost"}, encode_chunked=True)
    assert json.loads(c.getresponse().read())["bytes"] == total
    c.close()
    assert peak_rss(r.proc.pid) < MEMORY_BUDGET, f"router peak RSS {peak_rss(r.proc.pid) / 2**20:.0f} MiB"


def test_slow_reader_does_not_make_the_router_buffer(backend: Callable[..., Backend], router: Callable[..., Router]) -> None:
    r = router(make_table(1, [(1, 100, [backend("b1")])]))
    s = socket.create_connection(("127.0.0.1", r.port), timeout=30)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        s.sendall(b"GET /big?n=%d HTTP/1.1\r\nHost: hello.localhost\r\n\r\n" % SIZE)
        first = s.recv(65536)
        assert first.startswith(b"HTTP/1.1 200")
        # Do not read for a while: the router must pause the upstream, not buffer 200 MB
        # (the backend writes at loopback speed, so without backpressure RSS would blow up now).
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            assert peak_rss(r.proc.pid) < MEMORY_BUDGET
            time.sleep(0.05)
    finally:
        s.close()
