"""Queries for domains and their certificates (tables ``domains`` and ``certificates``).

Plain reads and writes on a connection the caller's transaction owns; the rules
(which names are valid, what a certificate must satisfy) live in
``conveyor.domain.certs`` and the transactions in ``conveyor.services.domains``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, RowMapping, delete, insert, select, update

from conveyor.domain.wire import AcmeChallenge, RouteCertificate, RouteHttps
from conveyor.store.repo import Conflict, NotFound
from conveyor.store.sealing import Sealer
from conveyor.store.tables import acme_challenges, apps, certificates, domains, environments


def _with_owner() -> Any:
    return (
        select(domains, apps.c.name.label("app"), environments.c.name.label("env"))
        .select_from(domains.join(environments, environments.c.id == domains.c.env_id).join(apps, apps.c.id == environments.c.app_id))
    )


def environment_names(conn: Connection) -> list[tuple[str, str]]:
    """(app, env) of every environment: whose default hostname a name may be."""
    return [(r.app, r.env) for r in conn.execute(
        select(apps.c.name.label("app"), environments.c.name.label("env"))
        .select_from(environments.join(apps, apps.c.id == environments.c.app_id))
    ).all()]


def get(conn: Connection, name: str) -> RowMapping | None:
    return conn.execute(_with_owner().where(domains.c.name == name)).mappings().first()


def add(conn: Connection, name: str, env_id: int, redirect: bool, hsts_max_age: int, at: float, by: str, acme: bool = False) -> None:
    """Insert a domain; :class:`Conflict` naming its owner when it exists already."""
    owner = get(conn, name)
    if owner is not None:
        raise Conflict(
            f"domain {name} already belongs to {owner['app']}/{owner['env']}: "
            f"remove it there first (`conveyor domains remove {owner['app']} {name}`)"
        )
    conn.execute(
        insert(domains).values(
            name=name, env_id=env_id, redirect=redirect, hsts_max_age=hsts_max_age,
            cert_status="pending" if acme else "none", cert_error="", acme=acme, attempts=0, next_attempt_at=0.0,
            created_at=at, created_by=by,
        )
    )


def remove(conn: Connection, app_id: int, name: str) -> None:
    row = get(conn, name)
    env_ids = {r.id for r in conn.execute(select(environments.c.id).where(environments.c.app_id == app_id)).all()}
    if row is None or row["env_id"] not in env_ids:
        raise NotFound(f"domain {name} is not a domain of this app (see `conveyor domains list`)")
    conn.execute(delete(certificates).where(certificates.c.domain == name))
    conn.execute(delete(acme_challenges).where(acme_challenges.c.domain == name))
    conn.execute(delete(domains).where(domains.c.name == name))


def listing(conn: Connection, app_id: int | None = None) -> list[dict[str, Any]]:
    """Domains (of one app, or all) with their owner and certificate facts (never the key)."""
    q = (
        select(
            domains,
            apps.c.name.label("app"),
            environments.c.name.label("env"),
            certificates.c.source,
            certificates.c.fingerprint,
            certificates.c.names.label("cert_names"),
            certificates.c.issuer,
            certificates.c.not_before,
            certificates.c.not_after,
        )
        .select_from(
            domains.join(environments, environments.c.id == domains.c.env_id)
            .join(apps, apps.c.id == environments.c.app_id)
            .outerjoin(certificates, certificates.c.domain == domains.c.name)
        )
        .order_by(apps.c.name, environments.c.name, domains.c.name)
    )
    if app_id is not None:
        q = q.where(apps.c.id == app_id)
    return [dict(r) for r in conn.execute(q).mappings().all()]


def save_certificate(conn: Connection, domain: str, values: dict[str, Any]) -> None:
    """Set ``domain``'s certificate (replacing the one it had) and mark it ok."""
    conn.execute(delete(certificates).where(certificates.c.domain == domain))
    conn.execute(insert(certificates).values(domain=domain, **values))
    set_status(conn, domain, "ok", "")


