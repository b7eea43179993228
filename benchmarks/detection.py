"""Detection quality of the canary judges on simulated rollouts (issue 4, "Measured").

Simulates per-second canary and baseline traffic (Poisson request counts,
binomial errors, log-normal latencies binned into Conveyor's histogram
buckets), seeded, for A/A runs (the canary is as good as the baseline) and
for injected regressions: error rate x1.5, x2, x5 over a 1 % base, latency
+10/+50/+100 % at p50 (every request slower) and at p99 only (only the
slowest 2 % of requests slower). For each judge it reports the false-rollback
rate over the A/A runs, and per regression the detection rate and the median
time to detect, in seconds and in canary requests.

The judges are the library's own decision code, run over all simulated runs
at once (nothing here re-implements a decision, so a bug in a judge moves
these figures): ``sequential.sequential_tests``/``first_alarm`` (levels,
alpha shares and effect floors included), ``threshold.limits_batch`` (limits
that follow a baseline near them included) and ``mannwhitney.scores_batch``
(classification and score); each judge's ``judge()`` calls the same functions:

* ``sequential``  - the anytime-valid judge, read after every second;
* ``threshold``   - the default absolute limits, read after every second;
* ``mannwhitney_fixed`` - Kayenta's judge run once at the end of a fixed
  interval; its ``by_interval_s`` table gives the detection rate for each
  interval length, hence the canary requests it needs to detect;
* ``mannwhitney_repeated`` - the same judge re-run every second during the
  step, failing as soon as one run fails (its samples only change when a
  sample period completes, so it is evaluated at those instants).

``sequential_vs_stable_release`` repeats A/A and three regressions for the
sequential judge when there is no dedicated baseline and the canary is
compared with the stable release serving the rest of the traffic.

``threshold_near_baseline`` (item 11) counts healthy canaries of a service
whose normal error rate is 5 % that the threshold judge fails, with the limit
absolute (as before), following the baseline (default) or off.

``power_by_traffic`` (issue 10, item 8) repeats A/A and three regressions for
the sequential judge at several canary traffic levels (canary and baseline at
the same rate), with the share of runs whose canary served enough requests to
judge p99 at all (``sequential.requests_to_judge``): a p99-only regression at
low traffic is mostly invisible, and the verdict says so.

Prints one JSON object. ``--runs`` scales every scenario (default 1000).
``--real`` runs the real-process A/A harness instead (``detection_real.py``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from conveyor.analysis import AnalysisConfig  # noqa: E402
from conveyor.analysis import mannwhitney as mw  # noqa: E402
from conveyor.analysis import sequential as seq  # noqa: E402
from conveyor.analysis import threshold as thr  # noqa: E402
from conveyor.domain.histogram import GAMMA  # noqa: E402

LOG_GAMMA = math.log(GAMMA)
MEDIAN_S = 0.05
SIGMA = 0.5
BASE_ERROR = 0.01
NEAR_BASE_ERROR = 0.05  # a service that normally fails 5 % of requests (item 11)
LO = math.ceil(math.log(0.002) / LOG_GAMMA)  # 2 ms
HI = math.ceil(math.log(5.0) / LOG_GAMMA)  # 5 s
WIDTH = HI - LO + 1

SCENARIOS: dict[str, dict[str, float]] = {
    "aa": {},
    "errors_x1.5": {"error_factor": 1.5},
    "errors_x2": {"error_factor": 2.0},
    "errors_x5": {"error_factor": 5.0},
    "latency_p50_+10%": {"scale": 1.1},
    "latency_p50_+50%": {"scale": 1.5},
    "latency_p50_+100%": {"scale": 2.0},
    "latency_p99_+10%": {"tail": 1.1},
    "latency_p99_+50%": {"tail": 1.5},
    "latency_p99_+100%": {"tail": 2.0},
}


STABLE_SCENARIOS = ("aa", "errors_x2", "errors_x5", "latency_p50_+50%")
POWER_SCENARIOS = ("aa", "errors_x5", "latency_p50_+50%", "latency_p99_+100%")


def bucket_probabilities(scale: float = 1.0, tail: float = 1.0) -> np.ndarray:
    """Probability of each histogram bucket (LO..HI, ends open) for the latency distribution.

    Log-normal (median MEDIAN_S, SIGMA), times ``scale``; with ``tail`` only the
    slowest 2 % are stretched, so p98 and below stay put and p99 moves x ``tail``.
    """
    edges = np.power(GAMMA, np.arange(LO, HI + 1, dtype=float))  # upper edge of each bucket
    x = edges / scale
    if tail != 1.0:
        q98 = MEDIAN_S * math.exp(SIGMA * stats.norm.ppf(0.98))
        q99 = MEDIAN_S * math.exp(SIGMA * stats.norm.ppf(0.99))
        stretch = (tail * q99 - q98) / (q99 - q98)
        x = np.where(x > q98, q98 + (x - q98) / stretch, x)
    cdf = stats.norm.cdf((np.log(x) - math.log(MEDIAN_S)) / SIGMA)
    cdf[-1] = 1.0
    return np.diff(cdf, prepend=0.0)


def simulate(
    rng: np.random.Generator, runs: int, seconds: int, rps: float, error_rate: float, scale: float = 1.0, tail: float = 1.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """requests (R, T), errors (R, T), dense latency histograms (R, T, WIDTH) for one side."""
    n = rng.poisson(rps, (runs, seconds))
    errors = rng.binomial(n, min(error_rate, 1.0))
    hist = rng.multinomial(n, bucket_probabilities(scale, tail))
    return n, errors, hist.astype(np.int32)


def first_true(mask: np.ndarray) -> np.ndarray:
    """Index of the first True along the last axis, -1 when none."""
    any_ = mask.any(axis=-1)
    return np.where(any_, np.argmax(mask, axis=-1), -1)


def sequential_detect(cfg: AnalysisConfig, c: tuple[np.ndarray, ...], b: tuple[np.ndarray, ...]) -> np.ndarray:
    """First second at which the sequential judge fails each run: its own tests, levels and effect floors."""
    return seq.first_alarm(seq.sequential_tests(cfg, c[0], c[1], c[2], b[0], b[1], b[2], LO))


def threshold_detect(cfg: AnalysisConfig, c: tuple[np.ndarray, ...], b: tuple[np.ndarray, ...]) -> np.ndarray:
    """First second at which the threshold judge fails each run (limits follow a baseline near them)."""
    return first_true(thr.limits_batch(cfg, c[0], c[1], c[2], b[0], b[1], b[2], LO).alarm)


def mannwhitney_looks(
    cfg: AnalysisConfig, c: tuple[np.ndarray, ...], b: tuple[np.ndarray, ...], seconds: int
) -> tuple[list[int], np.ndarray, np.ndarray]:
    """The judge's scores (R, looks) on the first L seconds for every complete sample period L,
    and the raw two-sided rank-sum p-values (R, looks, metrics), from ``mannwhitney.scores_batch``."""
    m = cfg.mannwhitney
    names = [x.name for x in m.metrics]
    cs = mw.sample_metrics(c[0], c[1], c[2], LO, m.sample_period_s, names)
    bs = mw.sample_metrics(b[0], b[1], b[2], LO, m.sample_period_s, names)
    looks = list(range(m.sample_period_s, seconds + 1, m.sample_period_s))
    runs = c[0].shape[0]
    scores = np.zeros((runs, len(looks)))
    pvalues = np.ones((runs, len(looks), len(m.metrics)))
    for j, length in enumerate(looks):
        k = length // m.sample_period_s
        sc, results = mw.scores_batch(m, {n: v[:, :k] for n, v in cs.items()}, {n: v[:, :k] for n, v in bs.items()})
        scores[:, j] = sc
        for i, r in enumerate(results):
            pvalues[:, j, i] = np.nan_to_num(r.p_value, nan=1.0)
    return looks, scores, pvalues


def summarize(ttd: np.ndarray, canary_requests: np.ndarray) -> dict[str, Any]:
    detected = ttd >= 0
    out: dict[str, Any] = {"runs": int(ttd.size), "detection_rate": round(float(detected.mean()), 4)}
    if detected.any():
        rows = np.flatnonzero(detected)
        reqs = np.cumsum(canary_requests[rows], axis=1)[np.arange(rows.size), ttd[rows]]
        out["median_ttd_s"] = float(np.median(ttd[rows] + 1))
        out["median_ttd_canary_requests"] = float(np.median(reqs))
    else:
        out["median_ttd_s"] = None
        out["median_ttd_canary_requests"] = None
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=1000, help="simulated rollouts per scenario (A/A and each regression)")
    ap.add_argument("--seconds", type=int, default=300, help="length of the analysed step")
    ap.add_argument("--canary-rps", type=float, default=10.0, help="canary requests/s (5%% of 200 rps)")
    ap.add_argument("--baseline-rps", type=float, default=10.0, help="baseline requests/s (same share as the canary)")
    ap.add_argument("--stable-rps", type=float, default=190.0, help="stable release requests/s, for the judge run without a baseline")
    ap.add_argument("--seed", type=int, default=20261127)
    ap.add_argument("--chunk", type=int, default=200, help="runs simulated at once (memory)")
    ap.add_argument("--power-runs", type=int, default=200, help="runs per traffic level for power_by_traffic")
    ap.add_argument("--power-rps", type=float, nargs="*", default=[2.0, 10.0, 50.0, 200.0],
                    help="canary (and baseline) requests/s levels for power_by_traffic")
    args = ap.parse_args(argv)
    if args.runs < 1 or args.seconds < 10 or args.chunk < 1 or args.power_runs < 1:
        ap.error("--runs and --chunk must be >= 1 and --seconds >= 10")

    started = time.perf_counter()
    cfg = AnalysisConfig()  # the defaults: sequential + generous thresholds
    period = cfg.mannwhitney.sample_period_s
    rng = np.random.default_rng(args.seed)
    results: dict[str, dict[str, Any]] = {}
    looks: list[int] = []
    for name, spec in SCENARIOS.items():
        acc: dict[str, list[np.ndarray]] = {"seq": [], "thr": [], "mw": [], "p": [], "req": []}
        for start in range(0, args.runs, args.chunk):
            runs = min(args.chunk, args.runs - start)
            canary = simulate(
                rng, runs, args.seconds, args.canary_rps, BASE_ERROR * spec.get("error_factor", 1.0),
                spec.get("scale", 1.0), spec.get("tail", 1.0),
            )
            baseline = simulate(rng, runs, args.seconds, args.baseline_rps, BASE_ERROR)
            acc["seq"].append(sequential_detect(cfg, canary, baseline))
            acc["thr"].append(threshold_detect(cfg, canary, baseline))
            looks, scores, pvalues = mannwhitney_looks(cfg, canary, baseline, args.seconds)
            acc["mw"].append(scores)
            acc["p"].append(pvalues)
            acc["req"].append(canary[0])
        results[name] = {k: np.concatenate(v) for k, v in acc.items()}

    # Without a baseline, the canary is compared with the stable release (the rest of the traffic).
    stable: dict[str, Any] = {}
    for name in STABLE_SCENARIOS:
        spec = SCENARIOS[name]
        ttds, reqs = [], []
        for start in range(0, args.runs, args.chunk):
            runs = min(args.chunk, args.runs - start)
            canary = simulate(
                rng, runs, args.seconds, args.canary_rps, BASE_ERROR * spec.get("error_factor", 1.0),
                spec.get("scale", 1.0), spec.get("tail", 1.0),
            )
            baseline = simulate(rng, runs, args.seconds, args.stable_rps, BASE_ERROR)
            ttds.append(sequential_detect(cfg, canary, baseline))
            reqs.append(canary[0])
        stable[name] = summarize(np.concatenate(ttds), np.concatenate(reqs))
    power: dict[str, Any] = {}
    for rps in args.power_rps:
        per_level: dict[str, Any] = {}
        for name in POWER_SCENARIOS:
            spec = SCENARIOS[name]
            ttds, reqs = [], []
            for start in range(0, args.power_runs, args.chunk):
                runs = min(args.chunk, args.power_runs - start)
                canary = simulate(
                    rng, runs, args.seconds, rps, BASE_ERROR * spec.get("error_factor", 1.0),
                    spec.get("scale", 1.0), spec.get("tail", 1.0),
                )
                baseline = simulate(rng, runs, args.seconds, rps, BASE_ERROR)
                ttds.append(sequential_detect(cfg, canary, baseline))
                reqs.append(canary[0])
            all_reqs = np.concatenate(reqs)
            per_level[name] = summarize(np.concatenate(ttds), all_reqs)
        need = seq.requests_to_judge(0.99)
        per_level["p99_judgeable_share"] = round(float((all_reqs.sum(axis=1) >= need).mean()), 4)
        per_level["p99_requests_needed"] = need
        power[str(rps)] = per_level
    power_report = {"runs_per_level": args.power_runs, "step_seconds": args.seconds, "canary_rps": power}

    # Item 11: healthy canaries of a service whose normal error rate (5 %) is half the default 10 % limit.
    near: dict[str, Any] = {"base_error_rate": NEAR_BASE_ERROR, "runs": args.power_runs}
    for mode in ("absolute", "relative", "off"):
        mode_cfg = AnalysisConfig.model_validate({"threshold": {"near_baseline": mode}})
        fails = []
        for start in range(0, args.power_runs, args.chunk):
            runs = min(args.chunk, args.power_runs - start)
            canary = simulate(rng, runs, args.seconds, args.canary_rps, NEAR_BASE_ERROR)
            baseline = simulate(rng, runs, args.seconds, args.baseline_rps, NEAR_BASE_ERROR)
            fails.append(threshold_detect(mode_cfg, canary, baseline) >= 0)
        near[f"false_rollback_rate_{mode}"] = round(float(np.concatenate(fails).mean()), 4)

    stable_aa = stable.pop("aa")
    stable_report = {
        "baseline_rps": args.stable_rps,
        "false_rollback_rate": stable_aa["detection_rate"],
        "aa_runs": stable_aa["runs"],
        "regressions": stable,
    }

    def mw_fail(scores: np.ndarray, threshold: float) -> np.ndarray:
        return np.nan_to_num(scores, nan=100.0) < threshold

    out_judges: dict[str, Any] = {}
    pass_t, marg_t = cfg.mannwhitney.pass_threshold, cfg.mannwhitney.marginal_threshold
    for judge in ("sequential", "threshold", "mannwhitney_fixed", "mannwhitney_repeated"):
        per: dict[str, Any] = {}
        for name, r in results.items():
            if judge == "sequential":
                ttd = r["seq"]
            elif judge == "threshold":
                ttd = r["thr"]
            elif judge == "mannwhitney_fixed":
                fail = mw_fail(r["mw"][:, -1], pass_t)
                ttd = np.where(fail, looks[-1] - 1, -1)
            else:
                first = first_true(mw_fail(r["mw"], marg_t))
                ttd = np.where(first >= 0, np.asarray(looks)[np.maximum(first, 0)] - 1, -1)
            per[name] = summarize(ttd, r["req"])
        aa = per.pop("aa")
        out_judges[judge] = {
            "false_rollback_rate": aa["detection_rate"],
            "false_rollbacks": int(round(aa["detection_rate"] * aa["runs"])),
            "aa_runs": aa["runs"],
            "regressions": per,
        }

    by_interval: dict[str, Any] = {}
    for j, length in enumerate(looks):
        row = {name: round(float(mw_fail(r["mw"][:, j], pass_t).mean()), 4) for name, r in results.items()}
        by_interval[str(length)] = {"aa_false_rollback_rate": row.pop("aa"), "detection_rate": row}
    out_judges["mannwhitney_fixed"]["by_interval_s"] = by_interval

    def requests_for(name: str, rate: float) -> tuple[int | None, float | None]:
        reqs = results[name]["req"]
        for j, length in enumerate(looks):
            if mw_fail(results[name]["mw"][:, j], pass_t).mean() >= rate:
                return length, float(np.median(reqs[:, :length].sum(axis=1)))
        return None, None

    x5_seq = out_judges["sequential"]["regressions"]["errors_x5"]
    mw_len, mw_reqs = requests_for("errors_x5", 0.5)
    mw_len90, mw_reqs90 = requests_for("errors_x5", 0.9)
    seq_reqs = x5_seq["median_ttd_canary_requests"]
    rows = results["errors_x5"]
    detected = rows["seq"] >= 0
    seq_at = np.where(detected, np.cumsum(rows["req"], axis=1)[np.arange(rows["req"].shape[0]), np.maximum(rows["seq"], 0)], np.inf)
    seq_p90 = float(np.sort(seq_at)[max(0, math.ceil(0.9 * seq_at.size) - 1)])
    fixed_aa = out_judges["mannwhitney_fixed"]["false_rollback_rate"]
    repeated_aa = out_judges["mannwhitney_repeated"]["false_rollback_rate"]
    # The textbook effect without Kayenta's tolerance rule: the U test alone at 1 - confidence.
    aa_p = results["aa"]["p"] < 1.0 - cfg.mannwhitney.confidence
    raw = {
        "test": f"two-sided Mann-Whitney U, p < {1.0 - cfg.mannwhitney.confidence:g}, on any of "
        f"{[x.name for x in cfg.mannwhitney.metrics]} ({period} s samples), A/A runs",
        "once_at_end": round(float(aa_p[:, -1, :].any(axis=-1).mean()), 4),
        "rerun_every_second": round(float(aa_p.any(axis=(1, 2)).mean()), 4),
        "looks": len(looks),
    }
    report = {
        "benchmark": "detection",
        "params": {
            "runs_per_scenario": args.runs,
            "step_seconds": args.seconds,
            "canary_rps": args.canary_rps,
            "baseline_rps": args.baseline_rps,
            "base_error_rate": BASE_ERROR,
            "latency": f"log-normal, median {MEDIAN_S * 1000:g} ms, sigma {SIGMA}",
            "seed": args.seed,
            "alpha": cfg.alpha,
            "mannwhitney": {"confidence": cfg.mannwhitney.confidence, "tolerance": cfg.mannwhitney.tolerance, "sample_period_s": period},
        },
        "judges": out_judges,
        "sequential_vs_stable_release": stable_report,
        "power_by_traffic": power_report,
        "threshold_near_baseline": near,
        "goals": {
            "sequential_false_rollbacks_le_alpha": {
                "rate": out_judges["sequential"]["false_rollback_rate"],
                "alpha": cfg.alpha,
                "met": out_judges["sequential"]["false_rollback_rate"] <= cfg.alpha,
            },
            "errors_x5_requests": {
                "definition": "a fixed-interval judge must choose its interval in advance; it 'needs' the "
                "shortest interval at which it detects the regression in >= 90% of runs (the usual power)",
                "sequential_median_canary_requests": seq_reqs,
                "sequential_p90_canary_requests": seq_p90 if math.isfinite(seq_p90) else None,
                "sequential_detection_rate": x5_seq["detection_rate"],
                "mannwhitney_fixed_interval_s_for_90pct_detection": mw_len90,
                "mannwhitney_fixed_canary_requests_for_90pct_detection": mw_reqs90,
                "mannwhitney_fixed_interval_s_for_50pct_detection": mw_len,
                "mannwhitney_fixed_canary_requests_for_50pct_detection": mw_reqs,
                "ratio_median_to_90pct_interval": round(seq_reqs / mw_reqs90, 3) if seq_reqs and mw_reqs90 else None,
                "ratio_median_to_50pct_interval": round(seq_reqs / mw_reqs, 3) if seq_reqs and mw_reqs else None,
                "met": bool(seq_reqs is not None and (mw_reqs90 is None or seq_reqs < 0.5 * mw_reqs90)),
            },
            "repeated_mannwhitney_inflates_false_rollbacks": {
                "kayenta_judge_fixed_once_at_end": fixed_aa,
                "kayenta_judge_rerun_every_second": repeated_aa,
                "u_test_alone": raw,
                "met": repeated_aa > fixed_aa and raw["rerun_every_second"] > raw["once_at_end"],
            },
        },
        "elapsed_s": round(time.perf_counter() - started, 2),
    }
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    if "--real" in sys.argv[1:]:  # real processes: benchmarks/detection_real.py (issue 10, item 4)
        from detection_real import main as real_main

        real_main([a for a in sys.argv[1:] if a != "--real"])
    else:
        main()
