"""The four DORA keys, computed from deployment history. Pure: records in, numbers out.

Definitions (production environment only; rollbacks are not counted as deployments):

* **Deployment frequency**: deploys that went live (``succeeded``) per day.
* **Lead time for changes**: for each *commit*, from its commit time to the
  first time it went live in production. A deploy made by a `git push` carries
  every commit the push brought (``git rev-list old..new``: ``commits``), so a
  push of five commits counts five changes; other deploys count the image's
  one. A commit deployed twice (a redeploy, a rollback to it) is one change and
  counts once, with its first time live.
  The key is the median over the commits that first went live in the period.
* **Change failure rate**: production deploys that failed or were rolled back
  (automatically, or by a later rollback away from their release) over all
  production deploys that finished (cancelled ones never ran and are left out).
* **Time to restore**: for each failed change, from when its release took
  traffic (``traffic_at``: a canary's first step, a blue/green switch; for a
  deploy that failed before taking traffic, when it started) to when the
  previous release, or a fix, had all the traffic back. Median over failures.
  A manual rollback during a bake ends the bake: the deploy's ``finished_at``
  is then the rollback's start, which is why it cannot be the start here.

Bands follow the *Accelerate State of DevOps 2021* report (elite / high /
medium / low). Where the report's ranges overlap or leave gaps, the boundary is
the nearer stated limit: frequency ≥ 1/day elite, ≥ 1/week high, ≥ 1/month
medium; lead time < 1 h elite, < 1 week high, < 6 months medium; change
failure rate ≤ 15 % elite, ≤ 30 % high, ≤ 45 % medium; time to restore < 1 h
elite, < 1 day high, < 1 week medium. Each key also has a trend: its value
per sub-period (``buckets``) and the previous period's value.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

HOUR = 3600.0
DAY = 86400.0
WEEK = 7 * DAY
MONTH = 30 * DAY

Band = Literal["elite", "high", "medium", "low"]


@dataclass(frozen=True)
class DeployRecord:
    """One deployment to production, as history holds it."""

    id: int
    app: str
    kind: Literal["deploy", "rollback"]
    state: str  # queued|starting|...|succeeded|failed|rolled_back|cancelled
    release: int | None
    from_release: int | None
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    commit_sha: str | None = None
    commit_time: float | None = None
    created_by: str = ""
    #: When its release first took user traffic (a canary's first step, a blue/green switch);
    #: ``None`` when unknown (then: when it went live, or started for one that never did).
    traffic_at: float | None = None
    #: (sha, commit time) of every commit the deploy shipped (a git push's range); empty: the image's one
    commits: tuple[tuple[str, float], ...] = ()

    def changes(self) -> tuple[tuple[str, float], ...]:
        """The commits this deploy shipped: the push's, else the image's (none when it is unknown)."""
        if self.commits:
            return self.commits
        if self.commit_sha and self.commit_time is not None:
            return ((self.commit_sha, float(self.commit_time)),)
        return ()


@dataclass(frozen=True)
class Failure:
    deployment: int
    app: str
    release: int | None
    failed_at: float
    restored_at: float | None
    how: str  # "failed before going live" | "rolled back automatically" | "rolled back" | "not yet restored"

    @property
    def restore_seconds(self) -> float | None:
        return None if self.restored_at is None else max(0.0, self.restored_at - self.failed_at)


@dataclass
class Key:
    """One of the four keys: its value, band, the previous period's value, and the trend buckets."""

    name: str
    unit: str
    value: float | None
    band: Band | None
    previous: float | None
    better: Literal["higher", "lower"]
    samples: int
    buckets: list[dict[str, Any]] = field(default_factory=list)

    @property
    def direction(self) -> str:
        """improving · worsening · steady · unknown (compared with the previous period)."""
        if self.value is None or self.previous is None:
            return "unknown"
        if abs(self.value - self.previous) <= 1e-9 * max(1.0, abs(self.previous)):
            return "steady"
        up = self.value > self.previous
        return "improving" if up == (self.better == "higher") else "worsening"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["direction"] = self.direction
        return d


@dataclass
class Report:
    app: str | None
    since: float
    until: float
    deployment_frequency: Key
    lead_time: Key
    change_failure_rate: Key
    time_to_restore: Key
    failures: list[Failure]

    def keys(self) -> list[Key]:
        return [self.deployment_frequency, self.lead_time, self.change_failure_rate, self.time_to_restore]

    def to_dict(self) -> dict[str, Any]:
        return {
            "app": self.app,
            "since": self.since,
            "until": self.until,
            "days": (self.until - self.since) / DAY,
            "keys": {k.name: k.to_dict() for k in self.keys()},
            "failures": [asdict(f) | {"restore_seconds": f.restore_seconds} for f in self.failures],
        }


