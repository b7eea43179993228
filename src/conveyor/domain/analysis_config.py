"""How analysis is configured: the ``[deploy.analysis]`` table of ``conveyor.toml``, as typed models.

Why here, in ``domain``, and not beside the judges: the manifest validates these settings
before anything is uploaded or built, and ``domain`` imports nothing above it, so the models
the manifest checks against live with it; the judges (``conveyor.analysis``) read them.

Why Pydantic: the same model is parsed from the ``[analysis]`` table of ``conveyor.toml`` and
from API JSON, with unknown keys refused (a typo such as ``max_eror_rate`` must not silently
keep a default), and :func:`parse_analysis_config` turns Pydantic's error locations into one
message per problem that names the key and what is expected.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from conveyor.domain.manifest import parse_duration

JudgeName = Literal["threshold", "mannwhitney", "sequential"]
MetricName = Literal["error_rate", "latency_p50", "latency_p95", "latency_p99", "latency_mean"]
Direction = Literal["increase", "decrease", "either"]
#: A latency limit: seconds as a number, or a string such as ``"500ms"`` / ``"2s"``.
Seconds = Annotated[float, BeforeValidator(parse_duration)]


class AnalysisConfigError(ValueError):
    """An analysis configuration is malformed; the message names each key and what is expected."""


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ThresholdConfig(_Config):
    """Absolute limits on the canary, checked once it has ``min_requests`` requests.

    The defaults are deliberately generous: they catch a release that is plainly
    broken, while the comparative judges catch the subtle ones.

    ``near_baseline`` says what a limit becomes when the baseline itself sits near
    it (its own value at least ``near_fraction`` of the limit, e.g. a service whose
    normal error rate is 5 % under a 10 % limit): ``relative`` (default) moves the
    limit by the baseline's value (error rate: baseline + limit; latency: twice the
    baseline's quantile when that is higher), ``off`` drops that limit, ``absolute``
    keeps it as written. The verdict says which applied.
    """

    max_error_rate: float | None = Field(default=0.10, ge=0.0, le=1.0)
    max_p50: Seconds | None = None
    max_p95: Seconds | None = None
    max_p99: Seconds | None = 5.0
    min_requests: int = Field(default=50, ge=1, description="canary requests before limits are applied")
    near_baseline: Literal["relative", "off", "absolute"] = "relative"
    near_fraction: float = Field(default=0.5, gt=0.0, le=1.0)


class MannWhitneyMetric(_Config):
    """One metric of the Mann-Whitney judge, with Kayenta's per-metric settings.

    ``effect_measure`` picks Kayenta's effect size: ``mean_ratio`` (canary mean /
    baseline mean) or ``cles`` (the common-language effect size, the share of
    canary/baseline pairs where the canary is larger). High needs the effect to
    reach ``allowed_increase``, Low to fall to ``allowed_decrease``; with the
    defaults (``None``) that is 1.0 for the mean ratio and 0.5 for CLES, i.e. no
    effect floor (Kayenta's defaults). A *critical* metric fails the whole step
    only when its effect also reaches ``critical_increase`` (or falls to
    ``critical_decrease``); Kayenta's defaults are 1.0 both ways for the mean ratio.
    ``nan_strategy``: a sample period with no data is left out (``remove``) or
    counted as zero (``replace``), Kayenta's NaNStrategy. ``outliers``: Kayenta's
    preprocessing, ``iqr`` (outside the quartiles by ``outlier_factor`` x IQR) or
    ``ksigma`` (further than ``outlier_factor`` standard deviations from the mean),
    applied to each side's samples before the test.
    """

    name: MetricName
    direction: Direction = "increase"
    critical: bool = False
    effect_measure: Literal["mean_ratio", "cles"] = "mean_ratio"
    #: the effect the canary must reach to classify High (Kayenta's effectSize.allowedIncrease)
    allowed_increase: float | None = Field(default=None, ge=0.0)
    #: the effect the canary must fall to to classify Low (Kayenta's effectSize.allowedDecrease)
    allowed_decrease: float | None = Field(default=None, ge=0.0)
    #: a critical metric's effect that fails the step (Kayenta's effectSize.criticalIncrease/criticalDecrease)
    critical_increase: float | None = Field(default=None, ge=0.0)
    critical_decrease: float | None = Field(default=None, ge=0.0)
    nan_strategy: Literal["remove", "replace"] = "remove"
    outliers: Literal["none", "iqr", "ksigma"] = "none"
    outlier_factor: float = Field(default=3.0, gt=0.0)

    @model_validator(mode="after")
    def _effects(self) -> MannWhitneyMetric:
        if self.effect_measure == "cles":
            for key in ("allowed_increase", "allowed_decrease", "critical_increase", "critical_decrease"):
                v = getattr(self, key)
                if v is not None and v > 1.0:
                    raise ValueError(f"{key}: a CLES effect is a probability between 0 and 1, got {v}")
        up, down = self.increase_floor, self.decrease_floor
        if up < self.neutral or down > self.neutral:
            raise ValueError(
                f"allowed_increase ({up:g}) must be >= {self.neutral:g} and allowed_decrease ({down:g}) <= "
                f"{self.neutral:g} for the {self.effect_measure} effect (no effect is {self.neutral:g})"
            )
        if self.critical_increase is not None and self.critical_increase < up:
            raise ValueError(f"critical_increase ({self.critical_increase:g}) must be >= allowed_increase ({up:g})")
        if self.critical_decrease is not None and self.critical_decrease > down:
            raise ValueError(f"critical_decrease ({self.critical_decrease:g}) must be <= allowed_decrease ({down:g})")
        return self

    @property
    def neutral(self) -> float:
        """The effect that means "no difference": ratio 1, CLES 0.5."""
        return 0.5 if self.effect_measure == "cles" else 1.0

    @property
    def increase_floor(self) -> float:
        return self.neutral if self.allowed_increase is None else self.allowed_increase

    @property
    def decrease_floor(self) -> float:
        return self.neutral if self.allowed_decrease is None else self.allowed_decrease

    @property
    def critical_increase_floor(self) -> float:
        return self.increase_floor if self.critical_increase is None else self.critical_increase

    @property
    def critical_decrease_floor(self) -> float:
        return self.decrease_floor if self.critical_decrease is None else self.critical_decrease


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


#: Metrics an effect floor can be given for (the latency quantiles the judges read, and errors).
EFFECT_METRICS = ("error_rate", "latency_p50", "latency_p90", "latency_p95", "latency_p99")


class EffectFloor(_Config):
    """How large a regression must be to count: both the relative and the absolute floor must be exceeded.

    ``relative``: canary / baseline - 1 (0.1 = +10 %). ``absolute``: for
    ``error_rate`` an increase of the rate (0.002 = +0.2 percentage points); for
    latency a duration (``"5ms"`` or seconds).
    """

    relative: float = Field(ge=0.0, le=100.0)
    absolute: float = Field(ge=0.0)


#: Why these floors: at sub-millisecond latencies a fresh process is often 0.1-0.3 ms slower than
#: a warm one ("+66 %" of nothing a user notices), and a 20 ms service jitters by a few ms; a
#: regression has to be worth a rollback. p50 must move +10 % and +5 ms (every request slower);
#: tails are noisier and matter per request less, so p90/p95 need +20 % and +10 ms, p99 +25 %
#: and +20 ms. Errors: +25 % relative and +0.2 percentage points, so 0.01 % -> 0.02 % is not a
#: rollback but 1 % -> 1.5 % is.
DEFAULT_EFFECTS: dict[str, tuple[float, float]] = {
    "error_rate": (0.25, 0.002),
    "latency_p50": (0.10, 0.005),
    "latency_p90": (0.20, 0.010),
    "latency_p95": (0.20, 0.010),
    "latency_p99": (0.25, 0.020),
}


class EffectsConfig(_Config):
    """Per-metric practical-significance floors (``[deploy.analysis.effects.<metric>]``).

    A table given for a metric may set only ``relative`` or only ``absolute``;
    the other keeps its default. A latency quantile that has no entry (e.g.
    ``0.75``) uses the entry of the nearest listed quantile below it (p50 at least).
    """

    error_rate: EffectFloor
    latency_p50: EffectFloor
    latency_p90: EffectFloor
    latency_p95: EffectFloor
    latency_p99: EffectFloor

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        unknown = sorted(set(data) - set(EFFECT_METRICS))
        if unknown:
            raise ValueError(f"unknown metric {', '.join(map(repr, unknown))}; known: {', '.join(EFFECT_METRICS)}")
        out: dict[str, Any] = {}
        for name, (rel, absolute) in DEFAULT_EFFECTS.items():
            given = data.get(name)
            if isinstance(given, EffectFloor):
                out[name] = given
            elif isinstance(given, Mapping):
                merged = {"relative": rel, "absolute": absolute, **given}
                if name.startswith("latency") and isinstance(merged["absolute"], str):
                    try:
                        merged["absolute"] = parse_duration(merged["absolute"])
                    except ValueError as exc:
                        raise ValueError(f"{name}.absolute: {exc}") from None
                out[name] = merged
            elif given is None:
                out[name] = {"relative": rel, "absolute": absolute}
            else:
                out[name] = given  # let the field say what is wrong
        return out

    def for_quantile(self, q: float) -> EffectFloor:
        """The floor of latency quantile ``q``: its own entry or the nearest listed one below."""
        best = self.latency_p50
        for name in ("latency_p50", "latency_p90", "latency_p95", "latency_p99"):
            if float(name.removeprefix("latency_p")) / 100.0 <= q + 1e-9:
                best = getattr(self, name)
        return best


def _default_effects() -> EffectsConfig:
    return EffectsConfig.model_validate({})


#: The default warm-up when ``warmup`` is not set: 10 s, but never more than a quarter of the step.
DEFAULT_WARMUP_S = 10.0
DEFAULT_WARMUP_SHARE = 0.25


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
    #: practical significance: how large a regression must be to count, per metric
    effects: EffectsConfig = Field(default_factory=_default_effects)
    #: seconds at the start of each canary step left out of the comparison (None: 10 s, at most
    #: a quarter of the step); see :func:`warmup_for`
    warmup: Seconds | None = None
    #: and at least this many canary requests (0: no request count)
    warmup_requests: int = Field(default=0, ge=0)
    #: during the warm-up, a canary failing at least this share of its requests (over at least
    #: ``WARMUP_GUARD_MIN_REQUESTS``, and more than twice the baseline's rate) fails at once
    warmup_max_error_rate: float = Field(default=0.5, gt=0.0, le=1.0)

    def warmup_for(self, step_duration_s: float) -> float:
        """The warm-up of a step lasting ``step_duration_s``: the configured one, or the default."""
        if self.warmup is not None:
            return float(self.warmup)
        return min(DEFAULT_WARMUP_S, DEFAULT_WARMUP_SHARE * step_duration_s)

    @field_validator("judges")
    @classmethod
    def _unique(cls, v: list[JudgeName]) -> list[JudgeName]:
        if len(set(v)) != len(v):
            raise ValueError(f"each judge may appear once, got {v}")
        return v


def analysis_config_problems(data: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """Every problem of an analysis table as (dotted key, what is expected); empty when it is valid.

    The manifest check (``domain/manifest.py``) uses this to name ``conveyor.toml``
    and the key the way its other errors do.
    """
    if data is None:
        return []
    if not isinstance(data, Mapping):
        return [("", f"expected a table of settings, got {type(data).__name__}")]
    try:
        AnalysisConfig.model_validate(dict(data))
    except ValidationError as exc:
        return [(".".join(str(p) for p in err["loc"]), _message(err)) for err in exc.errors()]
    return []


def _message(err: Any) -> str:
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        return "unknown setting (check the spelling)"
    if err["type"] == "literal_error":
        return f"{msg}, got {err.get('input')!r}"
    return msg


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
        problems = [f"{'.'.join(str(p) for p in (source, *err['loc']))}: {_message(err)}" for err in exc.errors()]
        raise AnalysisConfigError("; ".join(problems)) from None
