"""Pipelines (domain/pipeline.py and the manifest's after/approval): checks and next-step decisions."""

from __future__ import annotations

import pytest

from conveyor.domain import pipeline
from conveyor.domain.manifest import ManifestError, parse_manifest

DIGEST = "sha256:" + "ab" * 32


def up(state: str = "succeeded", finished: float | None = 100.0, bake: float = 30.0) -> pipeline.Upstream:
    return pipeline.Upstream("staging", 7, DIGEST, state, finished, bake)


def test_promotes_after_success_and_bake_with_or_without_approval() -> None:
    assert pipeline.next_step("production", False, up(), False, 130.0) == pipeline.Promote(
        "production", DIGEST, "staging", 7, False)
    assert pipeline.next_step("production", True, up(), False, 131.0) == pipeline.Promote(
        "production", DIGEST, "staging", 7, True)


def test_waits_for_the_bake() -> None:
    step = pipeline.next_step("production", False, up(), False, 129.0)
    assert isinstance(step, pipeline.Hold) and "bake" in step.reason and "1 s left" in step.reason


def test_never_twice_once_the_stage_has_the_image() -> None:
    assert pipeline.next_step("production", False, up(), True, 1e9) is None


@pytest.mark.parametrize("state", ["failed", "rolled_back", "baking", "canary"])
def test_an_upstream_that_did_not_succeed_promotes_nothing(state: str) -> None:
    step = pipeline.next_step("production", False, up(state, None), False, 1e9)
    assert isinstance(step, pipeline.Hold) and state in step.reason


def test_no_upstream_release_waits() -> None:
    assert isinstance(pipeline.next_step("production", False, None, False, 0.0), pipeline.Hold)


def test_order_and_downstream() -> None:
    after = {"production": "staging", "staging": "dev", "dev": None, "eu": "staging"}
    assert pipeline.order(after) == ["dev", "staging", "eu", "production"]
    assert pipeline.downstream(after, "staging") == ["eu", "production"]
    assert pipeline.check(after) == []


def test_manifest_pipeline_parses() -> None:
    m = parse_manifest({"env": {"staging": {}, "production": {"after": "staging", "approval": True,
                                                             "strategy": "canary"}}})
    assert m.pipeline() == {"staging": None, "production": "staging"}
    assert m.env["production"].approval


@pytest.mark.parametrize(("envs", "expected"), [
    ({"production": {"after": "stagign"}}, "[env.production] after: no environment 'stagign'"),
    ({"a": {"after": "b"}, "b": {"after": "a"}}, "the pipeline has a cycle (a -> b -> a)"),
    ({"a": {"after": "a"}}, "[env.a] after: an environment cannot follow itself"),
    ({"a": {"approval": True}}, "[env.a] approval: only a pipeline stage waits for approval"),
])
def test_bad_pipelines_are_refused_naming_the_key(envs: dict[str, dict[str, object]], expected: str) -> None:
    with pytest.raises(ManifestError) as err:
        parse_manifest({"env": envs})
    assert expected in str(err.value)
    assert str(err.value).startswith("conveyor.toml: [env.")


def test_a_new_image_enters_the_pipeline_at_its_first_stage() -> None:
    from conveyor.domain.pipeline import entry

    assert entry({"staging": None, "production": "staging"}, "production") == "staging"
    assert entry({"dev": None, "staging": "dev", "production": "staging"}, "production") == "dev"
    assert entry({"staging": None}, "production") == "production"  # no pipeline leads to production
    assert entry({}, "production") == "production"
    assert entry({"a": "b", "b": "a", "production": "a"}, "production") in {"a", "b"}  # bounded on a cycle
