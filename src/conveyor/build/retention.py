"""Which images to keep: the last N per app plus every image a release still uses.

Pure decision logic (no I/O): the control plane reads its image and release
rows, calls :func:`images_to_keep`, and hands the answer to
:meth:`conveyor.build.store.ArtifactStore.gc`. Keeping the decision here makes
"what would GC delete?" answerable (and testable) without deleting anything.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class ImageRecord:
    """An image as the control plane knows it."""

    digest: str
    app: str
    created_at: float


def images_to_keep(images: Iterable[ImageRecord], *, keep_last: int, in_use: Iterable[str] = ()) -> set[str]:
    """The digests to keep: the ``keep_last`` newest images of each app, plus ``in_use``.

    ``in_use`` is every image a live or recent release refers to, in any
    environment; those are kept however old. An image shared by several apps
    is kept if any of them keeps it.
    """
    if keep_last < 0:
        raise ValueError(f"keep_last must be 0 or more, got {keep_last}")
    by_app: dict[str, list[ImageRecord]] = defaultdict(list)
    for record in images:
        by_app[record.app].append(record)
    keep = set(in_use)
    for records in by_app.values():
        records.sort(key=lambda r: (r.created_at, r.digest), reverse=True)
        keep.update(r.digest for r in records[:keep_last])
    return keep
