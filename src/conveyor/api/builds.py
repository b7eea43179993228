"""Builds and images over HTTP: upload a source (or name a git ref), follow the
build log, list and inspect images.

The rules and the records are in ``conveyor.services.builds``; this module reads
the request (the upload's bytes, a git ref as JSON), checks its size and type,
and streams the build log.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import PlainTextResponse, StreamingResponse
from pydantic import BaseModel, Field

from conveyor.api.deps import CP, Reader, Writer
from conveyor.api.uploads import checks, receive_upload
from conveyor.build.queue import BuildRequest
from conveyor.build.sources import CommitInfo
from conveyor.services import builds
from conveyor.services.schemas import RowId

router = APIRouter(tags=["builds and images"])


class GitBuild(BaseModel):
    git: str = Field(description="repository path or URL")
    ref: str = Field("HEAD", description="branch, tag or commit sha")


@router.post("/images/gc", summary="Delete old images (keep the last N per app and any in use)")
def images_gc(cp: CP, _p: Writer, keep_last: int | None = Query(None, ge=0, le=1000)) -> dict[str, Any]:
    return builds.collect_garbage(cp, cp.settings.keep_images if keep_last is None else keep_last)


@router.post("/apps/{app}/builds", status_code=201, summary="Build an image from an uploaded tar.gz or a git ref")
async def create_build(
    app: str,
    request: Request,
    cp: CP,
    p: Writer,
    commit: str | None = Query(None, description="JSON commit info of the uploaded source (the CLI sends it)"),
) -> dict[str, Any]:
    app_id = builds.app_id(cp, app)
    ctype = request.headers.get("content-type", "")
    upload: Path | None = None
    if ctype.startswith("application/json"):
        try:
            spec = GitBuild.model_validate_json(await request.body())
        except ValueError as exc:
            raise HTTPException(422, f"expected {{'git': URL, 'ref': REF}}: {exc}") from None
        req = BuildRequest(git_url=spec.git, git_ref=spec.ref, app=app)
        source: dict[str, Any] = {"kind": "git", "git": spec.git, "ref": spec.ref, "app": app}
    elif ctype in ("application/gzip", "application/x-gzip", "application/x-tar+gzip", "application/octet-stream"):
        try:
            info = CommitInfo.from_dict(json.loads(commit)) if commit else CommitInfo()
        except (ValueError, TypeError, AttributeError) as exc:
            raise HTTPException(422, f"commit: expected a JSON object of commit info: {exc}") from None
        upload, size = await receive_upload(request, cp.settings.uploads_dir)
        req = BuildRequest(tarball=upload, commit=info, app=app)
        source = {"kind": "upload", "bytes": size, "app": app, "commit": info.to_dict()}
    else:
        raise HTTPException(
            415, "send the source as a tar.gz (Content-Type: application/gzip) or a git ref as JSON {'git', 'ref'}"
        )
    try:  # until the build owns the upload, any failure (a 4xx, a 500, a cancelled request) removes it
        if upload is not None:
            try:
                await checks.run(builds.validate_upload, upload, app)
            except ValueError as exc:
                raise HTTPException(422, str(exc)) from None
        return builds.submit(cp, app_id, req, source, p.name, upload)
    except BaseException:
        if upload is not None:
            upload.unlink(missing_ok=True)
        raise


@router.get("/builds/{build_id}", summary="A build and, once built, its image")
def get_build(build_id: RowId, cp: CP, _p: Reader) -> dict[str, Any]:
    return builds.read(cp, build_id)


@router.get("/builds/{build_id}/log", summary="A build's output (follow streams it live)")
async def build_log(build_id: RowId, cp: CP, _p: Reader, follow: bool = False):  # type: ignore[no-untyped-def]
    builds.read(cp, build_id)
    job = builds.job(cp, build_id)
    if follow and job is not None:
        async def stream():  # type: ignore[no-untyped-def]
            async for line in job.subscribe():
                yield (line + "\n").encode()
            # End the stream only once the outcome is recorded, so a client that reads the
            # build right after the log ends sees its final state.
            await builds.outcome_recorded(build_id)

        return StreamingResponse(stream(), media_type="text/plain; charset=utf-8")
    return PlainTextResponse(builds.log_text(cp, build_id))


@router.get("/apps/{app}/images", summary="An app's images, newest first")
def list_images(app: str, cp: CP, _p: Reader, limit: int = Query(50, ge=1, le=500)) -> list[dict[str, Any]]:
    return builds.images_of(cp, app, limit)


@router.get("/images/{digest}", summary="An image: layers, commit, test result (and build log)")
def get_image(digest: str, cp: CP, _p: Reader, logs: bool = False) -> dict[str, Any]:
    return builds.image(cp, digest, logs=logs)
