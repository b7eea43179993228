"""Push webhooks over HTTP (thin over ``conveyor.services.hooks``).

``PUT/GET/DELETE /apps/{app}/repo`` register, show and forget the repository pushes build from (a
person's token). ``POST /hooks/{app}`` is where GitHub or GitLab sends push events: it takes no token
(the delivery's signature is its credential), reads at most ``domain.webhooks.MAX_BODY`` bytes (413
beyond, before any signature is computed), and answers every unsigned delivery the same way whether
or not the app exists.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import JSONResponse

from conveyor.api.deps import CP, Reader, Writer
from conveyor.domain.webhooks import MAX_BODY
from conveyor.services import hooks
from conveyor.services.schemas import HookAnswer, RepoIn, RepoView

router = APIRouter(tags=["webhooks"])


@router.put("/apps/{app}/repo", response_model=RepoView,
            summary="Build and deploy on push: register the app's repository (prints the webhook's secret once)")
def put_repo(app: str, body: RepoIn, cp: CP, p: Writer) -> RepoView:
    return hooks.set_repo(cp, app, body, actor=p.name, origin=p.origin)


@router.get("/apps/{app}/repo", response_model=RepoView, summary="The app's repository, webhook URL and latest deliveries")
def get_repo(app: str, cp: CP, _p: Reader) -> RepoView:
    return hooks.show_repo(cp, app)


@router.delete("/apps/{app}/repo", status_code=204, summary="Stop building on push (the webhook is refused from now on)")
def delete_repo(app: str, cp: CP, p: Writer) -> Response:
    hooks.remove_repo(cp, app, actor=p.name, origin=p.origin)
    return Response(status_code=204)


async def _bounded_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY):
        raise HTTPException(413, f"a webhook body is at most {MAX_BODY} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise HTTPException(413, f"a webhook body is at most {MAX_BODY} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


@router.post("/hooks/{app}", response_model=HookAnswer, status_code=200,
             responses={202: {"model": HookAnswer, "description": "a push to the deploy branch: building, then deploying"}},
             summary="Push webhook (GitHub or GitLab): authenticated by its signature, no token")
async def receive(app: str, request: Request, cp: CP) -> JSONResponse:
    body = await _bounded_body(request)
    try:
        status, answer = hooks.receive(cp, app, request.headers, body)
    except hooks.HookRefused as exc:
        return JSONResponse({"detail": exc.message}, status_code=exc.status)
    return JSONResponse(answer.model_dump(mode="json"), status_code=status)
