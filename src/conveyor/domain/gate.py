"""The deploy gate: may a deployment start being queued now, given the locks and freeze windows?

Pure: the caller loads the locks and freezes that apply to one app's environment and hands in
``now``; :func:`gate` answers with a :class:`Decision`. Every path that queues a deployment asks it:
manual deploys (`conveyor deploy`, the UI's form, `--from` promotion) with ``automatic=False``,
pipeline promotions, pushes, webhooks and trains with ``automatic=True``. A rollback never asks:
going back to what worked must always be possible.

Why locks and freezes are one decision: both say "not now" to a deploy, both are shown where a deploy
is refused, and both are overridden the same way (``force``, recorded), so one function keeps the
two doors, the pipeline and the other automatic deployers from disagreeing.

Freeze windows are wall-clock windows in a named time zone (``zoneinfo``): a weekly
``Fri 16:00 -> Mon 08:00`` in ``Europe/Paris`` starts at 16:00 Paris time whatever the UTC offset
that week, so the window moves in UTC across daylight-saving changes, as the people who wrote it
meant. A one-off window ``2026-12-24T00:00 -> 2027-01-02T08:00`` is two local times; an ambiguous
local time (the repeated hour in autumn) is its first occurrence, a non-existent one (the skipped
hour in spring) is read with the offset before the change (``fold=0``), as ``zoneinfo`` does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WEEKLY = re.compile(r"^\s*([A-Za-z]{3})[a-z]*\s+(\d{1,2}):(\d{2})\s*(?:->|→)\s*([A-Za-z]{3})[a-z]*\s+(\d{1,2}):(\d{2})\s*$")
_ONE_OFF = re.compile(r"^\s*(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2})\s*(?:->|→)\s*(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2})\s*$")
_MINUTES_A_WEEK = 7 * 24 * 60
WINDOW_FORMS = ("'DAY HH:MM -> DAY HH:MM' (weekly, e.g. 'Fri 16:00 -> Mon 08:00') or "
                "'YYYY-MM-DDTHH:MM -> YYYY-MM-DDTHH:MM' (once, e.g. '2026-12-24T00:00 -> 2027-01-02T08:00')")


class WindowError(ValueError):
    """A freeze window that does not parse; the message names the field and the expected form."""


@dataclass(frozen=True)
class Window:
    """A parsed freeze window: weekly (minutes of the week, local) or once (UTC epoch seconds)."""

    text: str
    tz: str
    weekly: tuple[int, int] | None = None
    once: tuple[float, float] | None = None

    def active(self, now: float) -> bool:
        """Is ``now`` (UTC epoch seconds) inside the window? Start included, end excluded."""
        if self.once is not None:
            return self.once[0] <= now < self.once[1]
        assert self.weekly is not None
        local = datetime.fromtimestamp(now, ZoneInfo(self.tz))
        minute = local.weekday() * 24 * 60 + local.hour * 60 + local.minute
        start, end = self.weekly
        if start < end:
            return start <= minute < end
        return minute >= start or minute < end  # wraps over the week's end (Fri → Mon)

    def describe(self) -> str:
        kind = "every week" if self.weekly is not None else "once"
        return f"{self.text} {self.tz} ({kind})"


def parse_window(text: str, tz: str) -> Window:
    """``text`` in one of :data:`WINDOW_FORMS`, in time zone ``tz`` (an IANA name like ``Europe/Paris``)."""
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise WindowError(f"tz: expected an IANA time zone like 'Europe/Paris' or 'UTC', got {tz!r}") from None
    if len(text) > 100:
        raise WindowError(f"window: expected {WINDOW_FORMS}, got {len(text)} characters")
    weekly = _WEEKLY.match(text)
    if weekly:
        d1, h1, m1, d2, h2, m2 = weekly.groups()
        start = _minute_of_week(d1, h1, m1)
        end = _minute_of_week(d2, h2, m2)
        if start == end:
            raise WindowError(f"window: start and end are the same time ({text.strip()!r}); a freeze needs a length")
        return Window(text.strip(), tz, weekly=(start, end))
    once = _ONE_OFF.match(text)
    if once:
        start_at, end_at = (_local(s, zone) for s in once.groups())
        if end_at <= start_at:
            raise WindowError(f"window: the end must come after the start, got {text.strip()!r}")
        return Window(text.strip(), tz, once=(start_at, end_at))
    raise WindowError(f"window: expected {WINDOW_FORMS}, got {text!r}")


def _minute_of_week(day: str, hour: str, minute: str) -> int:
    name = day.lower()
    if name not in DAYS:
        raise WindowError(f"window: expected a day among {', '.join(d.title() for d in DAYS)}, got {day!r}")
    h, m = int(hour), int(minute)
    if h > 23 or m > 59:
        raise WindowError(f"window: expected a time HH:MM from 00:00 to 23:59, got {hour}:{minute}")
    return (DAYS.index(name) * 24 * 60 + h * 60 + m) % _MINUTES_A_WEEK


def _local(text: str, zone: ZoneInfo) -> float:
    try:
        naive = datetime.fromisoformat(text.replace(" ", "T"))
    except ValueError:
        raise WindowError(f"window: {text!r} is not a date and time (YYYY-MM-DDTHH:MM)") from None
    return naive.replace(tzinfo=zone, fold=0).timestamp()


@dataclass(frozen=True)
class Lock:
    """A lock on an app's environment (``env`` ``""``: every environment of the app).

    ``automatic_only``: set by an automatic rollback; it stops continuous deployment (pipeline
    promotions, pushes, webhooks, trains) but not a person deploying a fix by hand.
    """

    env: str
    reason: str
    by: str
    since: float
    automatic_only: bool = False


@dataclass(frozen=True)
class Freeze:
    id: int
    env: str
    window: Window
    reason: str = ""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""
    #: allowed only because of ``force``: the caller records it (audit event, the deployment's params)
    forced: bool = False


def blockers(now: float, locks: list[Lock], freezes: list[Freeze], *, automatic: bool) -> list[str]:
    """What stops a deploy now, one sentence each (empty: nothing)."""
    found = []
    for lock in locks:
        if lock.automatic_only and not automatic:
            continue
        where = f"environment {lock.env}" if lock.env else "every environment"
        found.append(f"{where} locked by {lock.by or 'someone'} since {_utc(lock.since)}: {lock.reason}")
    for freeze in freezes:
        if freeze.window.active(now):
            where = f"environment {freeze.env}" if freeze.env else "every environment"
            why = f": {freeze.reason}" if freeze.reason else ""
            found.append(f"{where} frozen (freeze #{freeze.id}, {freeze.window.describe()}){why}")
    return found


def gate(now: float, locks: list[Lock], freezes: list[Freeze], automatic: bool, force: bool) -> Decision:
    """May a deployment be queued now? ``locks`` and ``freezes`` are those of its app and environment."""
    found = blockers(now, locks, freezes, automatic=automatic)
    if not found:
        return Decision(True)
    if force:
        return Decision(True, "forced past: " + "; ".join(found), forced=True)
    hint = "" if automatic else " (deploy with --force to override; it is recorded)"
    return Decision(False, "; ".join(found) + hint)


def rollback_lock(dep_id: int, kind: str, new_state: str, command: dict[str, Any] | None, reason: str) -> str | None:
    """The reason of the lock an automatic rollback leaves on its environment, or None (no lock).

    Why lock: the next push would ship the same bug through the pipeline; continuous deployment
    stays stopped there until someone unlocks. Only the orchestrator's own rollback (a failing
    verdict, a crash loop under traffic) locks; a person's ``abort`` does not (they know)."""
    if kind != "deploy" or new_state != "rolled_back":
        return None
    if command and command.get("action") == "abort":
        return None
    return (f"deployment {dep_id} was rolled back automatically ({reason or 'no reason given'}); "
            "automatic deploys stay stopped until someone runs `conveyor unlock`")


def _utc(at: float) -> str:
    return datetime.fromtimestamp(at, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


__all__ = ["DAYS", "WINDOW_FORMS", "Decision", "Freeze", "Lock", "Window", "WindowError", "blockers", "gate",
           "parse_window", "rollback_lock"]
