"""The analysis vocabulary: config parsing (TOML and JSON), interval validation, verdict JSON."""

from __future__ import annotations

import json
import math
import tomllib

import pytest

import conveyor.analysis as analysis
from conveyor.analysis import AnalysisConfig, AnalysisConfigError, Interval, Outcome, Verdict, parse_analysis_config
from conveyor.domain.histogram import Histogram


def test_public_surface_is_exact() -> None:
    assert sorted(analysis.__all__) == sorted(
        [
            "JUDGE_FUNCTIONS",
            "AnalysisConfig",
            "AnalysisConfigError",
            "EffectFloor",
            "EffectsConfig",
            "Interval",
            "MannWhitneyConfig",
            "MannWhitneyMetric",
            "Outcome",
            "SequentialConfig",
            "ThresholdConfig",
            "Verdict",
            "evaluate",
            "evaluate_with_warmup",
            "mannwhitney_judge",
            "parse_analysis_config",
            "sequential_judge",
            "threshold_judge",
        ]
    )
    for name in analysis.__all__:
        assert hasattr(analysis, name)


def test_defaults_are_sequential_plus_generous_thresholds() -> None:
    cfg = parse_analysis_config(None)
    assert cfg == parse_analysis_config({}) == AnalysisConfig()
    assert cfg.judges == ["sequential", "threshold"]
    assert cfg.alpha == 0.01
    assert cfg.threshold.max_error_rate == 0.10
    assert cfg.threshold.max_p99 == 5.0
    assert cfg.mannwhitney.confidence == 0.98 and cfg.mannwhitney.tolerance == 0.25
    assert [m.name for m in cfg.mannwhitney.metrics] == ["error_rate", "latency_p50", "latency_p99"]
    assert cfg.mannwhitney.metrics[0].critical


def test_parses_the_manifest_table_with_durations() -> None:
    doc = tomllib.loads(
        """
        [analysis]
        judges = ["sequential", "mannwhitney", "threshold"]
        alpha = 0.05
        min_requests = 200
        [analysis.threshold]
        max_error_rate = 0.02
        max_p99 = "750ms"
        max_p50 = 0.1
        [analysis.mannwhitney]
        confidence = 0.95
        pass_threshold = 90
        marginal_threshold = 60
        metrics = [{name = "error_rate", critical = true}, {name = "latency_p95", direction = "either", allowed_increase = 1.2}]
        [analysis.sequential]
        latency_quantiles = [0.99, 0.5, 0.99]
        """
    )
    cfg = parse_analysis_config(doc["analysis"])
    assert cfg.judges == ["sequential", "mannwhitney", "threshold"]
    assert cfg.threshold.max_p99 == pytest.approx(0.75)
    assert cfg.threshold.max_p50 == pytest.approx(0.1)
    assert cfg.mannwhitney.metrics[1].allowed_increase == 1.2
    assert cfg.sequential.latency_quantiles == [0.5, 0.99]
    assert AnalysisConfig.model_validate_json(cfg.model_dump_json()) == cfg


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"threshold": {"max_eror_rate": 0.1}}, "analysis.threshold.max_eror_rate: unknown setting"),
        ({"judges": ["kayenta"]}, "analysis.judges.0: Input should be 'threshold', 'mannwhitney' or 'sequential'"),
        ({"alpha": 0}, "analysis.alpha: Input should be greater than 0"),
        ({"threshold": {"max_p99": "soon"}}, 'analysis.threshold.max_p99: expected a duration like "2s"'),
        ({"mannwhitney": {"pass_threshold": 50, "marginal_threshold": 80}}, "marginal_threshold (80.0) must not exceed"),
        ({"sequential": {"latency_quantiles": [1.5]}}, "between 0 and 1 exclusive, got 1.5"),
        ({"judges": ["threshold", "threshold"]}, "each judge may appear once"),
        ({"judges": []}, "analysis.judges: List should have at least 1 item"),
        ({"sequential": {"errors": False, "latency_quantiles": []}}, "analysis.sequential: enable the error test"),
    ],
)
def test_bad_config_says_which_key_and_what_to_fix(data: dict[str, object], expected: str) -> None:
    with pytest.raises(AnalysisConfigError) as err:
        parse_analysis_config(data)
    assert expected in str(err.value)


