"""Retention decisions: last N per app plus images in use."""

from __future__ import annotations

import pytest

from conveyor.build.retention import ImageRecord, images_to_keep


def _d(n: int) -> str:
    return f"sha256:{n:064x}"


def test_keeps_last_n_per_app_and_everything_in_use() -> None:
    images = [ImageRecord(_d(i), "web", float(i)) for i in range(1, 6)] + [ImageRecord(_d(10), "api", 1.0)]
    assert images_to_keep(images, keep_last=2) == {_d(5), _d(4), _d(10)}
    assert images_to_keep(images, keep_last=2, in_use={_d(1)}) == {_d(5), _d(4), _d(10), _d(1)}
    assert images_to_keep(images, keep_last=0, in_use={_d(3)}) == {_d(3)}
    assert images_to_keep([], keep_last=3) == set()


def test_negative_count_is_refused() -> None:
    with pytest.raises(ValueError, match="keep_last must be 0 or more"):
        images_to_keep([], keep_last=-1)
