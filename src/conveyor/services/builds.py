"""Builds and images: queueing a build, recording its outcome, GC, and reading them back.

Builds run in worker processes (``conveyor.build.queue``); this service records
them in SQL. An upload is validated before it is queued (manifest errors come
back at once, nothing is stored), and a build the control plane lost in a
restart is marked failed at start-up rather than left "running" forever. The
HTTP side (reading the upload, streaming the log) stays in ``api/builds.py``.
"""

from __future__ import annotations

import asyncio
import logging
import tarfile
import tempfile
import tomllib
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from conveyor.build.archive import ArchiveError, safe_extract
from conveyor.build.queue import BuildFailed, BuildJob, BuildQueue, BuildRequest
from conveyor.build.retention import ImageRecord, images_to_keep
from conveyor.build.worker import UPLOAD_LIMITS
from conveyor.domain.manifest import MANIFEST_NAME, ManifestError, load_manifest, parse_manifest
from conveyor.services import config
from conveyor.services.state import ControlPlane
from conveyor.store import builds, repo
from conveyor.store import deployments as deployment_rows
from conveyor.store.repo import NotFound

log = logging.getLogger("conveyor.builds")
GC_EVERY = 3600.0
#: a release retired less than this long ago still protects its image from GC
RECENT = 7 * 86400.0
#: build id -> the task recording its outcome in SQL (awaited by log followers)
_recording: dict[int, asyncio.Task[None]] = {}


async def start(cp: ControlPlane) -> None:
    """Start-up hook: the build queue, failing builds (and removing uploads) a previous process lost, hourly GC."""
    cp.builds = BuildQueue(
        cp.settings.build_workers,
        store_root=cp.settings.images_dir,
        cache_dir=cp.settings.cache_dir,
        log_dir=cp.settings.data_dir / "builds",
        hide=[cp.settings.data_dir],  # the database, the admin token, images, other builds' logs
        sandbox=cp.settings.build_sandbox,
    )
    remove_stale_uploads(cp.settings.uploads_dir)  # their builds are failed just below
    with cp.engine.begin() as conn:
        builds.fail_unfinished(conn, "interrupted by a control-plane restart; build again", cp.clock())

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
    now = cp.clock()
    with cp.engine.begin() as conn:
        rows = builds.images_with_app(conn)
        in_use = builds.digests_in_use(conn, now - RECENT, deployment_rows.OPEN)
        keep = images_to_keep(
            [ImageRecord(r.digest, r.name, r.created_at) for r in rows], keep_last=keep_last, in_use=in_use
        )
        doomed = [r.id for r in rows if r.digest not in keep]
        if doomed:
            builds.delete_images(conn, doomed)
    report = cp.artifacts.gc(keep)
    out = {"kept_images": len(keep), "deleted_image_rows": len(doomed), **_report_dict(report)}
    if doomed:
        with cp.engine.begin() as conn:
            repo.record_event(conn, "images_collected", f"image GC removed {len(doomed)} image(s)", actor="conveyor",
                              data=out)
    return out


def _report_dict(report: Any) -> dict[str, Any]:
    if is_dataclass(report) and not isinstance(report, type):
        return {k: (sorted(v) if isinstance(v, set) else v) for k, v in asdict(report).items()}
    return {"report": str(report)}


def queue(cp: ControlPlane) -> BuildQueue:
    assert isinstance(cp.builds, BuildQueue)
    return cp.builds


def _app_manifest_from_layer(cp: ControlPlane, manifest: dict[str, Any]) -> dict[str, Any]:
    """The app's conveyor.toml, read back from the image's app layer (so git builds get it too)."""
    app_layer = next(layer for layer in manifest["layers"] if layer["role"] == "app")
    with tarfile.open(cp.artifacts.blob_path(app_layer["digest"]), "r:gz") as tar:
        for name in (MANIFEST_NAME, f"./{MANIFEST_NAME}"):
            try:
                member = tar.getmember(name)
            except KeyError:
                continue
            f = tar.extractfile(member)
            assert f is not None
            data = tomllib.loads(f.read().decode())
            break
        else:
            data = {}
    processes = manifest.get("config", {}).get("processes", {})
    data.setdefault("run", processes)
    return parse_manifest(data).model_dump(mode="json", by_alias=True)


