"""Git sources: a ref, a moving branch, the clone cache, and builds from them."""

from __future__ import annotations

from pathlib import Path

import pytest
from conveyor_build_helpers import git, init_repo, write_app

from conveyor.build.builder import build_image
from conveyor.build.sources import CommitInfo, GitSource, RevertConflict, SourceError
from conveyor.build.store import ArtifactStore


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    src = write_app(tmp_path / "upstream", app_py="print('v1')\n")
    init_repo(src)
    git(src, "tag", "v1")
    return src


def test_ref_and_moving_branch_through_the_clone_cache(tmp_path: Path, repo: Path) -> None:
    source = GitSource(tmp_path / "cache")
    first = source.checkout(str(repo), "main", tmp_path / "co1")
    assert first.fetch == "clone"
    assert first.commit.sha == git(repo, "rev-parse", "HEAD") and first.commit.ref == "main"
    assert first.commit.message == "first commit" and first.commit.author == "Ada Lovelace <ada@example.com>"
    assert (tmp_path / "co1" / "app.py").read_text() == "print('v1')\n"
    assert not (tmp_path / "co1" / ".git").exists()
    mirror = source.mirror_path(str(repo))
    inode = mirror.stat().st_ino

    (repo / "app.py").write_text("print('v2')\n")
    git(repo, "commit", "-q", "-am", "second commit")
    second = source.checkout(str(repo), "main", tmp_path / "co2")
    assert second.fetch == "fetch" and mirror.stat().st_ino == inode  # updated in place, not cloned again
    assert second.commit.sha == git(repo, "rev-parse", "HEAD") != first.commit.sha
    assert (tmp_path / "co2" / "app.py").read_text() == "print('v2')\n"

    tagged = source.checkout(str(repo), "v1", tmp_path / "co3")  # a tag still names the old commit
    assert tagged.commit.sha == first.commit.sha
    assert (tmp_path / "co3" / "app.py").read_text() == "print('v1')\n"
    by_sha = source.checkout(str(repo), first.commit.sha[:10], tmp_path / "co4")
    assert by_sha.commit.sha == first.commit.sha


def test_unknown_ref_and_missing_repository_are_clear_errors(tmp_path: Path, repo: Path) -> None:
    source = GitSource(tmp_path / "cache")
    with pytest.raises(SourceError, match="ref 'nope' not found"):
        source.checkout(str(repo), "nope", tmp_path / "co")
    with pytest.raises(SourceError, match="bad git ref"):
        source.checkout(str(repo), "--upload-pack=evil", tmp_path / "co")
    with pytest.raises(SourceError, match="does not exist"):
        source.checkout(str(tmp_path / "missing"), "main", tmp_path / "co")
    assert not (tmp_path / "co").exists()


def test_same_commit_from_git_and_from_directory_gives_same_image(tmp_path: Path, repo: Path) -> None:
    store = ArtifactStore(tmp_path / "store")
    checkout = GitSource(tmp_path / "cache").checkout(str(repo), "main", tmp_path / "co")
    from_git = build_image(checkout.path, store, cache_dir=tmp_path / "cache", log=lambda _: None, commit=checkout.commit)
    from_dir = build_image(repo, store, cache_dir=tmp_path / "cache", log=lambda _: None)
    assert from_git.image == from_dir.image
    assert from_git.commit.sha == from_dir.commit.sha and from_git.commit.repository == str(repo.resolve())


def _refs_and_objects(repo: Path) -> tuple[str, str]:
    return git(repo, "show-ref"), git(repo, "count-objects", "-v")


def test_a_commit_reverted_from_a_later_tree_in_a_scratch_clone(tmp_path: Path, repo: Path) -> None:
    """A deploy train's ship-without: the newest commit's tree with the culprit's change undone, the later
    commits' changes kept; the commit info says so; nothing is written to the repository or the mirror's refs."""
    (repo / "bad.txt").write_text("the culprit's file\n")
    git(repo, "add", "bad.txt")
    git(repo, "commit", "-q", "-m", "culprit")
    culprit = git(repo, "rev-parse", "HEAD")
    (repo / "later.txt").write_text("a later change\n")
    git(repo, "add", "later.txt")
    git(repo, "commit", "-q", "-m", "later")
    head = git(repo, "rev-parse", "HEAD")
    before = _refs_and_objects(repo)
    source = GitSource(tmp_path / "cache")
    co = source.checkout(str(repo), head, tmp_path / "co", revert=culprit)
    assert (tmp_path / "co" / "later.txt").read_text() == "a later change\n"
    assert not (tmp_path / "co" / "bad.txt").exists()
    assert (tmp_path / "co" / "app.py").read_text() == "print('v1')\n"
    assert co.commit.sha == head and co.commit.reverted == culprit
    assert f"{culprit[:12]} reverted" in (co.commit.message or "")
    assert CommitInfo.from_dict(co.commit.to_dict()) == co.commit  # the field survives the image's JSON
    assert _refs_and_objects(repo) == before  # the user's repository is untouched
    mirror = source.mirror_path(str(repo))
    assert git(mirror, "show-ref") == git(repo, "show-ref")  # no ref made in the mirror either
    assert not list((tmp_path / "cache" / "git").glob(".revert-*"))  # the scratch clone is gone


def test_a_revert_that_conflicts_with_later_commits_is_a_clear_error(tmp_path: Path, repo: Path) -> None:
    (repo / "app.py").write_text("print('culprit')\n")
    git(repo, "commit", "-q", "-am", "culprit")
    culprit = git(repo, "rev-parse", "HEAD")
    (repo / "app.py").write_text("print('builds on the culprit')\n")
    git(repo, "commit", "-q", "-am", "later, on the same line")
    head = git(repo, "rev-parse", "HEAD")
    source = GitSource(tmp_path / "cache")
    with pytest.raises(RevertConflict, match=f"the revert of {culprit[:12]} conflicts") as err:
        source.checkout(str(repo), head, tmp_path / "co", revert=culprit)
    assert err.value.files == ["app.py"] and "app.py" in str(err.value)
    assert not (tmp_path / "co").exists()
    assert not list((tmp_path / "cache" / "git").glob(".revert-*"))
