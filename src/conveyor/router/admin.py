"""The admin port: ``/metrics.json``, ``/metrics``, ``/table``, ``/healthz``.

``/table`` says where every instance listens and how traffic is split, so it needs
``Authorization: Bearer <the router's own token>`` (constant-time compared); a
router without a token does not serve it at all.

Why a hand-rolled server on asyncio streams: four read-only GET endpoints do
not justify a framework in the data plane's process, and the admin port must
keep answering while the proxy is under load (it is scraped by the control
plane). The handler is a plain async function ``path -> (status, type, body)``
so the single-process router and the multi-worker supervisor (which merges
its workers' snapshots) share this module.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from conveyor.router.metrics import prometheus_text

log = logging.getLogger("conveyor.router.admin")

Response = tuple[int, str, bytes]
Handler = Callable[[str, str], Awaitable[Response]]

_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 500: "Internal Server Error", 503: "Service Unavailable"}
PROM_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def json_response(data: Any, status: int = 200) -> Response:
    return status, "application/json", json.dumps(data, separators=(",", ":")).encode()


def make_handler(
    snapshot: Callable[[], Awaitable[dict[str, Any]]],
    table: Callable[[], Awaitable[dict[str, Any]]],
    health: Callable[[], Awaitable[dict[str, Any]]],
    token: str | None = None,
) -> Handler:
    """The admin routes over three async data sources; ``token`` guards ``/table``."""

    async def handle(path: str, authorization: str = "") -> Response:
        path = path.split("?", 1)[0]
        if path == "/metrics.json":
            return json_response(await snapshot())
        if path == "/metrics":
            return 200, PROM_TYPE, prometheus_text(await snapshot()).encode()
        if path == "/table":
            if token is None:
                return 403, "text/plain; charset=utf-8", b"/table needs a credential and this router has none (start it with --token-file)\n"
            sent = authorization[7:].strip() if authorization.lower().startswith("bearer ") else ""
            if not hmac.compare_digest(sent.encode(), token.encode()):
                return 401, "text/plain; charset=utf-8", b"/table needs 'Authorization: Bearer <the router's token>'\n"
            return json_response(await table())
        if path == "/healthz":
            h = await health()
            return json_response(h, 200 if h.get("ok") else 503)
        return 404, "text/plain; charset=utf-8", b"not found; try /metrics.json, /metrics, /table or /healthz\n"

    return handle


async def start_admin(host: str, port: int, handler: Handler) -> asyncio.Server:
    """Serve ``handler`` on ``host:port`` (HTTP/1.1, keep-alive, GET only)."""

    async def conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                parts = lines[0].split(" ")
                close = any(ln.lower().replace(" ", "") == "connection:close" for ln in lines[1:])
                if len(parts) != 3:
                    status, ctype, body = 400, "text/plain", b"bad request line\n"
                    close = True
                elif parts[0] not in ("GET", "HEAD"):
                    status, ctype, body = 405, "text/plain", b"only GET\n"
                else:
                    try:
                        auth = next((ln.split(":", 1)[1].strip() for ln in lines[1:]
                                     if ln.lower().startswith("authorization:")), "")
                        status, ctype, body = await handler(parts[1], auth)
                    except Exception as e:  # noqa: BLE001 - report, keep serving
                        log.exception("admin handler failed")
                        status, ctype, body = 500, "text/plain", f"error: {e}\n".encode()
                hdr = (
                    f"HTTP/1.1 {status} {_REASONS.get(status, 'OK')}\r\nContent-Type: {ctype}\r\n"
                    f"Content-Length: {len(body)}\r\n{'Connection: close' + chr(13) + chr(10) if close else ''}\r\n"
                ).encode()
                writer.write(hdr if parts[0] == "HEAD" else hdr + body)
                await writer.drain()
                if close:
                    return
        except ConnectionError:
            return
        finally:
            writer.close()

    return await asyncio.start_server(conn, host, port, reuse_address=True)
