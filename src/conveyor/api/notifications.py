"""Notifications out over HTTP (thin over ``conveyor.services.notifications``).

``/apps/{app}/notifications/targets``: add (a json target's answer carries its signing secret, once),
list, remove, test one; ``/apps/{app}/notifications``: the delivery log (status code, attempts, next
retry, error), also the JSON twin of the app page's Notifications section.
"""

from __future__ import annotations

from fastapi import APIRouter, Query, Response

from conveyor.api.deps import CP, Reader, Writer
from conveyor.services import notifications
from conveyor.services.schemas import NotificationView, NotifyIn, NotifyTarget, RowId

router = APIRouter(tags=["notifications"])


@router.post("/apps/{app}/notifications/targets", status_code=201, response_model=NotifyTarget,
             summary="Send the app's events to a URL (signed JSON or Slack)")
def add_target(app: str, body: NotifyIn, cp: CP, p: Writer) -> NotifyTarget:
    return notifications.add_target(cp, app, body, actor=p.name, origin=p.origin)


@router.get("/apps/{app}/notifications/targets", response_model=list[NotifyTarget], summary="Where the app's events go")
def list_targets(app: str, cp: CP, _p: Reader) -> list[NotifyTarget]:
    return notifications.list_targets(cp, app)


@router.delete("/apps/{app}/notifications/targets/{target_id}", status_code=204, summary="Stop sending to a target")
def remove_target(app: str, target_id: RowId, cp: CP, p: Writer) -> Response:
    notifications.remove_target(cp, app, target_id, actor=p.name, origin=p.origin)
    return Response(status_code=204)


@router.post("/apps/{app}/notifications/targets/{target_id}/test", response_model=NotificationView,
             summary="Send a test notification and answer with its first attempt")
async def test_target(app: str, target_id: RowId, cp: CP, p: Writer) -> NotificationView:
    return await notifications.test_target(cp, app, target_id, actor=p.name)


@router.get("/apps/{app}/notifications", response_model=list[NotificationView],
            summary="The delivery log: status code, attempts, next retry, error")
def delivery_log(app: str, cp: CP, _p: Reader, limit: int = Query(50, ge=1, le=500)) -> list[NotificationView]:
    return notifications.delivery_log(cp, app, limit)
