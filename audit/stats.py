"""Shared statistics: Poisson bootstrap weights and weighted binary-classification metrics, vectorized.

Every metric here takes a weight matrix `W` of shape (R, n) and returns R values, one per row of weights.
Row 0 of the matrices the checks build is all ones (the point estimate); the other rows are bootstrap
replicates. With integer weights, a weighted metric equals the plain metric on the rows repeated that many
times, which is how the tests compare each one with scikit-learn (`sample_weight`).

The bootstrap is Poisson(1): each row of the data enters each replicate k ~ Poisson(1) times, independently.
It approximates the classic multinomial bootstrap for n in the tens and up, resamples every subgroup
independently (so a per-group interval is a within-group resample), and its counts merge across
partitions, which keeps a streaming or distributed audit possible.

An interval is undefined (None) when fewer than `min_finite_share()` of the replicates are finite (the metric is
undefined on too many resamples to trust an interval): the policy's `statistics.min_finite_share`, default
FINITE_SHARE. A run sets it for the checks it measures with `finite_rule` (audit.from_stats.under_policy_statistics).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import numpy as np

FINITE_SHARE = 0.9  # default of the policy's statistics.min_finite_share (audit/policy.py)
_finite_share: ContextVar[float] = ContextVar("audit_min_finite_share", default=FINITE_SHARE)


def min_finite_share() -> float:
    """The share of finite replicates an interval needs in the run being measured (FINITE_SHARE by default)."""
    return _finite_share.get()


@contextmanager
def finite_rule(share: float) -> Iterator[None]:
    """Every interval computed inside the block needs `share` of its replicates finite."""
    token = _finite_share.set(float(share))
    try:
        yield
    finally:
        _finite_share.reset(token)


def poisson_weights(n: int, replicates: int, seed: int) -> np.ndarray:
    """(1 + replicates, n) float weights: a row of ones, then Poisson(1) replicates."""
    rng = np.random.default_rng(seed)
    w = np.empty((1 + replicates, n), dtype=np.float64)
    w[0] = 1.0
    if replicates:
        w[1:] = rng.poisson(1.0, size=(replicates, n))
    return w


def percentile_interval(replicates: np.ndarray, confidence: float) -> tuple[float | None, float | None]:
    """Percentile interval of the finite replicates; None when fewer than `min_finite_share()` of them (90% by
    default) are finite (the metric is undefined on too many resamples to trust an interval)."""
    finite = replicates[np.isfinite(replicates)]
    if len(replicates) == 0 or len(finite) < min_finite_share() * len(replicates):
        return None, None
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(finite, [alpha, 1.0 - alpha])
    return float(low), float(high)


def max_contrast_interval(point: np.ndarray, reps: np.ndarray, confidence: float, n: int | None = None,
                          low: float | None = None, high: float | None = None):
    """Interval of theta = max_k c_k, a maximum over K contrasts (a max - min over groups is the max over every
    ordered pair (i, j) of rate_i - rate_j), from the point contrasts `point` (K,) and their bootstrap
    replicates `reps` (R, K). All replicates at once: a few quantiles and maxima along the replicate axis.

    Why not a percentile interval of the replicated max: the max of noisy contrasts is biased upwards (with
    equal groups the true gap is 0 and every estimate is above it), and the bias goes into the percentiles, so
    the interval can lie wholly above the truth and even above its own estimate.

    Upper bound: the largest per-contrast upper percentile bound, over the contrasts that can be the max (see
    below). The true max is one fixed contrast k*, and c_k* <= its own bound with the nominal probability, so
    no multiplicity correction is needed.

    Lower bound: max_k (ĉ_k - q se_k), with se_k the contrast's bootstrap standard error (normalized IQR; the
    standard deviation when the IQR is 0) and q the one-sided simultaneous quantile of max_k (ĉ*_k - ĉ_k)/se_k
    (the max-t bootstrap): with the nominal probability every c_k >= ĉ_k - q se_k, so max_k c_k is at least the
    bound. The max runs over the contrasts that can be the max only (moment selection, as in Andrews & Soares
    2010, Econometrica 78(1), with their BIC-type threshold): a contrast is dropped when it lies more than
    sqrt(log n) bootstrap standard errors of its difference below the largest one. Without that step a clear
    winner would still pay for every contrast far below it (for a max - min, every reversed pair), and the
    interval would cover more often than its level; the selection of Chernozhukov, Lee & Rosen (2013), which
    keeps contrasts within about 3 max-t quantiles, still covered 97.5-99% with 3 groups of 200 rows. Where
    several contrasts tie for the max (equal groups, a group in the middle close to an end), the interval is
    conservative: it keeps its level by covering more often.

    The interval is clipped to the statistic's range [`low`, `high`] (a max - min difference is >= 0) and always
    contains the point estimate max_k ĉ_k. (None, None) when fewer than `min_finite_share()` of the replicates
    (90% by default) are finite on every contrast, or a point contrast is not finite."""
    point = np.asarray(point, dtype=float)
    reps = np.asarray(reps, dtype=float)
    if (point.ndim < 1 or reps.ndim != point.ndim + 1 or reps.shape[-1] != point.shape[-1]
            or reps.shape[:-2] != point.shape[:-1] or point.shape[-1] == 0):
        raise ValueError("max_contrast_interval: point is (..., K), reps (..., R, K)")
    K, R = point.shape[-1], reps.shape[-2]
    P, X = point.reshape(-1, K), reps.reshape(-1, R, K)
    with np.errstate(invalid="ignore", divide="ignore"):
        rows = np.isfinite(X).all(axis=2)  # (B, R): replicates finite on every contrast
        m = rows.sum(axis=1)
        valid = (m >= max(2, min_finite_share() * R)) & np.isfinite(P).all(axis=1)
        every = bool(rows.all())
        if not every:
            X = np.where(rows[:, :, None], X, np.nan)
        alpha = (1.0 - confidence) / 2.0
        ordered = np.sort(X.transpose(0, 2, 1), axis=2).transpose(0, 2, 1)  # contiguous along R: 2x faster
        q25, q75, upper = _sorted_quantiles(ordered, (0.25, 0.75, 1.0 - alpha), m)
        se = (q75 - q25) / 1.3489795003921634  # the IQR of a normal is 1.349 sd
        if not (se > 0).all():
            se = np.where(se > 0, se, _sd(X, rows, m, every))
        live = se > 0
        t = (X - P[:, None]) / np.where(live, se, 1.0)[:, None]  # studentized deviations
        if not live.all():
            t = np.where(live[:, None], t, 0.0)
        # moment selection: a contrast more than sqrt(log n) standard errors of its difference from the largest
        # one below it cannot be the max; the others stay
        top = np.take_along_axis(X, P.argmax(axis=1)[:, None, None], axis=2)  # (B, R, 1)
        sd_d = _sd(top - X, rows, m, every)
        keep = P.max(axis=1, keepdims=True) - P <= np.sqrt(np.log(max(int(n or R), 3))) * sd_d
        mask = 0.0 if keep.all() else np.where(keep, 0.0, -np.inf)[:, None]
        tkeep = np.where(rows, (t + mask).max(axis=2), np.nan)
        q = np.maximum(_sorted_quantiles(np.sort(tkeep, axis=1)[:, :, None], (1.0 - alpha,), m)[0][:, 0], 0.0)
        stat = P.max(axis=1)
        lo = np.minimum((P - q[:, None] * se).max(axis=1), stat)
        hi = np.maximum(np.where(keep, upper, -np.inf).max(axis=1), stat)
        if low is not None:
            lo, hi = np.maximum(lo, low), np.maximum(hi, low)
        if high is not None:
            lo, hi = np.minimum(lo, high), np.minimum(hi, high)
    lo, hi = np.where(valid, lo, np.nan), np.where(valid, hi, np.nan)
    if point.ndim == 1:
        return (float(lo[0]), float(hi[0])) if valid[0] else (None, None)
    return lo.reshape(point.shape[:-1]), hi.reshape(point.shape[:-1])


def _sd(X: np.ndarray, rows: np.ndarray, m: np.ndarray, every: bool) -> np.ndarray:
    """Standard deviation (ddof 1) along axis 1 of X (B, R, K) over the rows marked finite in `rows` (B, R)."""
    Z = X if every else np.where(rows[:, :, None], X, 0.0)
    m_ = np.maximum(m, 1)[:, None].astype(float)
    total = np.einsum("brk->bk", Z)
    squares = np.einsum("brk,brk->bk", Z, Z)  # sums of squares without a (B, R, K) temporary (4x np.std's speed)
    return np.sqrt(np.clip(squares - total * total / m_, 0.0, None) / np.maximum(m_ - 1, 1))


def _sorted_quantiles(x: np.ndarray, qs: tuple[float, ...], m: np.ndarray) -> list[np.ndarray]:
    """Quantiles along axis 1 of x (B, R, K), sorted along it with its m[b] finite values first, interpolated as
    np.quantile's default ("linear"): one sort serves several quantiles (np.quantile sorts again per call)."""
    out = []
    m = np.maximum(np.asarray(m), 1)
    for q in qs:
        pos = q * (m - 1)
        i = np.floor(pos).astype(np.int64)
        j = np.minimum(i + 1, m - 1)
        a = np.take_along_axis(x, i[:, None, None], axis=1)[:, 0]
        b = np.take_along_axis(x, j[:, None, None], axis=1)[:, 0]
        out.append(a + (pos - i)[:, None] * (b - a))
    return out


