"""HTTP/1.1 message rules for a proxy: validation, hop-by-hop filtering, heads.

Pure functions over parsed header lists (``[(name, value), ...]`` as bytes, as
httptools hands them over). The protocol modules do the I/O and call these.

Why the router re-checks what llhttp already refuses: the parser rejects
Content-Length together with Transfer-Encoding, duplicate or invalid
Content-Length, obsolete line folding and bare LF, but it accepts a coding list
such as ``gzip, chunked`` and ``Transfer-Encoding`` on HTTP/1.0, which an
upstream may frame differently. A proxy only stays out of smuggling trouble if
it forwards messages whose framing has exactly one reading, so anything else is
a 400 and the connection is closed.
"""

from __future__ import annotations

import itertools
import os
import re
from dataclasses import dataclass
from http import HTTPStatus
from typing import Final

#: Headers that describe one connection, never forwarded (RFC 9110 §7.6.1).
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authorization",
        b"proxy-authenticate",
    }
)
#: Request headers the router sets itself (or answers itself: Expect).
_REPLACED = frozenset({b"x-forwarded-proto", b"x-forwarded-host", b"expect", b"content-length", b"x-forwarded-for"})

_MAX_REQUEST_ID: Final = 200


_RID_PREFIX: Final = os.urandom(6).hex().encode()
_RID_FORMAT: Final = _RID_PREFIX + b"-%x"
_rid_counter: Final = itertools.count(1)


