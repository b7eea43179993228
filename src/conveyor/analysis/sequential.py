"""The sequential judge: anytime-valid tests, safe to evaluate after every new second.

Why: a fixed-sample test (Mann-Whitney, a t-test) promises its false-alarm
rate only if it is looked at once. Re-running it every second, as a rollout
controller wants to, multiplies the chances of a false rollback. An
*e-process* is a running product of likelihood ratios that is a nonnegative
supermartingale under the null hypothesis; Ville's inequality then bounds the
probability that it *ever* reaches ``1/alpha`` by ``alpha``. So we may stop
the moment the evidence crosses the line, and a good canary is failed with
probability at most ``alpha`` however long and however often we look.

The test, for errors: in second ``t`` the canary served ``a`` requests with
``x`` errors and the baseline ``b`` requests with ``y`` errors. Conditional on
the second's total ``x + y``, with error rates ``p_c = r * p_b`` (Poisson
approximation), ``x`` is Binomial(``x + y``, ``r a / (r a + b)``). The null
hypothesis is "``r <= r0``" with ``r0 = 1 + error_tolerance``; the alternative
is a log-uniform mixture over a grid of ratios above ``r0``. Conditioning on
each second's totals makes the test immune to load swings and incidents that
hit canary and baseline alike, and needs no estimate of the baseline's rate.
The likelihood ratio is increasing in ``x`` and the exact conditional law of
binomial counts (a hypergeometric) is dominated by the binomial in convex
order, so the product stays a supermartingale under the null with exact
binomial errors too (up to the risk-ratio vs odds-ratio difference, negligible
at error rates of a few percent).

For latency at quantile ``q``: a threshold ``tau`` is the baseline's
``q``-quantile bucket *from the seconds before* ``t`` (so it is fixed before
second ``t`` is seen, which keeps the test valid); each second then gives the
count of canary requests slower than ``tau * (1 + latency_tolerance)`` and of
baseline requests slower than ``tau``, tested exactly like errors with
``r0 = 1``. The null "the canary is at most ``latency_tolerance`` slower"
(``P(L_c > s) <= P(L_b > s / (1 + tol))``) makes the two counts' rates obey
``r <= 1``. Early on, when the baseline has too few requests to place its
p99, ``tau`` sits at a lower quantile (still a valid, fixed-in-advance choice).

Statistically significant is not enough: a test fails the canary only when,
at the same second, the effect seen so far (canary vs baseline error rate, or
q-quantile) exceeds both the relative and the absolute floor of its metric
(``effects``). At sub-millisecond latencies a fresh process is "+66 %" slower
by 0.2 ms, which is significant within seconds and matters to nobody. Requiring
the floors only removes alarms, so the false-alarm bound is unchanged.

Several tests share ``alpha`` (Bonferroni): the error test gets half of it
(it is the one a broken release trips first) and the latency tests share the
other half; without latency tests the error test gets all of it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp

from conveyor.analysis.model import AnalysisConfig, EffectFloor, Interval, Outcome, Verdict, no_regression
from conveyor.analysis.series import Aligned, align, column_value, fmt_ms, ms, pct, quantile_column
from conveyor.domain.histogram import GAMMA

NAME = "sequential"
#: Baseline requests expected beyond the latency threshold before it is used.
MIN_TAIL = 5
#: Alternatives: ratios from 1.2 to 40 times the null ratio, log-uniform. Few points
#: keep the price of the mixture low (log 12 nats); their spacing (x1.37) is
#: finer than what a few dozen events can resolve, so little power is lost.
GRID = np.exp(np.linspace(math.log(1.2), math.log(40.0), 12))


def log_e_process(x: np.ndarray, y: np.ndarray, a: np.ndarray, b: np.ndarray, r0: float) -> np.ndarray:
    """Log of the mixture e-process after each step, along the last axis.

    ``x``/``y``: canary/baseline event counts per step; ``a``/``b``: their
    exposures (requests). Shapes (..., T); returns (..., T). Causal: the value at
    ``t`` depends only on steps ``<= t``.
    """
    x, y, a, b = (np.asarray(v, dtype=float) for v in (x, y, a, b))
    r = r0 * GRID
    with np.errstate(divide="ignore", invalid="ignore"):
        log_null = np.log(r0 * a + b)[..., None]
        log_alt = np.log(r * a[..., None] + b[..., None])
        step = x[..., None] * np.log(r / r0) + (x + y)[..., None] * (log_null - log_alt)
    step = np.where((a + b > 0)[..., None], step, 0.0)
    cum = np.cumsum(step, axis=-2)
    return logsumexp(cum, axis=-1) - math.log(r.size)  # type: ignore[no-any-return]


def error_evidence(
    canary_requests: np.ndarray,
    canary_errors: np.ndarray,
    baseline_requests: np.ndarray,
    baseline_errors: np.ndarray,
    tolerance: float,
) -> np.ndarray:
    """Log e-process for "canary error rate > (1 + tolerance) x baseline's", shape (..., T)."""
    return log_e_process(canary_errors, baseline_errors, canary_requests, baseline_requests, 1.0 + tolerance)


def tolerance_buckets(tolerance: float) -> int:
    """Latency tolerance in whole histogram buckets (each a factor GAMMA), rounded to nearest."""
    return max(0, round(math.log1p(tolerance) / math.log(GAMMA)))


@dataclass(frozen=True)
class LatencyCounts:
    """Per-step exceedance counts for one quantile, shape (..., T) each."""

    canary_slow: np.ndarray
    baseline_slow: np.ndarray
    canary_total: np.ndarray
    baseline_total: np.ndarray
    threshold_col: np.ndarray  # baseline threshold column used at each step (-1: none yet)


def latency_counts(canary_hist: np.ndarray, baseline_hist: np.ndarray, q: float, shift: int) -> LatencyCounts:
    """Exceedance counts for the latency test at quantile ``q`` from dense (..., T, B) histograms."""
    ch = np.asarray(canary_hist)
    bh = np.asarray(baseline_hist)
    width = ch.shape[-1]
    before = np.cumsum(bh, axis=-2) - bh  # baseline counts strictly before each step
    n_before = before.sum(axis=-1)
    q_eff = np.minimum(q, 1.0 - MIN_TAIL / np.maximum(n_before, 1))
    usable = (n_before >= 2 * MIN_TAIL) & (q_eff > 0)
    col = np.where(usable, quantile_column(before, np.clip(q_eff, 0.0, 1.0)), -1)

    def above(hist: np.ndarray, c: np.ndarray) -> np.ndarray:
        cum = np.cumsum(hist, axis=-1)
        total = cum[..., -1]
        idx = np.clip(c, 0, width - 1)[..., None]
        at_or_below = np.take_along_axis(cum, idx, axis=-1)[..., 0]
        return np.where(c >= width - 1, 0, total - at_or_below)  # type: ignore[no-any-return]

    c_tot = ch.sum(axis=-1)
    b_tot = bh.sum(axis=-1)
    zero = np.zeros_like(c_tot)
    return LatencyCounts(
        canary_slow=np.where(usable, above(ch, col + shift), zero),
        baseline_slow=np.where(usable, above(bh, col), zero),
        canary_total=np.where(usable, c_tot, zero),
        baseline_total=np.where(usable, b_tot, zero),
        threshold_col=col,
    )


def latency_evidence(counts: LatencyCounts) -> np.ndarray:
    """Log e-process for "canary slower than the tolerance allows at this quantile", shape (..., T)."""
    return log_e_process(counts.canary_slow, counts.baseline_slow, counts.canary_total, counts.baseline_total, 1.0)


def tests_count(config: AnalysisConfig) -> int:
    s = config.sequential
    return int(s.errors) + len(s.latency_quantiles)


def alpha_shares(config: AnalysisConfig) -> tuple[float, float]:
    """The false-alarm budget of the error test and of each latency test (they sum to alpha)."""
    s = config.sequential
    k = len(s.latency_quantiles)
    if not s.errors:
        return 0.0, config.alpha / max(k, 1)
    if not k:
        return config.alpha, 0.0
    return config.alpha / 2.0, config.alpha / (2.0 * k)


def log_levels(config: AnalysisConfig) -> tuple[float, float]:
    """The log e-values the error test and each latency test must reach: ``log(1 / share)``."""
    e, lat = alpha_shares(config)
    return (math.log(1.0 / e) if e else math.inf), (math.log(1.0 / lat) if lat else math.inf)


def _qname(q: float) -> str:
    return f"p{q * 100:g}".replace(".", "_")


def requests_to_judge(q: float) -> int:
    """Canary requests needed before quantile ``q`` can be judged: ten requests beyond it.

    Why ten: with fewer requests in the tail, the canary's q-quantile is one of its
    few slowest requests, and a x2 regression there is no more visible than noise
    (p99 needs ~1,000 requests, p50 20).
    """
    return math.ceil(10.0 / (1.0 - q) - 1e-9)


#: Effects are compared with their floors with this slack (bucket ratios are powers of GAMMA).
_EPS = 1e-9


@dataclass(frozen=True)
class SequentialTest:
    """One of the judge's tests over a batch of rollouts: evidence and effect after each second.

    Every array has shape (..., T). ``alarm`` is where the test fails a canary:
    the e-process at or above its level once the canary has served enough
    requests to judge the metric (the statistics) *and* the effect seen so
    far at or above both floors (practical significance). Requiring the floors
    too only removes alarms, so the false-alarm bound of the e-process still holds.
    """

    key: str  # "error_rate" or "p99"
    what: str  # "error rate" or "p99 latency"
    log_e: np.ndarray
    level: float
    relative: np.ndarray  # canary / baseline - 1 over the seconds so far
    absolute: np.ndarray  # canary - baseline over the seconds so far (rate, or seconds)
    floor: EffectFloor
    canary: np.ndarray  # the canary's value so far (rate, or seconds)
    baseline: np.ndarray
    judgeable: np.ndarray  # enough canary requests to judge this metric at all (requests_to_judge)

    @property
    def significant(self) -> np.ndarray:
        return (self.log_e >= self.level) & self.judgeable

    @property
    def large_enough(self) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            return (self.relative >= self.floor.relative - _EPS) & (self.absolute >= self.floor.absolute - _EPS)

    @property
    def alarm(self) -> np.ndarray:
        return self.significant & self.large_enough


def _ratio_minus_one(c: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b > 0, c / np.where(b > 0, b, 1.0) - 1.0, np.where(c > 0, np.inf, 0.0))


def sequential_tests(
    config: AnalysisConfig,
    canary_requests: np.ndarray,
    canary_errors: np.ndarray,
    canary_hist: np.ndarray,
    baseline_requests: np.ndarray,
    baseline_errors: np.ndarray,
    baseline_hist: np.ndarray,
    offset: int,
) -> list[SequentialTest]:
    """Every configured test over per-second arrays (..., T) and dense histograms (..., T, B).

    This is the judge's arithmetic; :func:`judge` runs it on one rollout and the
    detection benchmark on a thousand at once.
    """
    s = config.sequential
    err_level, lat_level = log_levels(config)
    out: list[SequentialTest] = []
    if s.errors:
        cr, ce = np.cumsum(canary_requests, axis=-1), np.cumsum(canary_errors, axis=-1)
        br, be = np.cumsum(baseline_requests, axis=-1), np.cumsum(baseline_errors, axis=-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            c_rate = np.where(cr > 0, ce / np.maximum(cr, 1), np.nan)
            b_rate = np.where(br > 0, be / np.maximum(br, 1), np.nan)
        out.append(
            SequentialTest(
                key="error_rate",
                what="error rate",
                log_e=error_evidence(canary_requests, canary_errors, baseline_requests, baseline_errors, s.error_tolerance),
                judgeable=np.ones(cr.shape, dtype=bool),
                level=err_level,
                relative=_ratio_minus_one(c_rate, b_rate),
                absolute=c_rate - b_rate,
                floor=config.effects.error_rate,
                canary=c_rate,
                baseline=b_rate,
            )
        )
    shift = tolerance_buckets(s.latency_tolerance)
    if s.latency_quantiles:
        c_cum = np.cumsum(canary_hist, axis=-2)
        b_cum = np.cumsum(baseline_hist, axis=-2)
    for q in s.latency_quantiles:
        c_q = column_value(quantile_column(c_cum, q), offset)
        b_q = column_value(quantile_column(b_cum, q), offset)
        out.append(
            SequentialTest(
                key=_qname(q),
                what=f"{_qname(q)} latency",
                log_e=latency_evidence(latency_counts(canary_hist, baseline_hist, q, shift)),
                # A quantile of too few requests is their slowest one or two (one stalled second on a starved
                # host makes it huge): it is not judged, and the verdict says so (requests_to_judge).
                judgeable=np.cumsum(np.asarray(canary_hist).sum(axis=-1), axis=-1) >= requests_to_judge(q),
                level=lat_level,
                relative=_ratio_minus_one(c_q, b_q),
                absolute=c_q - b_q,
                floor=config.effects.for_quantile(q),
                canary=c_q,
                baseline=b_q,
            )
        )
    return out


def first_alarm(tests: Sequence[SequentialTest]) -> np.ndarray:
    """Index of the first second at which any test alarms, per rollout (..., ); -1 when none."""
    if not tests:
        raise ValueError("no sequential test configured")
    hit = np.zeros(tests[0].log_e.shape, dtype=bool)
    for t in tests:
        hit |= t.alarm
    return np.where(hit.any(axis=-1), np.argmax(hit, axis=-1), -1)


def _effect(test: SequentialTest, k: int) -> str:
    """'+66.0 % / +0.2 ms (floors +10 % and +5 ms)' for the test at second ``k``."""
    rel, ab = float(test.relative[k]), float(test.absolute[k])
    rel_s = "n/a" if not math.isfinite(rel) else f"{rel * 100:+.1f}%"
    if rel == math.inf:
        rel_s = "from zero"
    if test.key == "error_rate":
        ab_s = "n/a" if not math.isfinite(ab) else f"{ab * 100:+.2f} points"
        fl = f"+{test.floor.relative * 100:g}% and +{test.floor.absolute * 100:g} points"
    else:
        ab_s = "n/a" if not math.isfinite(ab) else f"{ab * 1000:+.2f} ms"
        fl = f"+{test.floor.relative * 100:g}% and +{test.floor.absolute * 1000:g} ms"
    return f"effect {rel_s} / {ab_s} (floors {fl})"


def judge(
    config: AnalysisConfig,
    canary: Sequence[Interval],
    baseline: Sequence[Interval],
    *,
    step_elapsed_s: float,
    step_duration_s: float,
) -> Verdict:
    """Fail as soon as a test's evidence crosses its level with an effect above both floors; pass at the step's end otherwise."""
    s = config.sequential
    al: Aligned = align(canary, baseline)
    err_level, lat_level = log_levels(config)
    m = tests_count(config)
    n_c = int(al.canary_requests.sum())
    n_b = int(al.baseline_requests.sum())
    rate_c = float(al.canary_errors.sum() / n_c) if n_c else None
    rate_b = float(al.baseline_errors.sum() / n_b) if n_b else None
    numbers: dict[str, float | int | None] = {
        "alpha": config.alpha,
        "tests": m,
        "error_e_value_level": round(math.exp(err_level), 3) if math.isfinite(err_level) else None,
        "latency_e_value_level": round(math.exp(lat_level), 3) if math.isfinite(lat_level) else None,
        "canary_requests": n_c,
        "baseline_requests": n_b,
        "canary_error_rate": rate_c,
        "baseline_error_rate": rate_b,
    }
    for q in s.latency_quantiles:
        numbers[f"canary_{_qname(q)}_ms"] = None
        numbers[f"baseline_{_qname(q)}_ms"] = None
    tests = (
        sequential_tests(
            config, al.canary_requests, al.canary_errors, al.canary_hist,
            al.baseline_requests, al.baseline_errors, al.baseline_hist, al.offset,
        )
        if al.length
        else []
    )
    largest = -math.inf
    effects: list[str] = []
    for t in tests:
        peak = float(t.log_e.max())
        largest = max(largest, peak)
        numbers[f"{'error' if t.key == 'error_rate' else t.key}_e_value"] = _e(peak)
        numbers[f"{t.key}_effect_relative"] = _finite(t.relative[-1])
        numbers[f"{t.key}_floor_relative"] = t.floor.relative
        numbers[f"{t.key}_floor_absolute"] = t.floor.absolute
        if t.key == "error_rate":
            numbers["error_rate_effect_absolute"] = _finite(t.absolute[-1])
        else:
            numbers[f"{t.key}_effect_absolute_ms"] = ms(_finite(t.absolute[-1]))
            numbers[f"canary_{t.key}_ms"] = ms(_finite(t.canary[-1]))
            numbers[f"baseline_{t.key}_ms"] = ms(_finite(t.baseline[-1]))
        effects.append(f"{t.what} {_effect(t, -1)}")
    # Quantiles the canary has too little traffic to judge (item: say so rather than pass silently).
    unjudged: list[str] = []
    for q in s.latency_quantiles:
        need = requests_to_judge(q)
        numbers[f"{_qname(q)}_requests_needed"] = need
        if n_c < need:
            unjudged.append(f"{_qname(q)} not judged: {n_c:,} of the ~{need:,} canary requests needed")
    numbers["largest_e_value"] = _e(largest) if math.isfinite(largest) else None

    if tests:
        k = int(first_alarm(tests))
        if k >= 0:
            t = next(t for t in tests if bool(t.alarm[k]))
            crossed = [t, *(o for o in tests if o is not t and bool(o.alarm.any()))]
            at = float(al.t[k] - al.t[0] + 1.0)
            numbers["detected_after_s"] = at
            numbers["detected_after_canary_requests"] = int(al.canary_requests[: k + 1].sum())
            if t.key == "error_rate":
                c_r, c_e = int(al.canary_requests[: k + 1].sum()), int(al.canary_errors[: k + 1].sum())
                b_r, b_e = int(al.baseline_requests[: k + 1].sum()), int(al.baseline_errors[: k + 1].sum())
                text = (
                    f"canary error rate {pct(c_e / c_r if c_r else None)} ({c_e}/{c_r}) vs baseline "
                    f"{pct(b_e / b_r if b_r else None)} ({b_e}/{b_r}), {_effect(t, k)}; beyond the allowed "
                    f"x{1 + s.error_tolerance:g} with e-value {_e(float(t.log_e[k])):g} >= {math.exp(t.level):g}"
                )
            else:
                q = next(q for q in s.latency_quantiles if _qname(q) == t.key)
                shift = tolerance_buckets(s.latency_tolerance)
                counts = latency_counts(al.canary_hist[: k + 1], al.baseline_hist[: k + 1], q, shift)
                tau = float(column_value(counts.threshold_col[k], al.offset))
                cs, ct = int(counts.canary_slow.sum()), int(counts.canary_total.sum())
                bs, bt = int(counts.baseline_slow.sum()), int(counts.baseline_total.sum())
                text = (
                    f"canary {t.key} {fmt_ms(float(t.canary[k]))} vs baseline {fmt_ms(float(t.baseline[k]))}, "
                    f"{_effect(t, k)}; {pct(cs / ct if ct else None)} of canary requests were slower than "
                    f"{fmt_ms(tau * GAMMA**shift)} vs {pct(bs / bt if bt else None)} of baseline requests slower "
                    f"than {fmt_ms(tau)}, e-value {_e(float(t.log_e[k])):g} >= {math.exp(t.level):g}"
                )
            more = f" (also {', '.join(c.what for c in crossed[1:])})" if len(crossed) > 1 else ""
            return Verdict(
                judge=NAME,
                outcome=Outcome.FAIL,
                reason=f"Regression in {t.what} after {at:g} s and "
                f"{numbers['detected_after_canary_requests']} canary requests: {text}{more}.",
                numbers=numbers,
            )
    # Significant but too small to matter: said, so nobody wonders why it passed.
    small = [t.what for t in tests if bool(t.significant[..., -1]) and not bool(t.large_enough[..., -1])]
    biggest = numbers["largest_e_value"]
    summary = (
        f"error rate {pct(rate_c)} vs {pct(rate_b)}"
        + "".join(
            f", {_qname(q)} {fmt_ms(_s(numbers[f'canary_{_qname(q)}_ms']))} vs "
            f"{fmt_ms(_s(numbers[f'baseline_{_qname(q)}_ms']))}"
            for q in s.latency_quantiles
        )
        + f"; largest e-value {biggest if biggest is not None else 'n/a'}"
        + " (a regression needs an e-value of "
        + " / ".join(
            f"{lvl:g} ({what})"
            for lvl, what in ((numbers["error_e_value_level"], "errors"), (numbers["latency_e_value_level"], "latency"))
            if lvl is not None
        )
        + " and an effect above its floors)"
        + (f"; {'; '.join(effects)}" if effects else "")
        + (f"; {', '.join(small)}: significant but below the floors" if small else "")
        + (f"; {'; '.join(unjudged)}" if unjudged else "")
    )
    verdict = "No regression worth a rollback" if small else "No evidence of regression"
    return no_regression(
        NAME, numbers, over=step_elapsed_s >= step_duration_s,
        enough=n_c >= config.min_requests and n_b >= config.min_requests,
        going=f"{verdict} yet after {round(step_elapsed_s, 1):g} of {step_duration_s:g} s: {summary}.",
        short=f"Not enough traffic to judge: {n_c} canary and {n_b} baseline requests in "
        f"{round(step_elapsed_s, 1):g} s, at least {config.min_requests} each are required.",
        passed=f"{verdict} after {round(step_elapsed_s, 1):g} s and {n_c} canary requests: {summary}.",
    )


def _finite(v: float | np.floating) -> float | None:
    f = float(v)
    return f if math.isfinite(f) else None


def _e(log_value: float) -> float:
    """An e-value for display: exp of the log, 4 significant digits, capped to stay finite."""
    v = math.exp(min(log_value, 700.0))
    return float(f"{v:.4g}")


def _s(milliseconds: float | int | None) -> float | None:
    return None if milliseconds is None else float(milliseconds) / 1000.0