SIGN_BINS_MAX = 12  # ece_interval enumerates 2^bins sign patterns up to this many occupied bins


def ece_interval(gaps: np.ndarray, confidence: float, n: int | None = None):
    """Interval of ECE = sum_b |g_b| from each bin's signed gap g_b = (sum of labels - sum of scores) / rows,
    `gaps` (1 + R, bins): row 0 the point, then the bootstrap replicates (leading batch dimensions allowed, as
    max_contrast_interval).

    ECE is biased upwards (a calibrated model's true ECE is 0 and every estimate is above it), so the
    percentile interval of its replicates misses the truth: with 600 rows and 10 bins it never once contained 0
    for a calibrated model (tests/test_coverage.py). A sum of absolute values is a maximum over sign patterns,
    sum_b |g_b| = max over s in {-1, 1}^bins of sum_b s_b g_b, each pattern a linear contrast of the gaps, so
    max_contrast_interval applies (bins empty everywhere are left out: their gap is 0 on every replicate).
    Beyond SIGN_BINS_MAX occupied bins (4,096 patterns) the lower bound is sum_b max(0, |g_b| - q se_b) with q
    the simultaneous two-sided max-t quantile over bins, and the upper bound the percentile bound of the
    replicated ECE, which lies above the truth as the ECE is biased upwards: valid, and wider."""
    gaps = np.asarray(gaps, dtype=float)
    if gaps.ndim < 2 or gaps.shape[-2] < 3:
        return (None, None) if gaps.ndim <= 2 else (np.full(gaps.shape[:-2], np.nan),) * 2
    occupied = np.flatnonzero((gaps != 0).reshape(-1, gaps.shape[-1]).any(axis=0))
    g = gaps[..., occupied]
    point = np.abs(g[..., 0, :]).sum(axis=-1)
    if len(occupied) == 0:
        return (0.0, 0.0) if gaps.ndim == 2 else (np.zeros(gaps.shape[:-2]),) * 2
    if len(occupied) <= SIGN_BINS_MAX:
        signs = 1.0 - 2.0 * ((np.arange(2 ** len(occupied))[:, None] >> np.arange(len(occupied))) & 1)
        contrasts = g @ signs.T  # (..., 1 + R, 2^bins)
        return max_contrast_interval(contrasts[..., 0, :], contrasts[..., 1:, :], confidence, n=n, low=0.0)
    if gaps.ndim > 2:
        raise ValueError(f"ece_interval: batches need at most {SIGN_BINS_MAX} occupied bins")
    reps = g[1:][np.isfinite(g[1:]).all(axis=1)]
    if len(reps) < min_finite_share() * (len(g) - 1) or not np.isfinite(point):
        return None, None
    alpha = (1.0 - confidence) / 2.0
    se = reps.std(axis=0, ddof=1)
    live = se > 0
    t = np.where(live, np.abs(reps - g[0]) / np.where(live, se, 1.0), 0.0)
    q = float(np.quantile(t.max(axis=1), 1.0 - alpha))
    lo = float(np.clip(np.abs(g[0]) - q * se, 0, None).sum())
    hi = max(float(np.quantile(np.abs(reps).sum(axis=1), 1.0 - alpha)), float(point))
    return min(lo, float(point)), hi


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1.0), np.nan)


