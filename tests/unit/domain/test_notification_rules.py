"""Notifications out, pure: which events a target gets, the messages, the signature and the retry schedule."""

from __future__ import annotations

import json

import pytest

from conveyor.domain import notifications as n

EVENT = {"id": 7, "at": 1_764_000_000.0, "app": "shop", "env": "production", "kind": "deployed", "actor": "ci",
         "message": "release 3 takes all traffic (bluegreen)", "data": {"deployment": 12, "release": 3}}


def test_events_parse_to_groups_and_unknown_ones_are_named() -> None:
    assert n.parse_events(["deploy,rollback", " verdict "]) == ["deploy", "rollback", "verdict"]
    assert n.parse_events([]) == []
    with pytest.raises(ValueError, match="unknown event 'deploys'.*build, deploy"):
        n.parse_events(["deploy,deploys"])


def test_a_target_gets_its_groups_only_and_a_test_always() -> None:
    assert n.wants(["rollback"], "rolled_back") and not n.wants(["rollback"], "deployed")
    assert n.wants([], "deployed") and n.wants([], "approval_needed") and n.wants([], "image_built")
    assert not n.wants([], "domain_added")  # not a notified kind
    assert n.wants(["build"], "notification_test")


@pytest.mark.parametrize("url, words", [
    ("ftp://example.com/x", "http:// or https://"),
    ("file:///etc/passwd", "http:// or https://"),
    ("javascript:alert(1)", "http:// or https://"),
    ("example.com/hook", "http:// or https://"),
    ("https:///nohost", "no host"),
    ("https://u:p@example.com/x", "credentials"),
    ("https://example.com/a b", "spaces, control"),
    ("https://example.com/" + "a" * 2000, "longer than"),
])
def test_bad_urls_are_refused_saying_what_to_fix(url: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        n.check_url(url)


def test_good_urls_pass_and_listings_hide_the_secret_path() -> None:
    assert n.check_url(" https://hooks.slack.com/services/T0/B0/XYZ ") == "https://hooks.slack.com/services/T0/B0/XYZ"
    assert n.shown_url("https://hooks.slack.com/services/T0/B0/XYZ") == "https://hooks.slack.com/services/…"
    assert n.shown_url("http://127.0.0.1:9000/hook") == "http://127.0.0.1:9000/hook"


def test_signature_covers_timestamp_and_body_and_rejects_old_or_changed() -> None:
    body = b'{"a":1}'
    sig = n.sign("k", 1000, body)
    assert sig.startswith("sha256=") and len(sig) == 7 + 64
    assert n.verify_signature("k", "1000", body, sig, now=1010)
    assert not n.verify_signature("k", "1000", body + b" ", sig, now=1010)
    assert not n.verify_signature("k", "1001", body, sig, now=1010)  # the timestamp is signed too
    assert not n.verify_signature("other", "1000", body, sig, now=1010)
    assert not n.verify_signature("k", "1000", body, sig, now=1000 + n.SIGNATURE_TOLERANCE_S + 1)  # a replay later
    assert not n.verify_signature("k", "abc", body, sig, now=1000)


def test_retry_schedule_doubles_to_a_cap_and_gives_up() -> None:
    assert n.schedule() == [2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0]
    assert n.after_attempt(1, True, 100.0) == n.Attempt("delivered", None)
    assert n.after_attempt(1, False, 100.0) == n.Attempt("retrying", 102.0)
    assert n.after_attempt(3, False, 100.0) == n.Attempt("retrying", 108.0)
    assert n.after_attempt(n.MAX_ATTEMPTS, False, 100.0) == n.Attempt("failed", None)
    assert n.RETRY.delay(20) == n.RETRY.cap


def test_json_message_carries_the_event_and_its_links() -> None:
    m = n.message("json", EVENT, "https://cvy.example.com/")
    assert (m["event"], m["kind"], m["app"], m["env"], m["deployment"], m["release"]) == ("deploy", "deployed", "shop",
                                                                                          "production", 12, 3)
    assert m["links"] == {"deployment": "https://cvy.example.com/deployments/12", "app": "https://cvy.example.com/apps/shop",
                          "rollback": "https://cvy.example.com/apps/shop#env-production"}
    json.dumps(m)  # serialisable as is


def test_slack_message_has_text_blocks_and_buttons() -> None:
    m = n.message("slack", EVENT | {"message": "a <b> & c"}, "http://cp:7700")
    assert m["text"].startswith("Deploy succeeded — shop/production: a <b> & c")
    section, context, actions = m["blocks"]
    assert "a &lt;b&gt; &amp; c" in section["text"]["text"]  # Slack's mrkdwn escapes
    assert "deployment 12" in context["elements"][0]["text"]
    assert [(b["text"]["text"], b["url"]) for b in actions["elements"]] == [
        ("Open deployment", "http://cp:7700/deployments/12"), ("Roll back", "http://cp:7700/apps/shop#env-production")]


def test_approval_needed_links_to_approve() -> None:
    ev = EVENT | {"kind": "approval_needed", "message": "release 4 waits for approval", "data": {"deployment": 13}}
    m = n.message("json", ev, "http://cp")
    assert m["event"] == "approval" and m["links"]["approve"] == "http://cp/deployments/13"
    given = n.message("json", ev | {"data": {"deployment": 13, "approve_url": "http://cp/approvals/5"}}, "http://cp")
    assert given["links"]["approve"] == "http://cp/approvals/5"
    slack = n.message("slack", ev, "http://cp")
    assert "Approve" in [b["text"]["text"] for b in slack["blocks"][2]["elements"]]
