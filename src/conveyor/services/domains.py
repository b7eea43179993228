"""Domains and certificates: the rules and transactions behind `conveyor domains` and `conveyor certs`.

A domain belongs to one environment (adding it twice is a conflict naming its
owner; a name that is an environment's default hostname ``APP.BASE`` /
``ENV.APP.BASE`` is refused too). A certificate from files is checked against
its key, the domain and the clock (``conveyor.domain.certs``) before anything
is stored; its key is sealed with the control plane's one key ring
(``store.sealing.Sealer``, shared with config secrets) and opened only to
build the routing table for routers. Every change pokes the routing table's
long-poll (and the ACME loop), so routers get new domains and certificates
within a poll.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Connection

from conveyor.domain.certs import CertificateInfo, check_certificate, check_hostname, renewal_due
from conveyor.domain.manifest import ENV_NAME_RE
from conveyor.domain.routing import hostnames
from conveyor.services.acme import enabled as acme_enabled
from conveyor.services.schemas import CertificateIn, CertificateView, DomainIn, DomainView
from conveyor.services.state import ControlPlane
from conveyor.store import domains as store
from conveyor.store import repo
from conveyor.store.sealing import Sealer

__all__ = [
    "add_certificate", "add_domain", "list_domains", "remove_domain", "reseal_keys", "save_certificate",
    "sealer",
]


def _view(row: dict[str, Any], now: float) -> DomainView:
    cert = None
    status = row["cert_status"]
    if row.get("fingerprint"):
        cert = CertificateView(
            source=row["source"], names=list(row["cert_names"] or []), issuer=row["issuer"],
            fingerprint=row["fingerprint"], not_before=row["not_before"], not_after=row["not_after"],
            renew_at=renewal_due(row["not_before"], row["not_after"]),
            days_left=round((row["not_after"] - now) / 86400, 1),
        )
        if now >= row["not_after"]:
            status = "expired"
    return DomainView(
        name=row["name"], app=row["app"], env=row["env"], redirect=bool(row["redirect"]),
        hsts_max_age=int(row["hsts_max_age"]), acme=bool(row["acme"]), status=status, error=row["cert_error"] or "",
        certificate=cert, created_at=row["created_at"], created_by=row["created_by"] or "",
    )


def _default_owner(conn: Connection, name: str, base: str) -> str | None:
    """``app/env`` whose default hostname is ``name``, if any."""
    for app, env in store.environment_names(conn):
        if name in hostnames(app, env, base):
            return f"{app}/{env}"
    return None


def _poke(cp: ControlPlane) -> None:
    cp.notifier.poke("routing", "acme")  # routers re-read the table; the ACME loop looks for work


def add_domain(cp: ControlPlane, app: str, body: DomainIn, actor: str = "", origin: str = "") -> DomainView:
    """Route ``body.name`` to ``app``'s environment (created if new); ACME obtains its certificate when on."""
    name = check_hostname(body.name)
    if not ENV_NAME_RE.match(body.env):
        raise ValueError(f"environment {body.env!r} is not a name: use 1-40 lower-case letters, digits and '-', "
                         "starting with a letter")
    now = cp.clock()
    base = cp.settings.domain
    with cp.engine.begin() as conn:
        a = repo.get_app(conn, app)
        owner = _default_owner(conn, name, base)
        if owner is not None:
            raise repo.Conflict(f"{name} is the default hostname of {owner} (from --domain {base}); it needs no adding")
        env = repo.get_env(conn, a["id"], body.env, create=True)
        store.add(conn, name, env["id"], body.redirect, body.hsts_max_age, now, actor, acme=body.acme and acme_enabled())
        repo.record_event(conn, "domain_added", f"domain {name} added to {app}/{body.env}", app=app, env=body.env,
                          actor=actor, origin=origin, data={"domain": name})
        row = next(r for r in store.listing(conn, a["id"]) if r["name"] == name)
    _poke(cp)
    return _view(row, now)


def remove_domain(cp: ControlPlane, app: str, name: str, actor: str = "", origin: str = "") -> None:
    """Stop routing ``name``; its certificate and pending ACME challenges go with it."""
    name = name.strip().lower().rstrip(".")
    with cp.engine.begin() as conn:
        a = repo.get_app(conn, app)
        row = store.get(conn, name)
        store.remove(conn, a["id"], name)
        env = row["env"] if row else None
        repo.record_event(conn, "domain_removed", f"domain {name} removed from {app}/{env or '?'}",
                          app=app, env=env, actor=actor, origin=origin, data={"domain": name})
    _poke(cp)


def list_domains(cp: ControlPlane, app: str | None = None) -> list[DomainView]:
    """Domains (all, or one app's) with where their certificate stands; never a key."""
    now = cp.clock()
    with cp.engine.connect() as conn:
        app_id = repo.get_app(conn, app)["id"] if app else None
        return [_view(r, now) for r in store.listing(conn, app_id)]


def save_certificate(cp: ControlPlane, conn: Connection, name: str, info: CertificateInfo, source: str, now: float) -> None:
    """Store a checked certificate for ``name`` (replacing its previous one), its key sealed."""
    store.save_certificate(conn, name, {
        "source": source, "cert_pem": info.cert_pem, "key_sealed": cp.sealer().seal(info.key_pem.encode()).decode("ascii"),
        "fingerprint": info.fingerprint, "names": list(info.names), "issuer": info.issuer,
        "not_before": info.not_before, "not_after": info.not_after, "added_at": now,
    })


def add_certificate(cp: ControlPlane, name: str, body: CertificateIn, actor: str = "", origin: str = "") -> DomainView:
    """Check a certificate for ``name`` and make it the one routers serve (ValueError says what is wrong).

    A certificate from files turns ACME off for the domain: the user manages it now."""
    name = name.strip().lower().rstrip(".")
    now = cp.clock()
    with cp.engine.connect() as conn:
        if store.get(conn, name) is None:
            raise repo.NotFound(f"domain {name} is not known: add it first (`conveyor domains add APP {name}`)")
    info = check_certificate(body.cert_pem.encode(), body.key_pem.encode(), name, now)
    with cp.engine.begin() as conn:
        row = store.get(conn, name)
        if row is None:
            raise repo.NotFound(f"domain {name} was removed meanwhile")
        save_certificate(cp, conn, name, info, "file", now)
        store.set_status(conn, name, "ok", "", acme=False, attempts=0, next_attempt_at=0.0)
        repo.record_event(conn, "certificate_added",
                          f"certificate for {name} (file, expires {_day(info.not_after)})",
                          app=row["app"], env=row["env"], actor=actor, origin=origin,
                          data={"domain": name, "fingerprint": info.fingerprint})
        out = next(r for r in store.listing(conn) if r["name"] == name)
    _poke(cp)
    return _view(out, now)


def reseal_keys(conn: Connection, ring: Sealer) -> int:
    """Re-seal every stored certificate key with ``ring``'s newest key; how many were.

    For a key rotation (``conveyor secrets rotate-key``): call it in the re-sealing transaction,
    before ``ring.forget_old()``, or the certificates' keys could no longer be opened."""
    n = 0
    for domain, sealed in store.sealed_keys(conn):
        store.set_sealed_key(conn, domain, ring.seal(ring.open(sealed.encode("ascii"))).decode("ascii"))
        n += 1
    return n


def _day(t: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(t))
