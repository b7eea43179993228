"""conveyor.toml refuses, before anything is uploaded, what would otherwise fail later or never stop.

Non-finite and absurd numbers (NaN, infinity, a 400-digit duration) would make deadlines such
as ``now + bake`` never arrive, so old releases were never stopped; variable names with ``=``
and NUL characters failed only at deploy time (``execve`` refuses them); ``[deploy.analysis]``
mistakes surfaced after the build without naming ``conveyor.toml``; a manifest naming another
app was accepted silently. Each error names the file and the key.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from conveyor.domain.manifest import (
    MAX_DURATION,
    ManifestError,
    check_app_name,
    load_manifest,
    loads_toml,
    parse_duration,
    parse_manifest,
)

RUN = {"run": {"web": "python app.py"}}


@pytest.mark.parametrize(
    "bad",
    [math.nan, math.inf, -math.inf, 10**400, "1" * 400 + "s", "9" * 60 + "h", MAX_DURATION + 1, "31d", "721h"],
)
def test_non_finite_and_absurd_durations_are_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


def test_the_longest_duration_passes() -> None:
    assert parse_duration("720h") == MAX_DURATION == parse_duration(MAX_DURATION)


DURATION_KEYS = [
    ("deploy", "bake"), ("deploy", "drain_timeout"), ("deploy", "ready_timeout"), ("deploy", "preview_for"),
    ("deploy", "auto_promote_after"), ("health", "timeout"), ("health", "interval"), ("test", "timeout"),
]


@pytest.mark.parametrize(("section", "key"), DURATION_KEYS)
@pytest.mark.parametrize("bad", [math.nan, math.inf, "1" * 400 + "s"])
def test_every_duration_key_refuses_non_finite_values(section: str, key: str, bad: object) -> None:
    with pytest.raises(ManifestError, match=rf"conveyor.toml: \[{section}\] {key}: expected a duration"):
        parse_manifest({**RUN, section: {key: bad}})
    # the same key under an environment, where [deploy] keys may be overridden
    if section == "deploy":
        with pytest.raises(ManifestError, match=rf"conveyor.toml: \[env.production\] {key}: expected a duration"):
            parse_manifest({**RUN, "env": {"production": {key: bad}}})


def test_a_canary_step_duration_refuses_nan() -> None:
    with pytest.raises(ManifestError, match=r"\[deploy\] steps.0.for: expected a duration"):
        parse_manifest({**RUN, "deploy": {"steps": [{"weight": 10, "for": math.nan}]}})


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"deploy": {"max_surge": 10**30}}, "[deploy] max_surge"),
        ({"deploy": {"max_unavailable": 101}}, "[deploy] max_unavailable"),
        ({"env": {"production": {"max_surge": 2**63}}}, "[env.production] max_surge"),
        ({"env": {"production": {"instances": 2**64}}}, "[env.production] instances"),
        ({"deploy": {"steps": [{"weight": 10**20}]}}, "[deploy] steps.0.weight"),
    ],
)
def test_absurd_counts_are_refused(data: dict, key: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ManifestError, match=r"less than or equal to 100") as exc:
        parse_manifest({**RUN, **data})
    assert f"conveyor.toml: {key}:" in str(exc.value)
    assert len(str(exc.value)) < 300  # a huge number is cut, not printed in full


@pytest.mark.parametrize(
    ("vars_", "message"),
    [
        ({"A=B": "1"}, "vars.A=B.[key]: expected a variable name without '='"),
        ({"": "1"}, "expected a variable name without '='"),
        ({"A\x00B": "1"}, "expected a variable name without '='"),
        ({"A": "x\x00y"}, "vars.A: expected text without NUL characters"),
    ],
)
def test_variables_execve_would_refuse_are_refused(vars_: dict[str, str], message: str) -> None:
    with pytest.raises(ManifestError, match=r"conveyor.toml: \[env.production\] ") as exc:
        parse_manifest({**RUN, "env": {"production": {"vars": vars_}}})
    assert message in str(exc.value)


@pytest.mark.parametrize(
    ("data", "key"),
    [({"run": {"web": "python\x00 app.py"}}, "[run] web"), ({**RUN, "build": {"command": "make\x00"}}, "[build] command"),
     ({**RUN, "test": {"command": "\x00"}}, "[test] command"), ({**RUN, "health": {"path": "/h\x00"}}, "[health] path")],
)
def test_nul_in_commands_and_paths_is_refused(data: dict, key: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ManifestError, match="NUL") as exc:
        parse_manifest(data)
    assert f"conveyor.toml: {key}:" in str(exc.value)


def test_analysis_mistakes_fail_the_manifest_with_its_prefix() -> None:
    with pytest.raises(ManifestError) as exc:
        parse_manifest({**RUN, "deploy": {"analysis": {"bogus": 1}}, "env": {"staging": {"analysis": {"judges": 5}}}})
    lines = str(exc.value).splitlines()
    assert len(lines) == 2 and all(line.startswith("conveyor.toml: ") for line in lines)
    assert "[deploy.analysis] bogus" in lines[0] and "[env.staging.analysis] judges" in lines[1]
    parse_manifest({**RUN, "deploy": {"analysis": {}}})  # empty tables are the defaults


def test_an_app_name_that_differs_from_the_target_is_refused(tmp_path: Path) -> None:
    (tmp_path / "conveyor.toml").write_text('[app]\nname = "billing"\n[run]\nweb = "python app.py"\n')
    with pytest.raises(ManifestError, match=r"conveyor.toml: \[app\] name: this source is the app 'billing', not 'hello'"):
        load_manifest(tmp_path, app="hello")
    assert load_manifest(tmp_path, app="billing").name == "billing"
    assert load_manifest(tmp_path).name == "billing"  # no target: nothing to compare
    check_app_name(parse_manifest(RUN), "hello")  # no [app] name: any target


def test_a_manifest_that_is_a_directory_or_a_link_to_one_is_refused(tmp_path: Path) -> None:
    (tmp_path / "conveyor.toml").mkdir()
    with pytest.raises(ManifestError, match="conveyor.toml: expected a file, found a directory"):
        load_manifest(tmp_path)
    (tmp_path / "conveyor.toml").rmdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "conveyor.toml").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ManifestError, match="conveyor.toml: expected a file"):
        load_manifest(tmp_path)


@pytest.mark.parametrize("nested", ["a = " + "[" * 500 + "]" * 500, "a = " + "{b = " * 500 + "1" + "}" * 500])
def test_toml_nested_500_deep_is_a_manifest_error(nested: str, tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="conveyor.toml: "):
        loads_toml(nested)
    (tmp_path / "conveyor.toml").write_text(nested)
    with pytest.raises(ManifestError, match="conveyor.toml: "):
        load_manifest(tmp_path)
