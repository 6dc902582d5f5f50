"""Performance family: how well the model separates, ranks and calibrates on the eval set.

The positive class is the model's positive (favourable) label. Every value comes with a Poisson bootstrap
interval at the policy's confidence; all metrics of a run share the same replicates.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from audit import stats
from audit.checks import check
from audit.context import CheckContext
from audit.result import Measurement


def _measure(ctx: CheckContext, check_id: str, fn: Callable[[np.ndarray], np.ndarray],
             details: dict | None = None, needs: str = "",
             interval: Callable[[np.ndarray], tuple[float | None, float | None]] | None = None) -> Measurement:
    """`interval`: the interval from the (1 + R,) values, when the percentile interval does not hold."""
    values = fn(ctx.weights)
    point = float(values[0])
    low, high = (interval or (lambda v: stats.percentile_interval(v[1:], ctx.confidence)))(values)
    m = Measurement(check_id, None if np.isnan(point) else point, low, high, n=len(ctx.y_true),
                    details=details or {})
    n_pos = int(ctx.y_true.sum())
    n_neg = len(ctx.y_true) - n_pos
    if m.value is None:
        m.inconclusive = f"undefined on this data: {needs or 'not enough rows'} ({n_pos} positive, {n_neg} negative rows)"
    elif ctx.replicates and low is None:
        m.inconclusive = f"the interval is undefined on most resamples: {needs or 'too few rows'} ({n_pos} positive, {n_neg} negative rows)"
    return m


def _confusion(ctx: CheckContext, W: np.ndarray) -> dict[str, np.ndarray]:
    return stats.confusion(W, ctx.y_true, ctx.y_pred)


def confusion_details(ctx: CheckContext) -> dict:
    c = {k: int(v[0]) for k, v in _confusion(ctx, np.ones((1, len(ctx.y_true)))).items()}
    return {"confusion_matrix": {"threshold": ctx.threshold, "positive_label": ctx.positive_label,
                                 "negative_label": ctx.negative_label, **c}}


@check("performance.accuracy", title="Accuracy", direction="higher", unit="rate")
def accuracy(ctx: CheckContext) -> Measurement:
    """Share of eval rows whose predicted label is the true label, at the decision threshold.

    Accuracy hides errors on the smaller class when classes are unbalanced; read it with balanced accuracy."""
    return _measure(ctx, "performance.accuracy", lambda W: stats.accuracy(_confusion(ctx, W)),
                    confusion_details(ctx))


@check("performance.balanced_accuracy", title="Balanced accuracy", direction="higher", unit="rate")
def balanced_accuracy(ctx: CheckContext) -> Measurement:
    """Mean of the true-positive and true-negative rates at the decision threshold.

    0.5 is what a model that ignores its input would score, whatever the class balance."""
    return _measure(ctx, "performance.balanced_accuracy",
                    lambda W: stats.balanced_accuracy(_confusion(ctx, W)), needs="both classes are needed")


@check("performance.precision", title="Precision", direction="higher", unit="rate")
def precision(ctx: CheckContext) -> Measurement:
    """Of the rows predicted positive, the share that truly are positive.

    Low precision means many of the model's positive decisions are wrong."""
    return _measure(ctx, "performance.precision", lambda W: stats.precision(_confusion(ctx, W)),
                    needs="the model must predict some rows positive")


@check("performance.recall", title="Recall (true-positive rate)", direction="higher", unit="rate")
def recall(ctx: CheckContext) -> Measurement:
    """Of the truly positive rows, the share the model predicts positive.

    Low recall means the model misses many rows that deserve the positive decision."""
    return _measure(ctx, "performance.recall", lambda W: stats.tpr(_confusion(ctx, W)),
                    needs="positive rows are needed")


@check("performance.f1", title="F1 score", direction="higher", unit="rate")
def f1(ctx: CheckContext) -> Measurement:
    """Harmonic mean of precision and recall at the decision threshold.

    It is high only when the model is both right about its positives and finds most of them."""
    return _measure(ctx, "performance.f1", lambda W: stats.f1(_confusion(ctx, W)),
                    needs="positive rows or predictions are needed")


@check("performance.roc_auc", title="ROC-AUC", direction="higher")
def roc_auc(ctx: CheckContext) -> Measurement:
    """Probability that a random positive row scores above a random negative row (area under the ROC curve).

    0.5 is chance and 1.0 perfect ranking; it does not depend on the decision threshold."""
    return _measure(ctx, "performance.roc_auc", lambda W: stats.roc_auc(W, ctx.y_true, ctx.score),
                    {"curve": stats.roc_curve_points(ctx.y_true, ctx.score)},
                    needs="both classes are needed")


@check("performance.pr_auc", title="PR-AUC (average precision)", direction="higher")
def pr_auc(ctx: CheckContext) -> Measurement:
    """Average precision over all thresholds: the area under the precision-recall curve.

    Compare it with the positive rate of the data, which is what a random ranking scores."""
    m = _measure(ctx, "performance.pr_auc", lambda W: stats.average_precision(W, ctx.y_true, ctx.score),
                 {"curve": stats.pr_curve_points(ctx.y_true, ctx.score),
                  "positive_rate": float(ctx.y_true.mean()) if len(ctx.y_true) else None},
                 needs="positive rows are needed")
    return m


@check("performance.brier_score", title="Brier score", direction="lower")
def brier_score(ctx: CheckContext) -> Measurement:
    """Mean squared difference between the predicted probability and the true outcome (0 or 1).

    Lower is better; it rewards probabilities that are both sharp and honest."""
    return _measure(ctx, "performance.brier_score", lambda W: stats.brier(W, ctx.y_true, ctx.score))


@check("performance.ece", title="Expected calibration error", direction="lower", params={"bins": 10})
def ece(ctx: CheckContext, bins: int = 10) -> Measurement:
    """Average gap between predicted probability and observed frequency, over equal-width probability bins.

    A calibrated model that says 0.8 is right 80% of the time; a high value means its scores cannot be read
    as probabilities.

    The interval is not the percentile interval: the estimate is biased upwards (a calibrated model's true ECE
    is 0 and its estimate is always above it), so its interval comes from audit.stats.ece_interval, which holds
    its level also at 0 (tests/test_coverage.py)."""
    bins = int(bins)
    idx = stats.ece_bins(ctx.score, bins)
    table = []
    for b in range(bins):
        inside = idx == b
        count = int(inside.sum())
        table.append({"bin": b, "low": b / bins, "high": (b + 1) / bins, "count": count,
                      "mean_score": float(ctx.score[inside].mean()) if count else None,
                      "observed_rate": float(ctx.y_true[inside].mean()) if count else None})
    gaps = stats.ece_gaps(ctx.weights, ctx.y_true, ctx.score, bins)
    return _measure(ctx, "performance.ece", lambda W: np.abs(gaps).sum(axis=1),
                    {"bins": table, "interval": ECE_INTERVAL},
                    interval=lambda v: stats.ece_interval(gaps, ctx.confidence, n=len(ctx.y_true)))


ECE_INTERVAL = ("max-contrast interval: ECE is the largest of the sums of the bins' signed gaps over sign patterns, "
                "and the percentile interval of a statistic biased upwards misses a calibrated model's 0 "
                "(audit.stats.ece_interval)")
