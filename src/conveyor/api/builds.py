"""Builds and images over HTTP: upload a source (or name a git ref), follow the
build log, list and inspect images.

Builds run in worker processes (``conveyor.build.queue``); this module records
them in SQL. The upload is validated before it is queued (manifest errors come
back at once as 422, nothing is stored), and a build the control plane lost in
a restart is marked failed at start-up rather than left "running" forever.
"""

from __future__ import annotations

import asyncio
import json
import logging
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import PlainTextResponse, StreamingResponse
from pydantic import BaseModel, Field
from sqlalchemy import insert, select, update

from conveyor.api.deps import CP, Reader, Writer
from conveyor.api.schemas import RowId
from conveyor.api.state import ControlPlane
from conveyor.api.uploads import checks, receive_upload, remove_stale_uploads
from conveyor.build.archive import ArchiveError, safe_extract
from conveyor.build.queue import BuildFailed, BuildQueue, BuildRequest
from conveyor.build.sources import CommitInfo
from conveyor.build.worker import UPLOAD_LIMITS
from conveyor.domain.manifest import MANIFEST_NAME, ManifestError, load_manifest, loads_toml, parse_manifest
from conveyor.store import repo
from conveyor.store.tables import builds, images

log = logging.getLogger("conveyor.builds")
router = APIRouter(tags=["builds and images"])
GC_EVERY = 3600.0
#: a release retired less than this long ago still protects its image from GC
RECENT = 7 * 86400.0
#: build id -> the task recording its outcome in SQL (awaited by log followers)
_recording: dict[int, asyncio.Task[None]] = {}


class GitBuild(BaseModel):
    git: str = Field(description="repository path or URL")
    ref: str = Field("HEAD", description="branch, tag or commit sha")


async def start(cp: ControlPlane) -> None:
    """Start-up hook: the build queue, failing builds (and removing uploads) a previous process lost, hourly GC."""
    cp.builds = BuildQueue(
        cp.settings.build_workers,
        store_root=cp.settings.images_dir,
        cache_dir=cp.settings.cache_dir,
        log_dir=cp.settings.data_dir / "builds",
    )
    remove_stale_uploads(cp.settings.uploads_dir)  # their builds are failed just below
    with cp.engine.begin() as conn:
        conn.execute(
            update(builds)
            .where(builds.c.state.in_(["queued", "running"]))
            .values(state="failed", error="interrupted by a control-plane restart; build again", finished_at=time.time())
        )

    async def gc_hourly() -> None:
        while True:
            await asyncio.sleep(GC_EVERY)
            try:
                await asyncio.to_thread(collect_garbage, cp, cp.settings.keep_images)
            except Exception:  # GC must never take the control plane down
                log.exception("image GC failed; retrying in an hour")

    cp.tasks.append(asyncio.create_task(gc_hourly(), name="image-gc"))


def collect_garbage(cp: ControlPlane, keep_last: int) -> dict[str, Any]:
    """Keep each app's ``keep_last`` newest images and every image a live or recent release uses."""
    from conveyor.build.retention import ImageRecord, images_to_keep
    from conveyor.domain.deploy_machine import ACTIVE
    from conveyor.store.tables import apps, deployments, releases

    now = time.time()
    with cp.engine.begin() as conn:
        rows = conn.execute(
            select(images.c.id, images.c.digest, images.c.created_at, apps.c.name)
            .select_from(images.join(apps, apps.c.id == images.c.app_id))
        ).all()
        in_use = {
            r.image_digest
            for r in conn.execute(
                select(releases.c.image_digest).where(
                    releases.c.status.in_(["live", "pending"]) | (releases.c.retired_at >= now - RECENT)
                )
            )
        } | {
            r.image_digest
            for r in conn.execute(
                select(deployments.c.image_digest).where(deployments.c.state.in_(["queued", *ACTIVE]))
            )
            if r.image_digest
        }
        keep = images_to_keep(
            [ImageRecord(r.digest, r.name, r.created_at) for r in rows], keep_last=keep_last, in_use=in_use
        )
        doomed = [r.id for r in rows if r.digest not in keep]
        if doomed:
            conn.execute(images.delete().where(images.c.id.in_(doomed)))
    report = cp.artifacts.gc(keep)
    out = {"kept_images": len(keep), "deleted_image_rows": len(doomed), **_report_dict(report)}
    if doomed:
        with cp.engine.begin() as conn:
            repo.record_event(conn, "images_collected", f"image GC removed {len(doomed)} image(s)", actor="conveyor",
                              data=out)
    return out


