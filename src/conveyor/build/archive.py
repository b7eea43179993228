"""tar.gz in and out: reproducible archives to write, hostile archives to refuse.

Writing: a layer (or a source upload) is a tar.gz whose bytes depend only on the
files' relative paths, contents, executable bits and symlink targets: entries
sorted, mtime 0, uid/gid 0 with no owner names, modes normalised to 0644/0755,
and a gzip header with mtime 0 and no file name. That is what makes "same
source, same digest" true and lets the dependency layer be reused by digest.

Reading: the same code unpacks layers on agents and source tarballs uploaded by
the CLI to the API, and both may come from somewhere we do not trust. So
:func:`safe_extract` writes every member itself (never ``TarFile.extract``) and
enforces: no absolute paths, no ``..``, no links leading out of the tree (checked
lexically when a link is made and again on the real filesystem at the end), no
device or fifo files, bounded member count and total size. It extracts into a
temporary sibling directory and renames it into place only when everything
passed, so a refused or corrupt archive leaves nothing behind.
"""

from __future__ import annotations

import fnmatch
import gzip
import io
import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
import zlib
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

from conveyor.build.digest import sha256_file

#: Names never packed into an app layer or a source upload (matched against
#: every path component).
DEFAULT_EXCLUDES: tuple[str, ...] = (
    ".git",
    ".hg",
    ".svn",
    ".venv",
    "__pycache__",
    "*.pyc",
    "*.pyo",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
)

_GZIP_LEVEL = 6


class ArchiveError(ValueError):
    """An archive breaks a safety rule or cannot be read.

    ``member`` is the entry's name as written in the archive (or ``"<archive>"``
    when the archive itself is broken) and ``rule`` a short rule id such as
    ``absolute-path``, ``parent-traversal``, ``link-escape``, ``special-file``,
    ``too-large``, ``header-too-large``, ``too-many-members``, ``corrupt``.
    """

    def __init__(self, member: str, rule: str, detail: str) -> None:
        super().__init__(f"unsafe or corrupt archive: member {member!r} breaks rule {rule!r}: {detail}")
        self.member = member
        self.rule = rule
        self.detail = detail


@dataclass(frozen=True)
class ArchiveLimits:
    """Bounds for :func:`safe_extract` (defaults suit layers; pass tighter ones for uploads)."""

    max_members: int = 200_000
    max_total_bytes: int = 4 << 30
    max_file_bytes: int = 2 << 30
    max_path_length: int = 1024
    #: the data of one extended header (PAX records, GNU long name or link): tarfile reads it
    #: whole into memory before any check of ours runs, so it is bounded before it is read
    max_header_bytes: int = 64 << 10


#: The default bounds (layers).
DEFAULT_LIMITS = ArchiveLimits()


@dataclass(frozen=True)
class ExtractReport:
    members: int
    files: int
    bytes: int


@dataclass(frozen=True)
class ArchiveInfo:
    digest: str
    size: int
    files: int


# ---------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------


def is_excluded(rel_path: str, excludes: Iterable[str] = DEFAULT_EXCLUDES) -> bool:
    """True if any component of the relative POSIX path matches an exclude pattern."""
    patterns = tuple(excludes)
    return any(fnmatch.fnmatchcase(part, pat) for part in rel_path.split("/") for pat in patterns)


def iter_tree(src: Path, excludes: Iterable[str] = DEFAULT_EXCLUDES) -> Iterator[tuple[str, Path]]:
    """Yield ``(relative posix path, absolute path)`` for everything under ``src``, sorted.

    Directories come before their contents (sorting by path components). Excluded
    names are pruned. A symlink is yielded as itself, never followed.
    """
    patterns = tuple(excludes)
    found: list[tuple[tuple[str, ...], Path]] = []
    for dirpath, dirnames, filenames in os.walk(src, followlinks=False):
        base = Path(dirpath)
        rel_base = base.relative_to(src).parts
        dirnames[:] = [d for d in dirnames if not any(fnmatch.fnmatchcase(d, p) for p in patterns)]
        for name in dirnames + filenames:
            if any(fnmatch.fnmatchcase(name, p) for p in patterns):
                continue
            found.append(((*rel_base, name), base / name))
    found.sort(key=lambda item: item[0])
    for parts, path in found:
        yield "/".join(parts), path


