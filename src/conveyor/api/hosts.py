"""Hosts as the capacity of the platform: drain, undrain (``conveyor hosts drain``).

``GET /hosts`` (the hosts page's twin, in ``api/twins.py``) lists them with their labels,
capacity and drained state. Draining is an admin's act: it moves every app's instances.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Path

from conveyor.api.deps import CP, Admin
from conveyor.domain.access import NAME_PATTERN
from conveyor.services import hosts

router = APIRouter(tags=["hosts"])

HostName = Path(description="the host's name (`conveyor hosts`)", pattern=NAME_PATTERN)


@router.post("/hosts/{host}/drain", summary="Drain a host: move its instances away, place nothing new on it")
def drain(cp: CP, p: Admin, host: str = HostName) -> dict[str, Any]:
    return hosts.drain(cp, host, p.name)


@router.delete("/hosts/{host}/drain", summary="Undrain a host: it takes new instances again")
def undrain(cp: CP, p: Admin, host: str = HostName) -> dict[str, Any]:
    return hosts.undrain(cp, host, p.name)