# ---------------------------------------------------------------------------
# Bands
# ---------------------------------------------------------------------------


def band_frequency(per_day: float | None) -> Band | None:
    if per_day is None:
        return None
    if per_day >= 1.0:
        return "elite"
    if per_day >= 1 / 7:
        return "high"
    if per_day >= 1 / 30:
        return "medium"
    return "low"


def band_lead_time(seconds: float | None) -> Band | None:
    if seconds is None:
        return None
    if seconds < HOUR:
        return "elite"
    if seconds < WEEK:
        return "high"
    if seconds < 6 * MONTH:
        return "medium"
    return "low"


def band_failure_rate(rate: float | None) -> Band | None:
    if rate is None:
        return None
    if rate <= 0.15:
        return "elite"
    if rate <= 0.30:
        return "high"
    if rate <= 0.45:
        return "medium"
    return "low"


def band_restore(seconds: float | None) -> Band | None:
    if seconds is None:
        return None
    if seconds < HOUR:
        return "elite"
    if seconds < DAY:
        return "high"
    if seconds < WEEK:
        return "medium"
    return "low"


# ---------------------------------------------------------------------------
# Periods
# ---------------------------------------------------------------------------

_PERIOD = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(m|min|h|d|w)?\s*$")
_UNITS = {"m": 60.0, "min": 60.0, "h": HOUR, "d": DAY, "w": WEEK, None: DAY}


def parse_period(text: str) -> float:
    """'30d' → seconds. Accepts m/min, h, d, w (a bare number is days)."""
    m = _PERIOD.match(text or "")
    if not m:
        raise ValueError(f"period {text!r} is not understood: write e.g. 90m, 24h, 30d or 12w")
    seconds = float(m.group(1)) * _UNITS[m.group(2)]
    if seconds <= 0 or seconds > 3 * 365 * DAY:
        raise ValueError(f"period {text!r} must be longer than zero and at most 3 years")
    return seconds


def bucket_size(span: float) -> float:
    """Trend granularity: hours for a day or less, days up to ~2 weeks, weeks up to ~4 months, else 30 days."""
    if span <= 2 * DAY:
        return HOUR if span <= DAY else 4 * HOUR
    if span <= 15 * DAY:
        return DAY
    if span <= 120 * DAY:
        return WEEK
    return MONTH


# ---------------------------------------------------------------------------
# The computation
# ---------------------------------------------------------------------------


def _live_at(d: DeployRecord) -> float:
    return float(d.finished_at if d.finished_at is not None else d.created_at)


def failures(history: Sequence[DeployRecord]) -> list[Failure]:
    """Every failed production change, with when it was restored (if it was)."""
    ordered = sorted(history, key=lambda d: (d.created_at, d.id))
    out: list[Failure] = []
    for i, d in enumerate(ordered):
        if d.kind != "deploy":
            continue
        started = d.started_at if d.started_at is not None else d.created_at
        if d.state == "failed":
            out.append(Failure(d.id, d.app, d.release, started, d.finished_at, "failed before going live"))
        elif d.state == "rolled_back":
            start = d.traffic_at if d.traffic_at is not None else started
            out.append(Failure(d.id, d.app, d.release, start, d.finished_at, "rolled back automatically"))
        elif d.state == "succeeded":
            later = [x for x in ordered[i + 1 :] if x.app == d.app]
            undone = next(
                (x for x in later if x.kind == "rollback" and x.from_release == d.release
                 and x.state not in ("cancelled",)),
                None,
            )
            if undone is None:
                continue
            failed_at = d.traffic_at if d.traffic_at is not None else _live_at(d)
            # Restored by whatever went live first after the failure: the rollback, or a fix.
            fixes = [x for x in later if x.state == "succeeded" and x.finished_at is not None
                     and x.finished_at >= failed_at]
            first = min(fixes, key=lambda x: x.finished_at or 0.0, default=None)
            if first is None:
                out.append(Failure(d.id, d.app, d.release, failed_at, None, "not yet restored"))
            else:
                how = "rolled back" if first.kind == "rollback" else "fixed by a new deploy"
                out.append(Failure(d.id, d.app, d.release, failed_at, first.finished_at, how))
    return out


def _finished_deploys(history: Sequence[DeployRecord], lo: float, hi: float) -> list[DeployRecord]:
    return [
        d for d in history
        if d.kind == "deploy" and d.state in ("succeeded", "failed", "rolled_back") and lo <= _live_at(d) < hi
    ]


