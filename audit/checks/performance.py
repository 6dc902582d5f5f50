"""Performance family: how well the model separates, ranks and calibrates on the eval set.

The positive class is the model's positive (favourable) label. Every value comes with a Poisson bootstrap
interval at the policy's confidence; all metrics of a run share the same replicates.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from audit import classes, stats
from audit.checks import check
from audit.context import CheckContext
from audit.result import Measurement

# the class-wise checks of this family (audit/checks/classwise.py) have no statistics form
NEEDS_ROWS = "it reads every class's probability row by row, and the statistics carry only the favourable score"


def _measure(ctx: CheckContext, check_id: str, fn: Callable[[np.ndarray], np.ndarray],
             details: dict | None = None, needs: str = "",
             interval: Callable[[np.ndarray], tuple[float | None, float | None]] | None = None) -> Measurement:
    """`interval`: the interval from the (1 + R,) values, when the percentile interval does not hold."""
    n_pos = int(ctx.y_true.sum())
    return _wrap(check_id, fn(ctx.weights), len(ctx.y_true), n_pos, ctx.replicates, ctx.confidence,
                 details or {}, needs, interval)


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def _wrap(check_id: str, values: np.ndarray, n: int, n_pos: int, R: int, confidence: float, details: dict,
          needs: str = "", interval=None) -> Measurement:
    """The measurement of (1 + R,) values (row 0 the point, then the bootstrap replicates): the value, its
    interval, and why it is inconclusive when it is; the same for rows in memory and for statistics."""
    point = float(values[0])
    low, high = ((interval or (lambda v: stats.percentile_interval(v[1:], confidence)))(values) if R else (None, None))
    m = Measurement(check_id, _finite(point), low, high, n=n, details=details)
    n_neg = n - n_pos
    if m.value is None:
        m.inconclusive = f"undefined on this data: {needs or 'not enough rows'} ({n_pos} positive, {n_neg} negative rows)"
    elif R and low is None:
        m.inconclusive = (f"the interval is undefined on most resamples: {needs or 'too few rows'} ({n_pos} positive, "
                          f"{n_neg} negative rows)")
    return m


def _classes_measure(ctx: CheckContext, check_id: str, fn: Callable[[np.ndarray], np.ndarray],
                     needs: str = "") -> Measurement:
    """A measurement over the class confusion tables (audit.classes.class_confusion) of a model of more than
    two classes, with the confusion matrix of the eval rows in its details."""
    c = ctx.classes
    C = classes.class_confusion(ctx.weights, c.y, c.pred, c.k)
    counts = np.bincount(c.y, minlength=c.k)
    m = _wrap(check_id, fn(C), len(c.y), int(counts.min()), ctx.replicates, ctx.confidence,
              {"confusion_matrix": class_matrix_details(c, C[0])}, needs)
    if m.inconclusive:
        m.inconclusive = m.inconclusive.split(" (")[0] + " (rows per class: " + ", ".join(
            f"{label} {int(n)}" for label, n in zip(c.labels, counts)) + ")"
    return m


def class_matrix_details(c, C0: np.ndarray) -> dict:
    """The confusion matrix of every class, as result.json and the report show it: rows are true classes,
    columns decided classes, in the model's label order."""
    return {"labels": list(c.labels), "matrix": [[int(round(v)) for v in row] for row in C0],
            "favourable": c.favourable_labels, "decision": "the most probable class"}


def _confusion(ctx: CheckContext, W: np.ndarray) -> dict[str, np.ndarray]:
    return stats.confusion(W, ctx.y_true, ctx.y_pred)


def confusion_details(ctx: CheckContext) -> dict:
    c = {k: int(v[0]) for k, v in _confusion(ctx, np.ones((1, len(ctx.y_true)))).items()}
    return {"confusion_matrix": {"threshold": ctx.threshold, "positive_label": ctx.positive_label,
                                 "negative_label": ctx.negative_label, **c}}


