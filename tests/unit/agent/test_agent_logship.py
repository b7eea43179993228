"""Log shipping by offset: bounded chunks, UTF-8 boundaries, ack-only progress."""

from __future__ import annotations

from pathlib import Path

from conveyor.agent.logship import LogShipper, read_chunk, utf8_cut
from conveyor.logfile import SegmentedLog


def test_utf8_cut_drops_only_an_incomplete_tail() -> None:
    text = "héllo €".encode()
    assert utf8_cut(text) == len(text)
    assert utf8_cut(text[:-1]) == len(text) - 3  # half of "€" is held back
    assert utf8_cut(text[:-2]) == len(text) - 3
    assert utf8_cut(b"") == 0
    assert utf8_cut(b"abc") == 3


def test_read_chunk(tmp_path: Path) -> None:
    p = tmp_path / "a.log"
    p.write_bytes("ab€cd".encode())
    assert read_chunk(p, 0, 100) == (0, "ab€cd", 7)
    assert read_chunk(p, 0, 3) == (0, "ab", 2)
    assert read_chunk(p, 2, 3) == (2, "€", 3)
    assert read_chunk(p, 7, 3) == (7, "", 0)
    assert read_chunk(tmp_path / "missing.log", 0, 3) == (0, "", 0)


def test_batches_are_bounded_and_offsets_move_only_on_ack(tmp_path: Path) -> None:
    (tmp_path / "a.log").write_bytes(b"x" * 250)
    (tmp_path / "b.log").write_bytes(b"y" * 10)
    shipper = LogShipper("h1", tmp_path, max_chunk=100, max_batch=150)
    shipper.track(["a", "b"])
    batch = shipper.collect()
    assert [(c.instance, c.offset, len(c.data)) for c in batch.chunks] == [("a", 0, 100), ("b", 0, 10)]
    again = shipper.collect()  # not acked: the same bytes again
    assert again == batch
    shipper.ack(batch)
    assert shipper.offsets == {"a": 100, "b": 10}
    batch = shipper.collect()
    assert [(c.instance, c.offset, len(c.data)) for c in batch.chunks] == [("a", 100, 100)]
    shipper.ack(batch)
    shipper.ack(batch)  # a duplicate ack does not skip bytes
    assert shipper.offsets["a"] == 200


def test_shipping_reconstructs_the_file(tmp_path: Path) -> None:
    content = "".join(f"line {i} ünïcødé €\n" for i in range(500)).encode()
    (tmp_path / "a.log").write_bytes(content)
    shipper = LogShipper("h1", tmp_path, max_chunk=777, max_batch=1000)
    shipper.track(["a"])
    received = bytearray()
    for _ in range(1000):
        batch = shipper.collect()
        if not batch.chunks:
            break
        for chunk in batch.chunks:
            assert chunk.offset == len(received)
            received += chunk.data.encode()
        shipper.ack(batch)
    assert bytes(received) == content


def test_retired_instance_is_forgotten_once_drained(tmp_path: Path) -> None:
    (tmp_path / "a.log").write_bytes(b"last words\n")
    shipper = LogShipper("h1", tmp_path, {"a": 0})  # from the state file: retired until tracked
    batch = shipper.collect()
    assert batch.chunks[0].data == "last words\n"
    shipper.ack(batch)
    assert shipper.collect().chunks == []
    assert shipper.offsets == {}


def test_replaced_file_starts_over(tmp_path: Path) -> None:
    (tmp_path / "a.log").write_bytes(b"new\n")
    shipper = LogShipper("h1", tmp_path, {"a": 1000})
    shipper.track(["a"])
    batch = shipper.collect()
    assert [(c.offset, c.data) for c in batch.chunks] == [(0, "new\n")]


def test_shipping_follows_rotation_by_logical_offset_and_skips_what_was_rotated_away(tmp_path: Path) -> None:
    log = SegmentedLog(tmp_path / "a.log", max_bytes=8192)  # segments of 4 KiB
    shipper = LogShipper("h1", tmp_path, max_chunk=1000, max_batch=1000)
    shipper.track(["a"])
    lines = [f"line {i:05d}\n".encode() for i in range(2000)]  # 22 KB: far more than the cap
    received: dict[int, bytes] = {}
    for i, line in enumerate(lines):
        log.append(line)
        if i % 50 == 0:  # the shipper keeps up for a while...
            for _ in range(20):
                batch = shipper.collect()
                if not batch.chunks:
                    break
                for c in batch.chunks:
                    received[c.offset] = c.data.encode()
                shipper.ack(batch)
    # ...then falls behind by more than the cap: it jumps to what is kept, never re-reads or misplaces bytes
    shipper.offsets["a"] = 100
    batch = shipper.collect()
    start = batch.chunks[0].offset
    assert start > 100 and start >= log.end() - 8192
    whole = b"".join(lines)
    assert batch.chunks[0].data.encode() == whole[start : start + len(batch.chunks[0].data.encode())]
    for offset, data in received.items():  # every shipped chunk is the bytes at its logical offset
        assert whole[offset : offset + len(data)] == data
    assert log.end() == len(whole)
    total = sum(p.stat().st_size for p in tmp_path.iterdir())
    assert total <= 8192