def _normal_mode(st_mode: int) -> int:
    if stat.S_ISDIR(st_mode):
        return 0o755
    return 0o755 if st_mode & 0o111 else 0o644


def _tarinfo(name: str, kind: bytes, mode: int, size: int = 0, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.size = size
    info.linkname = linkname
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def write_tree_archive(
    src: Path,
    out: BinaryIO,
    *,
    excludes: Iterable[str] = DEFAULT_EXCLUDES,
) -> int:
    """Write a reproducible tar.gz of ``src`` into ``out``; return the number of entries.

    Symlinks are kept when they point inside ``src``; one that points out of it
    (or is absolute) raises :class:`ArchiveError`, because the agent would
    refuse it anyway and the build should say so first. Sockets, fifos and
    devices are refused too.
    """
    src = src.resolve()
    count = 0
    with (
        gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=_GZIP_LEVEL) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for rel, path in iter_tree(src, excludes):
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                target = os.readlink(path)
                _check_link_target(rel, target, rule="link-escape")
                tar.addfile(_tarinfo(rel, tarfile.SYMTYPE, 0o777, linkname=target))
            elif stat.S_ISDIR(st.st_mode):
                tar.addfile(_tarinfo(rel, tarfile.DIRTYPE, 0o755))
            elif stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    tar.addfile(_tarinfo(rel, tarfile.REGTYPE, _normal_mode(st.st_mode), st.st_size), f)
            else:
                raise ArchiveError(rel, "special-file", f"{path} is not a regular file, directory or symlink")
            count += 1
    return count


def write_tree_archive_file(src: Path, dest: Path, *, excludes: Iterable[str] = DEFAULT_EXCLUDES) -> ArchiveInfo:
    """Write the archive of ``src`` to ``dest`` atomically (temp file + rename)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".tar.gz", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            files = write_tree_archive(src, f, excludes=excludes)
        digest, size = sha256_file(Path(tmp))
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return ArchiveInfo(digest=digest, size=size, files=files)


def pack_directory(src: Path, *, excludes: Iterable[str] = DEFAULT_EXCLUDES) -> bytes:
    """The reproducible tar.gz of a source directory, in memory (what the CLI uploads).

    Uses the same excludes as the app layer (``.git``, ``.venv``, ``__pycache__``,
    ``*.pyc``, ...). Raises ``NotADirectoryError`` when ``src`` is not a directory.
    """
    if not src.is_dir():
        raise NotADirectoryError(f"cannot pack {src}: not a directory")
    buf = io.BytesIO()
    write_tree_archive(src, buf, excludes=excludes)
    return buf.getvalue()


# ---------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------


def _clean_name(raw: str, limits: ArchiveLimits) -> str:
    """Validate a member name and return it normalised (no leading ``./``, no trailing ``/``)."""
    if not raw or "\x00" in raw:
        raise ArchiveError(raw, "bad-name", "empty name or NUL byte in name")
    if len(raw) > limits.max_path_length:
        raise ArchiveError(raw[:80] + "...", "bad-name", f"path longer than {limits.max_path_length} characters")
    name = raw
    if name.startswith("/"):
        raise ArchiveError(raw, "absolute-path", "member paths must be relative")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise ArchiveError(raw, "parent-traversal", "member paths must not contain '..'")
    return "/".join(parts)


def _check_link_target(member: str, target: str, *, rule: str) -> str:
    """Check lexically that ``target`` (relative to ``member``'s directory) stays inside the tree."""
    if not target or "\x00" in target:
        raise ArchiveError(member, rule, "empty link target")
    if target.startswith("/"):
        raise ArchiveError(member, rule, f"link target {target!r} is absolute")
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(member), target))
    if resolved == ".." or resolved.startswith(("../", "/")):
        raise ArchiveError(member, rule, f"link target {target!r} points out of the tree")
    return resolved


def _inside(root_real: str, path: str) -> bool:
    real = os.path.realpath(path)
    return real == root_real or real.startswith(root_real + os.sep)


