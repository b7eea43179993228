"""Push webhooks, pure: signatures (GitHub HMAC, GitLab token), payloads, and what to do with a push."""

from __future__ import annotations

import json

import pytest

from conveyor.domain import webhooks as wh

SECRET = "s3cret-shared"
SHA = "a" * 40


def github(body: bytes, secret: str = SECRET, event: str = "push", delivery: str = "d-1") -> dict[str, str]:
    return {"X-GitHub-Event": event, "X-GitHub-Delivery": delivery, "X-Hub-Signature-256": wh.github_signature(secret, body)}


def push_body(ref: str = "refs/heads/main", sha: str = SHA, url: str = "https://github.com/o/r.git") -> bytes:
    return json.dumps({"ref": ref, "after": sha, "repository": {"clone_url": url, "html_url": url.removesuffix(".git")}}).encode()


def test_github_signature_is_hmac_sha256_of_the_raw_body() -> None:
    # the example of GitHub's documentation ("Validating webhook deliveries")
    assert wh.github_signature("It's a Secret to Everybody", b"Hello, World!") == (
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")


def test_verify_accepts_the_right_signature_and_refuses_wrong_missing_or_other_body() -> None:
    body = push_body()
    assert wh.verify(github(body), body, SECRET)
    assert not wh.verify(github(body, secret="other"), body, SECRET)
    assert not wh.verify(github(body), body + b" ", SECRET)  # the body changed after signing
    unsigned = {k: v for k, v in github(body).items() if k != "X-Hub-Signature-256"}
    assert not wh.verify(unsigned, body, SECRET)
    assert not wh.verify({"X-Hub-Signature-256": wh.github_signature(SECRET, body)}, body, SECRET)  # no event header


def test_gitlab_token_is_compared_as_the_secret_itself() -> None:
    h = {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Event-UUID": "u-1", "X-Gitlab-Token": SECRET}
    assert wh.verify(h, b"{}", SECRET)
    assert not wh.verify(h | {"X-Gitlab-Token": SECRET + "x"}, b"{}", SECRET)
    assert not wh.verify({k: v for k, v in h.items() if k != "X-Gitlab-Token"}, b"{}", SECRET)


def test_headers_are_case_insensitive() -> None:
    body = push_body()
    h = {k.lower(): v for k, v in github(body).items()}
    assert wh.verify(h, body, SECRET) and wh.parse(h, body).delivery == "d-1"


def test_parse_a_github_push_and_a_ping() -> None:
    p = wh.parse(github(push_body()), push_body())
    assert (p.provider, p.event, p.branch, p.sha) == ("github", "push", "main", SHA)
    assert "https://github.com/o/r" in p.repositories
    ping = wh.parse(github(b"{}", event="ping"), b"{}")
    assert ping.event == "ping" and wh.decide(ping, "x", "main").action == "pong"


def test_parse_a_gitlab_push() -> None:
    body = json.dumps({"ref": "refs/heads/main", "after": SHA, "checkout_sha": SHA,
                       "project": {"git_http_url": "https://gitlab.com/g/p.git", "git_ssh_url": "git@gitlab.com:g/p.git"}}).encode()
    p = wh.parse({"X-Gitlab-Event": "Push Hook", "X-Gitlab-Event-UUID": "u-9", "X-Gitlab-Token": SECRET}, body)
    assert (p.provider, p.event, p.delivery, p.sha) == ("gitlab", "push", "u-9", SHA)
    assert wh.decide(p, "git@gitlab.com:g/p.git", "main").action == "ship"
    assert wh.decide(p, "https://gitlab.com/g/p", "main").action == "ship"


@pytest.mark.parametrize("headers, body, status, words", [
    ({"X-GitHub-Event": "push", "X-Hub-Signature-256": "x"}, b"{}", 400, "X-GitHub-Delivery"),
    ({"X-GitHub-Event": "push", "X-GitHub-Delivery": "d" * 101}, b"{}", 400, "X-GitHub-Delivery"),
    ({"X-GitHub-Event": "push", "X-GitHub-Delivery": "d"}, b"not json", 400, "not JSON"),
    ({"X-GitHub-Event": "push", "X-GitHub-Delivery": "d"}, b"[1]", 400, "not a JSON object"),
    ({"X-GitHub-Event": "push", "X-GitHub-Delivery": "d"}, b'{"ref": 1}', 400, "'ref' and 'after'"),
    ({"Content-Type": "application/json"}, b"{}", 400, "not a GitHub or GitLab"),
])
def test_unreadable_deliveries_say_why(headers: dict[str, str], body: bytes, status: int, words: str) -> None:
    with pytest.raises(wh.WebhookError, match=words) as e:
        wh.parse(headers, body)
    assert e.value.status == status


def test_decide_ships_only_the_deploy_branch_of_the_registered_repository() -> None:
    def d(body: bytes, repo: str = "https://github.com/o/r", branch: str = "main") -> wh.Decision:
        return wh.decide(wh.parse(github(body), body), repo, branch)

    assert d(push_body()) == wh.Decision("ship", d(push_body()).reason, SHA)
    other_repo = d(push_body(url="https://github.com/evil/r.git"))
    assert other_repo.action == "refuse" and "another repository" in other_repo.reason
    other_branch = d(push_body(ref="refs/heads/feature"))
    assert other_branch.action == "ignore" and "'feature'" in other_branch.reason and "'main'" in other_branch.reason
    assert d(push_body(ref="refs/tags/v1")).action == "ignore"
    assert "deleted" in d(push_body(sha="0" * 40)).reason
    assert d(push_body(sha="not-a-sha")).action == "refuse"
    assert wh.decide(wh.parse(github(b"{}", event="issues"), b"{}"), "x", "main").action == "ignore"


@pytest.mark.parametrize("a, b", [
    ("https://GitHub.com/o/r.git/", "https://github.com/o/r"),
    ("https://user:pw@github.com/o/r.git", "https://github.com/o/r"),
    ("/srv/git/app.git", "file:///srv/git/app.git"),
    ("/srv/git/app.git/", "file:///srv/git/app"),
    ("git@github.com:o/r.git", "ssh://git@github.com/o/r"),
])
def test_one_repository_many_spellings(a: str, b: str) -> None:
    assert wh.normalize_repository(a) == wh.normalize_repository(b)


def test_different_repositories_stay_different() -> None:
    assert wh.normalize_repository("https://github.com/o/r") != wh.normalize_repository("https://github.com/o/r2")
    assert wh.normalize_repository("/srv/a.git") != wh.normalize_repository("/srv/b.git")
