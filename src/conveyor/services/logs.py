"""Instance output, as shipped by the agents: history merged by time, and follow.

Each line comes out as ``2026-12-02T07:30:01.123Z hello-production-r3-ab12| text``:
the time the agent's log writer saw it, the instance, the text. The lines of
all instances are merged by time. By default only the instances that exist now
(live, warm or draining) are read; ``all=true`` adds the logs of instances that
are gone. Requests to the release's health-check path are dropped unless
``health=true``: they are the platform's probes, not the app's traffic.

Why it is built this way (issue 18, item 3): every file read runs in a worker
thread and reads a bounded number of bytes (:class:`conveyor.logfile.SegmentedLog`
reads backwards in blocks), so a 50 MB log costs the event loop nothing and a
request costs bounded memory; each token may follow at most
``log_followers_per_token`` streams at once (429 beyond), so viewers cannot
starve ``/healthz`` or the orchestrator.
"""

from __future__ import annotations

import heapq
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conveyor import logfile
from conveyor.domain.manifest import parse_duration
from conveyor.domain.wire import LogBatch
from conveyor.services.state import ControlPlane
from conveyor.store import instances, repo

#: Most bytes read per instance for the history of one request.
HISTORY_BYTES = 2 * 1024 * 1024
#: Most bytes read per instance per follow round (a follower that falls further behind is told what it missed).
FOLLOW_BYTES = 64 * 1024


# --- pure helpers ------------------------------------------------------------


def health_pattern(paths: Iterable[str]) -> re.Pattern[str] | None:
    """A pattern matching access-log lines of requests to these health-check paths (any common format)."""
    alts = sorted({re.escape(p) for p in paths if p})
    if not alts:
        return None
    return re.compile(r"\b(?:GET|HEAD) (?:" + "|".join(alts) + r")(?:[?\s\"]|$)")


#: What ``since`` may be: an ISO time (UTC), or a duration ago (``10m``, ``1h30m``, ``90s``).
SINCE_PATTERN = r"^(\d{4}-\d\d-\d\d([T ]\d\d:\d\d(:\d\d(\.\d+)?)?)?Z?|(\d{1,9}(\.\d{1,6})?(ms|s|m|h)){1,4})$"


def parse_since(value: str, now: float) -> str:
    """``"10m"`` (ago), ``"90s"``, or an ISO time ``2026-12-02T07:30:00`` → a stamp to compare lines with.

    Raises ``ValueError`` saying what to write.
    """
    value = value.strip()
    if re.fullmatch(r"\d{4}-\d\d-\d\d(?:[T ]\d\d:\d\d(?::\d\d(?:\.\d+)?)?)?Z?", value):
        text = value.replace(" ", "T").rstrip("Z")
        return text if len(text) > 10 else text + "T00:00:00"
    if re.fullmatch(SINCE_PATTERN, value):
        try:
            ago = parse_duration(value)
        except ValueError:  # longer ago than any setting allows: older than every log kept, so all of it
            return ""
        return logfile.stamp(now - ago)
    try:
        ago = parse_duration(value)
    except ValueError:
        raise ValueError(f"since: expected a duration like 10m or 1h, or a UTC time like 2026-12-02T07:30:00, got {value!r}") from None
    return logfile.stamp(now - ago)


@dataclass(frozen=True)
class Line:
    stamp: str
    instance: str
    text: str

    def render(self) -> str:
        return f"{self.stamp or '-'} {self.instance}| {self.text}"


def to_lines(instance: str, raw: Iterable[str], health: re.Pattern[str] | None, grep: str | None) -> list[Line]:
    """Parse stored lines, dropping health checks (when a pattern is given) and non-matching ones."""
    out = []
    for line in raw:
        ts, text = logfile.split_stamp(line)
        if health is not None and health.search(text):
            continue
        if grep and grep not in text:
            continue
        out.append(Line(ts, instance, text))
    return out


def merge(per_instance: Sequence[list[Line]], last: int) -> list[Line]:
    """The last ``last`` lines of all instances, oldest first, merged by time (stable per instance)."""
    merged = list(heapq.merge(*per_instance, key=lambda ln: ln.stamp))
    return merged[-last:] if last else []


# --- follower limit ------------------------------------------------------------


@dataclass
class FollowerLimit:
    """Concurrent follow streams per token (by a hash of it, never the token itself)."""

    per_token: int
    active: dict[str, int] = field(default_factory=dict)

    def acquire(self, key: str) -> bool:
        if self.active.get(key, 0) >= self.per_token:
            return False
        self.active[key] = self.active.get(key, 0) + 1
        return True

    def release(self, key: str) -> None:
        n = self.active.get(key, 0) - 1
        if n <= 0:
            self.active.pop(key, None)
        else:
            self.active[key] = n


def follower_limit(state: Any, per_token: int) -> FollowerLimit:
    """The app's follower limit (kept on ``state``, e.g. ``request.app.state``)."""
    limit: FollowerLimit | None = getattr(state, "log_followers", None)
    if limit is None:
        limit = FollowerLimit(per_token)
        state.log_followers = limit
    return limit


# --- I/O (in worker threads) ---------------------------------------------------


@dataclass(frozen=True)
class Sources:
    ids: list[str]
    health_paths: list[str]