def _from_stats(sctx, check_id: str, **params) -> Measurement:
    """The statistics form of every performance check: all of them come from one pass over the merged score
    histogram and calibration sums (performance_from_stats), cached on the context."""
    out = sctx.once("performance", lambda: performance_from_stats(
        sctx.stats, sctx.replicates, sctx.threshold, sctx.confidence, sctx.manifest.positive_label,
        sctx.manifest.negative_label, sctx.params.get("performance.ece", {}).get("bins", 10)))
    return out[check_id]


@check("performance.accuracy", classes="any", title="Accuracy", direction="higher", unit="rate",
       stats=_from_stats, stats_form="exact")
def accuracy(ctx: CheckContext) -> Measurement:
    """Share of eval rows whose predicted label is the true label (at the decision threshold; for a model of more
    classes, its most probable class).

    Accuracy hides errors on the smaller class when classes are unbalanced; read it with balanced accuracy."""
    if ctx.multiclass:
        return _classes_measure(ctx, "performance.accuracy", lambda C: classes.accuracy(C))
    return _measure(ctx, "performance.accuracy", lambda W: stats.accuracy(_confusion(ctx, W)),
                    confusion_details(ctx))


@check("performance.balanced_accuracy", classes="any", title="Balanced accuracy", direction="higher", unit="rate",
       stats=_from_stats, stats_form="exact")
def balanced_accuracy(ctx: CheckContext) -> Measurement:
    """Mean of the true-positive and true-negative rates at the decision threshold (for a model of more classes,
    the mean recall of the classes in the eval rows).

    0.5 (one over the number of classes) is what a model that ignores its input would score, whatever the class
    balance."""
    if ctx.multiclass:
        present = np.flatnonzero(np.bincount(ctx.classes.y, minlength=ctx.classes.k) > 0)
        return _classes_measure(ctx, "performance.balanced_accuracy",
                                lambda C: classes.balanced_accuracy(C, present), needs="rows of each class")
    return _measure(ctx, "performance.balanced_accuracy",
                    lambda W: stats.balanced_accuracy(_confusion(ctx, W)), needs="both classes are needed")


@check("performance.precision", classes="favourable", title="Precision", direction="higher", unit="rate",
       stats=_from_stats, stats_form="exact")
def precision(ctx: CheckContext) -> Measurement:
    """Of the rows predicted positive, the share that truly are positive.

    Low precision means many of the model's positive decisions are wrong."""
    return _measure(ctx, "performance.precision", lambda W: stats.precision(_confusion(ctx, W)),
                    needs="the model must predict some rows positive")


@check("performance.recall", classes="favourable", title="Recall (true-positive rate)", direction="higher", unit="rate",
       stats=_from_stats, stats_form="exact")
def recall(ctx: CheckContext) -> Measurement:
    """Of the truly positive rows, the share the model predicts positive.

    Low recall means the model misses many rows that deserve the positive decision."""
    return _measure(ctx, "performance.recall", lambda W: stats.tpr(_confusion(ctx, W)),
                    needs="positive rows are needed")


@check("performance.f1", classes="favourable", title="F1 score", direction="higher", unit="rate",
       stats=_from_stats, stats_form="exact")
def f1(ctx: CheckContext) -> Measurement:
    """Harmonic mean of precision and recall at the decision threshold.

    It is high only when the model is both right about its positives and finds most of them."""
    return _measure(ctx, "performance.f1", lambda W: stats.f1(_confusion(ctx, W)),
                    needs="positive rows or predictions are needed")


@check("performance.roc_auc", classes="favourable", title="ROC-AUC", direction="higher",
       stats=_from_stats, stats_form="binned")
def roc_auc(ctx: CheckContext) -> Measurement:
    """Probability that a random positive row scores above a random negative row (area under the ROC curve).

    0.5 is chance and 1.0 perfect ranking; it does not depend on the decision threshold."""
    return _measure(ctx, "performance.roc_auc", lambda W: stats.roc_auc(W, ctx.y_true, ctx.score),
                    {"curve": stats.roc_curve_points(ctx.y_true, ctx.score)},
                    needs="both classes are needed")


@check("performance.pr_auc", classes="favourable", title="PR-AUC (average precision)", direction="higher",
       stats=_from_stats, stats_form="binned")
