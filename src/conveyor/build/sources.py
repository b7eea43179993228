"""Where a build's files come from: a local directory, or a git repository and a ref.

Either way the builder gets a plain directory plus a :class:`CommitInfo`
(sha, author, message, commit time: lead time for changes is measured from the
commit time, and ``dirty`` says the directory had uncommitted changes).

Git sources keep one bare mirror per repository URL under the clone cache, so a
second build of the same repository only fetches what changed; the ref is
resolved after the fetch, so a moving branch builds its new commit. Checkouts
are made with ``git archive`` and unpacked by the same safe extractor as
layers. A per-mirror ``flock`` makes concurrent builds of one repository safe.
"""

from __future__ import annotations

import math

import fcntl
import hashlib
import io
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from conveyor.build.archive import is_excluded, safe_extract

_GIT_ENV = {
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_ALLOW_PROTOCOL": "file:git:http:https:ssh",
    "GIT_CONFIG_NOSYSTEM": "1",
    "LC_ALL": "C",
}
_SEP = "\x1f"


class SourceError(ValueError):
    """A source cannot be built: not a directory, unknown ref, unreachable repository, ..."""


class RevertConflict(SourceError):
    """The commit to revert does not revert cleanly from the ref's tree (later commits changed the same lines)."""

    def __init__(self, reverted: str, ref: str, files: list[str]) -> None:
        super().__init__(f"the revert of {reverted[:12]} conflicts with the commits after it up to {ref[:12]} "
                         f"(in {', '.join(files) or 'the tree'}): it cannot be built without it")
        self.files = files


@dataclass(frozen=True)
class CommitInfo:
    """The commit an image was built from (all ``None`` when the source is not in git)."""

    sha: str | None = None
    author: str | None = None
    message: str | None = None
    time: float | None = None  # commit time, Unix seconds
    dirty: bool = False
    ref: str | None = None
    repository: str | None = None
    #: The sha of a commit whose change was reverted from ``sha``'s tree for this build (a deploy train ships
    #: the commits after its culprit this way): the image is ``sha`` *without* that commit, not ``sha`` itself.
    reverted: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CommitInfo:
        """Commit info from JSON; a ValueError (never another error) when it is not an object of them."""
        if not isinstance(d, dict):
            raise ValueError(f"expected a JSON object of commit info, got {type(d).__name__}")

        def opt_str(key: str) -> str | None:
            v = d.get(key)
            return None if v is None else str(v)

        t = d.get("time")
        return cls(
            sha=opt_str("sha"),
            author=opt_str("author"),
            message=opt_str("message"),
            time=None if t is None else _finite(t),
            dirty=bool(d.get("dirty", False)),
            ref=opt_str("ref"),
            repository=opt_str("repository"),
            reverted=opt_str("reverted"),
        )


@dataclass(frozen=True)
class Checkout:
    """A git source materialised as a directory (the caller removes ``path`` when done)."""

    path: Path
    commit: CommitInfo
    fetch: str  # 'clone' (first time for this repository) or 'fetch' (mirror updated)


def _git(args: list[str], *, cwd: Path | None = None, git_dir: Path | None = None, timeout: float = 600) -> str:
    argv = ["git"]
    if git_dir is not None:
        argv += ["--git-dir", str(git_dir)]
    argv += args
    env = {**os.environ, **_GIT_ENV}
    try:
        out = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, timeout=timeout, check=True)
    except FileNotFoundError as exc:
        raise SourceError("git is not installed (apt-get install git)") from exc
    except subprocess.CalledProcessError as exc:
        err = exc.stderr.decode("utf-8", "replace").strip()
        raise SourceError(f"git {' '.join(args[:2])} failed: {err}") from exc
    return out.stdout.decode("utf-8", "replace")


def _commit_info(sha: str, *, cwd: Path | None = None, git_dir: Path | None = None) -> CommitInfo:
    fmt = _SEP.join(["%H", "%an <%ae>", "%ct", "%B"])
    out = _git(["log", "-1", f"--format={fmt}", sha], cwd=cwd, git_dir=git_dir)
    full, author, ctime, message = out.split(_SEP, 3)
    return CommitInfo(sha=full.strip(), author=author, message=message.strip(), time=float(ctime))


def describe_directory(path: Path) -> CommitInfo:
    """The commit of a local directory if it is inside a git work tree, else an empty CommitInfo.

    ``dirty`` is true when the directory (only that directory, when it is a sub
    directory of the repository) has uncommitted or untracked changes.
    """
    if not path.is_dir():
        raise SourceError(f"{path} is not a directory")
    try:
        inside = _git(["rev-parse", "--is-inside-work-tree"], cwd=path).strip() == "true"
        if not inside:
            return CommitInfo()
        sha = _git(["rev-parse", "--verify", "HEAD^{commit}"], cwd=path).strip()
    except SourceError:
        return CommitInfo()  # not a repository, or one without commits
    info = _commit_info(sha, cwd=path)
    status = _git(["status", "--porcelain", "--untracked-files=all", "--", "."], cwd=path)
    # Changes only in files the image leaves out (__pycache__, .venv, ...) do not make it dirty.
    changed = [line[3:].strip('"') for line in status.splitlines() if len(line) > 3]
    dirty = any(not is_excluded(p.split(" -> ")[-1]) for p in changed)
    return CommitInfo(sha=info.sha, author=info.author, message=info.message, time=info.time, dirty=dirty)