async def _finish(cp: ControlPlane, build_id: int, app_id: int, job: BuildJob, upload: Path | None) -> None:
    try:
        result = await job.wait()
    except BuildFailed as exc:
        with cp.engine.begin() as conn:
            builds.set_state(conn, build_id, "failed", error=f"{exc.step}: {exc.message}", finished_at=cp.clock())
        return
    finally:
        if upload is not None:
            upload.unlink(missing_ok=True)
        cp.notifier.poke("builds")
    manifest = result.manifest.model_dump(mode="json")
    app_manifest = await asyncio.to_thread(_app_manifest_from_layer, cp, manifest)
    with cp.engine.begin() as conn:
        builds.record_image(conn, app_id, result.image, dict(
            manifest=manifest, app_manifest=app_manifest, size=result.size, test_status=result.test_status,
            commit=result.commit.to_dict(), build_id=build_id, created_at=cp.clock(),
        ))
        builds.set_state(conn, build_id, "succeeded", image_digest=result.image, finished_at=cp.clock())
        source = builds.get(conn, build_id)["source"]  # type: ignore[index]
        repo.record_event(
            conn, "image_built", f"image {result.image[7:19]} built (tests: {result.test_status})",
            app=source.get("app"), actor="conveyor",
            data={"image": result.image, "build": build_id, "commit": result.commit.to_dict(),
                  "layers": [vars(layer) for layer in result.layers], "durations": result.durations},
        )
    cp.notifier.poke("builds")


def remove_stale_uploads(directory: Path) -> int:
    """Remove every upload left in ``directory`` (call once at start-up, before any request)."""
    removed = 0
    if not directory.is_dir():
        return 0
    for entry in directory.iterdir():
        if entry.name.endswith(".tar.gz") and entry.is_file() and not entry.is_symlink():
            try:
                entry.unlink()
                removed += 1
            except OSError as exc:  # keep starting: a stale file costs disk, not correctness
                log.warning("cannot remove stale upload %s: %s", entry, exc)
    if removed:
        log.info("removed %d upload(s) a previous process left in %s", removed, directory)
    return removed



def validate_upload(path: Path, app: str | None = None) -> None:
    """Unpack an uploaded source safely into a scratch dir and check its manifest, for a fast, clear
    error (``ValueError`` saying what is wrong) before anything is queued."""
    with tempfile.TemporaryDirectory(prefix="conveyor-check-") as tmp:
        try:
            safe_extract(path, Path(tmp) / "src", limits=UPLOAD_LIMITS)
        except ArchiveError as exc:
            raise ValueError(f"the uploaded source archive was rejected: {exc}") from None
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise ValueError(f"the uploaded source is not a valid tar.gz archive: {exc}") from None
        try:
            load_manifest(Path(tmp) / "src", app=app)
        except ManifestError as exc:
            raise ValueError(str(exc)) from None


def app_id(cp: ControlPlane, app: str) -> int:
    """The app's id (``NotFound`` with a hint for an unknown app)."""
    with cp.engine.connect() as conn:
        return int(repo.get_app(conn, app)["id"])


def submit(cp: ControlPlane, app_id: int, req: BuildRequest, source: dict[str, Any], actor: str,
           upload: Path | None) -> dict[str, Any]:
    """Record a build, hand it to the queue, and record its outcome when it ends; the build as
    :func:`read` shows it. Runs on the event loop (it starts the recording task)."""
    with cp.engine.begin() as conn:
        build_id = builds.add(conn, app_id, source, actor, cp.clock())
    job = queue(cp).submit(req, build_id=str(build_id))
    with cp.engine.begin() as conn:
        builds.set_state(conn, build_id, "running")
    task = asyncio.create_task(_finish(cp, build_id, app_id, job, upload))
    cp.tasks.append(task)
    _recording[build_id] = task
    return read(cp, build_id)