def pr_auc(ctx: CheckContext) -> Measurement:
    """Average precision over all thresholds: the area under the precision-recall curve.

    Compare it with the positive rate of the data, which is what a random ranking scores."""
    m = _measure(ctx, "performance.pr_auc", lambda W: stats.average_precision(W, ctx.y_true, ctx.score),
                 {"curve": stats.pr_curve_points(ctx.y_true, ctx.score),
                  "positive_rate": float(ctx.y_true.mean()) if len(ctx.y_true) else None},
                 needs="positive rows are needed")
    return m


@check("performance.brier_score", classes="favourable", title="Brier score", direction="lower",
       stats=_from_stats, stats_form="exact")
def brier_score(ctx: CheckContext) -> Measurement:
    """Mean squared difference between the predicted probability and the true outcome (0 or 1).

    Lower is better; it rewards probabilities that are both sharp and honest."""
    return _measure(ctx, "performance.brier_score", lambda W: stats.brier(W, ctx.y_true, ctx.score))


@check("performance.ece", classes="favourable", title="Expected calibration error", direction="lower", params={"bins": 10},
       stats=_from_stats, stats_form="exact")
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


# ---------------------------------------------------------------- detection of one label (fraud, risk)
# A model's positive label is the favourable one (approval, "legitimate"); what a fraud or risk model exists to
# find is often the other one. These checks take `label`: "positive" (the manifest's positive label) or
# "negative" (the other label), and read the model's score of that label (1 - score for "negative").

LABEL_PARAM = {"label": "positive"}


def _validate_label(params: dict) -> None:
    if params.get("label") not in ("positive", "negative"):
        raise ValueError(f"label must be 'positive' or 'negative' (the manifest's positive label or the other "
                         f"one), got {params.get('label')!r}")


def _of_label(ctx: CheckContext, label: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, str, str]:
    """(y, score, decision) for detecting `label`, and the names of the detected and the other label."""
    y, s, d = np.asarray(ctx.y_true, int), np.asarray(ctx.score, float), np.asarray(ctx.y_pred, int)
    pos, neg = ctx.positive_label, ctx.negative_label
    if ctx.multiclass:  # the favourable view: the favourable classes against the others
        pos = ctx.classes.describe()
        neg = f"not {pos}"
    if label == "negative":
        return 1 - y, 1.0 - s, 1 - d, neg, pos
    return y, s, d, pos, neg


def tpr_at_fpr(W: np.ndarray, y: np.ndarray, score: np.ndarray, fpr: float) -> tuple[np.ndarray, np.ndarray]:
    """Per row of W: the largest true-positive rate among the score thresholds whose false-positive rate is at most
    `fpr` (a row is flagged when its score is at or above the threshold; tied scores are flagged together), and
    that threshold's index into the distinct scores sorted high to low (-1: flag nothing). NaN without positives
    or negatives."""
    pos, neg, _ = _by_unique(W, y, score)
    return _tpr_at_fpr_counts(pos, neg, fpr)


def _tpr_at_fpr_counts(pos: np.ndarray, neg: np.ndarray, fpr: float) -> tuple[np.ndarray, np.ndarray]:
    """tpr_at_fpr from (R, U) weights of the detected label's rows and the others' per distinct score, in the
    order rows are flagged (highest score first)."""
    tp, fp = np.cumsum(pos, axis=1), np.cumsum(neg, axis=1)
    P, N = tp[:, -1:], fp[:, -1:]
    with np.errstate(divide="ignore", invalid="ignore"):
        t, f = tp / P, fp / N
    ok = f <= fpr + 1e-12
    best = np.where(ok, t, -np.inf)
    k = np.argmax(best, axis=1)
    value = np.take_along_axis(best, k[:, None], axis=1)[:, 0]
    none = ~np.isfinite(value) | (value <= 0)  # no threshold qualifies, or none finds a positive: flag nothing
    value = np.where(none, 0.0, value)
    k = np.where(none, -1, k)
    undefined = (P[:, 0] <= 0) | (N[:, 0] <= 0)
    return np.where(undefined, np.nan, value), k