def safe_extract(
    source: Path | BinaryIO,
    dest: Path,
    *,
    limits: ArchiveLimits = DEFAULT_LIMITS,
) -> ExtractReport:
    """Extract a tar (optionally gzip-compressed) into the new directory ``dest``, safely.

    ``dest`` must not exist; its parent must. On any violation or read error an
    :class:`ArchiveError` is raised and nothing is left at ``dest`` or beside it.
    """
    if dest.exists() or dest.is_symlink():
        raise FileExistsError(f"extraction target {dest} already exists")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".extract-{dest.name}-", dir=dest.parent))
    try:
        report = _extract_into(source, tmp, limits)
        os.rename(tmp, dest)
        return report
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


class _Bounded(io.RawIOBase):
    """The decompressed archive stream, refusing to yield more than ``budget`` bytes.

    Member sizes are checked one by one, but tar has other places to hide bulk
    (huge PAX headers, padding); this caps everything read, whatever it is.
    """

    def __init__(self, inner: IO[bytes], budget: int) -> None:
        self._inner = inner
        self._left = budget

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        data = self._inner.read(len(b))
        self._left -= len(data)
        if self._left < 0:
            raise ArchiveError("<archive>", "too-large", "the decompressed archive is larger than the limits allow")
        b[: len(data)] = data
        return len(data)


@contextmanager
def _open_tar(source: Path | BinaryIO, limits: ArchiveLimits) -> Iterator[tarfile.TarFile]:
    """A streaming TarFile over the (gunzipped if need be) archive, bounded in bytes read."""
    with ExitStack() as stack:
        raw: IO[bytes] = stack.enter_context(open(source, "rb")) if isinstance(source, Path) else source
        magic = raw.read(2)
        head: IO[bytes] = io.BufferedReader(_Prefixed(magic, raw))
        if magic == b"\x1f\x8b":
            gz = gzip.GzipFile(fileobj=head, mode="rb")
            stack.callback(gz.close)
            head = cast(IO[bytes], gz)
        budget = limits.max_total_bytes + limits.max_members * 4 * 512 + (64 << 10)
        bounded = io.BufferedReader(_Bounded(head, budget), buffer_size=1 << 16)
        yield stack.enter_context(tarfile.open(fileobj=bounded, mode="r|", tarinfo=_bounded_tarinfo(limits)))


_EXTENDED_HEADERS = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE, tarfile.XGLTYPE,
                     tarfile.SOLARIS_XHDTYPE)


def _bounded_tarinfo(limits: ArchiveLimits) -> type[tarfile.TarInfo]:
    """A TarInfo that refuses an extended header larger than ``limits.max_header_bytes`` *before*
    tarfile reads its data: a 300 MB PAX or GNU long-name header in a 290 KB upload would
    otherwise sit in memory several times over while it is parsed."""

    class BoundedTarInfo(tarfile.TarInfo):
        def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:  # type: ignore[override]
            if self.type in _EXTENDED_HEADERS and self.size > limits.max_header_bytes:
                raise ArchiveError(self.name or "<archive>", "header-too-large",
                                   f"extended header of {self.size} bytes (limit {limits.max_header_bytes})")
            return super()._proc_member(tarfile_)  # type: ignore[misc,no-any-return]

    return BoundedTarInfo


