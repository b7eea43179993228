"""Which release, and which instance, gets a request. Pure functions, no I/O.

* Releases: a weighted random split between the routable releases of an
  environment (``random() * total`` located in cumulative weights). A pin
  (``X-Conveyor-Release`` header or ``conveyor-release`` cookie) wins when that
  release has instances, whatever its weight. In sticky mode the random point
  is replaced by a hash of the client's sticky cookie, so a client stays on one
  release while the weights do not move past its point, and because releases
  are laid out newest first, a canary that grows keeps the clients it had.
* Instances: least outstanding requests, skipping draining and ejected targets,
  ties broken by rotation so equal instances share evenly. When every instance
  is ejected we still try the one whose ejection ends first (a proxy that
  refuses all traffic because all backends failed once recovers slowest).
* Passive health: a connect failure ejects the target for a backoff that
  doubles per consecutive failure; a success resets it.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_right

from conveyor.domain.wire import PIN_COOKIE
from conveyor.router.table import EnvRoute, ReleaseRoute, Target

#: The cookie that carries a client's sticky point (sticky environments only).
STICKY_COOKIE = "conveyor-sticky"


def choose_release(env: EnvRoute, point: float, pin: int | None = None) -> ReleaseRoute | None:
    """The release for a request: the pinned one if routable, else by weight at ``point`` in [0, 1)."""
    if pin is not None:
        r = env.by_number.get(pin)
        if r is not None and r.targets:
            return r
    split = env.split
    if len(split) == 1:
        return split[0]
    total = env.total_weight
    if total <= 0:
        return None
    # split_guarded ends with a copy of the last release: point * total rounding up
    # to total still lands on it.
    i = bisect_right(env.cumulative, point * total)
    guarded = env.split_guarded
    return guarded[i] if guarded else (split[i] if i < len(split) else split[-1])


def choose_target(release: ReleaseRoute, now: float, exclude: Target | None = None) -> Target | None:
    """The least-outstanding healthy target of ``release`` (None when it has none)."""
    targets = release.targets
    n = len(targets)
    if n == 1:
        t = targets[0]
        if t is exclude or t.draining:
            return None
        return t
    best: Target | None = None
    best_load = 1 << 62
    start = release.rr = (release.rr + 1) % n if n else 0
    fallback: Target | None = None
    for k in range(n):
        t = targets[(start + k) % n]
        if t is exclude or t.draining:
            continue
        if t.ejected_until > now:
            if fallback is None or t.ejected_until < fallback.ejected_until:
                fallback = t
            continue
        if t.outstanding < best_load:
            best, best_load = t, t.outstanding
            if best_load == 0:
                break
    return best if best is not None else fallback


def eject(target: Target, now: float, base: float, maximum: float) -> float:
    """Record a connect failure; returns the ejection period applied."""
    target.failures += 1
    period: float = min(maximum, base * float(1 << min(target.failures - 1, 16)))
    target.ejected_until = now + period
    return period


def succeed(target: Target) -> None:
    """Record a successful connect: the target is healthy again."""
    if target.failures:
        target.failures = 0
        target.ejected_until = 0.0


def cookie_value(cookie_header: str | None, name: str) -> str | None:
    """The value of cookie ``name`` in a ``Cookie`` header, or None."""
    if not cookie_header or name not in cookie_header:
        return None
    for part in cookie_header.split(";"):
        k, sep, v = part.strip().partition("=")
        if sep and k.strip() == name:
            return v.strip().strip('"')
    return None


def parse_pin(header: str | None, cookie_header: str | None) -> int | None:
    """The release a request is pinned to (header first, then cookie), or None."""
    for raw in (header, cookie_value(cookie_header, PIN_COOKIE)):
        if raw:
            raw = raw.strip()
            if raw.isdigit() and len(raw) < 10:
                return int(raw)
    return None


def sticky_point(token: str) -> float:
    """A stable point in [0, 1) for a sticky cookie value."""
    digest = hashlib.blake2b(token.encode(), digest_size=8).digest()
    return float(int.from_bytes(digest, "big") / 2.0**64)
