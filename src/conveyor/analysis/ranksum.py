"""Two-sample statistics as Kayenta computes them: R's rank-sum test with its roots, effect sizes, outliers.

Why a module of its own: these are the numbers Kayenta's test suites pin
(``tests/unit/analysis/test_analysis_kayenta.py``), independent of how the
judge turns them into a verdict (``analysis/mannwhitney.py``). Every function
works on rows (R, m) so that one rollout and a thousand simulated ones run
the same code. Pure numpy/scipy, no I/O.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats


def iqr_outliers(values: np.ndarray, factor: float = 3.0, *, reduce_sensitivity: bool = True) -> np.ndarray:
    """Kayenta's IQRDetector: outside Q1 - factor x IQR .. Q3 + factor x IQR (R-7 percentiles).

    With ``reduce_sensitivity`` (what Kayenta's judge uses) the fences are widened
    to at least the 1st and 99th percentiles.
    """
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return np.zeros(0, dtype=bool)
    q1, q3 = np.percentile(v, [25, 75])
    lo, hi = q1 - factor * (q3 - q1), q3 + factor * (q3 - q1)
    if reduce_sensitivity:
        p01, p99 = np.percentile(v, [1, 99])
        lo, hi = min(lo, p01), max(hi, p99)
    return (v > hi) | (v < lo)  # type: ignore[no-any-return]


def ksigma_outliers(values: np.ndarray, k: float = 3.0) -> np.ndarray:
    """Kayenta's KSigmaDetector: further than ``k`` population standard deviations from the mean."""
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return np.zeros(0, dtype=bool)
    return np.abs(v - v.mean()) > k * v.std()  # type: ignore[no-any-return]


def wilcoxon_z(canary: np.ndarray, baseline: np.ndarray, mu: np.ndarray | float = 0.0) -> np.ndarray:
    """R's standardised rank-sum statistic for "canary - mu vs baseline", per row.

    ``canary`` (R, m), ``baseline`` (R, n), ``mu`` (R,) or a number. Continuity
    correction (0.5 towards zero) and tie correction of the variance, as in
    ``wilcox.test(..., correct = TRUE)`` (and Kayenta's ``wilcoxonDiff`` with
    quantile 0). NaN where every value is tied (no variance).
    """
    c = np.atleast_2d(np.asarray(canary, dtype=float))
    b = np.atleast_2d(np.asarray(baseline, dtype=float))
    m, n = c.shape[1], b.shape[1]
    shift = np.broadcast_to(np.asarray(mu, dtype=float), (c.shape[0],))
    both = np.concatenate([c - shift[:, None], b], axis=1)
    ranks = stats.rankdata(both, axis=1)
    low = stats.rankdata(both, axis=1, method="min")
    ties = 2.0 * (ranks - low) + 1.0  # each value's tie-group size
    tie_term = (ties**2 - 1.0).sum(axis=1)  # = sum over groups of t^3 - t
    dz = ranks[:, :m].sum(axis=1) - m * (m + 1) / 2.0 - m * n / 2.0
    total = m + n
    var = (m * n / 12.0) * ((total + 1) - tie_term / (total * (total - 1)))
    with np.errstate(divide="ignore", invalid="ignore"):
        sigma = np.sqrt(np.maximum(var, 0.0))
        return np.where(sigma > 0, (dz - 0.5 * np.sign(dz)) / np.where(sigma > 0, sigma, 1.0), np.nan)  # type: ignore[no-any-return]


def _first_plateau(c: np.ndarray, b: np.ndarray, diffs: np.ndarray, zq: float, strict: bool) -> np.ndarray:
    """Per row, the first plateau index p in [0, K] whose statistic is < zq (``strict``) or <= zq.

    Plateau p is the open interval (diffs[p-1], diffs[p]) (unbounded at both ends);
    the statistic does not increase from one plateau to the next.
    """
    rows, k = diffs.shape
    lo = np.zeros(rows, dtype=np.int64)
    hi = np.full(rows, k + 1, dtype=np.int64)  # k + 1: none
    idx = np.arange(rows)
    while np.any(lo < hi):
        mid = (lo + hi) // 2
        p = np.minimum(mid, k)
        left = np.where(p > 0, diffs[idx, np.maximum(p - 1, 0)], diffs[:, 0] - 1.0)
        right = np.where(p < k, diffs[idx, np.minimum(p, k - 1)], diffs[:, -1] + 1.0)
        z = wilcoxon_z(c, b, (left + right) / 2.0)
        z = np.where(np.isfinite(z), z, 0.0)
        hit = (z < zq) if strict else (z <= zq)
        hit = np.where(mid >= k + 1, True, hit)
        active = lo < hi
        hi = np.where(active & hit, mid, hi)
        lo = np.where(active & ~hit, mid + 1, lo)
    return lo


def shift_root(c: np.ndarray, b: np.ndarray, diffs: np.ndarray, zq: float) -> np.ndarray:
    """Where the statistic crosses ``zq`` (R's ``uniroot(wdiff, c(mumin, mumax), zq = zq)``), per row.

    The crossing is the jump at the left edge of the first plateau below ``zq``;
    where the statistic equals ``zq`` on whole plateaus (the estimate, zq = 0, on
    symmetric data), the middle of those plateaus. Below ``min(diffs)`` or above
    ``max(diffs)`` it is clamped to them, as R and Kayenta do.
    """
    rows, k = diffs.shape
    idx = np.arange(rows)
    strict = _first_plateau(c, b, diffs, zq, strict=True)
    loose = _first_plateau(c, b, diffs, zq, strict=False)
    edge = np.where(strict > 0, diffs[idx, np.clip(strict - 1, 0, k - 1)], diffs[:, 0])
    edge = np.where(strict > k, diffs[:, -1], edge)
    zero_lo = np.where(loose > 0, diffs[idx, np.clip(loose - 1, 0, k - 1)], diffs[:, 0])
    zero_hi = diffs[idx, np.clip(strict - 1, 0, k - 1)]
    return np.where(loose < strict, (zero_lo + zero_hi) / 2.0, edge)  # type: ignore[no-any-return]


def min_p_value(m: int, n: int) -> float:
    """The smallest two-sided p-value Mann-Whitney can give with m and n samples: 2 / C(m + n, m).

    In log space: ``comb(1030, 515)`` no longer fits a float (the OverflowError
    a long step with 515 samples a side used to raise).
    """
    if m <= 0 or n <= 0:
        return 1.0
    log_comb = math.lgamma(m + n + 1) - math.lgamma(m + 1) - math.lgamma(n + 1)
    return min(1.0, 2.0 * math.exp(-log_comb))


def mean_ratio(canary: np.ndarray, baseline: np.ndarray) -> np.ndarray:
    """Kayenta's meanRatio: canary mean / baseline mean per row, NaN when either mean is 0."""
    mc, mb = np.mean(canary, axis=-1), np.mean(baseline, axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((mc == 0) | (mb == 0), np.nan, mc / np.where(mb == 0, 1.0, mb))  # type: ignore[no-any-return]


def cles(canary: np.ndarray, baseline: np.ndarray) -> np.ndarray:
    """The common-language effect size per row: the share of (canary, baseline) pairs where the canary is larger (ties count half)."""
    c = np.atleast_2d(np.asarray(canary, dtype=float))
    b = np.atleast_2d(np.asarray(baseline, dtype=float))
    m, n = c.shape[1], b.shape[1]
    ranks = stats.rankdata(np.concatenate([c, b], axis=1), axis=1)
    return (2.0 * ranks[:, :m].sum(axis=1) - m * (m + 1)) / (2.0 * n * m)  # type: ignore[no-any-return]
