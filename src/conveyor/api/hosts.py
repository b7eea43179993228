"""Hosts as the capacity of the platform: join (one-time token → own credential), drain, undrain, remove.

``GET /hosts`` (the hosts page's twin, in ``api/twins.py``) lists them with their labels,
capacity and drained state. Draining is an admin's act: it moves every app's instances.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Path, Request

from conveyor.api.deps import CP, Admin
from conveyor.domain.access import NAME_PATTERN
from conveyor.services import auth, hosts
from conveyor.services.schemas import EnrolTokenCreate, HostJoin, NewToken

router = APIRouter(tags=["hosts"])

HostName = Path(description="the host's name (`conveyor hosts`)", pattern=NAME_PATTERN)


@router.post("/hosts/{host}/drain", summary="Drain a host: move its instances away, place nothing new on it")
def drain(cp: CP, p: Admin, host: str = HostName) -> dict[str, Any]:
    return hosts.drain(cp, host, p.name)


@router.delete("/hosts/{host}/drain", summary="Undrain a host: it takes new instances again")
def undrain(cp: CP, p: Admin, host: str = HostName) -> dict[str, Any]:
    return hosts.undrain(cp, host, p.name)


@router.delete("/hosts/{host}", summary="Remove a host: revoke its agent's credential; its instances start elsewhere")
def remove(cp: CP, p: Admin, host: str = HostName) -> dict[str, Any]:
    return auth.remove_host(cp, p, host)


@router.post("/join-tokens", status_code=201, response_model=NewToken,
             summary="A one-time join token: a new host uses it once to get its own credential")
def create_enrol_token(body: EnrolTokenCreate, cp: CP, p: Admin) -> NewToken:
    return NewToken(**auth.create_enrol_token(cp, p, expires=body.expires))


@router.post("/hosts/join", status_code=201, response_model=NewToken,
             summary="A host joins: its one-time join token (as the bearer token) for its own agent credential")
def join(body: HostJoin, request: Request, cp: CP) -> NewToken:
    header = request.headers.get("authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else ""
    origin = request.client.host if request.client else ""
    return NewToken(**auth.join_host(cp, token, body.host, origin))
