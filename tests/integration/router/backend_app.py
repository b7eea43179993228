"""A test backend for the router's integration tests (run as its own process).

``python backend_app.py PORT NAME`` serves HTTP/1.1 keep-alive on 127.0.0.1:
  /            -> "NAME\n" with X-Backend: NAME
  /headers     -> the request head as JSON ({"method", "target", "headers": [[k, v], ...]})
  /echo        -> the request body streamed back (Content-Length or chunked, like the request)
  /sink        -> reads the body, answers {"bytes": n, "sha256": hex}
  /big?n=N     -> N bytes (Content-Length), /bigchunked?n=N the same chunked, /bigclose?n=N close-delimited
  /slow?s=S    -> answers after S seconds;  /hang -> never answers;  /close -> closes at once
  /status?code=C -> that status;  /ws -> WebSocket echo (text and binary frames)
  /raw?h=HEX     -> writes exactly those bytes (a malformed response, say), then keeps the connection
  /_seen         -> what this backend received, counted here and not by the router:
                    {"heads": [target, ...], "completed": [target, ...]} (a request is completed once
                    its whole body was read; /_seen itself is not recorded)
Standard library only (asyncio streams), one coroutine per connection.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import sys
from urllib.parse import parse_qs, urlsplit

NAME = "backend"
CHUNK = 64 * 1024


async def read_head(reader: asyncio.StreamReader) -> tuple[str, str, list[tuple[str, str]]] | None:
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    lines = raw.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = []
    for ln in lines[1:]:
        if ln:
            k, _, v = ln.partition(":")
            headers.append((k.strip(), v.strip()))
    return method, target, headers


def hget(headers: list[tuple[str, str]], name: str) -> str | None:
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


async def body_chunks(reader: asyncio.StreamReader, headers: list[tuple[str, str]]):  # type: ignore[no-untyped-def]
    te = hget(headers, "transfer-encoding")
    if te and "chunked" in te.lower():
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass
                return
            left = size
            while left:
                data = await reader.read(min(left, CHUNK))
                if not data:
                    raise ConnectionError("eof in chunk")
                left -= len(data)
                yield data
            await reader.readexactly(2)
    else:
        left = int(hget(headers, "content-length") or 0)
        while left:
            data = await reader.read(min(left, CHUNK))
            if not data:
                raise ConnectionError("eof in body")
            left -= len(data)
            yield data


CURRENT_RID = ""
HEADS: list[str] = []
COMPLETED: list[str] = []


def head(status: int, headers: list[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {status} X", f"X-Backend: {NAME}", f"X-Seen-Request-Id: {CURRENT_RID}"] + [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def websocket(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, headers: list[tuple[str, str]]) -> None:
    key = hget(headers, "sec-websocket-key") or ""
    accept = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
    writer.write(
        f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n".encode()
    )
    while True:
        b0, b1 = await reader.readexactly(2)
        opcode = b0 & 0x0F
        n = b1 & 0x7F
        if n == 126:
            n = int.from_bytes(await reader.readexactly(2), "big")
        elif n == 127:
            n = int.from_bytes(await reader.readexactly(8), "big")
        mask = await reader.readexactly(4) if b1 & 0x80 else b"\0\0\0\0"
        payload = bytes(c ^ mask[i % 4] for i, c in enumerate(await reader.readexactly(n)))
        if opcode == 8:
            writer.write(b"\x88\x00")
            await writer.drain()
            return
        ln = len(payload)
        hdr = bytes([0x80 | opcode]) + (bytes([ln]) if ln < 126 else bytes([126]) + ln.to_bytes(2, "big") if ln < 65536 else bytes([127]) + ln.to_bytes(8, "big"))
        writer.write(hdr + payload)
        await writer.drain()


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            req = await read_head(reader)
            if req is None:
                return
            method, target, headers = req
            global CURRENT_RID
            CURRENT_RID = hget(headers, "x-request-id") or ""
            url = urlsplit(target)
            q = {k: v[0] for k, v in parse_qs(url.query).items()}
            path = url.path
            if path != "/_seen":
                HEADS.append(target)
            if path == "/_seen":
                body = json.dumps({"heads": HEADS, "completed": COMPLETED}).encode()
                writer.write(head(200, [("Content-Length", str(len(body)))]) + body)
                await writer.drain()
                continue
            if path == "/raw":
                writer.write(bytes.fromhex(q.get("h", "")))
                await writer.drain()
                continue
            if path == "/ws":
                await websocket(reader, writer, headers)
                return
            if path == "/close":
                return
            if path == "/hang":
                await asyncio.sleep(3600)
                return
            if path == "/echo":
                te = hget(headers, "transfer-encoding")
                if te:
                    writer.write(head(200, [("Transfer-Encoding", "chunked")]))
                    async for data in body_chunks(reader, headers):
                        writer.write(b"%x\r\n%s\r\n" % (len(data), data))
                        await writer.drain()
                    writer.write(b"0\r\n\r\n")
                else:
                    writer.write(head(200, [("Content-Length", hget(headers, "content-length") or "0")]))
                    async for data in body_chunks(reader, headers):
                        writer.write(data)
                        await writer.drain()
                await writer.drain()
                continue
            h = hashlib.sha256()
            n = 0
            async for data in body_chunks(reader, headers):
                h.update(data)
                n += len(data)
            COMPLETED.append(target)
            if path == "/slow":
                await asyncio.sleep(float(q.get("s", "1")))
            if path in ("/big", "/bigchunked", "/bigclose"):
                total = int(q.get("n", "0"))
                framing = {"/big": [("Content-Length", str(total))], "/bigchunked": [("Transfer-Encoding", "chunked")], "/bigclose": [("Connection", "close")]}[path]
                writer.write(head(200, framing))
                block = b"x" * CHUNK
                left = total
                while left:
                    part = block[: min(left, CHUNK)]
                    left -= len(part)
                    writer.write(b"%x\r\n%s\r\n" % (len(part), part) if path == "/bigchunked" else part)
                    await writer.drain()
                if path == "/bigchunked":
                    writer.write(b"0\r\n\r\n")
                await writer.drain()
                if path == "/bigclose":
                    return
                continue
            status = int(q.get("code", "200")) if path == "/status" else 200
            if path == "/headers":
                body = json.dumps({"method": method, "target": target, "headers": headers}).encode()
            elif path == "/sink":
                body = json.dumps({"bytes": n, "sha256": h.hexdigest()}).encode()
            else:
                body = f"{NAME}\n".encode()
            writer.write(head(status, [("Content-Length", str(len(body)))]) + (b"" if method == "HEAD" else body))
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        return
    finally:
        writer.close()


async def main() -> None:
    global NAME
    port = int(sys.argv[1])
    NAME = sys.argv[2] if len(sys.argv) > 2 else "backend"
    server = await asyncio.start_server(handle, "127.0.0.1", port, limit=1 << 20)
    print(f"backend {NAME} listening on {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