def test_all_problems_are_reported_at_once() -> None:
    with pytest.raises(AnalysisConfigError) as err:
        parse_analysis_config({"alpha": 2, "min_requests": -1}, source="conveyor.toml: [env.production.analysis]")
    msg = str(err.value)
    assert "conveyor.toml: [env.production.analysis].alpha" in msg
    assert ".min_requests" in msg


def test_config_that_is_not_a_table_is_refused() -> None:
    with pytest.raises(AnalysisConfigError, match="expected a table of settings, got list"):
        parse_analysis_config([1, 2])  # type: ignore[arg-type]


def test_interval_refuses_impossible_counts() -> None:
    with pytest.raises(ValueError, match=r"errors \(5\) > requests \(3\)"):
        Interval(t=1.0, requests=3, errors=5)
    with pytest.raises(ValueError, match="router restarted"):
        Interval(t=1.0, requests=-1, errors=0)
    with pytest.raises(ValueError, match="finite"):
        Interval(t=math.nan, requests=1, errors=0)
    ok = Interval(t=1.0, requests=3, errors=3, latency=Histogram({-30: 3}))
    assert ok.latency.count == 3


def test_verdict_is_json_and_never_carries_nan() -> None:
    v = Verdict(judge="x", outcome=Outcome.FAIL, reason="why", numbers={"a": math.nan, "b": math.inf, "c": 3, "d": None})
    assert v.numbers == {"a": None, "b": None, "c": 3, "d": None}
    data = json.loads(json.dumps(v.model_dump(mode="json")))
    assert data["outcome"] == "fail"
    assert Verdict.model_validate(data) == v
    assert Outcome.PASS == "pass"


def test_no_regression_is_the_judges_shared_ending() -> None:
    """continue while the step runs; then inconclusive without enough data (never a silent pass); else pass."""
    from conveyor.analysis.model import Outcome, no_regression

    def outcome(over: bool, enough: bool) -> tuple[str, str]:
        v = no_regression("j", {"n": 1}, over=over, enough=enough, going="g", short="s", passed="p")
        assert v.judge == "j" and v.numbers == {"n": 1}
        return v.outcome, v.reason

    assert outcome(False, False) == (Outcome.CONTINUE, "g")
    assert outcome(False, True) == (Outcome.CONTINUE, "g")
    assert outcome(True, False) == (Outcome.INCONCLUSIVE, "s")
    assert outcome(True, True) == (Outcome.PASS, "p")


def test_effect_floors_default_per_metric_and_override_one_key_at_a_time() -> None:
    cfg = parse_analysis_config({})
    assert (cfg.effects.latency_p50.relative, cfg.effects.latency_p50.absolute) == (0.10, 0.005)
    assert (cfg.effects.latency_p99.relative, cfg.effects.latency_p99.absolute) == (0.25, 0.020)
    assert (cfg.effects.error_rate.relative, cfg.effects.error_rate.absolute) == (0.25, 0.002)
    cfg = parse_analysis_config({"effects": {"latency_p50": {"absolute": "1ms"}}})
    assert (cfg.effects.latency_p50.relative, cfg.effects.latency_p50.absolute) == (0.10, 0.001)
    assert cfg.effects.for_quantile(0.75) == cfg.effects.latency_p50  # nearest listed quantile below
    assert cfg.effects.for_quantile(0.999) == cfg.effects.latency_p99
    assert AnalysisConfig.model_validate_json(cfg.model_dump_json()) == cfg


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"effects": {"latency_p42": {}}}, "analysis.effects: unknown metric 'latency_p42'"),
        ({"effects": {"latency_p50": {"relative": -0.1}}}, "analysis.effects.latency_p50.relative: Input should be greater than or equal to 0"),
        ({"effects": {"latency_p50": {"absolute": "soon"}}}, 'latency_p50.absolute: expected a duration like "2s"'),
        ({"warmup": "-5s"}, "analysis.warmup: expected a duration"),
        ({"warmup_requests": -1}, "analysis.warmup_requests: Input should be greater than or equal to 0"),
        ({"threshold": {"near_fraction": 0}}, "analysis.threshold.near_fraction: Input should be greater than 0"),
    ],
)
def test_bad_new_settings_say_which_key(data: dict[str, object], expected: str) -> None:
    with pytest.raises(AnalysisConfigError) as err:
        parse_analysis_config(data)
    assert expected in str(err.value)
