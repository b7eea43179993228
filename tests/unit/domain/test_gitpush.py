"""The pure rules of `git push conveyor main` (domain/gitpush.py): ref updates, branch policy,
push options, the smart-HTTP paths served; and DORA's lead time per pushed commit."""

from __future__ import annotations

import pytest

from conveyor.domain import dora
from conveyor.domain.gitpush import (
    MAX_UPDATES,
    PushError,
    RefUpdate,
    Route,
    branch_problem,
    decide,
    parse_updates,
    push_options,
    ref_problem,
    route,
)

A, B, Z = "a" * 40, "b" * 40, "0" * 40


def test_parse_updates_reads_git_lines() -> None:
    got = parse_updates(f"{A} {B} refs/heads/main\n{Z} {A} refs/heads/feature/x\n\n{B} {Z} refs/tags/v1\n")
    assert got == [RefUpdate(A, B, "refs/heads/main"), RefUpdate(Z, A, "refs/heads/feature/x"),
                   RefUpdate(B, Z, "refs/tags/v1")]
    assert got[1].created and not got[1].deleted and got[2].deleted
    assert got[0].branch == "main" and got[1].branch == "feature/x" and got[2].branch is None
    sha256 = "c" * 64
    assert parse_updates(f"{'0' * 64} {sha256} refs/heads/main")[0].new == sha256


@pytest.mark.parametrize("line, message", [
    (f"{A} {B}", "malformed"),
    (f"{A} {B} refs/heads/main extra", "malformed"),
    (f"{A} xyz refs/heads/main", "invalid object id"),
    (f"{A} {'c' * 64} refs/heads/main", "invalid object id"),  # mixed hash lengths
    (f"{A} {B} main", "not a full ref name"),
    (f"{A} {B} refs/heads/a..b", "not a valid ref name"),
    (f"{A} {B} refs/heads/x.lock", "not a valid ref name"),
    (f"{A} {B} refs/heads/.hidden", "not a valid ref name"),
    (f"{A} {B} refs/heads/a\tb", "character"),
    (f"{A} {B} refs/heads/ünï", "character"),
    (f"{A} {B} refs/heads/x~1", "character"),
    (f"{A} {B} refs/heads/" + "x" * 200, "limited to 200"),
])
def test_parse_updates_refuses_bad_lines(line: str, message: str) -> None:
    with pytest.raises(PushError, match=message):
        parse_updates(line)


def test_too_many_updates_are_refused() -> None:
    text = "\n".join(f"{A} {B} refs/heads/b{i}" for i in range(MAX_UPDATES + 1))
    with pytest.raises(PushError, match="at most"):
        parse_updates(text)


def test_branch_policy() -> None:
    assert decide(RefUpdate(A, B, "refs/heads/main"), "main").action == "deploy"
    assert decide(RefUpdate(Z, B, "refs/heads/main"), "main").action == "deploy"  # first push
    assert decide(RefUpdate(A, Z, "refs/heads/main"), "main").action == "reject"  # deleting the deploy branch
    stored = decide(RefUpdate(A, B, "refs/heads/feature"), "main")
    assert stored.action == "store" and "deploy branch is main" in stored.reason
    assert decide(RefUpdate(A, B, "refs/heads/main"), "release").action == "store"
    assert decide(RefUpdate(A, B, "refs/heads/release"), "release").action == "deploy"
    assert decide(RefUpdate(Z, B, "refs/tags/v1"), "main").action == "store"
    assert decide(RefUpdate(A, Z, "refs/heads/feature"), "main").action == "store"  # deleting another branch
    assert decide(RefUpdate(A, B, "refs/pull/1/head"), "main").action == "reject"
    assert decide(RefUpdate(A, B, "refs/notes/commits"), "main").action == "reject"


