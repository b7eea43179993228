"""conveyor.toml parsing: defaults, durations, Procfile, and errors that name file, key and expectation."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.domain.manifest import ManifestError, load_manifest, parse_duration, parse_manifest

REPO = Path(__file__).resolve().parents[3]


def test_example_manifest_loads_with_defaults() -> None:
    m = load_manifest(REPO / "examples" / "hello")
    assert m.name == "hello" and m.processes == {"web": "python app.py"}
    assert m.health.path == "/healthz" and m.health.timeout == 2.0
    prod = m.environment("production")
    assert prod.instances == 2 and prod.strategy == "bluegreen" and prod.ready_timeout == 60.0
    assert m.environment("review-7").instances == 1  # an environment not in the file gets defaults


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("2s", 2.0), ("500ms", 0.5), ("1m30s", 90.0), ("1h", 3600.0), (3, 3.0), (0.25, 0.25), ("1.5s", 1.5)],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["soon", "2", "-1s", True, "s", ""])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"health": {"timeout": "soon"}}, 'conveyor.toml: [health] timeout: expected a duration like "2s"'),
        ({"env": {"production": {"instances": "two"}}}, "conveyor.toml: [env.production] instances:"),
        ({"env": {"production": {"instances": -1}}}, "[env.production] instances: input should be greater than or equal to 0"),
        ({"bogus": 1}, "conveyor.toml: [bogus]: unknown key"),
        ({"health": {"paht": "/x"}}, "[health] paht: unknown key"),
        ({"deploy": {"strategy": "yolo"}}, "[deploy] strategy: expected 'bluegreen', 'rolling' or 'canary', got 'yolo'"),
        ({"health": {"path": "healthz"}}, "[health] path: expected a URL path starting with '/'"),
        ({"app": {"name": "Hello World"}}, "[app] name: expected a lower-case name"),
        ({"env": {"Prod": {}}}, "[env.Prod]: expected an environment name"),
        ({"run": {"web": "  "}}, "[run] web: expected a command"),
    ],
)
def test_errors_name_the_key_and_the_expectation(data: dict, message: str) -> None:
    with pytest.raises(ManifestError) as exc:
        parse_manifest(data)
    assert message in str(exc.value)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ManifestError) as exc:
        parse_manifest({"health": {"timeout": "x", "interval": "y"}})
    assert "[health] timeout" in str(exc.value) and "[health] interval" in str(exc.value)


def test_invalid_toml_and_missing_web(tmp_path: Path) -> None:
    (tmp_path / "conveyor.toml").write_text("[run\nweb = 1")
    with pytest.raises(ManifestError, match="conveyor.toml: not valid TOML"):
        load_manifest(tmp_path)
    (tmp_path / "conveyor.toml").write_text("[health]\npath = '/'\n")
    with pytest.raises(ManifestError, match=r"\[run\] web: expected the command that starts the web process"):
        load_manifest(tmp_path)


def test_procfile_is_accepted_when_run_is_absent(tmp_path: Path) -> None:
    (tmp_path / "Procfile").write_text("# Heroku habit\nweb: gunicorn app:app --bind 127.0.0.1:$PORT\nworker: python worker.py\n")
    m = load_manifest(tmp_path)  # no conveyor.toml at all
    assert m.processes == {"web": "gunicorn app:app --bind 127.0.0.1:$PORT", "worker": "python worker.py"}
    (tmp_path / "conveyor.toml").write_text('[run]\nweb = "python app.py"\n')
    assert load_manifest(tmp_path).processes == {"web": "python app.py"}  # [run] wins
    (tmp_path / "conveyor.toml").unlink()
    (tmp_path / "Procfile").write_text("web python app.py\n")
    with pytest.raises(ManifestError, match="Procfile:1: expected 'TYPE: command'"):
        load_manifest(tmp_path)


def test_environment_overrides_deploy_defaults() -> None:
    m = parse_manifest(
        {
            "run": {"web": "x"},
            "deploy": {"strategy": "canary", "bake": "5m", "steps": [{"weight": 5, "for": "30s"}]},
            "env": {"staging": {"strategy": "bluegreen", "instances": 3, "vars": {"DEBUG": "1"}}},
        }
    )
    staging, prod = m.environment("staging"), m.environment("production")
    assert (staging.strategy, staging.instances, staging.bake, staging.vars) == ("bluegreen", 3, 300.0, {"DEBUG": "1"})
    assert prod.strategy == "canary" and prod.steps[0].weight == 5 and prod.steps[0].duration == 30.0
