"""Shared statistics: Poisson bootstrap weights and weighted binary-classification metrics, vectorized.

Every metric here takes a weight matrix `W` of shape (R, n) and returns R values, one per row of weights.
Row 0 of the matrices the checks build is all ones (the point estimate); the other rows are bootstrap
replicates. With integer weights, a weighted metric equals the plain metric on the rows repeated that many
times, which is how the tests compare each one with scikit-learn (`sample_weight`).

The bootstrap is Poisson(1): each row of the data enters each replicate k ~ Poisson(1) times, independently.
It approximates the classic multinomial bootstrap for n in the tens and up, resamples every subgroup
independently (so a per-group interval is a within-group resample), and its counts merge across
partitions, which keeps a streaming or distributed audit possible.
"""

from __future__ import annotations

import numpy as np


def poisson_weights(n: int, replicates: int, seed: int) -> np.ndarray:
    """(1 + replicates, n) float weights: a row of ones, then Poisson(1) replicates."""
    rng = np.random.default_rng(seed)
    w = np.empty((1 + replicates, n), dtype=np.float64)
    w[0] = 1.0
    if replicates:
        w[1:] = rng.poisson(1.0, size=(replicates, n))
    return w


def percentile_interval(replicates: np.ndarray, confidence: float) -> tuple[float | None, float | None]:
    """Percentile interval of the finite replicates; None when fewer than 90% are finite (the metric is
    undefined on too many resamples to trust an interval)."""
    finite = replicates[np.isfinite(replicates)]
    if len(replicates) == 0 or len(finite) < 0.9 * len(replicates):
        return None, None
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(finite, [alpha, 1.0 - alpha])
    return float(low), float(high)


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


def expected_calibration_error(W: np.ndarray, y: np.ndarray, score: np.ndarray, bins: int = 10) -> np.ndarray:
    """ECE = sum over equal-width bins of |sum(y) - sum(score)| / N, i.e. the share-weighted |accuracy - confidence|."""
    onehot = np.zeros((len(score), bins))
    onehot[np.arange(len(score)), ece_bins(score, bins)] = 1.0
    gap = W @ (onehot * (y - score)[:, None])
    return _div(np.abs(gap).sum(axis=1), W.sum(axis=1))


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