def _report_dict(report: Any) -> dict[str, Any]:
    from dataclasses import asdict, is_dataclass

    if is_dataclass(report):
        return {k: (sorted(v) if isinstance(v, set) else v) for k, v in asdict(report).items()}
    return {"report": str(report)}


@router.post("/images/gc", summary="Delete old images (keep the last N per app and any in use)")
def images_gc(cp: CP, _p: Writer, keep_last: int | None = Query(None, ge=0, le=1000)) -> dict[str, Any]:
    return collect_garbage(cp, cp.settings.keep_images if keep_last is None else keep_last)


def _queue(cp: ControlPlane) -> BuildQueue:
    assert isinstance(cp.builds, BuildQueue)
    return cp.builds


def _app_manifest_from_layer(cp: ControlPlane, manifest: dict[str, Any]) -> dict[str, Any]:
    """The app's conveyor.toml, read back from the image's app layer (so git builds get it too)."""
    app_layer = next(layer for layer in manifest["layers"] if layer["role"] == "app")
    with tarfile.open(cp.artifacts.blob_path(app_layer["digest"]), "r:gz") as tar:  # type: ignore[attr-defined]
        for name in (MANIFEST_NAME, f"./{MANIFEST_NAME}"):
            try:
                member = tar.getmember(name)
            except KeyError:
                continue
            f = tar.extractfile(member)
            assert f is not None
            data = loads_toml(f.read().decode())
            break
        else:
            data = {}
    processes = manifest.get("config", {}).get("processes", {})
    data.setdefault("run", processes)
    return parse_manifest(data).model_dump(mode="json", by_alias=True)


async def _finish(cp: ControlPlane, build_id: int, app_id: int, job: Any, upload: Path | None) -> None:
    try:
        result = await job.wait()
    except BuildFailed as exc:
        with cp.engine.begin() as conn:
            conn.execute(
                update(builds).where(builds.c.id == build_id)
                .values(state="failed", error=f"{exc.step}: {exc.message}", finished_at=time.time())
            )
        return
    finally:
        if upload is not None:
            upload.unlink(missing_ok=True)
        cp.notifier.poke("builds")
    manifest = result.manifest.model_dump(mode="json")
    app_manifest = await asyncio.to_thread(_app_manifest_from_layer, cp, manifest)
    with cp.engine.begin() as conn:
        mine = (images.c.digest == result.image) & (images.c.app_id == app_id)
        if not conn.execute(select(images.c.id).where(mine)).first():
            conn.execute(
                insert(images).values(
                    digest=result.image, app_id=app_id, manifest=manifest, app_manifest=app_manifest,
                    size=result.size, test_status=result.test_status, commit=result.commit.to_dict(),
                    build_id=build_id, created_at=time.time(),
                )
            )
        else:  # the same source again: same image; keep the newest test result
            conn.execute(update(images).where(mine).values(test_status=result.test_status))
        conn.execute(
            update(builds).where(builds.c.id == build_id)
            .values(state="succeeded", image_digest=result.image, finished_at=time.time())
        )
        app_name = conn.execute(select(builds.c.source).where(builds.c.id == build_id)).scalar_one()
        repo.record_event(
            conn, "image_built", f"image {result.image[7:19]} built (tests: {result.test_status})",
            app=app_name.get("app"), actor="conveyor",
            data={"image": result.image, "build": build_id, "commit": result.commit.to_dict(),
                  "layers": [vars(layer) for layer in result.layers], "durations": result.durations},
        )
    cp.notifier.poke("builds")


def _validate_upload(path: Path, app: str) -> None:
    """Unpack the upload safely into a scratch dir and check its manifest, for a fast, clear 422."""
    with tempfile.TemporaryDirectory(prefix="conveyor-check-") as tmp:
        try:
            safe_extract(path, Path(tmp) / "src", limits=UPLOAD_LIMITS)
        except ArchiveError as exc:
            raise HTTPException(422, f"the uploaded source archive was rejected: {exc}") from None
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise HTTPException(422, f"the uploaded source is not a valid tar.gz archive: {exc}") from None
        try:
            load_manifest(Path(tmp) / "src", app=app)
        except ManifestError as exc:
            raise HTTPException(422, str(exc)) from None