def confusion(W: np.ndarray, y: np.ndarray, y_pred: np.ndarray) -> dict[str, np.ndarray]:
    """Weighted confusion counts per row of W: tp, fp, tn, fn."""
    y = y.astype(bool)
    p = y_pred.astype(bool)
    return {
        "tp": W @ (y & p).astype(float),
        "fp": W @ (~y & p).astype(float),
        "tn": W @ (~y & ~p).astype(float),
        "fn": W @ (y & ~p).astype(float),
    }


def accuracy(c):
    return _div(c["tp"] + c["tn"], c["tp"] + c["tn"] + c["fp"] + c["fn"])


def tpr(c):
    return _div(c["tp"], c["tp"] + c["fn"])


def tnr(c):
    return _div(c["tn"], c["tn"] + c["fp"])


def fpr(c):
    return _div(c["fp"], c["fp"] + c["tn"])


def fnr(c):
    return _div(c["fn"], c["fn"] + c["tp"])


def precision(c):
    return _div(c["tp"], c["tp"] + c["fp"])


def f1(c):
    return _div(2 * c["tp"], 2 * c["tp"] + c["fp"] + c["fn"])


def balanced_accuracy(c):
    return (tpr(c) + tnr(c)) / 2.0


def selection_rate(c):
    return _div(c["tp"] + c["fp"], c["tp"] + c["fp"] + c["tn"] + c["fn"])


