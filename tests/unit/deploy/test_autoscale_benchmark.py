"""The autoscaling benchmark's elasticity figures (benchmarks/autoscale.py) on a synthetic run, by
direct call: needed instances, under- and over-provisioning, first scale-up, p95 recovery,
oscillations and the goal's verdict. (The benchmark itself runs real processes for minutes: not a test.)"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
_spec = importlib.util.spec_from_file_location("autoscale_benchmark", ROOT / "benchmarks" / "autoscale.py")
assert _spec is not None and _spec.loader is not None
bench = sys.modules["autoscale_benchmark"] = importlib.util.module_from_spec(_spec)  # dataclasses look it up
_spec.loader.exec_module(bench)

STEP = bench.Step(base=20, factor=4, before=10, high=20, after=30)  # 20/s, 80/s for [10, 30), 20/s to 60


def test_needed_instances_are_the_offered_rate_over_the_per_instance_target_within_bounds() -> None:
    assert [bench.needed(r, 25, 1, 8) for r in (0, 20, 25, 26, 80, 1000)] == [1, 1, 1, 2, 4, 8]
    assert (STEP.rate(9.9), STEP.rate(10), STEP.rate(29.9), STEP.rate(30)) == (20, 80, 80, 20)
    assert (STEP.phase(5), STEP.phase(10), STEP.phase(30), STEP.end) == ("before", "high", "after", 60)


def test_elasticity_of_a_synthetic_run() -> None:
    supply = [(0.0, 1), (13.0, 2), (15.0, 4), (40.0, 3), (50.0, 1)]  # ready instances
    changes = [(11.0, 1, 2), (12.5, 2, 4), (38.0, 4, 3), (48.0, 3, 1)]
    slow = [(10.0 + s + k / 10, 1.0) for s in range(5) for k in range(10)]  # seconds 0-4 of the step: 1 s
    fast = [(15.0 + k / 10, 0.05) for k in range(150)]
    failed = [(12.5, None)]
    f = bench.elasticity(STEP, 25, 1, 8, supply, changes, slow + fast + failed + [(5.0, 9.0)], 0.25, end=60)
    assert f["under_instance_s"] == pytest.approx(3 * 3 + 2 * 2, abs=0.3)  # needed 4: 1 for 3 s, 2 for 2 s
    assert f["over_instance_s"] == pytest.approx(3 * 10 + 2 * 10, abs=0.3)  # needed 1: 4 for 10 s, 3 for 10 s
    assert f["under_time_pct"] == pytest.approx(100 * 5 / 60, abs=0.5)
    assert f["over_time_pct"] == pytest.approx(100 * 20 / 60, abs=0.5)
    assert f["needed_instance_s"] == pytest.approx(10 + 4 * 20 + 30, abs=0.3)
    assert (f["first_scale_up_s"], f["first_ready_s"]) == (1.0, 3.0)
    assert (f["p95_recovered_s"], f["p95_seconds_over_target"]) == (5, 5)  # before the step does not count
    blip = fast + [(22.0, None)]  # one failure in 10 s of fast requests: p95 still under the target
    assert bench.elasticity(STEP, 25, 1, 8, supply, changes, slow + blip, 0.25, end=60)["p95_recovered_s"] == 5
    late = bench.elasticity(STEP, 25, 1, 8, supply, changes, slow + fast, 0.25, end=60, hold=16)
    assert late["p95_recovered_s"] is None  # 15 s of fast requests: never 16 s under the target within the step
    assert (f["scaling_changes"], f["scale_ups"], f["scale_downs"]) == (4, 2, 2)
    assert (f["direction_reversals"], f["oscillations"]) == (1, 0)  # up with the load, down with it: no oscillation
    assert f["peak_ready"] == 4


def test_a_reversal_within_one_load_phase_is_an_oscillation() -> None:
    changes = [(11.0, 1, 4), (20.0, 4, 3), (25.0, 3, 4), (45.0, 4, 1)]
    f = bench.elasticity(STEP, 25, 1, 8, [(0.0, 1)], changes, [], 0.25, end=60)
    assert (f["direction_reversals"], f["oscillations"]) == (3, 2)
    assert f["p95_recovered_s"] == 0 and f["first_ready_s"] is None  # no request: nothing over the target


def test_the_goal_verdict() -> None:
    ours = {"p95_recovered_s": 10, "over_instance_s": 100.0, "oscillations": 0}
    hpa = {"p95_recovered_s": 25, "over_instance_s": 600.0, "oscillations": 0}
    assert bench.verdict(ours, hpa) == {"recovery_speedup": 2.5, "recovery_at_least_2x_faster": True,
                                        "over_provisioned_no_more_than_hpa": True, "no_oscillation": True}
    slow = bench.verdict({**ours, "p95_recovered_s": 15, "oscillations": 1}, hpa)
    assert not slow["recovery_at_least_2x_faster"] and not slow["no_oscillation"]
    assert bench.verdict({**ours, "p95_recovered_s": 0}, {**hpa, "p95_recovered_s": 0})["recovery_speedup"] is None
    assert bench.verdict({**ours, "p95_recovered_s": 0}, hpa)["recovery_at_least_2x_faster"]
    never = bench.verdict(ours, {**hpa, "p95_recovered_s": None})  # HPA's never recovered within the step
    assert never["recovery_speedup"] is None and never["recovery_at_least_2x_faster"]
    assert not bench.verdict({**ours, "p95_recovered_s": None}, hpa)["recovery_at_least_2x_faster"]
    both = bench.verdict({**ours, "p95_recovered_s": None}, {**hpa, "p95_recovered_s": None})
    assert not both["recovery_at_least_2x_faster"]
    assert bench.p95([0.1] * 19 + [math.inf]) == 0.1 and bench.p95([0.1] * 18 + [math.inf] * 2) == math.inf
