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

import asyncio
import hashlib
import heapq
import re
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import PlainTextResponse, StreamingResponse
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from conveyor import logfile
from conveyor.api.deps import CP, Reader, _token_from
from conveyor.domain.manifest import parse_duration
from conveyor.store import repo
from conveyor.store.tables import environments, instances, releases

router = APIRouter(tags=["logs"])

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


def parse_since(value: str, now: float) -> str:
    """``"10m"`` (ago), ``"90s"``, or an ISO time ``2026-12-02T07:30:00`` → a stamp to compare lines with.

    Raises ``ValueError`` saying what to write.
    """
    value = value.strip()
    if re.fullmatch(r"\d{4}-\d\d-\d\d(?:[T ]\d\d:\d\d(?::\d\d(?:\.\d+)?)?)?Z?", value):
        text = value.replace(" ", "T").rstrip("Z")
        return text if len(text) > 10 else text + "T00:00:00"
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


def _limit(request: Request, per_token: int) -> FollowerLimit:
    limit: FollowerLimit | None = getattr(request.app.state, "log_followers", None)
    if limit is None:
        limit = FollowerLimit(per_token)
        request.app.state.log_followers = limit
    return limit


# --- I/O (in worker threads) ---------------------------------------------------


@dataclass(frozen=True)
class Sources:
    ids: list[str]
    health_paths: list[str]


def _sources(cp: CP, app: str, env: str | None, release: int | None, history: bool) -> Sources:  # type: ignore[valid-type]
    """Which instances to read (those that exist now; with ``history`` also past ones) and the health paths."""
    with cp.engine.connect() as conn:
        app_row = repo.get_app(conn, app)
        if env:
            repo.get_env(conn, app_row["id"], env)
        joined = environments.c.app_id == app_row["id"]
        q = select(instances.c.id).select_from(instances.join(environments, environments.c.id == instances.c.env_id)).where(joined)
        live = {r.id for r in conn.execute(q)}
        cfgs = conn.execute(
            select(releases.c.config).select_from(releases.join(environments, environments.c.id == releases.c.env_id)).where(joined)
        ).scalars()
        paths = sorted({((c or {}).get("health") or {}).get("path") or "" for c in cfgs} - {""})
    prefix = f"{app}-{env}-" if env else f"{app}-"
    ids = {i for i in live if i.startswith(prefix)}
    logs_dir: Path = cp.settings.logs_dir
    if history and logs_dir.exists():
        ids |= {p.name[: -len(".log")] for p in logs_dir.glob(f"{prefix}*.log")}
    if release is not None:
        ids = {i for i in ids if f"-r{release}-" in i}
    return Sources(sorted(ids), paths)


def _history(cp: CP, ids: list[str], lines: int, since: str, health: re.Pattern[str] | None,  # type: ignore[valid-type]
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


def _new_lines(cp: CP, ids: list[str], offsets: dict[str, int], health: re.Pattern[str] | None,  # type: ignore[valid-type]
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


def _render(lines: list[Line]) -> str:
    return "".join(ln.render() + "\n" for ln in lines)


# --- the endpoint ------------------------------------------------------------


@router.get(
    "/apps/{app}/logs",
    summary="Instance output merged by time (history, or follow as a stream)",
    responses={429: {"description": "this token already follows as many log streams as allowed"}},
)
async def get_logs(
    request: Request,
    app: str,
    cp: CP,
    _p: Reader,
    env: str | None = Query(None, description="only this environment"),
    release: int | None = Query(None, ge=0, le=2**31, description="only this release"),
    lines: int = Query(100, ge=0, le=10000, description="lines of history, all instances together"),
    since: str | None = Query(None, description="only lines since this: a duration ago (10m, 1h) or a UTC time"),
    all_: bool = Query(False, alias="all", description="also instances that no longer exist"),
    health: bool = Query(False, description="keep the health checks' requests"),
    follow: bool = Query(False, description="keep streaming new output"),
    grep: str | None = Query(None, description="only lines containing this text"),
):  # type: ignore[no-untyped-def]
    try:
        since_stamp = parse_since(since, time.time()) if since else ""
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    src = await run_in_threadpool(_sources, cp, app, env, release, all_)
    pattern = None if health else health_pattern(src.health_paths)
    if follow:  # take a follower slot before reading anything
        token = _token_from(request) or ""
        key = hashlib.sha256(token.encode()).hexdigest()[:16]
        limit = _limit(request, cp.settings.log_followers_per_token)
        if not limit.acquire(key):
            raise HTTPException(
                429, f"this token already follows {limit.per_token} log streams: stop one (or use a token of your own) and retry",
            )
    try:
        history, ends = await run_in_threadpool(_history, cp, src.ids, lines, since_stamp, pattern, grep)
    except BaseException:
        if follow:
            limit.release(key)
        raise
    if not follow:
        return PlainTextResponse(_render(history))

    async def stream() -> AsyncIterator[bytes]:
        try:
            if history:
                yield _render(history).encode()
            offsets = dict(ends)
            ids = src.ids
            rounds = 0
            while True:
                await cp.notifier.wait("logs", 1.0)
                rounds += 1
                if rounds % 5 == 0 and not all_:  # new instances appear, gone ones stop being read
                    ids = (await run_in_threadpool(_sources, cp, app, env, release, False)).ids
                new = await run_in_threadpool(_new_lines, cp, ids, offsets, pattern, grep)
                if new:
                    yield _render(new).encode()
                await asyncio.sleep(0.2)  # at most ~5 reads a second per follower, however busy the logs
        finally:
            limit.release(key)

    return StreamingResponse(stream(), media_type="text/plain; charset=utf-8")
