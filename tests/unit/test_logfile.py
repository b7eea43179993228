"""conveyor.logfile: stamped lines, two capped segments, logical offsets, bounded tails."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from conveyor import logfile
from conveyor.logfile import SegmentedLog, parse_size, split_stamp, stamp, stamp_lines

T = 1_796_110_201.123  # 2026-12-01T...


def test_stamp_lines_stamps_each_line_once_even_when_split_over_reads() -> None:
    ts = stamp(T)
    assert len(ts) == logfile.STAMP_LEN and ts.endswith("Z")
    out, at_start = stamp_lines(b"a\nbb", True, T)
    assert out == f"{ts} a\n{ts} bb".encode() and at_start is False
    out2, at_start = stamp_lines(b"b\nc\n", at_start, T)
    assert out2 == f"b\n{ts} c\n".encode() and at_start is True
    assert stamp_lines(b"", True, T) == (b"", True)
    assert split_stamp(f"{ts} hello world") == (ts, "hello world")
    assert split_stamp("no stamp here") == ("", "no stamp here")


def test_parse_size() -> None:
    assert parse_size("8M") == 8 * 1024 * 1024
    assert parse_size("512k") == 512 * 1024
    assert parse_size("10000") == 10000
    with pytest.raises(ValueError, match="8M"):
        parse_size("lots")
    with pytest.raises(ValueError, match="at least"):
        parse_size("10")


def test_appends_rotate_within_the_cap_and_logical_offsets_count_every_byte(tmp_path: Path) -> None:
    log = SegmentedLog(tmp_path / "x.log", max_bytes=8192)
    whole = b""
    for i in range(3000):
        line = f"{stamp(T + i)} line {i}\n".encode()
        log.append(line)
        whole += line
        files = sum(p.stat().st_size for p in tmp_path.iterdir())
        assert files <= 8192, f"over the cap after line {i}"
    assert log.end() == len(whole)
    # The newest bytes are readable at their logical offsets, across both segments.
    offset, got = len(whole) - 6000, b""
    while data := log.read(offset + len(got), 10_000)[1]:  # one segment per read
        got += data
    assert got == whole[offset:]
    # Old bytes are gone: reading there jumps to the oldest kept.
    start, data = log.read(0, 100)
    assert start > 0 and data == whole[start : start + 100]
    assert log.read(len(whole), 100) == (len(whole), b"")


def test_one_huge_write_is_cut_to_a_segment_but_counted(tmp_path: Path) -> None:
    log = SegmentedLog(tmp_path / "x.log", max_bytes=8192)
    log.append(b"a" * 100_000)
    assert log.end() == 100_000
    assert (tmp_path / "x.log").stat().st_size <= 4096


def test_tail_reads_backwards_across_segments_with_since_and_a_byte_bound(tmp_path: Path) -> None:
    log = SegmentedLog(tmp_path / "x.log", max_bytes=64 * 1024)
    for i in range(1000):
        log.append(f"{stamp(T + i)} line {i}\n".encode())
    last = log.tail(5)
    assert [split_stamp(x)[1] for x in last] == [f"line {i}" for i in range(995, 1000)]
    assert [split_stamp(x)[1] for x in log.tail(3, since=stamp(T + 998))] == ["line 998", "line 999"]
    kept = log.tail(100_000)  # everything kept, oldest first, in order, across the rotation
    nums = [int(split_stamp(x)[1].split()[1]) for x in kept]
    assert nums == sorted(nums) and nums[-1] == 999 and len(nums) > 500
    assert len(log.tail(100_000, max_bytes=1000)) < 40  # bounded reading
    assert SegmentedLog(tmp_path / "missing.log").tail(10) == []


def test_unstamped_headerless_file_from_before_is_read_from_offset_zero(tmp_path: Path) -> None:
    (tmp_path / "old.log").write_bytes(b"one\ntwo\n")
    log = SegmentedLog(tmp_path / "old.log")
    assert log.end() == 8 and log.read(4, 10) == (4, b"two\n") and log.tail(1) == ["two"]


def test_writer_process_stamps_and_caps_a_flood(tmp_path: Path) -> None:
    path = tmp_path / "inst.log"
    proc = subprocess.Popen([sys.executable, "-m", "conveyor.logfile", str(path), "65536"], stdin=subprocess.PIPE)
    assert proc.stdin is not None
    before = time.time()
    for i in range(20_000):
        proc.stdin.write(f"flood line {i} {'x' * 40}\n".encode())
    proc.stdin.close()
    assert proc.wait(30) == 0
    total = sum(p.stat().st_size for p in tmp_path.iterdir())
    assert total <= 65536
    last = SegmentedLog(path, 65536).tail(1)[0]
    ts, text = split_stamp(last)
    assert text.startswith("flood line 19999 ") and ts >= stamp(before)[:19]
