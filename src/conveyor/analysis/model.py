"""The analysis vocabulary: what judges read (intervals), how they are configured, what they say.

Why one small typed module: the orchestrator, the API, the manifest and the
benchmark all speak these types, and none of them should need to know how a
judge works inside. Everything here is data: no clock, no I/O. Time arrives as
``Interval.t`` and as the step's elapsed seconds, passed in by the caller.

Why Pydantic for the configuration: the same model is parsed from the
``[analysis]`` table of ``conveyor.toml`` and from API JSON, with unknown keys
refused (a typo such as ``max_eror_rate`` must not silently keep a default),
and :func:`parse_analysis_config` turns Pydantic's error locations into one
message per problem that names the key and what is expected.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from conveyor.domain.histogram import Histogram
from conveyor.domain.manifest import parse_duration

JudgeName = Literal["threshold", "mannwhitney", "sequential"]
MetricName = Literal["error_rate", "latency_p50", "latency_p95", "latency_p99", "latency_mean"]
Direction = Literal["increase", "decrease", "either"]
#: A latency limit: seconds as a number, or a string such as ``"500ms"`` / ``"2s"``.
Seconds = Annotated[float, BeforeValidator(parse_duration)]


class AnalysisConfigError(ValueError):
    """An analysis configuration is malformed; the message names each key and what is expected."""


# ---------------------------------------------------------------------------
# Input: one second of router metrics for one release
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Interval:
    """What one release served during one interval (normally one second).

    ``t`` is the interval's start in seconds (any epoch, as long as canary and
    baseline share it); ``errors`` counts 5xx responses plus upstream errors and
    can never exceed ``requests``; ``latency`` holds the latencies (seconds) of
    the requests that completed in the interval.
    """

    t: float
    requests: int
    errors: int
    latency: Histogram = field(default_factory=Histogram)

    def __post_init__(self) -> None:
        if not math.isfinite(self.t):
            raise ValueError(f"Interval.t must be a finite number of seconds, got {self.t!r}")
        if self.requests < 0 or self.errors < 0:
            raise ValueError(
                f"Interval at t={self.t}: requests ({self.requests}) and errors ({self.errors}) must be >= 0; "
                "a negative delta usually means a router restarted, so drop that interval"
            )
        if self.errors > self.requests:
            raise ValueError(
                f"Interval at t={self.t}: errors ({self.errors}) > requests ({self.requests}); "
                "count an upstream error that the client saw as a 502 only once"
            )


# ---------------------------------------------------------------------------
# Output: a verdict with its numbers and one sentence
# ---------------------------------------------------------------------------


class Outcome(StrEnum):
    PASS = "pass"  # the step's duration and minimum traffic reached, no regression
    FAIL = "fail"  # evidence of regression: roll back
    CONTINUE = "continue"  # keep collecting data
    INCONCLUSIVE = "inconclusive"  # the step ended without enough data: pause and say so


Number = float | int | None


class Verdict(BaseModel):
    """A judge's (or the combination's) decision, JSON-serialisable as is.

    ``reason`` is one human sentence with the numbers that decided it;
    ``numbers`` holds those numbers (finite floats, ints or None, never NaN) for
    storage and display; ``parts`` holds the individual judges' verdicts when
    this one combines several.
    """

    model_config = ConfigDict(frozen=True)

    judge: str
    outcome: Outcome
    reason: str
    numbers: dict[str, Number] = Field(default_factory=dict)
    parts: list[Verdict] = Field(default_factory=list)

    @field_validator("numbers")
    @classmethod
    def _finite(cls, v: dict[str, Number]) -> dict[str, Number]:
        return {k: (None if isinstance(x, float) and not math.isfinite(x) else x) for k, x in v.items()}


def no_regression(
    judge: str, numbers: dict[str, Number], *, over: bool, enough: bool, going: str, short: str, passed: str
) -> Verdict:
    """The ending every judge shares once it found no regression: ``continue`` while the step runs
    (``going`` says how it looks so far), then ``inconclusive`` when the data cannot be trusted
    (``short`` says what is missing: a quiet canary is never a silent pass), else ``pass``."""
    if not over:
        return Verdict(judge=judge, outcome=Outcome.CONTINUE, reason=going, numbers=numbers)
    if not enough:
        return Verdict(judge=judge, outcome=Outcome.INCONCLUSIVE, reason=short, numbers=numbers)
    return Verdict(judge=judge, outcome=Outcome.PASS, reason=passed, numbers=numbers)


# ---------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ThresholdConfig(_Config):
    """Absolute limits on the canary, checked once it has ``min_requests`` requests.

    The defaults are deliberately generous: they catch a release that is plainly
    broken, while the comparative judges catch the subtle ones.
    """

    max_error_rate: float | None = Field(default=0.10, ge=0.0, le=1.0)
    max_p50: Seconds | None = None
    max_p95: Seconds | None = None
    max_p99: Seconds | None = 5.0
    min_requests: int = Field(default=50, ge=1, description="canary requests before limits are applied")


class MannWhitneyMetric(_Config):
    """One metric of the Mann-Whitney judge, with Kayenta's per-metric settings."""

    name: MetricName
    direction: Direction = "increase"
    critical: bool = False
    #: the mean ratio canary/baseline must reach to classify High (Kayenta's effectSize.allowedIncrease)
    allowed_increase: float = Field(default=1.0, ge=0.0)
    #: the mean ratio canary/baseline must fall to to classify Low (Kayenta's effectSize.allowedDecrease)
    allowed_decrease: float = Field(default=1.0, ge=0.0)


