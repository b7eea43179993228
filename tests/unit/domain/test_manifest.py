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


# --- [deploy.analysis]: refused before anything is built or deployed (issue 10, "Bad input") ----

CANARY = {"strategy": "canary", "steps": [{"weight": 10, "for": "20s"}, {"weight": 50, "for": "20s"}]}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"deploy": {**CANARY, "analysis": {"effects": {"latency_p50": {"relative": -0.1}}}}},
            "conveyor.toml: [deploy.analysis] effects.latency_p50.relative: Input should be greater than or equal to 0",
        ),
        (
            {"deploy": {**CANARY, "analysis": {"effects": {"error_rate": {"absolute": -0.01}}}}},
            "conveyor.toml: [deploy.analysis] effects.error_rate.absolute: Input should be greater than or equal to 0",
        ),
        (
            {"deploy": {**CANARY, "analysis": {"effects": {"latency_p42": {"relative": 0.1}}}}},
            "conveyor.toml: [deploy.analysis] effects: unknown metric 'latency_p42'; known: error_rate, latency_p50",
        ),
        (
            {"deploy": {**CANARY, "analysis": {"mannwhitney": {"metrics": [{"name": "latency_p42"}]}}}},
            "conveyor.toml: [deploy.analysis] mannwhitney.metrics.0.name: Input should be 'error_rate'",
        ),
        (
            {"deploy": {**CANARY, "analysis": {"warmup": "30s"}}},
            "conveyor.toml: [deploy.analysis] warmup: the warm-up (30 s) must be shorter than the window it is cut "
            "from, but step 1 lasts 20 s",
        ),
        (
            {"deploy": {"strategy": "canary", "analysis": {"warmup": "45s"}}},
            "[deploy.analysis] warmup: the warm-up (45 s) must be shorter than the window it is cut from, but default step 1 lasts 30 s",
        ),
        (
            {"deploy": {**CANARY, "analysis": {"warmup": "5s"}}, "env": {"production": {"steps": [{"weight": 5, "for": "4s"}]}}},
            "[deploy.analysis] warmup (as used by [env.production]): the warm-up (5 s) must be shorter",
        ),
        (
            {"deploy": {"pre_promotion_analysis": True, "preview_for": "10s", "analysis": {"warmup": "10s"}}},
            "[deploy.analysis] warmup: the warm-up (10 s) must be shorter than the window it is cut from, but preview_for lasts 10 s",
        ),
        (
            {"env": {"production": {"analysis": {"warmup_max_error_rate": 0}}}},
            "conveyor.toml: [env.production.analysis] warmup_max_error_rate: Input should be greater than 0",
        ),
        (
            {"deploy": {"analysis": {"threshold": {"near_baseline": "sometimes"}}}},
            "[deploy.analysis] threshold.near_baseline: Input should be 'relative', 'off' or 'absolute', got 'sometimes'",
        ),
        (
            {"deploy": {"analysis": {"mannwhitney": {"metrics": [{"name": "latency_p50", "effect_measure": "cles", "allowed_increase": 1.5}]}}}},
            "[deploy.analysis] mannwhitney.metrics.0: allowed_increase: a CLES effect is a probability between 0 and 1, got 1.5",
        ),
        (
            {"deploy": {"analysis": {"mannwhitney": {"metrics": [{"name": "latency_p50", "allowed_increase": 1.5, "critical_increase": 1.2}]}}}},
            "[deploy.analysis] mannwhitney.metrics.0: critical_increase (1.2) must be >= allowed_increase (1.5)",
        ),
    ],
)
def test_impossible_analysis_settings_are_refused_naming_the_key(data: dict, message: str) -> None:
    with pytest.raises(ManifestError) as exc:
        parse_manifest({"run": {"web": "x"}, **data})
    assert message in str(exc.value), str(exc.value)


def test_analysis_settings_that_fit_are_accepted() -> None:
    m = parse_manifest(
        {
            "run": {"web": "x"},
            "deploy": {
                **CANARY,
                "analysis": {
                    "warmup": "5s", "warmup_requests": 100,
                    "effects": {"latency_p50": {"absolute": "1ms"}, "error_rate": {"relative": 0.5}},
                },
            },
        }
    )
    assert m.deploy.analysis["warmup"] == "5s"  # kept as written; the judges parse it


def test_a_bad_analysis_table_in_the_file_is_refused_before_upload(tmp_path: Path) -> None:
    # What `conveyor deploy --source .` (and the build API) run before anything is built.
    (tmp_path / "conveyor.toml").write_text(
        '[run]\nweb = "python app.py"\n[deploy]\nstrategy = "canary"\nsteps = [{weight = 10, for = "20s"}]\n'
        '[deploy.analysis]\nwarmup = "1m"\n[deploy.analysis.effects.latency_p50]\nrelative = -0.5\n'
    )
    with pytest.raises(ManifestError) as exc:
        load_manifest(tmp_path)
    assert str(exc.value) == (
        "conveyor.toml: [deploy.analysis] effects.latency_p50.relative: Input should be greater than or equal to 0"
    )
    (tmp_path / "conveyor.toml").write_text(
        '[run]\nweb = "python app.py"\n[deploy]\nstrategy = "canary"\nsteps = [{weight = 10, for = "20s"}]\n'
        '[deploy.analysis]\nwarmup = "1m"\n'
    )
    with pytest.raises(ManifestError, match=r"conveyor.toml: \[deploy.analysis\] warmup: the warm-up \(60 s\)"):
        load_manifest(tmp_path)
