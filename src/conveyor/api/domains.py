"""Domains and certificates over HTTP (thin over ``conveyor.services.domains``).

``GET /domains`` and ``GET /apps/{app}/domains`` list them with their
certificate's facts (never a key); ``POST /apps/{app}/domains`` adds one,
``DELETE /apps/{app}/domains/{name}`` removes it; ``PUT /domains/{name}/certificate``
installs a certificate from PEM text (checked: 422 with the reason otherwise).
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from conveyor.api.deps import CP, Reader, Writer
from conveyor.services import domains
from conveyor.services.schemas import CertificateIn, DomainIn, DomainView

router = APIRouter(tags=["domains"])


@router.get("/domains", response_model=list[DomainView], summary="Every domain, its environment and certificate")
def list_all(cp: CP, _p: Reader) -> list[DomainView]:
    return domains.list_domains(cp)


@router.get("/apps/{app}/domains", response_model=list[DomainView], summary="An app's domains")
def list_for_app(app: str, cp: CP, _p: Reader) -> list[DomainView]:
    return domains.list_domains(cp, app)


@router.post("/apps/{app}/domains", status_code=201, response_model=DomainView, summary="Give an environment a domain")
def add(app: str, body: DomainIn, cp: CP, p: Writer) -> DomainView:
    return domains.add_domain(cp, app, body, actor=p.name, origin=p.origin)


@router.delete("/apps/{app}/domains/{name}", status_code=204, summary="Remove a domain (and its certificate)")
def remove(app: str, name: str, cp: CP, p: Writer) -> Response:
    domains.remove_domain(cp, app, name, actor=p.name, origin=p.origin)
    return Response(status_code=204)


@router.put("/domains/{name}/certificate", response_model=DomainView, summary="Install a certificate from PEM files")
def put_certificate(name: str, body: CertificateIn, cp: CP, p: Writer) -> DomainView:
    return domains.add_certificate(cp, name, body, actor=p.name, origin=p.origin)