def _default_mw_metrics() -> list[MannWhitneyMetric]:
    return [
        MannWhitneyMetric(name="error_rate", critical=True),
        MannWhitneyMetric(name="latency_p50"),
        MannWhitneyMetric(name="latency_p99"),
    ]


class MannWhitneyConfig(_Config):
    """Kayenta's NetflixACAJudge: per-sample metrics compared with Mann-Whitney U.

    ``sample_period_s`` seconds of intervals make one sample per side (Kayenta
    reads one value per metric per step from its metrics store). Per-second
    error rates of a small canary are mostly zero, which leaves the
    Hodges-Lehmann estimate at zero and the judge blind, hence 10 s by default.
    ``early_fail`` judges at every complete sample and fails below the marginal
    score (Spinnaker's intermediate runs); it inflates false alarms, as the
    detection benchmark shows, so it is off by default.
    """

    confidence: float = Field(default=0.98, gt=0.5, lt=1.0)
    tolerance: float = Field(default=0.25, ge=0.0)
    metrics: list[MannWhitneyMetric] = Field(default_factory=_default_mw_metrics, min_length=1)
    pass_threshold: float = Field(default=95.0, ge=0.0, le=100.0)
    marginal_threshold: float = Field(default=75.0, ge=0.0, le=100.0)
    sample_period_s: int = Field(default=10, ge=1, le=3600)
    early_fail: bool = False

    @model_validator(mode="after")
    def _thresholds(self) -> MannWhitneyConfig:
        if self.marginal_threshold > self.pass_threshold:
            raise ValueError(
                f"marginal_threshold ({self.marginal_threshold}) must not exceed pass_threshold ({self.pass_threshold})"
            )
        names = [m.name for m in self.metrics]
        if len(set(names)) != len(names):
            raise ValueError(f"each metric may appear once, got {names}")
        return self


class SequentialConfig(_Config):
    """The anytime-valid judge: mixture likelihood ratios on counts (see ``sequential``).

    ``error_tolerance``: the canary may have up to ``1 + error_tolerance`` times
    the baseline's error rate before that counts as a regression.
    ``latency_tolerance``: the canary may be up to this much slower (0.1 = 10 %)
    at each quantile; it is rounded to whole histogram buckets (10 % each).
    """

    errors: bool = True
    error_tolerance: float = Field(default=0.1, ge=0.0)
    latency_quantiles: list[float] = Field(default_factory=lambda: [0.5, 0.99])
    latency_tolerance: float = Field(default=0.1, ge=0.0, le=10.0)

    @field_validator("latency_quantiles")
    @classmethod
    def _quantiles(cls, v: list[float]) -> list[float]:
        for q in v:
            if not 0.0 < q < 1.0:
                raise ValueError(f"latency quantiles must be between 0 and 1 exclusive, got {q}")
        return sorted(set(v))

    @model_validator(mode="after")
    def _some_test(self) -> SequentialConfig:
        if not self.errors and not self.latency_quantiles:
            raise ValueError("enable the error test or give at least one latency quantile, or drop the judge")
        return self


class AnalysisConfig(_Config):
    """Which judges run during a step and the settings they share.

    ``alpha`` is the false-rollback budget of the sequential judge over a whole
    step, however often it is evaluated. ``min_requests`` is the canary (and,
    for comparative judges, baseline) traffic a step needs before it can pass;
    a step that ends short of it is ``inconclusive``.
    """

    judges: list[JudgeName] = Field(default_factory=lambda: ["sequential", "threshold"], min_length=1)
    alpha: float = Field(default=0.01, gt=0.0, lt=0.5)
    min_requests: int = Field(default=50, ge=0)
    threshold: ThresholdConfig = Field(default_factory=ThresholdConfig)
    mannwhitney: MannWhitneyConfig = Field(default_factory=MannWhitneyConfig)
    sequential: SequentialConfig = Field(default_factory=SequentialConfig)

    @field_validator("judges")
    @classmethod
    def _unique(cls, v: list[JudgeName]) -> list[JudgeName]:
        if len(set(v)) != len(v):
            raise ValueError(f"each judge may appear once, got {v}")
        return v


def parse_analysis_config(data: Mapping[str, Any] | None, *, source: str = "analysis") -> AnalysisConfig:
    """Validate an ``[analysis]`` table (TOML) or JSON object; ``None`` or ``{}`` gives the defaults.

    Raises :class:`AnalysisConfigError` whose message lists every problem as
    ``<source>.<key>: <what is expected>``.
    """
    if data is None:
        return AnalysisConfig()
    if not isinstance(data, Mapping):
        raise AnalysisConfigError(f"{source}: expected a table of settings, got {type(data).__name__}")
    try:
        return AnalysisConfig.model_validate(dict(data))
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in (source, *err["loc"]))
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown setting (check the spelling)"
            elif err["type"] == "literal_error":
                msg = f"{msg}, got {err.get('input')!r}"
            problems.append(f"{loc}: {msg}")
        raise AnalysisConfigError("; ".join(problems)) from None
