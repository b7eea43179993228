"""Reproducible archives and safe extraction, including every hostile-archive case."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from conveyor.build.archive import (
    ArchiveError,
    ArchiveLimits,
    pack_directory,
    safe_extract,
    write_tree_archive_file,
)


def _tree(root: Path) -> Path:
    (root / "pkg").mkdir(parents=True)
    (root / "app.py").write_text("print('hi')\n")
    (root / "pkg" / "__init__.py").write_text("")
    (root / "run.sh").write_text("#!/bin/sh\necho hi\n")
    os.chmod(root / "run.sh", 0o700)
    os.symlink("pkg/__init__.py", root / "alias.py")
    for junk in (".git/config", ".venv/bin/python", "pkg/__pycache__/x.cpython-311.pyc", "old.pyc"):
        (root / junk).parent.mkdir(parents=True, exist_ok=True)
        (root / junk).write_text("junk")
    return root


def test_same_tree_gives_same_bytes_whatever_times_and_modes(tmp_path: Path) -> None:
    a = _tree(tmp_path / "a")
    b = _tree(tmp_path / "b")
    os.utime(b / "app.py", (1_000_000, 1_000_000))
    os.chmod(b / "app.py", 0o600)
    os.chmod(b / "run.sh", 0o755)
    assert pack_directory(a) == pack_directory(b)
    (b / "app.py").write_text("print('changed')\n")
    assert pack_directory(a) != pack_directory(b)


def test_archive_is_normalised_and_excludes_junk(tmp_path: Path) -> None:
    data = pack_directory(_tree(tmp_path / "a"))
    assert data[4:8] == b"\0\0\0\0"  # gzip header mtime
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == ["alias.py", "app.py", "pkg", "pkg/__init__.py", "run.sh"]
    assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 and m.uname == "" for m in members)
    modes = {m.name: m.mode for m in members}
    assert modes["app.py"] == 0o644 and modes["run.sh"] == 0o755 and modes["pkg"] == 0o755
    assert members[0].issym() and members[0].linkname == "pkg/__init__.py"


def test_pack_refuses_a_symlink_out_of_the_tree(tmp_path: Path) -> None:
    root = _tree(tmp_path / "a")
    os.symlink("/etc/passwd", root / "passwd")
    with pytest.raises(ArchiveError) as err:
        pack_directory(root)
    assert err.value.member == "passwd" and err.value.rule == "link-escape"


def test_round_trip_from_path_and_stream(tmp_path: Path) -> None:
    src = _tree(tmp_path / "a")
    info = write_tree_archive_file(src, tmp_path / "layer.tar.gz")
    report = safe_extract(tmp_path / "layer.tar.gz", tmp_path / "out1")
    safe_extract(io.BytesIO((tmp_path / "layer.tar.gz").read_bytes()), tmp_path / "out2")
    for out in (tmp_path / "out1", tmp_path / "out2"):
        assert (out / "app.py").read_text() == "print('hi')\n"
        assert os.readlink(out / "alias.py") == "pkg/__init__.py"
        assert os.stat(out / "run.sh").st_mode & 0o777 == 0o755
        assert not (out / ".git").exists()
    assert report.files == 3 and info.files == 5
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# ---------------------------------------------------------------------------
# Hostile archives: each is refused with the member and rule named, and leaves nothing
# ---------------------------------------------------------------------------


def _tar(entries: list[tarfile.TarInfo | tuple[tarfile.TarInfo, bytes]], *, gz: bool = True) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w", format=tarfile.GNU_FORMAT) as tar:
        for entry in entries:
            if isinstance(entry, tuple):
                info, data = entry
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(entry)
    return buf.getvalue()


def _file(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


def _special(name: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    return info


def _many(n: int) -> bytes:
    return _tar([_file(f"f{i}") for i in range(n)])


def _huge_pax_header() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("small.txt")
        info.pax_headers = {"comment": "x" * 300_000}
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    return buf.getvalue()


def _corrupt_gzip() -> bytes:
    good = _tar([_file("a.txt", os.urandom(900))])
    return good[: len(good) // 2]


def _garbage() -> bytes:
    return gzip.compress(b"this is not a tar archive at all" * 100)


HOSTILE: dict[str, tuple[Callable[[], bytes], str, str]] = {
    "absolute path": (lambda: _tar([_file("ok.txt"), _file("/etc/evil")]), "/etc/evil", "absolute-path"),
    "dot-dot": (lambda: _tar([_file("ok.txt"), _file("a/../../evil")]), "a/../../evil", "parent-traversal"),
    "symlink absolute": (lambda: _tar([_link("etc", "/etc")]), "etc", "link-escape"),
    "symlink relative out": (lambda: _tar([_link("sub/up", "../../..")]), "sub/up", "link-escape"),
    "symlink chain out": (
        lambda: _tar([_link("sub/up", ".."), _link("sub/x", "up/..")]),
        "sub/x",
        "link-escape",
    ),
    "write through symlinked dir": (
        lambda: _tar([_link("d", "."), _link("d2", "d/.."), _file("d2/x")]),
        "d2/x",
        "link-escape",
    ),
    "symlink resolving out via a later link": (
        lambda: _tar([_link("d", "."), _link("d2", "d/..")]),
        "d2",
        "link-escape",
    ),
    "hardlink out": (lambda: _tar([_link("passwd", "/etc/passwd", tarfile.LNKTYPE)]), "passwd", "link-escape"),
    "hardlink dot-dot": (lambda: _tar([_link("x", "../outside", tarfile.LNKTYPE)]), "x", "link-escape"),
    "hardlink to nothing extracted": (
        lambda: _tar([_link("x", "later.txt", tarfile.LNKTYPE), _file("later.txt")]),
        "x",
        "link-escape",
    ),
    "character device": (lambda: _tar([_file("ok"), _special("dev/null", tarfile.CHRTYPE)]), "dev/null", "special-file"),
    "block device": (lambda: _tar([_special("sda", tarfile.BLKTYPE)]), "sda", "special-file"),
    "fifo": (lambda: _tar([_special("pipe", tarfile.FIFOTYPE)]), "pipe", "special-file"),
    "too big": (lambda: _tar([_file("a", b"x" * 600), _file("b", b"y" * 600)]), "b", "too-large"),
    "too many members": (lambda: _many(30), "f20", "too-many-members"),
    # refused from its header block, before tarfile reads the 300 KB of records (max_header_bytes)
    "huge pax header": (_huge_pax_header, "././@PaxHeader", "header-too-large"),
    "corrupt gzip": (_corrupt_gzip, "", "corrupt"),
    "not a tar": (_garbage, "", "corrupt"),
    "duplicate file": (lambda: _tar([_file("a"), _file("a")]), "a", "duplicate"),
}

LIMITS = ArchiveLimits(max_members=20, max_total_bytes=1000, max_file_bytes=1000)


@pytest.mark.parametrize("case", sorted(HOSTILE))
@pytest.mark.parametrize("as_stream", [False, True], ids=["file", "stream"])
def test_hostile_archive_is_refused_and_leaves_nothing(tmp_path: Path, case: str, as_stream: bool) -> None:
    make, member, rule = HOSTILE[case]
    archive = tmp_path / "in" / "hostile.tar.gz"
    archive.parent.mkdir()
    archive.write_bytes(make())
    parent = tmp_path / "images"
    parent.mkdir()
    source: Path | io.BytesIO = io.BytesIO(archive.read_bytes()) if as_stream else archive
    with pytest.raises(ArchiveError) as err:
        safe_extract(source, parent / "image", limits=LIMITS)
    assert isinstance(err.value, ValueError)
    assert err.value.rule == rule, str(err.value)
    if member:
        assert err.value.member == member, str(err.value)
    assert rule in str(err.value)
    assert list(parent.iterdir()) == []  # no image, no temp dir
    assert not (tmp_path / "etc").exists() and not (tmp_path / "outside").exists()


def test_plain_tar_is_accepted_and_target_must_not_exist(tmp_path: Path) -> None:
    data = _tar([_file("a/b.txt", b"hello")], gz=False)
    (tmp_path / "t.tar").write_bytes(data)
    safe_extract(tmp_path / "t.tar", tmp_path / "out")
    assert (tmp_path / "out" / "a" / "b.txt").read_bytes() == b"hello"
    with pytest.raises(FileExistsError):
        safe_extract(tmp_path / "t.tar", tmp_path / "out")


def test_symlink_inside_the_tree_is_kept(tmp_path: Path) -> None:
    data = _tar([_file("real/x.txt", b"1"), _link("alias", "real"), _link("real/self", "../real/x.txt")])
    safe_extract(io.BytesIO(data), tmp_path / "out")
    assert (tmp_path / "out" / "alias" / "x.txt").read_bytes() == b"1"
    assert (tmp_path / "out" / "real" / "self").read_bytes() == b"1"


def test_hardlink_inside_becomes_a_copy(tmp_path: Path) -> None:
    data = _tar([_file("a.txt", b"data"), _link("b.txt", "a.txt", tarfile.LNKTYPE)])
    safe_extract(io.BytesIO(data), tmp_path / "out")
    a, b = tmp_path / "out" / "a.txt", tmp_path / "out" / "b.txt"
    assert b.read_bytes() == b"data" and a.stat().st_ino != b.stat().st_ino


def test_a_huge_gnu_long_name_is_refused_before_it_is_read(tmp_path: Path) -> None:
    """A GNU long-name header (type L) of 100 KB: refused from its header block, by its own limit."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo("d/" * 50_000 + "f")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(ArchiveError) as err:
        safe_extract(io.BytesIO(buf.getvalue()), tmp_path / "out", limits=ArchiveLimits(max_header_bytes=4096))
    assert err.value.rule == "header-too-large" and err.value.member == "././@LongLink", str(err.value)
    assert not (tmp_path / "out").exists() and list(tmp_path.iterdir()) == []