def _by_unique(W, y, score):
    from audit.stats import _by_unique_score

    return _by_unique_score(W, y, score, descending=True)


def _validate_fpr(params: dict) -> None:
    _validate_label(params)
    f = params.get("fpr")
    if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f < 1:
        raise ValueError(f"fpr must be a number between 0 and 1 (exclusive), got {f!r}")


def _label_bins(sctx, label: str) -> tuple[np.ndarray, np.ndarray, str, str]:
    """(R+1, bins) counts of the detected label's rows and the others' per score bin, in the order rows are flagged
    (the label's own score high to low: the positive score's bins from the top; for the negative label, whose score
    is 1 - score, from the bottom), and the two labels' names."""
    M = sctx.replicates.scores()
    m = sctx.manifest
    if label == "negative":
        return M[:, 0, :], M[:, 1, :], m.negative_label, m.positive_label
    return M[:, 1, ::-1], M[:, 0, ::-1], m.positive_label, m.negative_label


def _binned_note(sctx) -> dict:
    return {"score_bins": sctx.stats.scores.bins,
            "note": f"computed from rows per score bin of width 1/{sctx.stats.scores.bins}: rows in one bin count as "
                    "tied"}


def _recall_at_fpr_stats(sctx, check_id: str, fpr: float = 0.01, label: str = "positive") -> Measurement:
    pos, neg, name, other = _label_bins(sctx, label)
    values, k = _tpr_at_fpr_counts(pos, neg, float(fpr))
    n, n_pos = int(round(pos[0].sum() + neg[0].sum())), int(round(pos[0].sum()))
    details = {"label": name, "other_label": other, "fpr_target": float(fpr), "binned": _binned_note(sctx),
               "rows_of_label": n_pos, "rows_of_other": n - n_pos}
    # noised counts can leave a rate outside [0, 1]; a rate is reported inside it, as the other binned rates are
    return _wrap(check_id, np.clip(values, 0, 1), n, n_pos, values.shape[0] - 1, sctx.confidence, details,
                 needs=f"rows of both '{name}' and '{other}' are needed")