def sources(cp: ControlPlane, app: str, env: str | None, release: int | None, history: bool) -> Sources:
    """Which instances to read (those that exist now; with ``history`` also past ones) and the health paths."""
    with cp.engine.connect() as conn:
        app_row = repo.get_app(conn, app)
        if env:
            repo.get_env(conn, app_row["id"], env)
        live = instances.ids_of_app(conn, app_row["id"])
        paths = repo.health_paths_of_app(conn, app_row["id"])
    prefix = f"{app}-{env}-" if env else f"{app}-"
    ids = {i for i in live if i.startswith(prefix)}
    logs_dir: Path = cp.settings.logs_dir
    if history and logs_dir.exists():
        ids |= {p.name[: -len(".log")] for p in logs_dir.glob(f"{prefix}*.log")}
    if release is not None:
        ids = {i for i in ids if f"-r{release}-" in i}
    return Sources(sorted(ids), paths)


def history(cp: ControlPlane, ids: list[str], lines: int, since: str, health: re.Pattern[str] | None,
             grep: str | None) -> tuple[list[Line], dict[str, int]]:
    """Merged history of ``ids`` and the logical end of each log (where following starts)."""
    per: list[list[Line]] = []
    ends: dict[str, int] = {}
    for iid in ids:
        log = logfile.SegmentedLog(cp.settings.logs_dir / f"{iid}.log")
        ends[iid] = log.end()
        # Health checks and grep drop lines after reading: read more so that `lines` are left.
        want = lines if health is None and not grep else lines * 4
        per.append(to_lines(iid, log.tail(want, since, HISTORY_BYTES), health, grep))
    return merge(per, lines), ends


def new_lines(cp: ControlPlane, ids: list[str], offsets: dict[str, int], health: re.Pattern[str] | None,
               grep: str | None) -> list[Line]:
    """Complete lines written since ``offsets`` (moved past them), merged by time; bounded per instance."""
    per: list[list[Line]] = []
    for iid in ids:
        log = logfile.SegmentedLog(cp.settings.logs_dir / f"{iid}.log")
        offset = offsets.get(iid, 0)
        start, data = log.read(offset, FOLLOW_BYTES)
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            if start != offset:
                offsets[iid] = start
            continue
        offsets[iid] = start + cut
        raw = data[:cut].decode("utf-8", "replace").splitlines()
        if start != offset:
            raw.insert(0, f"{logfile.stamp(time.time())} [conveyor: {start - offset} bytes of output rotated away before they were read]")
        per.append(to_lines(iid, raw, health, grep))
    return merge(per, 10**9)


def render(lines: list[Line]) -> str:
    return "".join(ln.render() + "\n" for ln in lines)


# --- storing what the agents ship ------------------------------------------


def store_batch(cp: ControlPlane, batch: LogBatch, host: str | None = None) -> int:
    """Append each chunk's new bytes to its instance's capped log; how many bytes were written.

    ``host``: the batch comes from that host's agent (its join token), which may not write the
    log of an instance placed on another host (instances already removed are its own to finish).
    """
    written = 0
    logs_dir = cp.settings.logs_dir
    logs_dir.mkdir(parents=True, exist_ok=True)
    placed: dict[str, str] = {}
    if host is not None:
        with cp.engine.connect() as conn:
            placed = instances.hosts_of(conn, {c.instance for c in batch.chunks})
    for chunk in batch.chunks:
        if not _safe_name(chunk.instance) or placed.get(chunk.instance, host) != host:
            continue
        log = logfile.SegmentedLog(logs_dir / f"{chunk.instance}.log", cp.settings.log_max_bytes)
        have = log.end()  # logical: counts bytes rotated away (conveyor.logfile)
        data = chunk.data.encode(errors="replace")  # JSON may carry a lone surrogate: kept as "?"
        end = chunk.offset + len(data)
        if end <= have:
            continue  # already have it (at-least-once delivery)
        if chunk.offset > have:  # a gap (rotated away on the agent before shipping, or lost here): say so
            fill_gap(log, have, chunk.offset)
        else:
            data = data[have - chunk.offset :]
        log.append(data)
        written += len(data)
    if written:
        cp.notifier.poke("logs")
    return written


def fill_gap(log: logfile.SegmentedLog, have: int, offset: int) -> None:
    """Mark bytes ``have``..``offset`` of a log as missing, so that its logical end becomes ``offset``."""
    gap = offset - have
    note = f"{logfile.stamp(time.time())} [conveyor: {gap} bytes of output missing (rotated away before shipping)]\n".encode()
    if len(note) <= gap:
        log.skip_to(offset - len(note))
        log.append(note)
    else:  # a few bytes: fill them
        log.append(b"~" * (gap - 1) + b"\n")


def _safe_name(name: str) -> bool:
    """A name that is one plain file name: no separator, no NUL (the filesystem refuses it), not hidden."""
    try:
        size = len(name.encode())  # a lone surrogate cannot be a file name
    except UnicodeEncodeError:
        return False
    return (0 < size < 200 and "/" not in name and "\\" not in name and "\x00" not in name
            and not name.startswith("."))


def output_from(path: Path, offset: int, max_bytes: int, *, final: bool, log_max_bytes: int = logfile.DEFAULT_MAX_BYTES
                ) -> tuple[str, int]:
    """One instance's output from logical byte ``offset``, as the command printed it (time stamps removed),
    and the offset to ask from next: what `conveyor run` and a streamed release phase show.

    Whole lines only while the command runs (a line still being written comes whole next time); with
    ``final`` (it has exited and its log is complete) the rest too. At most ``max_bytes`` read."""
    log = logfile.SegmentedLog(path, log_max_bytes)
    start, data = log.read(offset, max_bytes)
    if not final:
        if b"\n" in data:
            data = data[: data.rindex(b"\n") + 1]
        elif len(data) < max_bytes:
            data = b""
    text = "".join(logfile.split_stamp(line)[1] for line in data.decode(errors="replace").splitlines(keepends=True))
    return text, start + len(data)