class BadRequest(Exception):
    """The client's request cannot be forwarded safely: status and a reason for a human."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class RequestInfo:
    """What the proxy needs to know about a request head, and the head to send upstream.

    Defaults live on the class so that making one per request only sets what
    differs from them (this is on the request path).
    """

    host_raw: bytes = b""  # the Host header as sent (the proxy's host cache key)
    content_length: int | None = None
    chunked: bool = False
    expect_continue: bool = False
    upgrade: bytes | None = None
    keep_alive: bool = True
    pin: str | None = None
    cookie: str | None = None
    request_id: bytes = b""
    forwarded_head: bytes = b""

    def __init__(self, keep_alive: bool = True) -> None:
        if not keep_alive:
            self.keep_alive = False

    @property
    def host(self) -> str:
        """The Host header (empty for an HTTP/1.0 request without one)."""
        return self.host_raw.decode("latin-1")


def _tokens(value: bytes) -> set[bytes]:
    return {t.strip().lower() for t in value.split(b",") if t.strip()}


# What inspect_request does with each request header (by lower-case name); the
# rest (kind 0) are forwarded as they are. One dict lookup per header on the hot path.
_KEEP: Final = 0
_HOST: Final = 1
_CL: Final = 2
_TE: Final = 3
_CONN: Final = 4
_UPGRADE: Final = 5
_EXPECT: Final = 6
_XFF: Final = 7
_RID: Final = 8
_PIN: Final = 9
_COOKIE: Final = 10
_DROP: Final = 11
_SPECIAL: Final[dict[bytes, int]] = {
    b"host": _HOST,
    b"content-length": _CL,
    b"transfer-encoding": _TE,
    b"connection": _CONN,
    b"upgrade": _UPGRADE,
    b"expect": _EXPECT,
    b"x-forwarded-for": _XFF,
    b"x-request-id": _RID,
    b"x-conveyor-release": _PIN,
    b"cookie": _COOKIE,
}
for _h in HOP_BY_HOP | _REPLACED:
    _SPECIAL.setdefault(_h, _DROP)
#: The kind of a header name as sent (any case): saves a ``lower()`` per header.
#: Bounded, because the names are whatever clients send.
_KIND_BY_NAME: Final[dict[bytes, int]] = {}
_KIND_CACHE_MAX: Final = 4096


def header_kind(name: bytes) -> int:
    """What the router does with request header ``name`` (cached by its exact spelling)."""
    kind = _SPECIAL.get(name.lower(), _KEEP)
    if len(_KIND_BY_NAME) < _KIND_CACHE_MAX:
        _KIND_BY_NAME[name] = kind
    return kind


def inspect_request(
    method: str,
    url: bytes,
    http_version: str,
    headers: list[tuple[bytes, bytes]],
    peer_ip: str,
    keep_alive: bool,
) -> RequestInfo:
    """Validate a request head and prepare its upstream form; raises :class:`BadRequest`."""
    return inspect_head(method.encode(), url, http_version == "1.1", headers, peer_ip.encode(), keep_alive)


#: The forwarded head's piece between X-Forwarded-For's value and X-Forwarded-Host's, per
#: listener: one constant each, so that TLS adds no work to a plain request (see inspect_head).
XF_HTTP: Final = b"\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: "
XF_HTTPS: Final = b"\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: "


def inspect_head(
    method: bytes,
    url: bytes,
    http11: bool,
    headers: list[tuple[bytes, bytes]],
    peer_ip: bytes,
    keep_alive: bool,
    xf_proto: bytes = XF_HTTP,
) -> RequestInfo:
    """:func:`inspect_request` as the proxy calls it (bytes in, no decoding); the hot path.

    The upstream head is gathered as a list of pieces and joined once.
    ``xf_proto`` is :data:`XF_HTTP` or :data:`XF_HTTPS`, by the listener the request came in on.
    """
    info = RequestInfo(keep_alive)
    parts = [method, b" ", url, b" HTTP/1.1\r\n"]
    conn_tokens: set[bytes] | None = None
    host: bytes | None = None
    te: bytes | None = None
    xff: bytes | None = None
    cl_seen = 0
    kinds = _KIND_BY_NAME
    for name, value in headers:
        kind = kinds.get(name)
        if kind is None:
            kind = header_kind(name)
        if not kind:
            parts += (name, b": ", value, b"\r\n")
        elif kind == _HOST:
            if host is not None:
                raise BadRequest(400, "more than one Host header")
            host = value
            parts += (name, b": ", value, b"\r\n")
        elif kind == _CL:
            cl_seen += 1
            if cl_seen > 1 or not value.isdigit() or len(value) > 18:
                raise BadRequest(400, "invalid or duplicate Content-Length")
            info.content_length = int(value)
        elif kind == _TE:
            if te is not None:
                raise BadRequest(400, "more than one Transfer-Encoding header")
            te = value.strip().lower()
        elif kind == _CONN:
            conn_tokens = _tokens(value) if conn_tokens is None else conn_tokens | _tokens(value)
        elif kind == _UPGRADE:
            info.upgrade = value
        elif kind == _EXPECT:
            if value.strip().lower() != b"100-continue":
                raise BadRequest(417, "the only supported Expect is 100-continue")
            info.expect_continue = True
        elif kind == _XFF:
            xff = value if xff is None else xff + b", " + value
        elif kind == _RID:
            if value and len(value) <= _MAX_REQUEST_ID and all(33 <= c < 127 for c in value):
                info.request_id = value
        elif kind == _PIN:
            info.pin = value.decode("latin-1")
            parts += (name, b": ", value, b"\r\n")
        elif kind == _COOKIE:
            c = value.decode("latin-1")
            info.cookie = c if info.cookie is None else info.cookie + "; " + c
            parts += (name, b": ", value, b"\r\n")
        # else: _DROP (hop-by-hop, or set by the router)
    if te is not None:
        if te != b"chunked":
            raise BadRequest(400, "unsupported Transfer-Encoding (only 'chunked' is accepted)")
        if not http11:
            raise BadRequest(400, "Transfer-Encoding is not allowed in HTTP/1.0")
        if cl_seen:
            raise BadRequest(400, "both Content-Length and Transfer-Encoding")
        info.chunked = True
    if host is None:
        if http11:
            raise BadRequest(400, "HTTP/1.1 request without a Host header")
        host = b""
    info.host_raw = host
    if conn_tokens:
        if b"close" in conn_tokens:
            info.keep_alive = False
        named = conn_tokens - {b"close", b"keep-alive", b"upgrade"}
        if named:  # headers the client declared hop-by-hop: drop them too (rare; rebuild)
            parts = parts[:4]
            for name, value in headers:
                low = name.lower()
                if low not in named and _SPECIAL.get(low, _KEEP) in (_KEEP, _HOST, _PIN, _COOKIE):
                    parts += (name, b": ", value, b"\r\n")
    if info.upgrade is not None and (conn_tokens is None or b"upgrade" not in conn_tokens):
        info.upgrade = None
    if method == b"CONNECT":
        raise BadRequest(405, "CONNECT is not supported by this router")
    rid = info.request_id
    if not rid:
        rid = info.request_id = _RID_FORMAT % next(_rid_counter)
    parts += (
        b"X-Forwarded-For: ",
        (xff + b", " + peer_ip) if xff else peer_ip,
        xf_proto,
        host,
        b"\r\nX-Request-Id: ",
        rid,
    )
    if info.upgrade is not None:
        parts += (b"\r\nConnection: Upgrade\r\nUpgrade: ", info.upgrade)
    if info.chunked:
        parts.append(b"\r\nTransfer-Encoding: chunked\r\n\r\n")
    elif info.content_length is not None:
        parts.append(b"\r\nContent-Length: %d\r\n\r\n" % info.content_length)
    else:
        parts.append(b"\r\n\r\n")
    info.forwarded_head = b"".join(parts)
    return info


@dataclass
class ResponseInfo:
    head: bytes
    content_length: int | None
    chunked_in: bool  # upstream sends chunked
    chunked_out: bool  # we send chunked to the client
    no_body: bool
    close_client: bool  # the client connection closes after this response
    close_delimited: bool  # upstream body ends when the upstream closes
    upstream_keep_alive: bool = True  # the upstream connection may serve another request


def response_head(
    status: int,
    reason: bytes,
    headers: list[tuple[bytes, bytes]],
    head_request: bool,
    client_http11: bool,
    client_keep_alive: bool,
    request_id: bytes,
    extra: list[bytes] | None = None,
    upstream_http11: bool = True,
) -> ResponseInfo:
    """The head the client gets for an upstream response, and how its body is framed."""
    conn_tokens: set[bytes] = set()
    cl: int | None = None
    te: bytes | None = None
    kept: list[bytes] = []
    for name, value in headers:
        low = name.lower()
        if low == b"content-length":
            if value.isdigit():
                cl = int(value)
            continue
        if low == b"transfer-encoding":
            te = value.strip().lower()
            continue
        if low == b"connection":
            conn_tokens |= _tokens(value)
            continue
        if low in HOP_BY_HOP or low == b"x-request-id":
            continue
        kept += (name, b": ", value, b"\r\n")
    if conn_tokens:
        filtered: list[bytes] = []
        for i in range(0, len(kept), 4):
            if kept[i].lower() not in conn_tokens:
                filtered += kept[i : i + 4]
        kept = filtered
    no_body = head_request or status in (204, 304) or 100 <= status < 200
    chunked_in = te is not None and te.endswith(b"chunked")
    close_delimited = not no_body and not chunked_in and cl is None
    close_client = not client_keep_alive
    chunked_out = False
    framing: list[bytes] = []
    if not no_body or head_request:
        if cl is not None and not chunked_in:
            framing = [b"Content-Length: ", str(cl).encode(), b"\r\n"]
        elif head_request:
            pass
        elif client_http11:
            chunked_out = True
            framing = [b"Transfer-Encoding: chunked\r\n"]
        else:
            close_client = True  # HTTP/1.0 client: the body ends when we close
    if close_client:
        framing.append(b"Connection: close\r\n")
    elif not client_http11:
        framing.append(b"Connection: keep-alive\r\n")
    if reason:
        line = b"HTTP/1.1 %d %s\r\n" % (status, reason)
    else:
        line = b"HTTP/1.1 %d %s\r\n" % (status, _reason(status))
    parts = [line, *kept, *framing, b"X-Request-Id: ", request_id, b"\r\n"]
    if extra:
        parts += extra
    parts.append(b"\r\n")
    upstream_keep_alive = (b"keep-alive" in conn_tokens) if not upstream_http11 else (b"close" not in conn_tokens)
    return ResponseInfo(
        b"".join(parts), cl, chunked_in, chunked_out, no_body, close_client, close_delimited, upstream_keep_alive and not close_delimited
    )


FRAMING_RE = re.compile(
    rb"\r\n(connection|keep-alive|proxy-connection|te|trailer|upgrade|proxy-authenticate|proxy-authorization"
    rb"|content-length|transfer-encoding)[ \t]*:[ \t]*([^\r]*)",
    re.I,
)
#: FRAMING_RE for a head already lower-cased (``bytes.lower`` + a case-sensitive
#: regex is about twice as fast as ``re.I``).
FRAMING_LOWER_RE = re.compile(
    rb"\r\n(connection|keep-alive|proxy-connection|te|trailer|upgrade|proxy-authenticate|proxy-authorization"
    rb"|content-length|transfer-encoding)[ \t]*:[ \t]*([^\r]*)"
)


def split_head(head: bytes) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """(reason phrase, headers) of a response head already validated by llhttp."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    reason = parts[2] if len(parts) > 2 else b""
    headers = []
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(b":")
            headers.append((name, value.strip(b" \t")))
    return reason, headers


