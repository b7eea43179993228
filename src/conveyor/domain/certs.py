"""Domains and certificates, the rules: is a name a usable hostname, does a PEM chain fit a key and a domain.

Pure functions over strings and bytes (``cryptography`` parses, nothing is
read or written), so every refusal is tested by a direct call. Each error says
what is wrong and what to do, for the API's 422 and the CLI.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


class CertificateError(ValueError):
    """A certificate or key that cannot be used; the message says why and what to do."""


def check_hostname(name: str) -> str:
    """``name`` lower-cased, if it is a DNS hostname a user may own (RFC 1123); ValueError otherwise.

    At least two labels (``example.com``, not ``localhost``), each 1-63 letters,
    digits or inner hyphens, 253 characters at most; no wildcard, port, scheme or path.
    """
    n = name.strip().lower().rstrip(".")
    if not n:
        raise ValueError("a domain name is required, e.g. app.example.com")
    if "://" in n or "/" in n or ":" in n:
        raise ValueError(f"{name!r} is not a hostname: give the name alone, without scheme, port or path (e.g. app.example.com)")
    if "*" in n:
        raise ValueError(f"{name!r}: wildcard domains are not accepted here; add each name (or use `conveyor up --domain BASE`)")
    if len(n) > 253:
        raise ValueError(f"{name!r} is longer than 253 characters")
    labels = n.split(".")
    if len(labels) < 2:
        raise ValueError(f"{name!r} has a single label: a domain needs at least two (e.g. app.example.com)")
    for label in labels:
        if not _LABEL.match(label):
            raise ValueError(
                f"{name!r} is not a valid hostname: label {label!r} must be 1-63 letters, digits or inner hyphens"
            )
    if labels[-1].isdigit():
        raise ValueError(f"{name!r} looks like an IP address: a domain name is required")
    return n


def name_covers(pattern: str, host: str) -> bool:
    """Does a certificate name (``a.b`` or ``*.a.b``) cover ``host``? A wildcard covers one label."""
    pattern, host = pattern.lower().rstrip("."), host.lower().rstrip(".")
    if pattern == host:
        return True
    if pattern.startswith("*."):
        head, dot, rest = host.partition(".")
        return bool(dot and head) and rest == pattern[2:]
    return False


@dataclass(frozen=True)
class CertificateInfo:
    """What the control plane keeps and shows about a checked certificate chain."""

    names: tuple[str, ...]  # the leaf's DNS names (SAN)
    not_before: float  # epoch seconds
    not_after: float
    fingerprint: str  # sha256 of the leaf (DER), hex
    issuer: str
    cert_pem: str  # the chain, normalised (leaf first)
    key_pem: str  # the key, PKCS#8 PEM


def _public_bytes(key: object) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)  # type: ignore[attr-defined]


def check_certificate(cert_pem: bytes, key_pem: bytes, domain: str, now: float) -> CertificateInfo:
    """Parse and check a certificate chain (leaf first) and its private key for ``domain``.

    Refused, with a message: a file that holds no PEM certificate; a key that is
    not a PEM private key (or is encrypted); a key that is not the leaf's; a leaf
    whose names do not cover ``domain``; a leaf not valid yet or expired; a chain
    whose certificates do not sign each other in order.
    """
    try:
        chain = x509.load_pem_x509_certificates(cert_pem)
    except ValueError:
        chain = []
    if not chain:
        raise CertificateError("the certificate file holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)")
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError as e:
        raise CertificateError("the key file is encrypted with a passphrase: give the key unencrypted") from e
    except ValueError as e:
        raise CertificateError("the key file holds no PEM private key (expected -----BEGIN PRIVATE KEY-----)") from e
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        raise CertificateError(f"unsupported key type {type(key).__name__}: use RSA or ECDSA")
    leaf = chain[0]
    if _public_bytes(key.public_key()) != _public_bytes(leaf.public_key()):
        raise CertificateError("the private key does not match the certificate (the first certificate in the file must be the leaf for this key)")
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = tuple(n.lower() for n in san.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        names = ()
    if not any(name_covers(n, domain) for n in names):
        shown = ", ".join(names) or "(no DNS names)"
        raise CertificateError(f"the certificate does not cover {domain}: it is for {shown}")
    nb, na = leaf.not_valid_before_utc.timestamp(), leaf.not_valid_after_utc.timestamp()
    if now >= na:
        raise CertificateError(f"the certificate expired on {_day(na)}: renew it and add the new one")
    if now < nb:
        raise CertificateError(f"the certificate is not valid before {_day(nb)}")
    for child, parent in zip(chain, chain[1:], strict=False):
        try:
            child.verify_directly_issued_by(parent)
        except (ValueError, TypeError, Exception) as e:  # noqa: BLE001 - InvalidSignature and co
            raise CertificateError(
                f"the chain is out of order or broken: {child.subject.rfc4514_string()} is not signed by "
                f"{parent.subject.rfc4514_string()} (put the leaf first, then each issuer)"
            ) from e
    return CertificateInfo(
        names=names,
        not_before=nb,
        not_after=na,
        fingerprint=hashlib.sha256(leaf.public_bytes(serialization.Encoding.DER)).hexdigest(),
        issuer=leaf.issuer.rfc4514_string(),
        cert_pem="".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in chain),
        key_pem=key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode(),
    )


def _day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def renewal_due(not_before: float, not_after: float) -> float:
    """When a certificate should be renewed: at two thirds of its lifetime."""
    return not_before + (not_after - not_before) * 2 / 3


#: ACME retries after a failed order: 30 s, 1 min, 2 min, ... at most 6 hours apart.
ACME_RETRY_BASE = 30.0
ACME_RETRY_MAX = 6 * 3600.0


def acme_retry_delay(attempts: int, base: float = ACME_RETRY_BASE) -> float:
    """Seconds to wait after the ``attempts``-th failed order in a row (exponential, capped)."""
    return min(base * 2 ** max(attempts - 1, 0), ACME_RETRY_MAX)


def acme_action(source: str | None, not_before: float | None, not_after: float | None, next_attempt_at: float, now: float) -> str | None:
    """What the ACME issuer should do for one domain now: ``"issue"``, ``"renew"`` or None.

    Issue when it has no certificate; renew an ACME certificate from two thirds of its
    lifetime; never touch a certificate from a file; wait out the backoff after a failure.
    """
    if now < next_attempt_at:
        return None
    if source is None or not_before is None or not_after is None:
        return "issue"
    if source == "acme" and now >= renewal_due(not_before, not_after):
        return "renew"
    return None