@router.post("/apps/{app}/builds", status_code=201, summary="Build an image from an uploaded tar.gz or a git ref")
async def create_build(
    app: str,
    request: Request,
    cp: CP,
    p: Writer,
    commit: str | None = Query(None, description="JSON commit info of the uploaded source (the CLI sends it)"),
) -> dict[str, Any]:
    with cp.engine.connect() as conn:
        app_row = repo.get_app(conn, app)
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
        except (ValueError, TypeError) as exc:
            raise HTTPException(422, f"commit: expected a JSON object of commit info: {exc}") from None
        upload, size = await receive_upload(request, cp.settings.uploads_dir)
        req = BuildRequest(tarball=upload, commit=info, app=app)
        source = {"kind": "upload", "bytes": size, "app": app, "commit": info.to_dict()}
    else:
        raise HTTPException(
            415, "send the source as a tar.gz (Content-Type: application/gzip) or a git ref as JSON {'git', 'ref'}"
        )
    try:  # until _finish owns the upload, any failure (a 4xx, a 500, a cancelled request) removes it
        if upload is not None:
            await checks.run(_validate_upload, upload, app)
        with cp.engine.begin() as conn:
            build_id = int(
                conn.execute(
                    insert(builds).values(
                        app_id=app_row["id"], state="queued", source=source, created_by=p.name, created_at=time.time()
                    )
                ).inserted_primary_key[0]  # type: ignore[index]
            )
        job = _queue(cp).submit(req, build_id=str(build_id))
    except BaseException:
        if upload is not None:
            upload.unlink(missing_ok=True)
        raise
    with cp.engine.begin() as conn:
        conn.execute(update(builds).where(builds.c.id == build_id).values(state="running"))
    task = asyncio.create_task(_finish(cp, build_id, app_row["id"], job, upload))
    cp.tasks.append(task)
    _recording[build_id] = task
    return read_build(cp, build_id)


def _image_view(row: Any) -> dict[str, Any]:
    d = dict(row)
    d["layers"] = d.get("manifest", {}).get("layers", [])
    return d


def read_build(cp: ControlPlane, build_id: int) -> dict[str, Any]:
    with cp.engine.connect() as conn:
        row = conn.execute(select(builds).where(builds.c.id == build_id)).mappings().first()
        if row is None:
            raise HTTPException(404, f"build {build_id} not found")
        image = None
        if row["image_digest"]:
            img = conn.execute(
                select(images).where(images.c.digest == row["image_digest"], images.c.app_id == row["app_id"])
            ).mappings().first()
            image = _image_view(img) if img else None
    out = dict(row)
    out["image"] = image
    return out


@router.get("/builds/{build_id}", summary="A build and, once built, its image")
def get_build(build_id: RowId, cp: CP, _p: Reader) -> dict[str, Any]:
    return read_build(cp, build_id)


@router.get("/builds/{build_id}/log", summary="A build's output (follow streams it live)")
async def build_log(build_id: RowId, cp: CP, _p: Reader, follow: bool = False):  # type: ignore[no-untyped-def]
    read_build(cp, build_id)
    job = _queue(cp).get(str(build_id))
    if follow and job is not None:
        async def stream():  # type: ignore[no-untyped-def]
            async for line in job.subscribe():
                yield (line + "\n").encode()
            # End the stream only once the outcome is recorded, so a client that reads the
            # build right after the log ends sees its final state.
            recording = _recording.pop(build_id, None)
            if recording is not None:
                await asyncio.wait([recording], timeout=30)

        return StreamingResponse(stream(), media_type="text/plain; charset=utf-8")
    path = cp.settings.data_dir / "builds" / f"{build_id}.log"
    return PlainTextResponse(path.read_text(errors="replace") if path.exists() else "")


@router.get("/apps/{app}/images", summary="An app's images, newest first")
def list_images(app: str, cp: CP, _p: Reader, limit: int = Query(50, ge=1, le=500)) -> list[dict[str, Any]]:
    with cp.engine.connect() as conn:
        app_row = repo.get_app(conn, app)
        rows = conn.execute(
            select(images).where(images.c.app_id == app_row["id"]).order_by(images.c.created_at.desc()).limit(limit)
        ).mappings()
        return [_image_view(r) for r in rows]


@router.get("/images/{digest}", summary="An image: layers, commit, test result (and build log)")
def get_image(digest: str, cp: CP, _p: Reader, logs: bool = False) -> dict[str, Any]:
    with cp.engine.connect() as conn:
        ref = digest if digest.startswith("sha256:") else f"sha256:{digest}"
        rows = conn.execute(
            select(images).where(images.c.digest.startswith(ref)).order_by(images.c.created_at.desc())
        ).mappings().all()
        if len({r["digest"] for r in rows}) != 1 or len(ref) < 14:  # one digest (possibly in several apps)
            raise HTTPException(404, f"image {digest!r} not found (give at least 7 hex digits of a known digest)")
        out = _image_view(rows[0])
    if logs and out.get("build_id"):
        path = cp.settings.data_dir / "builds" / f"{out['build_id']}.log"
        out["log"] = path.read_text(errors="replace") if path.exists() else ""
    return out


