"""Deploy trains over HTTP (thin over ``conveyor.services.trains``).

``POST /apps/{app}/trains`` hands in new commits of a git repository the builds
can fetch (oldest first); they join the environment's collecting train (or new
ones, ``[deploy] max_commits`` each). ``GET /apps/{app}/trains`` lists the trains
with their commits, tries and culprit; ``GET /trains/{id}`` is one (the train
page's JSON twin).
"""

from __future__ import annotations

from fastapi import APIRouter, Query

from conveyor.api.deps import CP, Reader, Writer
from conveyor.services import trains
from conveyor.services.schemas import ENV, RowId, Train, TrainEnqueue

router = APIRouter(tags=["trains"])


@router.post("/apps/{app}/trains", status_code=201, response_model=list[Train],
             summary="Queue new commits for deployment in trains (bisected when a batch fails its canary)")
def enqueue(app: str, body: TrainEnqueue, cp: CP, p: Writer) -> list[Train]:
    return trains.enqueue(cp, app, body.repo, body.commits, trigger=body.trigger, actor=p.name, origin=p.origin,
                          env=body.env)


@router.get("/apps/{app}/trains", response_model=list[Train], summary="An app's deploy trains, newest first")
def list_for_app(app: str, cp: CP, _p: Reader, env: str | None = Query(None, pattern=ENV),
                 limit: int = Query(50, ge=1, le=500)) -> list[Train]:
    return trains.list_for_app(cp, app, env, limit)


@router.get("/trains/{train_id}", response_model=Train, summary="A deploy train: its commits, tries and culprit")
def get_train(train_id: RowId, cp: CP, _p: Reader) -> Train:
    return trains.read(cp, train_id)
