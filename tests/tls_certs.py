"""Test certificates made on the spot with ``cryptography``: a private CA and leaves signed by it.

Real X.509 (ECDSA P-256, SHA-256), so real TLS clients (Python ``ssl``, curl,
openssl) verify them against the CA file. Shared by the router's TLS tests and
the control plane's certificate tests.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass
class Issued:
    cert_pem: str  # leaf (then the CA, when chained)
    key_pem: str
    fingerprint: str  # sha256 of the leaf's DER, hex

    def route(self, names: list[str]) -> dict[str, object]:
        """As a routing table's ``certificates`` entry."""
        return {"names": names, "cert_pem": self.cert_pem, "key_pem": self.key_pem, "fingerprint": self.fingerprint}


def _pem_key(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()


class TestCA:
    """A throwaway certificate authority."""

    __test__ = False  # not a pytest class

    def __init__(self, name: str = "Conveyor Test CA") -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.pem = self.cert.public_bytes(serialization.Encoding.PEM).decode()

    def write(self, path: Path) -> Path:
        path.write_text(self.pem)
        return path

    def issue(
        self,
        names: list[str],
        days: float = 10,
        start_days_ago: float = 1,
        key: ec.EllipticCurvePrivateKey | None = None,
    ) -> Issued:
        """A leaf for ``names`` (SANs), valid from ``start_days_ago`` for ``days``; its chain includes the CA."""
        leaf_key = key or ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        start = now - dt.timedelta(days=start_days_ago)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(self.cert.subject)
            .public_key(leaf_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + dt.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        der = cert.public_bytes(serialization.Encoding.DER)
        chain = cert.public_bytes(serialization.Encoding.PEM).decode() + self.pem
        return Issued(chain, _pem_key(leaf_key), hashlib.sha256(der).hexdigest())
