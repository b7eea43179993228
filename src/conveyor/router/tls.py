"""TLS termination: one SSLContext per certificate, picked per connection by SNI.

Why one context per certificate and an SNI callback (rather than one context
with every certificate): OpenSSL holds one certificate per key type in a
context, and the name a client asks for (SNI) arrives in its ClientHello,
before any certificate is chosen. The listening socket's context has no
certificate of its own; its ``sni_callback`` swaps in the context of the
certificate that covers the name. A new routing table builds a new
:class:`CertificateSet` and swaps it whole: connections already open keep the
context they were handshaken with, new ones get the new certificate, nothing
is dropped. Contexts are kept across tables by fingerprint, so an unchanged
certificate is not reloaded.

A ClientHello without SNI, or for a name no certificate covers, is refused
with the TLS alert ``unrecognized_name`` (a clean refusal: there is no default
certificate, because serving one domain's certificate to a request for another
only trades a clear error for a name-mismatch warning and leaks which domains
the router serves). The listener's handshake timeout (``--tls-handshake-timeout``)
frees a connection whose ClientHello never finishes.

Settings: TLS 1.2 and 1.3 only; for TLS 1.2 only forward-secret AEAD suites
(ECDHE with AES-GCM or ChaCha20-Poly1305); no compression, no renegotiation;
ALPN offers ``http/1.1`` (the router speaks HTTP/1.1 only).

This module is not compiled (mypyc): it runs once per handshake or per table,
never per request.
"""

from __future__ import annotations

import hashlib
import logging
import os
import ssl
import tempfile
from dataclasses import dataclass, field

from conveyor.domain.wire import RouteCertificate

log = logging.getLogger("conveyor.router")

#: TLS 1.2 suites (OpenSSL names): forward secrecy and AEAD only. TLS 1.3's are all strong.
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"
ALPN = ["http/1.1"]


def server_context() -> ssl.SSLContext:
    """A server context with the router's TLS settings and no certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(TLS12_CIPHERS)
    ctx.set_alpn_protocols(ALPN)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_NO_RENEGOTIATION
    return ctx


def certificate_context(cert_pem: str, key_pem: str) -> ssl.SSLContext:
    """A server context serving this chain and key; ``ssl.SSLError`` when they do not load or match.

    (``load_cert_chain`` reads files only: the PEMs go through a private temporary
    directory, 0700, removed at once.)
    """
    ctx = server_context()
    with tempfile.TemporaryDirectory(prefix="conveyor-tls-") as d:
        cert_path = os.path.join(d, "cert.pem")
        key_path = os.path.join(d, "key.pem")
        for path, text in ((cert_path, cert_pem), (key_path, key_pem)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(text)
        ctx.load_cert_chain(cert_path, key_path)
    return ctx


def _key(cert: RouteCertificate) -> str:
    return cert.fingerprint or hashlib.sha256((cert.cert_pem + cert.key_pem).encode()).hexdigest()


@dataclass
class CertificateSet:
    """The certificates in force, by the names they cover (exact names first, then wildcards)."""

    exact: dict[str, ssl.SSLContext] = field(default_factory=dict)
    wildcard: dict[str, ssl.SSLContext] = field(default_factory=dict)  # "a.b" for "*.a.b"
    by_key: dict[str, ssl.SSLContext] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # names -> why their certificate is not served

    def lookup(self, name: str) -> ssl.SSLContext | None:
        name = name.lower().rstrip(".")
        ctx = self.exact.get(name)
        if ctx is None:
            _, dot, rest = name.partition(".")
            if dot:
                ctx = self.wildcard.get(rest)
        return ctx

    def covers(self, name: str) -> bool:
        return self.lookup(name) is not None


def build_certificates(certs: list[RouteCertificate], previous: CertificateSet | None = None) -> CertificateSet:
    """The set for a new table, reusing ``previous``'s contexts for unchanged certificates.

    A certificate that does not load (a key that does not match, a bad PEM) is
    logged and left out; the others are served.
    """
    out = CertificateSet()
    old = previous.by_key if previous is not None else {}
    for cert in certs:
        key = _key(cert)
        ctx = out.by_key.get(key) or old.get(key)
        if ctx is None:
            try:
                ctx = certificate_context(cert.cert_pem, cert.key_pem)
            except (ssl.SSLError, OSError, ValueError) as e:
                names = ", ".join(cert.names)
                out.errors[names] = str(e)
                log.error("certificate for %s not served: %s", names, e)
                continue
        out.by_key[key] = ctx
        for n in cert.names:
            n = n.lower().rstrip(".")
            if n.startswith("*."):
                out.wildcard.setdefault(n[2:], ctx)
            else:
                out.exact.setdefault(n, ctx)
    return out


class TlsTerminator:
    """The TLS listener's context and the certificates it picks from by SNI."""

    def __init__(self) -> None:
        self.certs = CertificateSet()
        self.context = server_context()
        self.context.sni_callback = self._pick
        self.refused = 0  # handshakes refused for lack of SNI or of a certificate

    def apply(self, certs: list[RouteCertificate]) -> None:
        """Serve ``certs`` to new connections from now on (open ones keep theirs)."""
        self.certs = build_certificates(certs, self.certs)

    def covers(self, name: str) -> bool:
        return self.certs.covers(name)

    def _pick(self, sslobj: ssl.SSLObject, server_name: str | None, _ctx: ssl.SSLContext) -> int | None:
        ctx = self.certs.lookup(server_name) if server_name else None
        if ctx is None:
            self.refused += 1
            return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
        sslobj.context = ctx
        return None