def raw_passthrough(
    head: bytes,
    status: int,
    head_request: bool,
    client_http11: bool,
    client_keep_alive: bool,
    upstream_http11: bool,
) -> ResponseInfo | None:
    """Like :func:`passthrough_info`, from the raw head bytes (a few regex scans, no per-header work)."""
    if not (client_http11 and client_keep_alive and upstream_http11):
        return None
    cl = 0
    chunked = False
    for name, value in FRAMING_RE.findall(head):  # one scan; usually finds just Content-Length
        low = name.lower()
        if low == b"content-length":
            cl += 1
        elif low == b"transfer-encoding" and not chunked and value.strip().lower() == b"chunked":
            chunked = True
        else:
            return None  # a hop-by-hop header to strip, or a second Transfer-Encoding
    if cl > 1 or (cl and chunked):
        return None
    no_body = head_request or status in (204, 304)
    if not cl and not chunked and not no_body:
        return None
    return ResponseInfo(b"", None, chunked, False, no_body, False, False, True)


def passthrough_info(
    status: int,
    headers: list[tuple[bytes, bytes]],
    head_request: bool,
    client_http11: bool,
    client_keep_alive: bool,
    upstream_http11: bool,
) -> ResponseInfo | None:
    """The framing of a response that can be forwarded byte for byte, else None.

    The common case (HTTP/1.1 both sides, keep-alive, Content-Length or chunked,
    no hop-by-hop header to strip) needs no new head: the upstream's bytes are
    already what the client must get, so the proxy copies them unparsed.
    """
    if not (client_http11 and client_keep_alive and upstream_http11):
        return None
    cl: int | None = None
    chunked = False
    for name, value in headers:
        low = name.lower()
        if low in HOP_BY_HOP:
            if low == b"transfer-encoding" and value.lower() == b"chunked" and not chunked:
                chunked = True
                continue
            return None
        if low == b"content-length":
            if cl is not None or not value.isdigit():
                return None
            cl = int(value)
    no_body = head_request or status in (204, 304)
    if cl is None and not chunked and not no_body:
        return None
    return ResponseInfo(b"", cl, chunked, False, no_body, False, False, True)


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b"Unknown"


def simple_response(status: int, text: str, close: bool, request_id: bytes = b"", extra: list[bytes] | None = None) -> bytes:
    """A complete plain-text response generated by the router itself."""
    body = text.encode()
    parts = [
        b"HTTP/1.1 %d %s\r\n" % (status, _reason(status)),
        b"Content-Type: text/plain; charset=utf-8\r\n",
        b"Content-Length: %d\r\n" % len(body),
    ]
    if request_id:
        parts += (b"X-Request-Id: ", request_id, b"\r\n")
    if close:
        parts.append(b"Connection: close\r\n")
    if extra:
        parts += extra
    parts += (b"\r\n", body)
    return b"".join(parts)


CONTINUE_100: Final = b"HTTP/1.1 100 Continue\r\n\r\n"


def chunk(data: bytes) -> list[bytes]:
    """One chunk of a chunked body."""
    return [b"%x\r\n" % len(data), data, b"\r\n"]


LAST_CHUNK: Final = b"0\r\n\r\n"
