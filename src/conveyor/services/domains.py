"""Domains and certificates: the rules and transactions behind `conveyor domains` and `conveyor certs`.

A domain belongs to one environment (adding it twice is a conflict naming its
owner; a name that is an environment's default hostname ``APP.BASE`` /
``ENV.APP.BASE`` is refused too). A certificate from files is checked against
its key, the domain and the clock (``conveyor.domain.certs``) before anything
is stored; its key is stored encrypted (``store.secretbox``) and decrypted only
to build the routing table for routers. Every change pokes the routing table's
long-poll, so routers get new domains and certificates within a poll.
"""

from __future__ import annotations

import time
from pathlib import Path
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import Connection, Engine, select

from conveyor.domain.certs import CertificateInfo, check_certificate, check_hostname, renewal_due
from conveyor.domain.routing import hostnames
from conveyor.domain.wire import RoutingTable
from conveyor.services.acme import enabled as acme_enabled
from conveyor.store import domains as store
from conveyor.store import repo
from conveyor.store.secretbox import SecretBox
from conveyor.store.tables import apps, environments


class CertificateView(BaseModel):
    source: str = Field(description="'file' (conveyor certs add) or 'acme'")
    names: list[str]
    issuer: str
    fingerprint: str
    not_before: float
    not_after: float
    renew_at: float = Field(description="two thirds of its lifetime")
    days_left: float


class DomainView(BaseModel):
    name: str
    app: str
    env: str
    redirect: bool = Field(description="plain HTTP answered with 308 to HTTPS (once a certificate covers it)")
    hsts_max_age: int
    acme: bool = Field(description="its certificate comes from ACME (off once a file certificate is added)")
    status: str = Field(description="'none' (no certificate: HTTP only), 'pending', 'issuing', 'renewing', 'ok', 'expired', or 'failed'")
    error: str = ""
    certificate: CertificateView | None = None
    created_at: float
    created_by: str = ""


class DomainIn(BaseModel):
    name: str = Field(description="a hostname you own, e.g. app.example.com")
    env: str = "production"
    redirect: bool = True
    hsts_max_age: int = Field(default=0, ge=0, le=2 * 365 * 86400)
    acme: bool = Field(default=True, description="obtain and renew its certificate by ACME (when the server has an ACME directory)")


class CertificateIn(BaseModel):
    cert_pem: str = Field(description="the certificate, then its chain (PEM)")
    key_pem: str = Field(description="its private key (PEM, unencrypted); stored encrypted")


Poke = Callable[[], None]

_boxes: dict[str, SecretBox] = {}


def secret_box(data_dir: Path) -> SecretBox:
    """The control plane's SecretBox (keys from CONVEYOR_SECRET_KEYS or ``data_dir/secret.key``), made once."""
    key = str(data_dir)
    box = _boxes.get(key)
    if box is None:
        box = _boxes[key] = SecretBox.for_data_dir(data_dir)
    return box


def redact_keys(table: RoutingTable) -> RoutingTable:
    """``table`` without its certificates' private keys (for callers that are not routers)."""
    certs = [c.model_copy(update={"key_pem": "(redacted)"}) for c in table.certificates]
    return table.model_copy(update={"certificates": certs})


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
    for r in conn.execute(
        select(apps.c.name.label("app"), environments.c.name.label("env")).select_from(
            environments.join(apps, apps.c.id == environments.c.app_id)
        )
    ).all():
        if name in hostnames(r.app, r.env, base):
            return f"{r.app}/{r.env}"
    return None


def add_domain(engine: Engine, app: str, body: DomainIn, by: str, base_domain: str, poke: Poke) -> DomainView:
    name = check_hostname(body.name)
    now = time.time()
    with engine.begin() as conn:
        a = repo.get_app(conn, app)
        owner = _default_owner(conn, name, base_domain)
        if owner is not None:
            raise repo.Conflict(f"{name} is the default hostname of {owner} (from --domain {base_domain}); it needs no adding")
        env = repo.get_env(conn, a["id"], body.env, create=True)
        store.add(conn, name, env["id"], body.redirect, body.hsts_max_age, now, by, acme=body.acme and acme_enabled())
        repo.record_event(conn, "domain_added", f"domain {name} added to {app}/{body.env}", app=app, env=body.env, actor=by,
                          data={"domain": name})
        row = next(r for r in store.listing(conn, a["id"]) if r["name"] == name)
    poke()  # routing, and the ACME loop (services/acme.py) when it is on
    return _view(row, now)


def remove_domain(engine: Engine, app: str, name: str, by: str, poke: Poke) -> None:
    name = name.strip().lower().rstrip(".")
    with engine.begin() as conn:
        a = repo.get_app(conn, app)
        row = store.get(conn, name)
        store.remove(conn, a["id"], name)
        repo.record_event(conn, "domain_removed", f"domain {name} removed from {app}/{row['env'] if row else '?'}",
                          app=app, env=row["env"] if row else None, actor=by, data={"domain": name})
    poke()


def list_domains(engine: Engine, app: str | None = None) -> list[DomainView]:
    now = time.time()
    with engine.connect() as conn:
        app_id = repo.get_app(conn, app)["id"] if app else None
        return [_view(r, now) for r in store.listing(conn, app_id)]


def add_certificate(engine: Engine, box: SecretBox, name: str, body: CertificateIn, by: str, poke: Poke,
                    source: str = "file") -> DomainView:
    """Check a certificate for ``name`` and make it the one routers serve (ValueError says what is wrong)."""
    name = name.strip().lower().rstrip(".")
    now = time.time()
    with engine.connect() as conn:
        if store.get(conn, name) is None:
            raise repo.NotFound(f"domain {name} is not known: add it first (`conveyor domains add APP {name}`)")
    info: CertificateInfo = check_certificate(body.cert_pem.encode(), body.key_pem.encode(), name, now)
    with engine.begin() as conn:
        row = store.get(conn, name)
        if row is None:
            raise repo.NotFound(f"domain {name} was removed meanwhile")
        store.save_certificate(conn, name, {
            "source": source, "cert_pem": info.cert_pem, "key_encrypted": box.encrypt(info.key_pem),
            "fingerprint": info.fingerprint, "names": list(info.names), "issuer": info.issuer,
            "not_before": info.not_before, "not_after": info.not_after, "added_at": now,
        })
        if source == "file":  # the user manages it now: ACME neither replaces nor renews it
            store.set_status(conn, name, "ok", "", acme=False, attempts=0, next_attempt_at=0.0)
        repo.record_event(conn, "certificate_added",
                          f"certificate for {name} ({source}, expires {time.strftime('%Y-%m-%d', time.gmtime(info.not_after))})",
                          app=row["app"], env=row["env"], actor=by, data={"domain": name, "fingerprint": info.fingerprint})
        out = next(r for r in store.listing(conn) if r["name"] == name)
    poke()
    return _view(out, now)