def _by_unique_score(W: np.ndarray, y: np.ndarray, score: np.ndarray, descending: bool):
    """Positive and negative weight per distinct score value, scores sorted; shapes (R, U)."""
    order = np.argsort(-score if descending else score, kind="mergesort")
    s = score[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    yo = y[order].astype(float)
    Wo = W[:, order]
    pos = np.add.reduceat(Wo * yo, starts, axis=1)
    neg = np.add.reduceat(Wo * (1.0 - yo), starts, axis=1)
    return pos, neg, s[starts]


def roc_auc(W: np.ndarray, y: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Weighted ROC-AUC (ties count one half), the Mann-Whitney form."""
    pos, neg, _ = _by_unique_score(W, y, score, descending=False)
    neg_below = np.cumsum(neg, axis=1) - neg
    num = (pos * (neg_below + 0.5 * neg)).sum(axis=1)
    return _div(num, pos.sum(axis=1) * neg.sum(axis=1))


def average_precision(W: np.ndarray, y: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Weighted average precision, as scikit-learn defines it: sum over thresholds of (R_k - R_k-1) P_k."""
    pos, neg, _ = _by_unique_score(W, y, score, descending=True)
    tp = np.cumsum(pos, axis=1)
    fp = np.cumsum(neg, axis=1)
    total_pos = tp[:, -1:]
    prec = _div(tp, tp + fp)
    prec = np.nan_to_num(prec, nan=0.0)
    d_recall = _div(pos, np.broadcast_to(total_pos, pos.shape))
    return np.where(total_pos[:, 0] > 0, (d_recall * prec).sum(axis=1), np.nan)


def brier(W: np.ndarray, y: np.ndarray, score: np.ndarray) -> np.ndarray:
    return _div(W @ (score - y) ** 2, W.sum(axis=1))


def ece_bins(score: np.ndarray, bins: int) -> np.ndarray:
    """Index of the equal-width bin of each score on [0, 1]; bins are closed on the right, (0.1, 0.2], and the
    first includes 0, as scikit-learn's `calibration_curve` bins them."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    return np.searchsorted(edges[1:-1], score, side="left")


def ece_gaps(W: np.ndarray, y: np.ndarray, score: np.ndarray, bins: int = 10) -> np.ndarray:
    """(R, bins): each bin's signed gap (sum of labels - sum of scores) / rows, per row of W."""
    onehot = np.zeros((len(score), bins))
    onehot[np.arange(len(score)), ece_bins(score, bins)] = 1.0
    gap = W @ (onehot * (y - score)[:, None])
    return _div(gap, W.sum(axis=1)[:, None])


def expected_calibration_error(W: np.ndarray, y: np.ndarray, score: np.ndarray, bins: int = 10) -> np.ndarray:
    """ECE = sum over equal-width bins of |sum(y) - sum(score)| / N, i.e. the share-weighted |accuracy - confidence|."""
    return np.abs(ece_gaps(W, y, score, bins)).sum(axis=1)


def roc_curve_points(y: np.ndarray, score: np.ndarray, max_points: int = 200) -> dict[str, list[float]]:
    pos, neg, thr = _by_unique_score(np.ones((1, len(y))), y, score, descending=True)
    tpr_ = np.r_[0.0, np.cumsum(pos[0]) / max(pos.sum(), 1)]
    fpr_ = np.r_[0.0, np.cumsum(neg[0]) / max(neg.sum(), 1)]
    keep = _thin(len(tpr_), max_points)
    return {"fpr": _round(fpr_[keep]), "tpr": _round(tpr_[keep])}


def pr_curve_points(y: np.ndarray, score: np.ndarray, max_points: int = 200) -> dict[str, list[float]]:
    pos, neg, _ = _by_unique_score(np.ones((1, len(y))), y, score, descending=True)
    tp = np.cumsum(pos[0])
    fp = np.cumsum(neg[0])
    rec = tp / max(pos.sum(), 1)
    prec = tp / np.maximum(tp + fp, 1)
    keep = _thin(len(rec), max_points)
    return {"recall": _round(rec[keep]), "precision": _round(prec[keep])}


def _thin(n: int, max_points: int) -> np.ndarray:
    if n <= max_points:
        return np.arange(n)
    return np.unique(np.r_[np.linspace(0, n - 1, max_points).astype(int), n - 1])


def _round(a: np.ndarray) -> list[float]:
    return [round(float(v), 5) for v in a]
