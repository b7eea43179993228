"""Log shipping: new bytes of each instance's log file, by offset, at least once.

Each instance's output goes to ``{data_dir}/logs/{instance}.log`` (stamped,
capped and rotated by :mod:`conveyor.logfile`; offsets are logical, so they
survive rotation). The shipper remembers, per instance, the byte offset the control plane
has acknowledged; each round it reads what lies beyond (bounded per instance
and per batch), and only a successful POST moves the offsets. A failed POST
or an agent restart sends the same bytes again with the same offsets, which
the control plane deduplicates: at-least-once, never a gap.

Chunks end on a UTF-8 character boundary so that ``data`` (a string on the
wire) re-encodes to exactly the bytes it stands for; invalid bytes inside a
chunk are replaced, which is the one case where the lengths differ.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from conveyor.domain.wire import LogBatch, LogChunk
from conveyor.logfile import SegmentedLog

#: Most bytes of one instance in one batch.
MAX_CHUNK_BYTES = 64 * 1024
#: Most bytes in one batch, all instances together.
MAX_BATCH_BYTES = 256 * 1024


def utf8_cut(data: bytes) -> int:
    """How many leading bytes of ``data`` end on a character boundary (drops a cut-off tail)."""
    end = len(data)
    # Walk back over at most 3 continuation bytes to the lead byte of the last character.
    i = end - 1
    while i >= 0 and end - i <= 4 and (data[i] & 0xC0) == 0x80:
        i -= 1
    if i < 0:
        return end
    lead = data[i]
    need = 1 if lead < 0x80 else 2 if lead >> 5 == 0b110 else 3 if lead >> 4 == 0b1110 else 4 if lead >> 3 == 0b11110 else 1
    return end if end - i >= need else i


def read_chunk(path: Path, offset: int, max_bytes: int) -> tuple[int, str, int]:
    """``(start, text, bytes consumed)`` of the log at ``path`` from logical ``offset``.

    ``start`` is later than ``offset`` when the bytes there were rotated away
    (see :mod:`conveyor.logfile`); the control plane marks that gap. A missing
    log, or nothing beyond ``offset``, gives ``(offset, "", 0)``.
    """
    start, data = SegmentedLog(path).read(offset, max_bytes)
    if not data:
        return offset, "", 0
    keep = utf8_cut(data)
    if keep == 0:  # max_bytes smaller than one character: send it anyway
        keep = len(data)
    return start, data[:keep].decode("utf-8", "replace"), keep


class LogShipper:
    """Tracks offsets of the instances' logs and builds bounded :class:`LogBatch` es."""

    def __init__(
        self,
        host: str,
        logs_dir: Path,
        offsets: dict[str, int] | None = None,
        *,
        max_chunk: int = MAX_CHUNK_BYTES,
        max_batch: int = MAX_BATCH_BYTES,
    ) -> None:
        self.host = host
        self.logs_dir = logs_dir
        self.offsets: dict[str, int] = dict(offsets or {})
        self._retired: set[str] = set(self.offsets)
        self.max_chunk = max_chunk
        self.max_batch = max_batch
        #: (instance, offset) -> bytes the chunk at that offset stands for.
        self._sizes: dict[tuple[str, int], int] = {}

    def track(self, instance_ids: Iterable[str]) -> None:
        """Ship these instances' logs (running instances; not retired)."""
        for instance_id in instance_ids:
            self.offsets.setdefault(instance_id, 0)
            self._retired.discard(instance_id)

    def retire(self, instance_id: str) -> None:
        """Ship what is left of this instance's log, then forget it."""
        if instance_id in self.offsets:
            self._retired.add(instance_id)

    def collect(self) -> LogBatch:
        """The next batch (possibly empty). Offsets move only in :meth:`ack`."""
        chunks: list[LogChunk] = []
        self._sizes = {}
        budget = self.max_batch
        for instance_id in sorted(self.offsets):
            if budget <= 0:
                break
            path = self.logs_dir / f"{instance_id}.log"
            offset = self.offsets[instance_id]
            if SegmentedLog(path).end() < offset:  # the log was replaced: start over
                self.offsets[instance_id] = offset = 0
            start, text, used = read_chunk(path, offset, min(self.max_chunk, budget))
            if start != offset:  # rotated away before it was shipped: skip to what is kept
                self.offsets[instance_id] = offset = start
            if used:
                chunks.append(LogChunk(instance=instance_id, offset=offset, data=text))
                self._sizes[(instance_id, offset)] = used
                budget -= used
            elif instance_id in self._retired:
                del self.offsets[instance_id]
                self._retired.discard(instance_id)
        return LogBatch(host=self.host, chunks=chunks)

    def ack(self, batch: LogBatch) -> None:
        """The control plane has ``batch``: move the offsets past it."""
        for chunk in batch.chunks:
            used = self._sizes.get((chunk.instance, chunk.offset))
            if used is None:
                used = len(chunk.data.encode("utf-8"))
            if self.offsets.get(chunk.instance) == chunk.offset:
                self.offsets[chunk.instance] = chunk.offset + used
