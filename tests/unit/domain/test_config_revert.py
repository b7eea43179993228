"""The set config vars after an automatic rollback (``domain/config_vars.revert``): the failed release's
changes go, the previous release's settings come back, a key changed again since stays."""

from __future__ import annotations

from typing import Any

from conveyor.domain.config_vars import revert


def var(key: str, value: str | None, at: float, *, secret: bool = False, sealed: str | None = None) -> dict[str, Any]:
    return {"key": key, "secret": secret, "value": None if secret else value, "sealed": sealed if secret else None,
            "updated_at": at, "updated_by": "alice"}


def test_a_failed_change_goes_back_to_the_previous_value() -> None:
    previous = [var("LOG_LEVEL", "info", 1.0)]
    failed = [var("LOG_LEVEL", "debug", 2.0)]
    rows, changed = revert(failed, failed, previous)
    assert rows == previous and changed == ["LOG_LEVEL"]


def test_a_key_the_failed_release_added_goes_and_one_it_removed_comes_back() -> None:
    previous = [var("A", "1", 1.0)]
    failed = [var("B", "2", 2.0)]  # A unset, B set, in the release that failed
    rows, changed = revert(failed, failed, previous)
    assert rows == previous and changed == ["A", "B"]


def test_a_key_changed_again_since_the_failed_release_was_queued_is_kept() -> None:
    previous = [var("A", "1", 1.0), var("B", "1", 1.0)]
    failed = [var("A", "2", 2.0), var("B", "2", 2.0)]
    now = [var("A", "3", 3.0), var("B", "2", 2.0), var("C", "new", 3.5)]  # A and C staged while it ran
    rows, changed = revert(now, failed, previous)
    assert {r["key"]: r["value"] for r in rows} == {"A": "3", "B": "1", "C": "new"} and changed == ["B"]


def test_a_key_unset_since_stays_unset() -> None:
    previous = [var("A", "1", 1.0)]
    failed = [var("A", "2", 2.0)]
    rows, changed = revert([], failed, previous)
    assert rows == [] and changed == []


def test_a_secret_is_compared_by_when_it_was_set_not_by_its_sealed_text() -> None:
    previous = [var("PW", None, 1.0, secret=True, sealed="old-seal")]
    failed = [var("PW", None, 2.0, secret=True, sealed="bad-seal")]
    rotated = [var("PW", None, 2.0, secret=True, sealed="bad-seal-resealed")]  # `secrets rotate-key` re-sealed it
    rows, changed = revert(rotated, failed, previous)
    assert rows == previous and changed == ["PW"]


def test_a_code_only_failure_changes_nothing() -> None:
    same = [var("A", "1", 1.0)]
    rows, changed = revert(same, same, same)
    assert rows == same and changed == []