def set_status(conn: Connection, domain: str, status: str, error: str, **more: Any) -> None:
    conn.execute(update(domains).where(domains.c.name == domain).values(cert_status=status, cert_error=error, **more))


def acme_candidates(conn: Connection) -> list[RowMapping]:
    """ACME domains with their certificate's source and dates (None without one)."""
    return list(
        conn.execute(
            select(domains.c.name, domains.c.attempts, domains.c.next_attempt_at, domains.c.cert_status,
                   certificates.c.source, certificates.c.not_before, certificates.c.not_after)
            .select_from(domains.outerjoin(certificates, certificates.c.domain == domains.c.name))
            .where(domains.c.acme.is_(True))
            .order_by(domains.c.name)
        ).mappings().all()
    )


def put_challenge(conn: Connection, domain: str, token: str, key_authorization: str, at: float) -> None:
    conn.execute(delete(acme_challenges).where(acme_challenges.c.token == token))
    conn.execute(insert(acme_challenges).values(token=token, domain=domain, key_authorization=key_authorization, created_at=at))


def clear_challenges(conn: Connection, domain: str) -> None:
    conn.execute(delete(acme_challenges).where(acme_challenges.c.domain == domain))


def for_routing(conn: Connection) -> list[RowMapping]:
    """Every domain with its environment and, when it has one, its certificate (key sealed)."""
    return list(
        conn.execute(
            select(
                domains.c.name, domains.c.env_id, domains.c.redirect, domains.c.hsts_max_age,
                certificates.c.cert_pem, certificates.c.key_sealed, certificates.c.fingerprint,
            )
            .select_from(domains.outerjoin(certificates, certificates.c.domain == domains.c.name))
            .order_by(domains.c.name)
        ).mappings().all()
    )


def challenges(conn: Connection) -> list[AcmeChallenge]:
    return [AcmeChallenge(token=r.token, key_authorization=r.key_authorization)
            for r in conn.execute(select(acme_challenges).order_by(acme_challenges.c.token)).all()]


#: What a routing table carries instead of a private key for a reader that is not a router.
REDACTED = "(redacted)"


def routing_parts(
    conn: Connection, ring: Callable[[], Sealer] | None
) -> tuple[dict[int, list[str]], list[RouteCertificate], list[RouteHttps]]:
    """What domains add to the routing table: hosts per environment, certificates, and each
    domain's HTTPS settings.

    ``ring`` gives the key ring that opens the certificates' keys (this is the one place they are
    opened), asked for only when a certificate is stored, so a control plane without certificates
    needs no key file. Without a ring every key reads ``(redacted)``: the same table otherwise, so
    the same content version.
    """
    hosts: dict[int, list[str]] = {}
    certs: list[RouteCertificate] = []
    https: list[RouteHttps] = []
    opener = None
    for r in for_routing(conn):
        hosts.setdefault(r["env_id"], []).append(r["name"])
        https.append(RouteHttps(host=r["name"], redirect=bool(r["redirect"]), hsts_max_age=int(r["hsts_max_age"])))
        if r["fingerprint"]:
            key_pem = REDACTED
            if ring is not None:
                opener = opener or ring()
                key_pem = opener.open(r["key_sealed"].encode("ascii")).decode()
            certs.append(RouteCertificate(names=[r["name"]], cert_pem=r["cert_pem"], key_pem=key_pem,
                                          fingerprint=r["fingerprint"]))
    return hosts, certs, https


def sealed_keys(conn: Connection) -> list[tuple[str, str]]:
    """(domain, sealed key) of every certificate, for re-sealing after a key rotation."""
    return [(r.domain, r.key_sealed) for r in conn.execute(
        select(certificates.c.domain, certificates.c.key_sealed).order_by(certificates.c.domain)).all()]


def set_sealed_key(conn: Connection, domain: str, sealed: str) -> None:
    conn.execute(update(certificates).where(certificates.c.domain == domain).values(key_sealed=sealed))