def test_deploy_branch_names() -> None:
    assert branch_problem("main") is None and branch_problem("release/2026") is None
    assert branch_problem("v1.2-rc_3") is None
    for bad in ("", "-x", "refs/heads/main", "a..b", "a b", "a/", ".a", "a//b", "ü", "x" * 181):
        assert branch_problem(bad), bad


def test_push_options() -> None:
    assert push_options({}) == set()
    assert push_options({"GIT_PUSH_OPTION_COUNT": "1", "GIT_PUSH_OPTION_0": "detach"}) == {"detach"}
    with pytest.raises(PushError, match="unknown push option 'force-deploy'"):
        push_options({"GIT_PUSH_OPTION_COUNT": "1", "GIT_PUSH_OPTION_0": "force-deploy"})
    assert push_options({"GIT_PUSH_OPTION_COUNT": "bogus"}) == set()


def test_smart_http_routes() -> None:
    assert route("GET", "hello.git/info/refs", "git-receive-pack") == Route("hello", "git-receive-pack", True)
    assert route("POST", "hello.git/git-upload-pack", None) == Route("hello", "git-upload-pack", False)
    assert route("POST", "hello.git/git-receive-pack", None).writes  # type: ignore[union-attr]
    assert "smart HTTP" in str(route("GET", "hello.git/info/refs", None))  # the dumb protocol
    for path in ("hello.git/HEAD", "hello.git/config", "hello.git/objects/info/packs", "hello.git/hooks/pre-receive"):
        assert isinstance(route("GET", path, None), str), path
    assert "not a Conveyor git remote" in str(route("GET", "Hello.git/info/refs", "git-upload-pack"))
    assert "not a Conveyor git remote" in str(route("GET", "../x.git/info/refs", "git-upload-pack"))
    assert "not a Conveyor git remote" in str(route("GET", "hello/info/refs", "git-upload-pack"))
    assert route("GET", "hello.git/git-receive-pack", None) == "method not allowed"
    assert route("POST", "hello.git/info/refs", "git-upload-pack") == "method not allowed"


def test_ref_problem_accepts_ordinary_names() -> None:
    for ok in ("refs/heads/main", "refs/heads/feature/login-page", "refs/tags/v1.2.3"):
        assert ref_problem(ok) is None, ok


def _deploy(i: int, finished: float, commits: tuple[tuple[str, float], ...] = (), sha: str | None = None,
            ctime: float | None = None, state: str = "succeeded") -> dora.DeployRecord:
    return dora.DeployRecord(id=i, app="a", kind="deploy", state=state, release=i, from_release=i - 1 or None,
                             created_at=finished - 10, started_at=finished - 10, finished_at=finished,
                             commit_sha=sha, commit_time=ctime, commits=commits)


def test_lead_time_counts_every_pushed_commit_once() -> None:
    # a push of three commits made at 100, 200, 400, live at 1000; then a push of one more (1100 → 1500)
    # whose range repeats an old commit (a force push): that one keeps its first time live
    history = [
        _deploy(1, 1000.0, commits=(("c3", 400.0), ("c2", 200.0), ("c1", 100.0)), sha="c3", ctime=400.0),
        _deploy(2, 1500.0, commits=(("c4", 1100.0), ("c2", 200.0)), sha="c4", ctime=1100.0),
    ]
    report = dora.compute(history, 0.0, 2000.0)
    assert report.lead_time.samples == 4
    assert report.lead_time.value == pytest.approx(700.0)  # median of 600, 800, 900 and 400
    # without the push's commits, only the image's head commit counts (the non-git path)
    plain = [_deploy(1, 1000.0, sha="c3", ctime=400.0)]
    assert dora.compute(plain, 0.0, 2000.0).lead_time.samples == 1


def test_failed_push_deploys_count_no_lead_time() -> None:
    history = [_deploy(1, 1000.0, commits=(("c1", 100.0),), state="rolled_back")]
    assert dora.compute(history, 0.0, 2000.0).lead_time.samples == 0
