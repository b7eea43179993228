"""The desired-vs-actual diff, by direct calls."""

from __future__ import annotations

from conveyor.agent.reconcile import Actual, Reject, Replace, Start, Stop, check_instance_id, plan
from conveyor.domain.wire import DesiredInstance, HealthCheck


def spec(instance_id: str, release: int = 1, command: str = "python app.py", **kw: object) -> DesiredInstance:
    return DesiredInstance(
        id=instance_id, app="hello", env="production", release=release, image="sha256:" + "a" * 64, command=command, **kw
    )


def test_nothing_to_do_when_actual_matches_desired() -> None:
    desired = [spec("a"), spec("b")]
    actual = {"a": Actual(spec("a")), "b": Actual(spec("b"))}
    assert plan(desired, actual) == []


def test_nothing_to_do_for_empty_world() -> None:
    assert plan([], {}) == []


def test_starts_missing_instances_in_id_order() -> None:
    assert plan([spec("b"), spec("a")], {}) == [Start(spec("a")), Start(spec("b"))]


def test_stops_instances_no_longer_desired_before_starting_new_ones() -> None:
    actions = plan([spec("new")], {"old": Actual(spec("old"))})
    assert actions == [Stop("old", "no longer desired"), Start(spec("new"))]


def test_changed_spec_is_replaced() -> None:
    changed = spec("a", command="python other.py")
    assert plan([changed], {"a": Actual(spec("a"))}) == [Replace(changed)]
    health_changed = spec("a", health=HealthCheck(path="/healthz"))
    assert plan([health_changed], {"a": Actual(spec("a"))}) == [Replace(health_changed)]


def test_instance_being_stopped_is_neither_stopped_again_nor_restarted() -> None:
    assert plan([], {"a": Actual(spec("a"), stopping=True)}) == []
    # Desired again while still stopping: wait for the stop to finish.
    assert plan([spec("a")], {"a": Actual(spec("a"), stopping=True)}) == []


def test_duplicate_ids_first_wins_and_rest_rejected() -> None:
    first, second = spec("a", release=1), spec("a", release=2)
    actions = plan([first, second], {})
    assert actions[0] == Start(first)
    assert isinstance(actions[1], Reject) and actions[1].instance_id == "a" and "twice" in actions[1].message


def test_unsafe_ids_are_rejected_with_a_reason() -> None:
    actions = plan([spec("../etc/passwd"), spec("ok-1")], {})
    assert actions[0] == Start(spec("ok-1"))
    assert isinstance(actions[1], Reject)
    assert "file name" in actions[1].message
    assert check_instance_id("hello-production-r3-ab12") is None
    assert check_instance_id(".hidden") is not None
    assert check_instance_id("") is not None


def test_plan_is_idempotent() -> None:
    desired = [spec("a"), spec("c")]
    actual = {"a": Actual(spec("a")), "b": Actual(spec("b"))}
    assert plan(desired, actual) == plan(desired, actual)
