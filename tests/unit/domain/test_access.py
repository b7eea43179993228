"""Who may do what (conveyor.domain.access), by direct calls."""

from __future__ import annotations

import pytest

from conveyor.domain.access import (
    Principal,
    admin_url_problem,
    expiry_problem,
    new_token_problem,
    parse_duration,
    split_token,
    token_shape_problem,
    write_refusal,
)
from conveyor.domain.ratelimit import FailureLimiter


def test_token_shapes() -> None:
    assert token_shape_problem("cvt_abc_def") is None
    assert "too long" in (token_shape_problem("x" * 201) or "")
    assert "non-printable" in (token_shape_problem("abc def") or "")
    assert split_token("cvt_ab12_s3cr_et") == ("ab12", "s3cr_et")
    assert split_token("cvy_admin") is None and split_token("cvt_nosecret") is None and split_token("cvt__x") is None


def test_durations() -> None:
    assert parse_duration("30d") == 30 * 86400 and parse_duration("12h") == 43200 and parse_duration("2w") == 14 * 86400
    for bad in ("", "soon", "0d", "-1d", "30"):
        with pytest.raises(ValueError, match="--expires"):
            parse_duration(bad)


def test_new_token_rules() -> None:
    assert new_token_problem("deployer", name="ci", app="web", team=None, host=None) is None
    assert "unknown role 'root'" in (new_token_problem("root", name="x", app=None, team=None, host=None) or "")
    assert "not both" in (new_token_problem("viewer", name="x", app="a", team="t", host=None) or "")
    assert "cannot be scoped" in (new_token_problem("admin", name="x", app="a", team=None, host=None) or "")
    assert "needs the host" in (new_token_problem("router", name="x", app=None, team=None, host=None) or "")
    assert "only agent and router" in (new_token_problem("viewer", name="x", app=None, team=None, host="h1") or "")
    assert "token name" in (new_token_problem("viewer", name="bad name", app=None, team=None, host=None) or "")


def test_expiry_and_revocation_say_why() -> None:
    assert expiry_problem(None, None, 100.0) is None
    assert expiry_problem(200.0, None, 100.0) is None
    assert "expired" in (expiry_problem(100.0, None, 100.0) or "")
    assert "revoked" in (expiry_problem(None, 50.0, 100.0) or "")


def test_a_deployer_of_app_a_cannot_touch_b() -> None:
    a = Principal("ci-a", "deployer", scope_app="a")
    assert write_refusal(a, "a", None) is None
    assert "may not change app 'b'" in (write_refusal(a, "b", None) or "")
    assert "not about one of its apps" in (write_refusal(a, None, None) or "")  # e.g. creating apps, image GC
    team = Principal("payments", "deployer", scope_team="pay")
    assert write_refusal(team, "checkout", "pay") is None
    assert "belongs to team 'search'" in (write_refusal(team, "find", "search") or "")
    assert write_refusal(Principal("any", "deployer"), "b", None) is None
    assert write_refusal(Principal("root", "admin"), None, None) is None
    assert "only read" in (write_refusal(Principal("v", "viewer"), "a", None) or "")
    assert "join token" in (write_refusal(Principal("agent@h", "agent", host="h"), "a", None) or "")


def test_a_router_may_only_be_scraped_on_its_own_host() -> None:
    assert admin_url_problem(None, "10.0.0.5") is None
    assert admin_url_problem("http://10.0.0.5:7781", "10.0.0.5") is None
    assert admin_url_problem("http://127.0.0.1:7781", "127.0.0.1") is None
    # conveyor up --host 10.0.0.1: the router on the control plane's machine reaches it at that address
    assert admin_url_problem("http://127.0.0.1:7781", "10.0.0.1", server_address="10.0.0.1") is None
    assert "not on the router's host" in (admin_url_problem("http://10.0.0.9:7781", "10.0.0.5") or "")
    assert "not on the router's host" in (admin_url_problem("http://127.0.0.1:7781", "10.0.0.5", "10.0.0.1") or "")
    assert "not a name" in (admin_url_problem("http://evil.example:80", "10.0.0.5") or "")
    assert "admin port" in (admin_url_problem("http://10.0.0.5", "10.0.0.5") or "")
    assert "expected http" in (admin_url_problem("http://10.0.0.5:1/metrics.json", "10.0.0.5") or "")


def test_failed_sign_ins_are_limited_per_address() -> None:
    lim = FailureLimiter(max_failures=3, window=60)
    for i in range(3):
        assert lim.retry_after("1.2.3.4", 100.0 + i) == 0
        lim.failed("1.2.3.4", 100.0 + i)
    assert lim.retry_after("1.2.3.4", 103.0) == pytest.approx(57.0)
    assert lim.retry_after("5.6.7.8", 103.0) == 0  # another address is not affected
    assert lim.retry_after("1.2.3.4", 160.5) == 0  # the first failure left the window


def test_the_limiter_forgets_the_stalest_addresses() -> None:
    lim = FailureLimiter(max_failures=2, window=60, max_keys=10)
    for i in range(25):
        lim.failed(f"10.0.0.{i}", float(i))
    assert len(lim._failures) <= 10