def _frequency(history: Sequence[DeployRecord], lo: float, hi: float) -> tuple[float | None, int]:
    n = sum(1 for d in _finished_deploys(history, lo, hi) if d.state == "succeeded")
    days = (hi - lo) / DAY
    return (n / days if days > 0 else None), n


def _first_live_by_commit(history: Sequence[DeployRecord]) -> dict[str, tuple[float, float]]:
    """commit sha → (commit time, first time live in production)."""
    out: dict[str, tuple[float, float]] = {}
    for d in sorted(history, key=lambda d: (_live_at(d), d.id)):
        if d.state != "succeeded":
            continue
        for sha, committed in d.changes():
            if sha not in out:
                out[sha] = (float(committed), _live_at(d))
    return out


def _lead_time(firsts: dict[str, tuple[float, float]], lo: float, hi: float) -> tuple[float | None, int]:
    leads = [max(0.0, live - committed) for committed, live in firsts.values() if lo <= live < hi]
    return (statistics.median(leads) if leads else None), len(leads)


def _failure_rate(history: Sequence[DeployRecord], fails: list[Failure], lo: float, hi: float) -> tuple[float | None, int]:
    done = _finished_deploys(history, lo, hi)
    failed_ids = {f.deployment for f in fails}
    if not done:
        return None, 0
    return sum(1 for d in done if d.id in failed_ids) / len(done), len(done)


def _restore(fails: list[Failure], lo: float, hi: float) -> tuple[float | None, int]:
    times = [f.restore_seconds for f in fails if lo <= f.failed_at < hi and f.restore_seconds is not None]
    return (statistics.median(times) if times else None), len(times)


def compute(
    history: Sequence[DeployRecord], since: float, until: float, app: str | None = None
) -> Report:
    """The four keys over ``[since, until)``, with a trend per sub-period and the previous period's values."""
    if until <= since:
        raise ValueError("the period must end after it starts")
    if app is not None:
        history = [d for d in history if d.app == app]
    span = until - since
    prev_lo = since - span
    fails = failures(history)
    firsts = _first_live_by_commit(history)
    step = bucket_size(span)
    edges: list[tuple[float, float]] = []
    t = since
    while t < until:
        edges.append((t, min(until, t + step)))
        t += step

    def key(name: str, unit: str, better: Literal["higher", "lower"],
            fn: Callable[[float, float], tuple[float | None, int]], band: Callable[[float | None], Band | None]) -> Key:
        value, n = fn(since, until)
        previous, _ = fn(prev_lo, since)
        buckets = []
        for lo, hi in edges:
            v, k = fn(lo, hi)
            buckets.append({"start": lo, "end": hi, "value": v, "samples": k})
        return Key(name, unit, value, band(value), previous, better, n, buckets)

    return Report(
        app=app,
        since=since,
        until=until,
        deployment_frequency=key("deployment_frequency", "per day", "higher",
                                 lambda lo, hi: _frequency(history, lo, hi), band_frequency),
        lead_time=key("lead_time", "seconds", "lower", lambda lo, hi: _lead_time(firsts, lo, hi), band_lead_time),
        change_failure_rate=key("change_failure_rate", "ratio", "lower",
                                lambda lo, hi: _failure_rate(history, fails, lo, hi), band_failure_rate),
        time_to_restore=key("time_to_restore", "seconds", "lower", lambda lo, hi: _restore(fails, lo, hi),
                            band_restore),
        failures=[f for f in fails if since <= f.failed_at < until],
    )


TITLES = {
    "deployment_frequency": "Deployment frequency",
    "lead_time": "Lead time for changes",
    "change_failure_rate": "Change failure rate",
    "time_to_restore": "Time to restore service",
}


def describe(key: dict[str, Any]) -> str:
    """A key's value as a person reads it: '2.3 per day', '4 h 10 min', '12 %', 'no data'."""
    v = key.get("value")
    if v is None:
        return "no data"
    if key["name"] == "deployment_frequency":
        if v >= 1:
            return f"{v:.1f} per day"
        if v * 7 >= 1:
            return f"{v * 7:.1f} per week"
        return f"{v * 30:.1f} per month"
    if key["name"] == "change_failure_rate":
        return f"{v * 100:.0f} %"
    s = float(v)
    if s < 10:  # a sub-second automatic restore must not read as "0 s"
        return f"{s:.1f} s" if s >= 0.05 or s == 0 else f"{s * 1000:.0f} ms"
    if s < 60:
        return f"{s:.0f} s"
    if s < HOUR:
        return f"{s / 60:.0f} min"
    if s < 2 * DAY:
        return f"{s / HOUR:.1f} h"
    return f"{s / DAY:.1f} days"
