"""The agent's health probe (``agent/health.probe``) against small real servers on loopback."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from conveyor.agent.health import probe, status_of

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def run_probe(handler: Handler, path: str = "/healthz", timeout: float = 1.0) -> tuple[str | None, list[bytes]]:
    seen: list[bytes] = []

    async def main() -> str | None:
        async def serve(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            seen.append(await r.readuntil(b"\r\n\r\n"))
            await handler(r, w)

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            return await probe(f"http://127.0.0.1:{port}{path}", timeout)

    return asyncio.run(main()), seen


def answer(raw: bytes) -> Handler:
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(raw)
        await w.drain()
        w.close()

    return handler


def test_a_2xx_passes_and_the_request_asks_to_close() -> None:
    reason, seen = run_probe(answer(b"HTTP/1.1 204 No Content\r\n\r\n"), "/healthz?deep=1")
    assert reason is None
    head = seen[0].decode()
    assert head.startswith("GET /healthz?deep=1 HTTP/1.1\r\n") and "Connection: close" in head and "Host: 127.0.0.1:" in head


def test_other_statuses_fail_with_the_code() -> None:
    assert run_probe(answer(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\ndown"))[0] == "HTTP 503"
    assert run_probe(answer(b"HTTP/1.0 302 Found\r\n\r\n"))[0] == "HTTP 302"


def test_a_body_is_read_to_its_end() -> None:
    body = b"x" * 200_000  # larger than what is read: the probe still answers, from the status line

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        try:
            await w.drain()
        except ConnectionError:
            pass
        w.close()

    assert run_probe(handler)[0] is None


def test_garbage_silence_and_refusal_have_reasons() -> None:
    assert run_probe(answer(b"SSH-2.0-OpenSSH\r\n"))[0] == "not an HTTP response: b'SSH-2.0-OpenSSH\\r\\n'"
    assert run_probe(answer(b""))[0] == "no HTTP response"

    async def silent(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    assert run_probe(silent, timeout=0.2)[0] == "no answer within 0.2s"

    async def refused() -> str | None:
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        return await probe(f"http://127.0.0.1:{port}/", 1.0)

    assert asyncio.run(refused()) == "connection refused"


def test_status_line_parsing() -> None:
    assert status_of(b"HTTP/1.1 200 OK\r\n") == 200
    assert status_of(b"HTTP/1.1 200\r\n") == 200
    assert status_of(b"HTTP/2 200\r\n") is None
    assert status_of(b"HTTP/1.1 2000 OK\r\n") is None
    assert status_of(b"") is None


def test_a_server_that_keeps_the_connection_open_is_answered_by_its_length() -> None:
    """``Connection: close`` asked, but the app keeps the socket open (benchmarks/cpuwork did: every
    instance was "no answer within 2s" and never became ready). The Content-Length ends the response."""
    async def keep_open(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok")
        await w.drain()
        await asyncio.sleep(5)  # waits for a next request that never comes

    async def keep_open_503(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n")
        await w.drain()
        await asyncio.sleep(5)

    started = time.monotonic()
    assert run_probe(keep_open, timeout=2.0)[0] is None
    assert run_probe(keep_open_503, timeout=2.0)[0] == "HTTP 503"
    assert time.monotonic() - started < 1.5, "the probe waited for the server to close"


def test_a_status_that_arrived_in_time_decides_even_if_the_body_did_not() -> None:
    async def slow_body(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab")
        await w.drain()
        await asyncio.sleep(5)

    assert run_probe(slow_body, timeout=0.3)[0] is None
