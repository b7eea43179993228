"""What a deploy train needs to know of a repository before it accepts commits: that each commit
exists, that they form one line of history (oldest first), and the newest one's ``conveyor.toml``.

The bisection (``conveyor.domain.bisection``) relies on commit ``i`` containing commits ``0..i``;
a train of commits from two branches would blame the wrong one, so it is refused here. Reads go
through the build's clone cache (``GitSource``), so the builds that follow only fetch what changed.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from conveyor.build.sources import CommitInfo, GitSource, SourceError

_SHA = re.compile(r"^[0-9a-f]{7,40}$")
_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1", "LC_ALL": "C"}
_FMT = "%H%x1f%an%x1f%ct%x1f%s"


class Missing(ValueError):
    """The repository cannot be fetched, or a commit is not in it (the API answers 404: nothing by that name)."""


@dataclass(frozen=True)
class Line:
    """The checked commits, oldest first, and the newest commit's ``conveyor.toml`` (None: it has none)."""

    commits: tuple[CommitInfo, ...]
    manifest: str | None


def _git(mirror: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "--git-dir", str(mirror), *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **_ENV})


def inspect(cache_dir: Path, url: str, shas: list[str]) -> Line:
    """Fetch ``url`` and check ``shas`` (oldest first): :class:`Missing` for a repository or commit that is
    not there, ``ValueError`` for commits that are not one line of history."""
    bad = [s for s in shas if not _SHA.match(s)]
    if bad:
        raise ValueError(f"commit {bad[0]!r} is not a commit sha (7 to 40 lower-case hex digits)")
    source = GitSource(cache_dir)
    try:
        mirror, _ = source.update(url)
    except SourceError as exc:
        raise Missing(f"repository {url!r} cannot be fetched: {exc}") from None
    infos: list[CommitInfo] = []
    for sha in shas:
        out = _git(mirror, "log", "-1", f"--format={_FMT}", f"{sha}^{{commit}}", "--")
        if out.returncode != 0 or not out.stdout.strip():
            raise Missing(f"commit {sha} is not in repository {url!r} (push it first, or check the sha)")
        full, author, when, message = out.stdout.rstrip("\n").split("\x1f", 3)
        infos.append(CommitInfo(sha=full, author=author, time=float(when), message=message))
    for older, newer in zip(infos, infos[1:]):
        if older.sha == newer.sha:
            raise ValueError(f"commit {older.sha[:12]} is listed twice")
        if _git(mirror, "merge-base", "--is-ancestor", str(older.sha), str(newer.sha)).returncode != 0:
            raise ValueError(f"commits must be one line of history, oldest first: {str(older.sha)[:12]} is not an "
                             f"ancestor of {str(newer.sha)[:12]}")
    shown = _git(mirror, "show", f"{infos[-1].sha}:conveyor.toml") if infos else None
    manifest = shown.stdout if shown is not None and shown.returncode == 0 else None
    return Line(tuple(infos), manifest)
