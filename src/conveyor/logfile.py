"""Instance logs on disk: timestamped lines in two capped segments per instance.

Shared by the agent (which writes what an instance prints) and the control
plane (which stores what agents ship), so that both hold at most
``max_bytes`` per instance however much an app prints: a log flood costs a
bounded amount of disk and of reading, never the host.

Layout: ``NAME.log`` (the segment being written) and ``NAME.log.1`` (the one
before). When ``NAME.log`` reaches half the cap it becomes ``NAME.log.1`` (the
older one is dropped) and a fresh ``NAME.log`` starts. Each segment opens with
a header line ``#conveyor-log base=N`` where ``N`` is the *logical* offset of
its first byte: the number of bytes of the instance's log before it, across
every rotation. Log shipping works in logical offsets, so the agent and the
control plane rotate independently and still agree on which bytes are new.
A segment without a header (written before this format) has base 0.

Each line is stored as ``2026-12-02T07:30:01.123Z text``: the time it was
written (UTC, milliseconds), so that the lines of several instances can be
merged by time.

``python -m conveyor.logfile PATH`` is the per-instance writer the agent runs:
it reads the instance's output from stdin, stamps and appends it. It runs
beside the instance (not inside the agent), so an agent restart neither
blocks the instance's output nor loses it, and a flood costs the writer's CPU,
not the agent's event loop. This module imports only the standard library so
that the writer starts in milliseconds.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

#: Default cap per instance (both segments together), on the agent and on the control plane.
DEFAULT_MAX_BYTES = 8 * 1024 * 1024
#: The environment variable that overrides the default cap (bytes, or with a K/M/G suffix).
MAX_BYTES_ENV = "CONVEYOR_LOG_MAX_BYTES"
#: The smallest cap accepted: a header and a few lines in each segment.
MIN_MAX_BYTES = 4096

_HEADER = re.compile(rb"#conveyor-log base=(\d{1,20})\n")
_STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) ")
STAMP_LEN = 24  # len("2026-12-02T07:30:01.123Z")
_SIZE = re.compile(r"^\s*(\d+)\s*([KMG]?)i?B?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """``"8M"`` → 8388608. Raises ``ValueError`` with what to write instead."""
    m = _SIZE.match(text)
    if not m:
        raise ValueError(f"expected a size in bytes like 8388608, 512K or 8M, got {text!r}")
    value = int(m.group(1)) * {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}[m.group(2).upper()]
    if value < MIN_MAX_BYTES:
        raise ValueError(f"a log cap must be at least {MIN_MAX_BYTES} bytes, got {text!r}")
    return value


def default_max_bytes() -> int:
    """The cap from ``$CONVEYOR_LOG_MAX_BYTES``, else :data:`DEFAULT_MAX_BYTES`."""
    raw = os.environ.get(MAX_BYTES_ENV)
    return parse_size(raw) if raw else DEFAULT_MAX_BYTES


def stamp(now: float) -> str:
    """The timestamp of a line written at ``now`` (epoch seconds)."""
    ms = int(now * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def stamp_lines(data: bytes, at_line_start: bool, now: float) -> tuple[bytes, bool]:
    """Prefix every line that starts in ``data`` with the time; return it and whether it ends a line.

    ``at_line_start`` says whether the previous chunk ended with a newline: a
    line split over two reads is stamped once, where it starts.
    """
    if not data:
        return data, at_line_start
    prefix = (stamp(now) + " ").encode()
    parts = data.split(b"\n")
    out = bytearray()
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if last and not part:
            break  # data ended with a newline
        if at_line_start:
            out += prefix
        out += part
        if not last:
            out += b"\n"
            at_line_start = True
        else:
            at_line_start = False
    return bytes(out), data.endswith(b"\n")


def split_stamp(line: str) -> tuple[str, str]:
    """``(timestamp, text)`` of a stored line; the timestamp is ``""`` for an unstamped one."""
    m = _STAMP.match(line)
    if m:
        return m.group(1), line[STAMP_LEN + 1 :]
    return "", line


@dataclass(frozen=True)
class _Segment:
    path: Path
    base: int  # logical offset of the first byte after the header
    header: int  # header length in bytes
    size: int  # file size in bytes

    @property
    def end(self) -> int:
        return self.base + self.size - self.header


def _open_segment(path: Path) -> tuple[_Segment, object] | None:
    """The segment's geometry and an open binary file (the caller closes it), or ``None`` if absent."""
    try:
        f = open(path, "rb")  # noqa: SIM115 - returned to the caller
    except (FileNotFoundError, IsADirectoryError):
        return None
    head = f.read(48)
    m = _HEADER.match(head)
    base, header = (int(m.group(1)), m.end()) if m else (0, 0)
    size = os.fstat(f.fileno()).st_size
    return _Segment(path, base, header, size), f


