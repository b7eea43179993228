"""Instance output, as shipped by the agents: stored by byte offset, read back as tails and follows.

Lines are prefixed with the instance id (``hello-production-r3-ab12| ...``) like
``heroku logs``. Output lives in one file per instance under the logs dir; the
agents ship it at least once, so bytes already stored are skipped and a gap is marked.
"""

from __future__ import annotations

from pathlib import Path

from conveyor.domain.wire import LogBatch
from conveyor.services.state import ControlPlane
from conveyor.store import instances, repo


def instance_ids(cp: ControlPlane, app: str, env: str | None, release: int | None) -> list[str]:
    """Instances of the app (current and past), from the rows and the log files present."""
    with cp.engine.connect() as conn:
        app_row = repo.get_app(conn, app)
        if env:
            repo.get_env(conn, app_row["id"], env)
        live = instances.ids_of_app(conn, app_row["id"])
    logs_dir = cp.settings.logs_dir
    prefix = f"{app}-{env}-" if env else f"{app}-"
    found = {p.stem for p in logs_dir.glob(f"{prefix}*.log")} if logs_dir.exists() else set()
    ids = (found | live) if env is None else {i for i in (found | live) if i.startswith(prefix)}
    if release is not None:
        ids = {i for i in ids if f"-r{release}-" in i}
    return sorted(ids)


def tail(path: Path, lines: int) -> tuple[list[str], int]:
    """The last ``lines`` lines of a log file, and its size."""
    if not path.exists():
        return [], 0
    data = path.read_bytes()
    text = data.decode(errors="replace").splitlines()
    return text[-lines:] if lines else [], len(data)


def path_of(cp: ControlPlane, instance_id: str) -> Path:
    return cp.settings.logs_dir / f"{instance_id}.log"


def store_batch(cp: ControlPlane, batch: LogBatch) -> int:
    """Append each chunk's new bytes to its instance's file; how many bytes were written."""
    written = 0
    logs = cp.settings.logs_dir
    logs.mkdir(parents=True, exist_ok=True)
    for chunk in batch.chunks:
        if not _safe_name(chunk.instance):
            continue
        path = logs / f"{chunk.instance}.log"
        size = path.stat().st_size if path.exists() else 0
        data = chunk.data.encode()
        end = chunk.offset + len(data)
        if end <= size:
            continue  # already have it (at-least-once delivery)
        if chunk.offset > size:  # a gap (control plane lost data): keep what we got, mark the gap
            data = f"[conveyor: {chunk.offset - size} bytes of output missing]\n".encode() + data
        else:
            data = data[size - chunk.offset :]
        with path.open("ab") as f:
            f.write(data)
        written += len(data)
    if written:
        cp.notifier.poke("logs")
    return written


def _safe_name(name: str) -> bool:
    return bool(name) and "/" not in name and "\\" not in name and not name.startswith(".") and len(name) < 200
