"""Canary analysis: judges that compare a canary with its baseline, pure functions of their inputs.

Call :func:`evaluate` with the step's per-second :class:`Interval` lists, the
step's elapsed and required seconds and an :class:`AnalysisConfig` (parse one
from ``conveyor.toml`` or API JSON with :func:`parse_analysis_config`); act on
the returned :class:`Verdict`. Each judge can also be called alone with the
same signature (``threshold_judge``, ``mannwhitney_judge``, ``sequential_judge``).
:func:`evaluate_with_warmup` is :func:`evaluate` for a canary step whose first
seconds are a warm-up (left out of the comparison, watched for hard failures).
"""

from conveyor.analysis.evaluate import JUDGE_FUNCTIONS, evaluate
from conveyor.analysis.mannwhitney import judge as mannwhitney_judge
from conveyor.analysis.model import (
    AnalysisConfig,
    AnalysisConfigError,
    EffectFloor,
    EffectsConfig,
    Interval,
    MannWhitneyConfig,
    MannWhitneyMetric,
    Outcome,
    SequentialConfig,
    ThresholdConfig,
    Verdict,
    parse_analysis_config,
)
from conveyor.analysis.sequential import judge as sequential_judge
from conveyor.analysis.threshold import judge as threshold_judge
from conveyor.analysis.warmup import evaluate_with_warmup

__all__ = [
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