def _ap_counts(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """Average precision per row from weights per distinct score in flagging order (scikit-learn's definition)."""
    tp, fp = np.cumsum(pos, axis=1), np.cumsum(neg, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        prec = np.nan_to_num(np.where(tp + fp > 0, tp / (tp + fp), 0.0))
        total = tp[:, -1:]
        ap = (np.where(total > 0, pos / np.where(total > 0, total, 1), 0) * prec).sum(axis=1)
    return np.where(total[:, 0] > 0, ap, np.nan)


def _class_pr_auc_stats(sctx, check_id: str, label: str = "positive") -> Measurement:
    pos, neg, name, _ = _label_bins(sctx, label)
    n, n_pos = int(round(pos[0].sum() + neg[0].sum())), int(round(pos[0].sum()))
    details = {"label": name, "base_rate": n_pos / n if n else None, "binned": _binned_note(sctx)}
    return _wrap(check_id, np.clip(_ap_counts(pos, neg), 0, 1), n, n_pos, pos.shape[0] - 1, sctx.confidence, details,
                 needs=f"rows of '{name}' are needed")


def _cost_stats(sctx, check_id: str, miss_cost: float = 1.0, false_alarm_cost: float = 1.0, relative: bool = False,
                label: str = "positive") -> Measurement:
    from audit.mergeable import threshold_index

    h = sctx.stats.scores
    k = threshold_index(sctx.threshold, h.bins)
    if k is None:
        return Measurement(check_id, None, inconclusive=(
            f"the decision threshold {sctx.threshold} is not on the statistics' score grid (multiples of 1/{h.bins})"))
    c = {key: np.clip(v, 0, None) for key, v in h.confusion(k, sctx.replicates.scores()).items()}
    m = sctx.manifest
    # detecting the positive label: a miss is a false negative; detecting the negative label, a false positive
    miss, alarm = (c["fn"], c["fp"]) if label == "positive" else (c["fp"], c["fn"])
    of_label, others = (c["tp"] + c["fn"], c["tn"] + c["fp"]) if label == "positive" else (c["tn"] + c["fp"],
                                                                                          c["tp"] + c["fn"])
    return _cost_measurement(check_id, miss, alarm, of_label, others, float(miss_cost), float(false_alarm_cost),
                             bool(relative), sctx.threshold, m.positive_label if label == "positive" else m.negative_label,
                             m.negative_label if label == "positive" else m.positive_label, sctx.confidence)


@check("performance.recall_at_fpr", classes="favourable", title="Recall at a fixed false-positive rate", direction="higher", unit="rate",
       params={"fpr": 0.01, **LABEL_PARAM}, validate=_validate_fpr, stats=_recall_at_fpr_stats, stats_form="binned")
def recall_at_fpr(ctx: CheckContext, fpr: float = 0.01, label: str = "positive") -> Measurement:
    """Share of the rows of `label` the model finds when its threshold is set so that at most `fpr` of the other
    rows are flagged: the true-positive rate at a fixed false-positive rate, read off the ROC curve.

    A fraud model is run at the alert rate its reviewers can handle: this says how much fraud it catches there,
    whatever the decision threshold in the policy. The threshold is chosen on the eval set itself (the best point
    of the curve at or under the rate), so the value is slightly optimistic for new data; with few rows of the
    other label the rate cannot be hit finely (1/their count is its step). `label: negative` detects the label
    that is not the manifest's positive label (for a fraud model whose favourable label is 'legitimate': fraud).
    The interval re-chooses the threshold on every bootstrap replicate, as the statistic does."""
    y, s, _, name, other = _of_label(ctx, label)
    values, k = tpr_at_fpr(ctx.weights, y, s, float(fpr))
    distinct = np.unique(s)[::-1]
    at = int(k[0])
    threshold = float(distinct[at]) if at >= 0 else None
    flagged = int((s >= threshold).sum()) if threshold is not None else 0
    details = {"label": name, "other_label": other, "fpr_target": float(fpr),
               "threshold": threshold, "threshold_on": f"score of '{name}'", "rows_flagged": flagged,
               "false_positive_rate": (float(((s >= threshold) & (y == 0)).sum() / max((y == 0).sum(), 1))
                                       if threshold is not None else 0.0),
               "rows_of_label": int(y.sum()), "rows_of_other": int((y == 0).sum()),
               "fpr_step": 1.0 / max(int((y == 0).sum()), 1)}
    return _wrap("performance.recall_at_fpr", values, len(y), int(y.sum()), ctx.replicates, ctx.confidence, details,
                 needs=f"rows of both '{name}' and '{other}' are needed")


@check("performance.class_pr_auc", classes="favourable", title="PR-AUC of one label", direction="higher", params=dict(LABEL_PARAM),
       validate=_validate_label, stats=_class_pr_auc_stats, stats_form="binned")
def class_pr_auc(ctx: CheckContext, label: str = "positive") -> Measurement:
    """Average precision of detecting `label` (scikit-learn's average_precision_score of the model's score of
    that label): the area under its precision-recall curve.

    For a rare label (fraud) it says more than ROC-AUC: it falls when the rows the model ranks highest are
    mostly false alarms. Compare it with the label's share of the rows, which is what a random ranking scores.
    `label: positive` is performance.pr_auc; `label: negative` reads the other label."""
    y, s, _, name, other = _of_label(ctx, label)
    details = {"label": name, "curve": stats.pr_curve_points(y, s),
               "base_rate": float(y.mean()) if len(y) else None}
    return _wrap("performance.class_pr_auc", stats.average_precision(ctx.weights, y, s), len(y), int(y.sum()),
                 ctx.replicates, ctx.confidence, details, needs=f"rows of '{name}' are needed")


def _validate_costs(params: dict) -> None:
    _validate_label(params)
    for key in ("miss_cost", "false_alarm_cost"):
        v = params.get(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0 or v == float("inf"):
            raise ValueError(f"{key} must be a finite number >= 0, got {v!r}")
    if not params["miss_cost"] + params["false_alarm_cost"] > 0:
        raise ValueError("miss_cost and false_alarm_cost cannot both be 0")
    if not isinstance(params.get("relative"), bool):
        raise ValueError(f"relative must be true or false, got {params.get('relative')!r}")


@check("performance.cost_weighted_error", classes="favourable", title="Cost-weighted error", direction="lower",
       params={"miss_cost": 1.0, "false_alarm_cost": 1.0, "relative": False, **LABEL_PARAM},
       validate=_validate_costs, stats=_cost_stats, stats_form="binned")
def cost_weighted_error(ctx: CheckContext, miss_cost: float = 1.0, false_alarm_cost: float = 1.0,
                        relative: bool = False, label: str = "positive") -> Measurement:
    """Mean cost per row of the model's decisions at the decision threshold: (miss_cost × rows of `label` not
    flagged + false_alarm_cost × other rows flagged) / rows.

    With equal costs of 1 it is the error rate. A missed fraud usually costs far more than a false alarm, and the
    costs say by how much; the unit is whatever the costs are in. `relative: true` divides by the cost of the
    cheaper trivial rule (flag every row, or none): below 1 the model is cheaper than either, 1 or more means it
    is worth less than no model. `label: negative` detects the label that is not the manifest's positive one."""
    y, _, d, name, other = _of_label(ctx, label)
    W = ctx.weights
    miss = W @ ((y == 1) & (d == 0)).astype(float)
    alarm = W @ ((y == 0) & (d == 1)).astype(float)
    return _cost_measurement("performance.cost_weighted_error", miss, alarm, W @ (y == 1).astype(float),
                             W @ (y == 0).astype(float), float(miss_cost), float(false_alarm_cost), bool(relative),
                             ctx.threshold, name, other, ctx.confidence)


def _cost_measurement(check_id: str, miss, alarm, of_label, others, miss_cost: float, false_alarm_cost: float,
                      relative: bool, threshold: float, name: str, other: str, confidence: float) -> Measurement:
    """The cost-weighted error from (R+1,) weighted counts: misses, false alarms, rows of the label, other rows."""
    rows = of_label + others
    with np.errstate(divide="ignore", invalid="ignore"):
        cost = (miss_cost * miss + false_alarm_cost * alarm) / rows
        trivial = np.minimum(miss_cost * of_label, false_alarm_cost * others) / rows
        values = cost / trivial if relative else cost
    values = np.where(np.isfinite(values), values, np.nan)
    details = {"label": name, "other_label": other, "miss_cost": miss_cost, "false_alarm_cost": false_alarm_cost,
               "relative": relative, "threshold": threshold, "misses": int(round(miss[0])),
               "false_alarms": int(round(alarm[0])), "rows": int(round(rows[0])),
               "cost_per_row": _finite(cost[0]), "trivial_cost_per_row": _finite(trivial[0]),
               "trivial_rule": "flag none" if miss_cost * of_label[0] <= false_alarm_cost * others[0] else "flag every row"}
    return _wrap(check_id, values, int(round(rows[0])), int(round(of_label[0])), len(values) - 1, confidence, details,
                 needs="the cheaper trivial rule costs nothing on this data (one label only)" if relative
                 else "rows are needed")


ECE_INTERVAL = ("max-contrast interval: ECE is the largest of the sums of the bins' signed gaps over sign patterns, "
                "and the percentile interval of a statistic biased upwards misses a calibrated model's 0 "
                "(audit.stats.ece_interval)")


# ---------------------------------------------------------------- the same checks from mergeable statistics


def _curves(S: np.ndarray) -> dict[str, dict[str, list[float]]]:
    """ROC and PR points from (2, bins) counts, thresholds from high to low."""
    pos, neg = np.clip(S[1, ::-1], 0, None), np.clip(S[0, ::-1], 0, None)
    tp, fp = np.cumsum(pos), np.cumsum(neg)
    P, N = max(tp[-1], 1e-300), max(fp[-1], 1e-300)
    live = (pos + neg) > 0
    tpr, fpr = np.r_[0.0, (tp / P)[live]], np.r_[0.0, (fp / N)[live]]
    rec, prec = (tp / P)[live], (tp / np.maximum(tp + fp, 1e-300))[live]

    def thin(a):
        from audit.stats import _round, _thin

        return _round(a[_thin(len(a), 200)])

    return {"roc": {"fpr": thin(fpr), "tpr": thin(tpr)}, "pr": {"recall": thin(rec), "precision": thin(prec)}}


def performance_from_stats(stats, reps, threshold: float, confidence: float, pos_label: str,
                           neg_label: str, ece_bins: int = 10) -> dict[str, Measurement]:
    """Every performance measurement from `stats` (audit.mergeable.AuditStats) and its replicates `reps`
    (audit.replicates.Replicates): confusion counts at the threshold on the score grid, the binned ROC and PR
    curves, and the calibration sums, through the same rate functions (audit.stats) and wrapper as in memory."""
    from audit import stats as st
    from audit.mergeable import binned_auc, threshold_index

    h = stats.scores
    M = reps.scores()
    S = h.counts.point
    n = int(round(S.sum()))
    n_pos = int(round(S[1].sum()))
    R = M.shape[0] - 1
    out: dict[str, Measurement] = {}
    k = threshold_index(threshold, h.bins)
    if k is None:
        why = (f"the decision threshold {threshold} is not on the statistics' score grid (multiples of "
               f"1/{h.bins}); recompute the statistics or use a threshold on the grid")
        for cid in ("accuracy", "balanced_accuracy", "precision", "recall", "f1"):
            out[f"performance.{cid}"] = Measurement(f"performance.{cid}", None, n=n, inconclusive=why)
    else:
        c = {key: np.clip(v, 0, None) for key, v in h.confusion(k, M).items()}  # noised sums can dip below 0
        cm = {key: int(round(v[0])) for key, v in c.items()}
        details = {"confusion_matrix": {"threshold": threshold, "positive_label": pos_label,
                                        "negative_label": neg_label, **cm}}
        for cid, fn, needs, det in (
                ("accuracy", st.accuracy, "", details),
                ("balanced_accuracy", st.balanced_accuracy, "both classes are needed", {}),
                ("precision", st.precision, "the model must predict some rows positive", {}),
                ("recall", st.tpr, "positive rows are needed", {}),
                ("f1", st.f1, "positive rows or predictions are needed", {})):
            out[f"performance.{cid}"] = _wrap(f"performance.{cid}", fn(c), n, n_pos, R, confidence, dict(det), needs)
    curves = _curves(S)
    bound = h.auc_error_bound()
    auc = _wrap("performance.roc_auc", np.clip(binned_auc(M[:, 1], M[:, 0]), 0, 1), n, n_pos,
                R, confidence, {"curve": curves["roc"], "binned": {
                    "score_bins": h.bins, "max_abs_error": _finite(bound),
                    "note": (f"computed from rows per score bin of width 1/{h.bins}: a positive and a negative in "
                             "one bin count as a tie, which moves the AUC by at most the bound shown")}},
                "both classes are needed")
    out["performance.roc_auc"] = auc
    out["performance.pr_auc"] = _wrap("performance.pr_auc", np.clip(h.average_precision(M), 0, 1), n, n_pos, R,
                                      confidence, {"curve": curves["pr"], "positive_rate": n_pos / n if n else None,
                                                   "binned": {"score_bins": h.bins}}, "positive rows are needed")
    cal = stats.calibration
    C = reps.calibration()
    out["performance.brier_score"] = _wrap("performance.brier_score", cal.brier(C), n, n_pos, R, confidence, {})
    if int(ece_bins) != cal.bins:
        out["performance.ece"] = Measurement("performance.ece", None, n=n, inconclusive=(
            f"the policy asks for {ece_bins} calibration bins; the statistics were computed with {cal.bins}"))
    else:
        gaps = cal.gaps(C)
        out["performance.ece"] = _wrap("performance.ece", np.abs(gaps).sum(axis=1), n, n_pos, R, confidence,
                                       {"bins": cal.table(), "interval": ECE_INTERVAL},
                                       interval=lambda v: st.ece_interval(gaps, confidence, n=n))
    return out


