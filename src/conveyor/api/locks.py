"""Deploy locks and freeze windows over HTTP (thin over ``conveyor.services.locks``).

``POST /apps/{app}/locks`` locks an environment (or every one), ``DELETE /apps/{app}/locks?env=``
unlocks; ``/apps/{app}/freezes`` adds and lists freeze windows, ``DELETE /apps/{app}/freezes/{id}``
removes one. A deploy a lock or a freeze refuses gets 409 with who, why and since when.
"""

from __future__ import annotations

from fastapi import APIRouter, Query, Response

from conveyor.api.deps import CP, Reader, Writer
from conveyor.services import locks
from conveyor.services.schemas import ENV, FreezeIn, FreezeView, LockIn, LockView, RowId

router = APIRouter(tags=["locks"])


@router.get("/apps/{app}/locks", response_model=list[LockView], summary="An app's deploy locks")
def list_locks(app: str, cp: CP, _p: Reader) -> list[LockView]:
    return locks.locks(cp, app)


@router.post("/apps/{app}/locks", status_code=201, response_model=LockView,
             summary="Lock an environment (or all): automatic deploys stop, manual ones need force")
def add_lock(app: str, body: LockIn, cp: CP, p: Writer) -> LockView:
    return locks.lock(cp, app, body, actor=p.name, origin=p.origin)


@router.delete("/apps/{app}/locks", response_model=list[LockView],
               summary="Unlock an environment (or the app-wide lock); returns the locks removed")
def remove_locks(app: str, cp: CP, p: Writer,
                 env: str | None = Query(None, description="the environment; none: the app-wide lock", pattern=ENV)
                 ) -> list[LockView]:
    return locks.unlock(cp, app, env, actor=p.name, origin=p.origin)


@router.get("/apps/{app}/freezes", response_model=list[FreezeView], summary="An app's freeze windows")
def list_freezes(app: str, cp: CP, _p: Reader) -> list[FreezeView]:
    return locks.freezes(cp, app)


@router.post("/apps/{app}/freezes", status_code=201, response_model=FreezeView,
             summary="Add a freeze window (weekly or once, in a time zone); 422 if it does not parse")
def add_freeze(app: str, body: FreezeIn, cp: CP, p: Writer) -> FreezeView:
    return locks.add_freeze(cp, app, body, actor=p.name, origin=p.origin)


@router.delete("/apps/{app}/freezes/{freeze_id}", status_code=204, summary="Remove a freeze window")
def remove_freeze(app: str, freeze_id: RowId, cp: CP, p: Writer) -> Response:
    locks.remove_freeze(cp, app, freeze_id, actor=p.name, origin=p.origin)
    return Response(status_code=204)