def _mirror_name(url: str) -> str:
    tail = re.sub(r"[^A-Za-z0-9._-]+", "-", url.rstrip("/").rsplit("/", 1)[-1])[:40]
    return f"{tail}-{hashlib.sha256(url.encode()).hexdigest()[:16]}.git"


def _normalise_url(url: str) -> str:
    if "://" in url or re.match(r"^[\w.-]+@[\w.-]+:", url):
        return url
    p = Path(url).expanduser()
    if not p.exists():
        raise SourceError(f"git repository {url!r} does not exist (give a path or a URL)")
    return str(p.resolve())


class GitSource:
    """Check out ``ref`` of a git repository (path or URL) through a clone cache."""

    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = Path(cache_dir) / "git"
        self.cache_dir.mkdir(parents=True, exist_ok=True)

    def mirror_path(self, url: str) -> Path:
        return self.cache_dir / _mirror_name(_normalise_url(url))

    @contextmanager
    def _locked(self, mirror: Path) -> Iterator[None]:
        with open(str(mirror) + ".lock", "a+b") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    def update(self, url: str) -> tuple[Path, str]:
        """Clone (first time) or fetch the mirror of ``url``; return it and 'clone' or 'fetch'."""
        url = _normalise_url(url)
        mirror = self.cache_dir / _mirror_name(url)
        with self._locked(mirror):
            if (mirror / "HEAD").is_file():
                _git(["fetch", "--prune", "--tags", "--force", "origin", "+refs/heads/*:refs/heads/*"], git_dir=mirror)
                return mirror, "fetch"
            tmp = Path(tempfile.mkdtemp(prefix=".clone-", dir=self.cache_dir))
            try:
                _git(["clone", "--mirror", "--quiet", "--", url, str(tmp / "m.git")])
                os.rename(tmp / "m.git", mirror)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            return mirror, "clone"

    def resolve(self, mirror: Path, ref: str) -> str:
        """The commit sha ``ref`` (branch, tag or sha) names in the mirror."""
        if not ref or ref.startswith("-"):
            raise SourceError(f"bad git ref {ref!r}")
        for candidate in (f"refs/heads/{ref}", f"refs/tags/{ref}", ref):
            try:
                return _git(["rev-parse", "--verify", "--quiet", f"{candidate}^{{commit}}"], git_dir=mirror).strip()
            except SourceError:
                continue
        raise SourceError(f"ref {ref!r} not found in the repository (a branch, tag or commit sha)")

    def checkout(self, url: str, ref: str, dest: Path, revert: str | None = None) -> Checkout:
        """Fetch, resolve ``ref`` and write its tree to the new directory ``dest``; with ``revert`` (a commit
        sha), the tree of ``ref`` with that commit's change reverted (:class:`RevertConflict` if it does not
        revert cleanly). The revert is made in a scratch clone under the cache: nothing is written to the
        repository, and the commit info says what the tree is (``reverted``)."""
        mirror, how = self.update(url)
        with self._locked(mirror):
            sha = self.resolve(mirror, ref)
            info = _commit_info(sha, git_dir=mirror)
            if revert is None:
                tree, where = sha, mirror
                reverted = None
            else:
                reverted = self.resolve(mirror, revert)
                scratch = Path(tempfile.mkdtemp(prefix=".revert-", dir=self.cache_dir))
            try:
                if reverted is not None:
                    tree, where = _reverted_tree(mirror, sha, reverted, scratch), scratch / "w" / ".git"
                data = subprocess.run(
                    ["git", "--git-dir", str(where), "archive", "--format=tar", tree],
                    env={**os.environ, **_GIT_ENV},
                    capture_output=True,
                    check=True,
                    timeout=600,
                ).stdout
            finally:
                if reverted is not None:
                    shutil.rmtree(scratch, ignore_errors=True)
        safe_extract(io.BytesIO(data), dest)
        message = info.message
        if reverted is not None:
            message = f"{info.message} [built with {reverted[:12]} reverted: not a commit of the repository]"
        commit = CommitInfo(
            sha=info.sha, author=info.author, message=message, time=info.time, ref=ref, repository=_normalise_url(url),
            reverted=reverted,
        )
        return Checkout(path=dest, commit=commit, fetch=how)


def _reverted_tree(mirror: Path, sha: str, reverted: str, scratch: Path) -> str:
    """The tree id of ``sha`` with ``reverted``'s change undone, made in a scratch clone sharing the mirror's
    objects (``git revert --no-commit``: no commit, no ref, nothing written to the mirror)."""
    work = scratch / "w"
    _git(["clone", "--quiet", "--shared", "--no-checkout", str(mirror), str(work)])
    _git(["checkout", "--quiet", "--detach", sha], cwd=work)
    try:
        _git(["-c", "user.name=conveyor", "-c", "user.email=conveyor@localhost", "revert", "--no-commit",
              "--no-edit", reverted], cwd=work)
    except SourceError:
        files = [f for f in _git(["diff", "--name-only", "--diff-filter=U"], cwd=work).splitlines() if f]
        if not files:
            raise  # not a conflict (a merge commit, a bad sha): git's own words
        raise RevertConflict(reverted, sha, files) from None
    return _git(["write-tree"], cwd=work).strip()


def _finite(value: Any) -> float:
    t = float(value)
    if not math.isfinite(t):
        raise ValueError(f"time: expected a finite number of seconds, got {value!r}")
    return t