class SegmentedLog:
    """One instance's log: append with rotation, read by logical offset, tail by lines."""

    def __init__(self, path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.path = path
        self.older = path.with_name(path.name + ".1")
        self.max_bytes = max(MIN_MAX_BYTES, max_bytes)

    @property
    def segment_bytes(self) -> int:
        return self.max_bytes // 2

    def end(self) -> int:
        """The logical offset just past the last byte written (0 when there is no log)."""
        opened = _open_segment(self.path)
        if opened is None:
            return 0
        seg, f = opened
        f.close()  # type: ignore[attr-defined]
        return seg.end

    def append(self, data: bytes) -> None:
        """Append ``data``, rotating first when the current segment is full.

        A single ``data`` larger than a segment is cut to its last
        ``segment_bytes`` bytes (the cap holds even for one huge write); the
        logical offsets still count every byte, so readers see the gap.
        """
        if not data:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        opened = _open_segment(self.path)
        if opened is None:
            base, size, header = 0, 0, 0
        else:
            seg, f = opened
            f.close()  # type: ignore[attr-defined]
            base, size, header = seg.base, seg.size, seg.header
        end = base + size - header
        room = self.segment_bytes - 64  # what a fresh segment holds besides its header
        skip = max(0, len(data) - room)
        if skip or (size and size + len(data) > self.segment_bytes):
            self._rotate(end + skip)
            data = data[skip:]
        with open(self.path, "ab") as f:
            f.write(data)

    def _rotate(self, new_base: int) -> None:
        """``NAME.log`` becomes ``NAME.log.1``; a fresh ``NAME.log`` starts at ``new_base``.

        ``NAME.log`` exists at every instant (a hard link keeps the old one
        while the new one is renamed over it), so a reader never finds it missing.
        """
        fresh = self.path.with_name(self.path.name + f".new{os.getpid()}")
        fresh.write_bytes(b"#conveyor-log base=%d\n" % new_base)
        if self.path.exists():
            link = self.path.with_name(self.path.name + f".old{os.getpid()}")
            link.unlink(missing_ok=True)
            os.link(self.path, link)
            os.replace(link, self.older)
        os.replace(fresh, self.path)

    def read(self, offset: int, max_bytes: int) -> tuple[int, bytes]:
        """``(start, data)``: at most ``max_bytes`` bytes from logical ``offset``.

        ``start`` is ``offset`` unless those bytes were rotated away, in which
        case it is the oldest offset still kept (the caller sees the gap).
        Nothing new gives ``(offset, b"")``. The current segment is opened
        first: a rotation in between then shows the same bytes twice, never none.
        """
        cur = _open_segment(self.path)
        old = _open_segment(self.older) if cur is None or offset < cur[0].base else None
        try:
            for opened in (old, cur):
                if opened is None:
                    continue
                seg, f = opened
                if offset >= seg.end:
                    continue
                start = max(offset, seg.base)
                f.seek(seg.header + start - seg.base)  # type: ignore[attr-defined]
                return start, f.read(min(max_bytes, seg.end - start))  # type: ignore[attr-defined]
            return offset, b""
        finally:
            for opened in (old, cur):
                if opened is not None:
                    opened[1].close()  # type: ignore[attr-defined]

    def skip_to(self, offset: int) -> None:
        """Start a fresh segment at logical ``offset`` (bytes before it are missing for good)."""
        if offset > self.end():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._rotate(offset)

    def tail(self, lines: int, since: str = "", max_bytes: int = 1024 * 1024) -> list[str]:
        """The last ``lines`` lines (oldest first), only those stamped at or after ``since``.

        Reads backwards from the end in blocks, at most ``max_bytes`` bytes in
        all: memory and time are bounded whatever the log's size.
        """
        if lines <= 0:
            return []
        found: list[str] = []
        budget = max_bytes
        for path in (self.path, self.older):
            if budget <= 0 or len(found) >= lines:
                break
            opened = _open_segment(path)
            if opened is None:
                continue
            seg, f = opened
            try:
                done, used = _tail_segment(f, seg, lines - len(found), since, budget, found)
            finally:
                f.close()  # type: ignore[attr-defined]
            budget -= used
            if done:
                break
        found.reverse()
        return found


def _tail_segment(f: object, seg: _Segment, want: int, since: str, budget: int, found: list[str]) -> tuple[bool, int]:
    """Append up to ``want`` lines of one segment to ``found``, newest first; ``(reached since, bytes read)``."""
    pos = seg.size
    first = len(found)
    carry = b""
    used = 0
    block = 64 * 1024
    while pos > seg.header and used < budget:
        n = min(block, pos - seg.header, budget - used)
        pos -= n
        f.seek(pos)  # type: ignore[attr-defined]
        chunk = f.read(n) + carry  # type: ignore[attr-defined]
        used += n
        parts = chunk.split(b"\n")
        carry = parts[0] if pos > seg.header else b""
        complete = parts[1:] if pos > seg.header else parts
        for raw in reversed(complete):
            if not raw:
                continue
            line = raw.decode("utf-8", "replace")
            ts, _ = split_stamp(line)
            if since and ts and ts < since:
                return True, used
            found.append(line)
            if len(found) - first >= want:
                return True, used
    return False, used


def iter_stdin_chunks(fd: int = 0, size: int = 64 * 1024) -> Iterator[bytes]:
    while True:
        try:
            data = os.read(fd, size)
        except InterruptedError:
            continue
        if not data:
            return
        yield data


def run_writer(path: Path, max_bytes: int, fd: int = 0) -> None:
    """Copy an instance's output from ``fd`` into its log until end of file, stamped and capped."""
    log = SegmentedLog(path, max_bytes)
    at_start = True
    for data in iter_stdin_chunks(fd):
        out, at_start = stamp_lines(data, at_start, time.time())
        try:
            log.append(out)
        except OSError as exc:  # a full disk must not stop the instance: keep draining its output
            print(f"conveyor log writer: cannot write {path}: {exc}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m conveyor.logfile PATH MAX_BYTES", file=sys.stderr)
        return 2
    run_writer(Path(args[0]), int(args[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
