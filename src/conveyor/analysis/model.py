"""The analysis vocabulary: what judges read (intervals) and what they say (verdicts).

Why one small typed module: the orchestrator, the API, the manifest and the
benchmark all speak these types, and none of them should need to know how a
judge works inside. Everything here is data: no clock, no I/O. Time arrives as
``Interval.t`` and as the step's elapsed seconds, passed in by the caller. How the
judges are configured lives in :mod:`conveyor.domain.analysis_config` (the manifest
validates it before upload) and is re-exported here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator

from conveyor.domain.histogram import Histogram
from conveyor.domain.analysis_config import (  # the configuration, re-exported: judges and callers speak both
    AnalysisConfigError,
    JudgeName,
    MetricName,
    Direction,
    Seconds,
    ThresholdConfig,
    MannWhitneyMetric,
    MannWhitneyConfig,
    SequentialConfig,
    EffectFloor,
    EffectsConfig,
    AnalysisConfig,
    analysis_config_problems,
    parse_analysis_config,
    EFFECT_METRICS,
    DEFAULT_WARMUP_S,
    DEFAULT_WARMUP_SHARE,
)


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


