"""What an environment's set config vars become when a release is rolled back automatically.

Why: a config change ships as a release, and a release that fails (crash loop, failed analysis,
abort) goes back to the previous one, whose instances run with the previous release's config.
The *set* vars (``config_vars``, what the next deploy ships) must go back too, or the next deploy
(or the next ``config set`` of an unrelated key) would ship the bad value again.

It is a three-way revert, not a copy of the previous release's vars: a key the user changed
again after the failed release was queued (``config set --no-deploy`` while it ran) is newer
than both releases and is kept. Pure: rows in, rows out (the orchestrator writes them).

A row is ``{key, secret, value, sealed, updated_at, updated_by}`` as ``store.config_vars.snapshot``
makes it. Two rows are "the same setting" when key, secrecy, plain value and ``updated_at`` agree:
a secret's sealed text is not compared, since ``secrets rotate-key`` re-seals it in place.
"""

from __future__ import annotations

from typing import Any

Row = dict[str, Any]


def _identity(row: Row) -> tuple[bool, Any, float | None]:
    return bool(row.get("secret")), None if row.get("secret") else row.get("value"), row.get("updated_at")


def revert(current: list[Row], failed: list[Row], previous: list[Row]) -> tuple[list[Row], list[str]]:
    """The set vars after ``failed``'s release is rolled back to ``previous``'s, given the ones set now.

    Returns (rows, keys changed by the revert, sorted). Each key still set as the failed release had
    it goes back to the previous release's setting (or away, if that release did not have it); a key
    set or unset since the failed release was queued stays as it is now."""
    now = {r["key"]: r for r in current}
    was = {r["key"]: r for r in failed}
    before = {r["key"]: r for r in previous}
    out: dict[str, Row] = dict(now)
    changed: list[str] = []
    for key in sorted(set(now) | set(was) | set(before)):
        untouched_since = (
            _identity(now[key]) == _identity(was[key]) if key in now and key in was else key not in now and key not in was
        )
        if not untouched_since:
            continue  # changed again after the failed release was made: the newer setting wins
        target = before.get(key)
        if target is None:
            if key in out:
                del out[key]
                changed.append(key)
        elif key not in out or _identity(out[key]) != _identity(target):
            out[key] = dict(target)
            changed.append(key)
    return [out[k] for k in sorted(out)], changed
