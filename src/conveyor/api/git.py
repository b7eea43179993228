"""`git push conveyor main` over HTTP (thin over ``services.gitremote`` and ``services.continuous``).

Two routers:

* ``smart_http``, mounted at ``/git`` (outside ``/api/v1`` and the OpenAPI document: it speaks
  Git's smart HTTP protocol, not JSON): ``GET /git/APP.git/info/refs?service=…`` and
  ``POST /git/APP.git/git-upload-pack|git-receive-pack``, authenticated by a token as the
  HTTP Basic password. Refusals are ``text/plain``, which git prints as ``remote: …``.
* ``router`` (``/api/v1``): the app's remote and deploy branch (``GET``/``PUT /apps/{app}/git``),
  and the pre-receive hook's hand-over (``POST /apps/{app}/pushes``, ``GET /pushes/{push_id}``).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response, StreamingResponse

from conveyor.api.deps import CP, Reader, Writer
from conveyor.domain.gitpush import Route, route
from conveyor.services import continuous, gitremote
from conveyor.services.schemas import GitPushIn, GitPushView, GitRemoteIn, GitRemoteView, PushReceived, RowId

router = APIRouter(tags=["git push"])
smart_http = APIRouter(include_in_schema=False)


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


@router.get("/apps/{app}/git", response_model=GitRemoteView, summary="The app's git remote, deploy branch and pushes")
def get_remote(app: str, request: Request, cp: CP, _p: Reader) -> GitRemoteView:
    return gitremote.remote(cp, app, _base_url(request))


@router.put("/apps/{app}/git", response_model=GitRemoteView, summary="Choose the branch whose pushes deploy")
def put_remote(app: str, body: GitRemoteIn, request: Request, cp: CP, p: Writer) -> GitRemoteView:
    return gitremote.set_branch(cp, app, body.deploy_branch, _base_url(request), actor=p.name, origin=p.origin)


@router.post("/apps/{app}/pushes", status_code=201, response_model=GitPushView,
             summary="Record a pushed ref update (the pre-receive hook); a deploy push ships its build")
async def create_push(app: str, body: GitPushIn, cp: CP, p: Writer) -> GitPushView:
    return continuous.record_push(cp, app, body, actor=p.name, origin=p.origin)


@router.post("/apps/{app}/pushes/received", response_model=GitPushView,
             summary="The deploy branch moved (the post-receive hook): ship the push, or batch it into a deploy train")
def push_received(app: str, body: PushReceived, cp: CP, p: Writer) -> GitPushView:
    return continuous.received(cp, app, body, actor=p.name, origin=p.origin)


@router.get("/pushes/{push_id}", response_model=GitPushView, summary="A push: its state, build and deployment")
def get_push(push_id: RowId, cp: CP, _p: Reader) -> GitPushView:
    return continuous.read(cp, push_id)


@smart_http.api_route("/git/{path:path}", methods=["GET", "POST"])
async def smart(path: str, request: Request, cp: CP) -> Response:
    found = route(request.method, path, request.query_params.get("service"))
    if not isinstance(found, Route):
        return PlainTextResponse(found + "\n", status_code=405 if found == "method not allowed" else 404)
    origin = request.client.host if request.client else ""
    request.state.audit_app = found.app
    authorization = request.headers.get("authorization", "")
    try:
        p = gitremote.authorize(cp, authorization, origin, found.app, found.writes)
    except gitremote.GitRefused as exc:
        return PlainTextResponse(exc.message + "\n", status_code=exc.status, headers=exc.headers)
    request.state.principal = p
    token = gitremote.token_of(authorization) or ""
    headers = {k: request.headers.get(k, "") for k in ("content-type", "content-encoding", "git-protocol",
                                                          "content-length")}
    out = await gitremote.serve(cp, p, token, found.app, f"/{path}", request.method,
                                request.url.query, headers, request.stream())
    return StreamingResponse(out.body, status_code=out.status, headers=out.headers)
