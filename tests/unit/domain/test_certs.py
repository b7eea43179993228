"""The pure rules for domains and certificate files (conveyor.domain.certs), by direct calls."""

from __future__ import annotations

import time

import pytest
from tls_certs import TestCA

from conveyor.domain.certs import CertificateError, check_certificate, check_hostname, name_covers, renewal_due


@pytest.mark.parametrize("name", ["example.com", "App.Example.COM.", "a-b.c1.example.co.uk", "xn--bcher-kva.example"])
def test_hostnames_accepted_and_normalised(name: str) -> None:
    assert check_hostname(name) == name.lower().rstrip(".")


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("", "required"),
        ("localhost", "single label"),
        ("https://a.example.com", "without scheme"),
        ("a.example.com:443", "without scheme, port"),
        ("a.example.com/x", "path"),
        ("*.example.com", "wildcard"),
        ("-a.example.com", "label '-a'"),
        ("a_b.example.com", "label 'a_b'"),
        ("a..example.com", "label ''"),
        ("10.0.0.1", "IP address"),
        ("a" * 64 + ".example.com", "1-63"),
        (("a" * 60 + ".") * 5 + "com", "253"),
    ],
)
def test_bad_hostnames_say_what_is_wrong(name: str, says: str) -> None:
    with pytest.raises(ValueError, match=None) as e:
        check_hostname(name)
    assert says in str(e.value), str(e.value)


def test_wildcard_covers_exactly_one_label() -> None:
    assert name_covers("*.example.com", "a.example.com")
    assert not name_covers("*.example.com", "example.com")
    assert not name_covers("*.example.com", "a.b.example.com")
    assert name_covers("A.example.com", "a.example.com.")


@pytest.fixture(scope="module")
def ca() -> TestCA:
    return TestCA()


def test_a_good_chain_gives_its_facts(ca: TestCA) -> None:
    leaf = ca.issue(["app.example.com", "www.example.com"], days=90, start_days_ago=1)
    info = check_certificate(leaf.cert_pem.encode(), leaf.key_pem.encode(), "app.example.com", time.time())
    assert info.names == ("app.example.com", "www.example.com")
    assert info.fingerprint == leaf.fingerprint
    assert info.not_after - info.not_before == pytest.approx(90 * 86400, abs=2)
    assert info.cert_pem.count("BEGIN CERTIFICATE") == 2 and "Conveyor Test CA" in info.issuer
    assert "BEGIN PRIVATE KEY" in info.key_pem


def test_mismatched_key_is_refused(ca: TestCA) -> None:
    a, b = ca.issue(["app.example.com"]), ca.issue(["app.example.com"])
    with pytest.raises(CertificateError, match="private key does not match the certificate"):
        check_certificate(a.cert_pem.encode(), b.key_pem.encode(), "app.example.com", time.time())


def test_a_pem_that_is_not_a_certificate_is_refused(ca: TestCA) -> None:
    leaf = ca.issue(["app.example.com"])
    with pytest.raises(CertificateError, match="holds no PEM certificate"):
        check_certificate(leaf.key_pem.encode(), leaf.key_pem.encode(), "app.example.com", time.time())
    with pytest.raises(CertificateError, match="holds no PEM certificate"):
        check_certificate(b"hello", leaf.key_pem.encode(), "app.example.com", time.time())
    with pytest.raises(CertificateError, match="holds no PEM private key"):
        check_certificate(leaf.cert_pem.encode(), leaf.cert_pem.encode(), "app.example.com", time.time())


def test_expired_not_yet_valid_and_other_domain_are_refused(ca: TestCA) -> None:
    old = ca.issue(["app.example.com"], days=10, start_days_ago=20)
    with pytest.raises(CertificateError, match="expired on"):
        check_certificate(old.cert_pem.encode(), old.key_pem.encode(), "app.example.com", time.time())
    future = ca.issue(["app.example.com"], days=10, start_days_ago=-5)
    with pytest.raises(CertificateError, match="not valid before"):
        check_certificate(future.cert_pem.encode(), future.key_pem.encode(), "app.example.com", time.time())
    other = ca.issue(["other.example.com"])
    with pytest.raises(CertificateError, match="does not cover app.example.com: it is for other.example.com"):
        check_certificate(other.cert_pem.encode(), other.key_pem.encode(), "app.example.com", time.time())
    wild = ca.issue(["*.example.com"])
    assert check_certificate(wild.cert_pem.encode(), wild.key_pem.encode(), "app.example.com", time.time()).names == ("*.example.com",)


def test_a_chain_out_of_order_is_refused(ca: TestCA) -> None:
    leaf = ca.issue(["app.example.com"])
    other_ca = TestCA("Another CA")
    bad_chain = leaf.cert_pem.split("-----END CERTIFICATE-----\n")[0] + "-----END CERTIFICATE-----\n" + other_ca.pem
    with pytest.raises(CertificateError, match="chain is out of order or broken"):
        check_certificate(bad_chain.encode(), leaf.key_pem.encode(), "app.example.com", time.time())


def test_renewal_at_two_thirds_of_the_lifetime() -> None:
    assert renewal_due(0.0, 90.0) == pytest.approx(60.0)


def test_acme_action_issue_renew_or_wait() -> None:
    from conveyor.domain.certs import acme_action

    assert acme_action(None, None, None, 0.0, now=100.0) == "issue"
    assert acme_action(None, None, None, next_attempt_at=150.0, now=100.0) is None  # backing off
    assert acme_action("acme", 0.0, 90.0, 0.0, now=59.0) is None
    assert acme_action("acme", 0.0, 90.0, 0.0, now=60.0) == "renew"  # two thirds of 90
    assert acme_action("file", 0.0, 90.0, 0.0, now=89.0) is None  # a file certificate is the user's
    assert acme_action("acme", 0.0, 90.0, next_attempt_at=70.0, now=65.0) is None


def test_acme_retry_backoff_doubles_and_is_capped() -> None:
    from conveyor.domain.certs import ACME_RETRY_MAX, acme_retry_delay

    assert [acme_retry_delay(n, base=30) for n in (1, 2, 3, 4)] == [30, 60, 120, 240]
    assert acme_retry_delay(40) == ACME_RETRY_MAX
