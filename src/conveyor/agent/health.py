"""HTTP health probes: one GET, 2xx or a short reason why not.

Readiness and liveness are the same probe (``GET http://<address>:<port><path>``);
the supervisor decides what a result means (see :mod:`conveyor.agent.policy`).
Probes use a fresh connection each time (``Connection: close``), so a listener
that stopped accepting cannot hide behind a kept-alive socket.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

#: A health response is read to its end (the app must not see its write fail) up to this many bytes.
MAX_RESPONSE_BYTES = 64 * 1024


def probe_host(address: str) -> str:
    """Where to probe an instance: the address routers use, or loopback for a wildcard."""
    return "127.0.0.1" if address in ("", "0.0.0.0") else address  # noqa: S104 - comparing, not binding


def status_of(head: bytes) -> int | None:
    """The status code of an HTTP/1.x status line, or None when it is not one."""
    parts = head.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not (parts[1].isdigit() and len(parts[1]) == 3):
        return None
    return int(parts[1])


async def probe(url: str, timeout: float) -> str | None:
    """``None`` when ``GET url`` answers 2xx within ``timeout`` seconds, else a one-line reason.

    One HTTP/1.1 request on asyncio streams, ``Connection: close``, the response read to its end
    (at most ``MAX_RESPONSE_BYTES``). An agent probes every instance every second: through httpx
    (pools, redirects, auth, a transport stack) that was a third of an agent's CPU with 50 apps.

    The end of the response is its ``Content-Length``, not the server closing: an app that keeps
    the connection open despite ``Connection: close`` (seen: a small asyncio server) is healthy, not
    "no answer". Without a length the body is read until the server closes; a status line that
    arrived in time decides even if the rest did not.
    """
    u = urlsplit(url)
    host, port = u.hostname or "127.0.0.1", u.port or 80
    target = (u.path or "/") + (f"?{u.query}" if u.query else "")
    request = (f"GET {target} HTTP/1.1\r\nHost: {u.netloc}\r\nUser-Agent: conveyor-agent\r\n"
               "Accept: */*\r\nConnection: close\r\n\r\n").encode("latin-1")
    writer = None
    head = b""
    try:
        async with asyncio.timeout(timeout):
            try:
                reader, writer = await asyncio.open_connection(host, port)
            except OSError:
                return "connection refused"
            writer.write(request)
            head = await reader.readline()
            if status_of(head) is not None:
                await _read_rest(reader)
    except TimeoutError:
        if status_of(head) is None:
            return f"no answer within {timeout:g}s"
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
        if status_of(head) is None:
            return f"{type(exc).__name__}: {exc}"[:200]
    finally:
        if writer is not None:
            writer.close()
    status = status_of(head)
    if status is None:
        return "no HTTP response" if not head else f"not an HTTP response: {head[:60]!r}"
    if 200 <= status < 300:
        return None
    return f"HTTP {status}"


async def _read_rest(reader: asyncio.StreamReader) -> None:
    """Read the headers, then the body: ``Content-Length`` bytes (at most ``MAX_RESPONSE_BYTES``), or
    without a length up to the server's close."""
    length: int | None = None
    read = 0
    while read < MAX_RESPONSE_BYTES:
        line = await reader.readline()
        read += len(line)
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and value.strip().isdigit():
            length = int(value.strip())
    if length is not None:
        if length:
            await reader.readexactly(min(length, max(MAX_RESPONSE_BYTES - read, 0)))
        return
    while read < MAX_RESPONSE_BYTES and (chunk := await reader.read(MAX_RESPONSE_BYTES - read)):
        read += len(chunk)
