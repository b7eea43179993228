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
#: How far the router's peak RSS may rise above its RSS once warm (one request served).
#: Streaming holds a read buffer or two per direction (~64 KiB each) plus allocator slack;
#: a router that buffered even a tenth of a 200 MB body would exceed it.
MEMORY_BUDGET = 24 * 1024 * 1024
#: The slow reader's pace: 64 KiB every 20 ms (~3 MB/s), far below what the backend writes.
SLOW_READ = 64 * 1024
SLOW_PAUSE = 0.02
SLOW_FOR = 2.0  # seconds of slow reading per download, then full speed to the end


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def warm_rss(port: int, pid: int) -> int:
    """The router's RSS after it has served one small request (its code and pools are in)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/", headers={"Host": "hello.localhost"})
    assert c.getresponse().read() == b"b1\n"
    c.close()
    return rss(pid)


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
    base = warm_rss(r.port, r.proc.pid)
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
    assert peak_rss(r.proc.pid) - base < MEMORY_BUDGET, f"uploads: router peak RSS {(peak_rss(r.proc.pid) - base) / 2**20:.0f} MiB over warm"
    # Download, Content-Length and chunked; read slowly at first so backpressure must hold:
    # the backend writes at loopback speed, so a router that buffered would grow by ~100 MB/s now.
    c.close()
    for path in ("/big", "/bigchunked"):
        c = http.client.HTTPConnection("127.0.0.1", r.port, timeout=60)
        c.connect()
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        c.request("GET", f"{path}?n={SIZE}", headers={"Host": "hello.localhost"})
        resp = c.getresponse()
        n = 0
        slow_until = time.monotonic() + SLOW_FOR
        while time.monotonic() < slow_until:
            chunk = resp.read(SLOW_READ)
            assert chunk, f"{path}: body ended after {n} bytes"
            n += len(chunk)
            time.sleep(SLOW_PAUSE)
        assert n < SIZE // 4, f"{path}: the slow phase read {n} bytes: not slow"
        assert rss(r.proc.pid) - base < MEMORY_BUDGET, f"{path}: router RSS {(rss(r.proc.pid) - base) / 2**20:.0f} MiB over warm"
        while chunk := resp.read(1 << 20):
            n += len(chunk)
        assert n == SIZE
        c.close()
    assert peak_rss(r.proc.pid) - base < MEMORY_BUDGET, f"router peak RSS {(peak_rss(r.proc.pid) - base) / 2**20:.0f} MiB over warm"


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("CONVEYOR_ROUTER_1GB") != "1", reason="1 GB streaming runs with CONVEYOR_ROUTER_1GB=1")
def test_1gb_download_bounded_memory(backend: Callable[..., Backend], router: Callable[..., Router]) -> None:
    r = router(make_table(1, [(1, 100, [backend("b1")])]))
    base = warm_rss(r.port, r.proc.pid)
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
    assert peak_rss(r.proc.pid) - base < MEMORY_BUDGET, f"router peak RSS {(peak_rss(r.proc.pid) - base) / 2**20:.0f} MiB over warm"


def test_slow_reader_does_not_make_the_router_buffer(backend: Callable[..., Backend], router: Callable[..., Router]) -> None:
    r = router(make_table(1, [(1, 100, [backend("b1")])]))
    base = warm_rss(r.port, r.proc.pid)
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
            assert peak_rss(r.proc.pid) - base < MEMORY_BUDGET
            time.sleep(0.05)
    finally:
        s.close()