def image_view(row: Any) -> dict[str, Any]:
    d = dict(row)
    d["layers"] = d.get("manifest", {}).get("layers", [])
    d["app_manifest"] = config.redact_manifest(d.get("app_manifest") or {})  # [env.X] vars: names only
    return d


def read(cp: ControlPlane, build_id: int) -> dict[str, Any]:
    """A build and, once built, its image."""
    with cp.engine.connect() as conn:
        row = builds.get(conn, build_id)
        if row is None:
            raise NotFound(f"build {build_id} not found")
        image = None
        if row["image_digest"]:
            img = builds.image_of_app(conn, row["app_id"], row["image_digest"])
            image = image_view(img) if img else None
    out = dict(row)
    out["image"] = image
    return out


def job(cp: ControlPlane, build_id: int) -> BuildJob | None:
    """The queue's job of a build this process runs (None once it is gone or from another process)."""
    return queue(cp).get(str(build_id))


async def outcome_recorded(build_id: int, timeout: float = 30.0) -> None:
    """Wait until a finished build's outcome is in SQL (so a client reading the build next sees it)."""
    recording = _recording.pop(build_id, None)
    if recording is not None:
        await asyncio.wait([recording], timeout=timeout)


def log_text(cp: ControlPlane, build_id: int) -> str:
    path = cp.settings.data_dir / "builds" / f"{build_id}.log"
    return path.read_text(errors="replace") if path.exists() else ""


def images_of(cp: ControlPlane, app: str, limit: int = 50) -> list[dict[str, Any]]:
    """An app's images, newest first."""
    with cp.engine.connect() as conn:
        app_row = repo.get_app(conn, app)
        return [image_view(r) for r in builds.images_of_app(conn, app_row["id"], limit)]


def image(cp: ControlPlane, digest: str, *, logs: bool = False) -> dict[str, Any]:
    """An image by digest or unique prefix (≥ 7 hex digits): layers, commit, test result (and build log)."""
    ref = digest if digest.startswith("sha256:") else f"sha256:{digest}"
    with cp.engine.connect() as conn:
        rows = builds.images_by_prefix(conn, ref)
    if len({r["digest"] for r in rows}) != 1 or len(ref) < 14:  # one digest (possibly in several apps)
        raise NotFound(f"image {digest!r} not found (give at least 7 hex digits of a known digest)")
    out = image_view(rows[0])
    if logs and out.get("build_id"):
        out["log"] = log_text(cp, out["build_id"])
    return out


def recent_images(cp: ControlPlane, app: str, limit: int = 10) -> list[dict[str, Any]]:
    """An app's newest images as the app page lists them (with the strategy their manifest asks for)."""
    out = []
    for d in images_of(cp, app, limit):
        out.append({
            "digest": d["digest"], "size": d["size"], "test_status": d["test_status"], "commit": d["commit"],
            "build_id": d["build_id"], "created_at": d["created_at"],
            "strategy": (d["app_manifest"] or {}).get("deploy", {}).get("strategy", "bluegreen"),
        })
    return out


def recent_builds(cp: ControlPlane, app: str, limit: int = 20) -> list[dict[str, Any]]:
    """An app's builds, newest first."""
    with cp.engine.connect() as conn:
        app_row = repo.get_app(conn, app)
        return [dict(r) | {"app": app} for r in builds.of_app(conn, app_row["id"], limit)]


def used_by(cp: ControlPlane, digest: str) -> list[dict[str, Any]]:
    """Releases made from this image: where it ran and when."""
    with cp.engine.connect() as conn:
        return repo.releases_of_image(conn, digest)


def app_name(cp: ControlPlane, app_id: int) -> str:
    with cp.engine.connect() as conn:
        return repo.app_name_of(conn, app_id)