class _Prefixed(io.RawIOBase):
    """``prefix`` then the rest of ``inner`` (to put back the bytes read to sniff gzip)."""

    def __init__(self, prefix: bytes, inner: IO[bytes]) -> None:
        self._prefix = prefix
        self._inner = inner

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        if self._prefix:
            n = min(len(b), len(self._prefix))
            b[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
            return n
        data = self._inner.read(len(b))
        b[: len(data)] = data
        return len(data)


def _extract_into(source: Path | BinaryIO, root: Path, limits: ArchiveLimits) -> ExtractReport:
    root_real = os.path.realpath(root)
    members = files = total = 0
    seen: dict[str, str] = {}  # name -> kind ('d', 'f', 'l')
    links: list[str] = []
    current = "<archive>"
    try:
        with _open_tar(source, limits) as tar:
            for info in tar:
                current = info.name
                members += 1
                if members > limits.max_members:
                    raise ArchiveError(info.name, "too-many-members", f"more than {limits.max_members} members")
                name = _clean_name(info.name, limits)
                if not name:
                    continue  # the root itself ("./")
                target = root / name
                parent = os.path.dirname(str(target))
                if not _inside(root_real, parent):
                    raise ArchiveError(info.name, "link-escape", "its parent directory leads out of the tree")
                previous = seen.get(name)
                if previous is not None and not (previous == "d" and info.isdir()):
                    raise ArchiveError(info.name, "duplicate", "the archive has this path twice")
                if info.isdir():
                    os.makedirs(target, mode=0o755, exist_ok=True)
                    if not _inside(root_real, str(target)):
                        raise ArchiveError(info.name, "link-escape", "directory leads out of the tree")
                    seen[name] = "d"
                elif info.isreg():
                    if info.size > limits.max_file_bytes:
                        raise ArchiveError(info.name, "too-large", f"file of {info.size} bytes (limit {limits.max_file_bytes})")
                    total += info.size
                    if total > limits.max_total_bytes:
                        raise ArchiveError(info.name, "too-large", f"archive holds more than {limits.max_total_bytes} bytes")
                    os.makedirs(parent, mode=0o755, exist_ok=True)
                    stream = tar.extractfile(info)
                    assert stream is not None
                    _write_file(target, stream, 0o755 if info.mode & 0o111 else 0o644, info.size, info.name)
                    seen[name] = "f"
                    files += 1
                elif info.issym():
                    _check_link_target(info.name, info.linkname, rule="link-escape")
                    os.makedirs(parent, mode=0o755, exist_ok=True)
                    os.symlink(info.linkname, target)
                    links.append(str(target))
                    seen[name] = "l"
                elif info.islnk():
                    try:  # a hard link's target is a path from the archive's root
                        link_src = _clean_name(info.linkname, limits)
                    except ArchiveError as exc:
                        raise ArchiveError(info.name, "link-escape", f"hard link target: {exc.detail}") from None
                    src_kind = seen.get(link_src)
                    if src_kind != "f":
                        raise ArchiveError(
                            info.name, "link-escape", f"hard link to {info.linkname!r}, which is not a file extracted earlier"
                        )
                    src_path = root / link_src
                    if not _inside(root_real, str(src_path)):
                        raise ArchiveError(info.name, "link-escape", f"hard link to {info.linkname!r} leads out of the tree")
                    size = src_path.stat().st_size
                    total += size
                    if total > limits.max_total_bytes:
                        raise ArchiveError(info.name, "too-large", f"archive holds more than {limits.max_total_bytes} bytes")
                    os.makedirs(parent, mode=0o755, exist_ok=True)
                    with open(src_path, "rb") as f:  # a copy: never share an inode with anything
                        _write_file(target, f, stat.S_IMODE(src_path.stat().st_mode), size, info.name)
                    seen[name] = "f"
                    files += 1
                else:
                    kind = {tarfile.CHRTYPE: "character device", tarfile.BLKTYPE: "block device", tarfile.FIFOTYPE: "fifo"}.get(
                        info.type, f"entry of type {info.type!r}"
                    )
                    raise ArchiveError(info.name, "special-file", f"{kind} not allowed")
    except ArchiveError:
        raise
    except (tarfile.TarError, EOFError, OSError, zlib.error, gzip.BadGzipFile) as exc:
        raise ArchiveError(current, "corrupt", f"cannot read archive: {exc}") from exc
    # Links may resolve through links created after them: check them all on the real filesystem.
    for link in links:
        if not _inside(root_real, link):
            rel = os.path.relpath(link, root)
            raise ArchiveError(rel, "link-escape", f"symlink resolves to {os.path.realpath(link)}, outside the tree")
    return ExtractReport(members=members, files=files, bytes=total)


def _write_file(target: Path, stream: IO[bytes], mode: int, size: int, member: str) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(target, flags, mode)
    except FileExistsError as exc:
        raise ArchiveError(member, "duplicate", "path already exists in the tree") from exc
    written = 0
    with os.fdopen(fd, "wb") as out:
        while written < size:
            chunk = stream.read(min(1 << 20, size - written))
            if not chunk:
                raise ArchiveError(member, "corrupt", f"file data ends after {written} of {size} bytes")
            out.write(chunk)
            written += len(chunk)
    os.chmod(target, mode)
