"""Performance over every class of the model: F1 per class and averaged, one-vs-rest ranking and calibration,
top-k accuracy (checks of the performance family).

A model of three or more classes decides its most probable class; a binary model decides at the policy's
threshold (audit.classes.Classes.predict). These checks read every class (`classes="any"`), so they measure a
binary model too, as two classes, and there each equals scikit-learn's function of the same name.

Definitions (each is scikit-learn's, with the run's bootstrap weights as `sample_weight`):

    per-class precision, recall, F1   precision_recall_fscore_support(y, decided, labels=every class,
                                      zero_division=nan): undefined (None) where the denominator is 0
    macro F1                          f1_score(average="macro"): the plain mean of the F1 of the classes that
                                      occur in the eval rows' labels or decisions (a class decided but never true
                                      counts 0, a class neither true nor decided is left out); a class of that
                                      set that a bootstrap replicate loses entirely counts 0 in it, as
                                      scikit-learn counts it with that replicate's weights
    weighted F1                       f1_score(average="weighted"): the F1 of each class weighted by its rows
    one-vs-rest ROC-AUC / PR-AUC      roc_auc_score / average_precision_score of (label == c) against the
                                      probability of c; the macro value is the mean over the classes with eval
                                      rows (for classes all present, roc_auc_score(multi_class="ovr",
                                      average="macro") and average_precision_score(average="macro"))
    top-k accuracy                    top_k_accuracy_score: the true class is among the k most probable (ties
                                      ordered as scikit-learn orders them: the later class first)
    calibration                       see classwise_ece

Intervals: every number, also each class's, has the percentile interval over the run's shared Poisson bootstrap
replicates (`ctx.weights`, row 0 the point), computed for all replicates at once (matrix products, cumulative
sums over rows sorted once per class); the ECEs have the max-contrast interval of performance.ece.

No silent passes: with rows of only one class the checks are INCONCLUSIVE (a measure over classes needs two);
a macro value over fewer classes than the model has is `incomplete` (a violation it shows stands, a pass is
INCONCLUSIVE), and the class it leaves out is named.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from audit import classes as cls
from audit import stats
from audit.checks import check
from audit.checks.performance import ECE_INTERVAL, _wrap, class_matrix_details
from audit.context import CheckContext
from audit.result import Measurement, Part

# ---------------------------------------------------------------- the classes of a run


def run_classes(ctx: CheckContext) -> cls.Classes:
    """The run's classes (ctx.classes); a context built without them (a binary model's, in older callers and
    tests) is its two labels in the manifest's order, the positive label's probability its score."""
    if ctx.classes is not None:
        return ctx.classes
    labels = [ctx.negative_label, ctx.positive_label]
    m = ctx.manifest
    if m is not None and set(getattr(m, "labels", ())) == set(labels) and len(m.labels) == 2:
        labels = list(m.labels)
    pos = labels.index(ctx.positive_label)
    score = np.asarray(ctx.score, dtype=float)
    probs = np.empty((len(score), 2))
    probs[:, pos], probs[:, 1 - pos] = score, 1.0 - score
    y = np.where(np.asarray(ctx.y_true).astype(bool), pos, 1 - pos)
    return cls.Classes(labels, y, probs, (pos,), ctx.threshold)


def _counts(c: cls.Classes) -> np.ndarray:
    return np.bincount(np.asarray(c.y, dtype=np.int64), minlength=c.k)


def _rows_per_class(c: cls.Classes) -> str:
    return "rows per class: " + ", ".join(f"{label} {int(n)}" for label, n in zip(c.labels, _counts(c)))


def _one_class(c: cls.Classes) -> str | None:
    """Why a measure over classes cannot be judged on these rows: fewer than two classes among their labels."""
    present = [c.labels[i] for i in np.flatnonzero(_counts(c) > 0)]
    if len(present) >= 2:
        return None
    held = f"only {present[0]!r}" if present else "no labelled rows"
    return f"rows of at least two classes are needed, and the eval rows hold {held} ({_rows_per_class(c)})"


def _finite(x) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


def _ci(values: np.ndarray, R: int, confidence: float) -> list[float | None]:
    """[low, high]: the percentile interval of one number's replicates (values[1:]); [None, None] without them."""
    return list(stats.percentile_interval(values[1:], confidence)) if R else [None, None]


def _measurement(ctx: CheckContext, c: cls.Classes, check_id: str, values: np.ndarray, details: dict,
                 needs: str = "", interval=None) -> Measurement:
    """performance._wrap over (1 + R,) values, its reason naming the rows per class, and INCONCLUSIVE (the value
    still shown) on rows of one class."""
    counts = _counts(c)
    m = _wrap(check_id, values, len(c.y), int(counts.min()), ctx.replicates, ctx.confidence, details, needs,
              interval)
    if m.inconclusive:
        m.inconclusive = m.inconclusive.split(" (")[0] + f" ({_rows_per_class(c)})"
    one = _one_class(c)
    if one:
        m.inconclusive = one
    return m


def _note_left_out(m: Measurement, left_out: list[dict], what: str) -> None:
    """A macro value that leaves classes out is incomplete: a violation stands, a pass is INCONCLUSIVE."""
    if left_out and not m.inconclusive:
        names = ", ".join(repr(x["label"]) for x in left_out)
        m.incomplete = f"the {what} leaves out {names}: no eval rows of {'that class' if len(left_out) == 1 else 'those classes'}"


# ---------------------------------------------------------------- F1 from the class confusion tables


def _prf(C: np.ndarray) -> dict[str, np.ndarray]:
    """(1 + R, k) per-class counts and rates of class confusion tables C (1 + R, k, k): rows true, columns
    decided. NaN where a rate's denominator is 0 (scikit-learn's zero_division=nan)."""
    tp = np.diagonal(C, axis1=1, axis2=2)
    support, decided = C.sum(axis=2), C.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return {"tp": tp, "support": support, "decided": decided,
                "precision": np.where(decided > 0, tp / np.where(decided > 0, decided, 1), np.nan),
                "recall": np.where(support > 0, tp / np.where(support > 0, support, 1), np.nan),
                "f1": np.where(support + decided > 0, 2 * tp / np.where(support + decided > 0, support + decided, 1),
                               np.nan)}


def _tables(ctx: CheckContext) -> tuple[cls.Classes, np.ndarray, dict[str, np.ndarray]]:
    c = run_classes(ctx)
    C = cls.class_confusion(ctx.weights, c.y, c.pred, c.k)
    return c, C, _prf(C)


def _class_rows(c: cls.Classes, t: dict[str, np.ndarray], R: int, confidence: float) -> list[dict]:
    """The per-class table of result.json: rows, decisions, and precision, recall, F1 each with its interval."""
    out = []
    for i, label in enumerate(c.labels):
        row = {"label": label, "support": int(round(t["support"][0, i])), "decided": int(round(t["decided"][0, i])),
               "correct": int(round(t["tp"][0, i]))}
        for key in ("precision", "recall", "f1"):
            row[key] = _finite(t[key][0, i])
            row[f"{key}_ci"] = _ci(t[key][:, i], R, confidence) if row[key] is not None else [None, None]
        out.append(row)
    return out


def _f1_details(c: cls.Classes, C: np.ndarray, t: dict, R: int, confidence: float, **extra) -> dict:
    return {**extra, "classes": _class_rows(c, t, R, confidence), "confusion_matrix": class_matrix_details(c, C[0]),
            "decision": "the most probable class" if c.k > 2 else f"the threshold {c.threshold:g} on the "
                        f"probability of {c.labels[c.favourable[0]]!r}"}


def _macro_f1_values(t: dict) -> tuple[np.ndarray, np.ndarray]:
    """(1 + R,) macro F1 over the classes true or decided in the eval rows (row 0 of the tables), and that set."""
    occurs = (t["support"][0] + t["decided"][0]) > 0
    if not occurs.any():
        return np.full(t["f1"].shape[0], np.nan), occurs
    return np.nan_to_num(t["f1"][:, occurs], nan=0.0).mean(axis=1), occurs


@check("performance.macro_f1", classes="any", title="Macro F1", direction="higher", unit="rate")
def macro_f1(ctx: CheckContext) -> Measurement:
    """Mean F1 over the classes, each class counting alike whatever its size (scikit-learn's f1_score with
    average="macro").

    A class the model handles badly pulls it down even when the class is small, which accuracy and weighted F1
    hide. A class that the eval rows never hold and the model never decides is left out (and named); one the
    model decides but the rows never hold counts 0. Details hold every class's precision, recall and F1 with
    their intervals, and the confusion matrix."""
    c, C, t = _tables(ctx)
    values, occurs = _macro_f1_values(t)
    left = [{"label": c.labels[i], "why": "no eval rows of this class, and the model never decides it"}
            for i in np.flatnonzero(~occurs)]
    details = _f1_details(c, C, t, ctx.replicates, ctx.confidence,
                          average=f"mean F1 over the {int(occurs.sum())} classes that occur in the eval rows' labels "
                                  "or decisions", left_out=left)
    m = _measurement(ctx, c, "performance.macro_f1", values, details, needs="labelled rows are needed")
    unseen = np.flatnonzero(t["support"][0] == 0)
    if len(unseen) and not m.inconclusive:  # a class without eval rows: the mean says nothing of it
        said = [f"{c.labels[i]!r} (decided {int(round(t['decided'][0, i]))} times, never rightly: it counts 0)"
                if occurs[i] else f"{c.labels[i]!r} (left out)" for i in unseen]
        m.incomplete = f"no eval rows of {', '.join(said)}"
    return m


@check("performance.weighted_f1", classes="any", title="Weighted F1", direction="higher", unit="rate")
def weighted_f1(ctx: CheckContext) -> Measurement:
    """Mean F1 over the classes weighted by each class's rows (scikit-learn's f1_score with average="weighted").

    It follows the large classes, as accuracy does; read it beside macro F1, which counts every class alike."""
    c, C, t = _tables(ctx)
    f1 = np.nan_to_num(t["f1"], nan=0.0)
    total = t["support"].sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        values = np.where(total > 0, (f1 * t["support"]).sum(axis=1) / np.where(total > 0, total, 1), np.nan)
    details = _f1_details(c, C, t, ctx.replicates, ctx.confidence, average="F1 of each class weighted by its rows")
    return _measurement(ctx, c, "performance.weighted_f1", values, details, needs="labelled rows are needed")


@check("performance.class_f1", classes="any", title="F1 of each class", direction="higher", unit="rate",
       params={"label": ""}, evidence="rows of the class")
def class_f1(ctx: CheckContext, label: str = "") -> Measurement:
    """F1 of each class on its own (scikit-learn's precision_recall_fscore_support), every class judged: the rule
    holds only when it holds for each class. `label` names one class to judge alone.

    Each class is one part of the finding, with its F1, interval and rows; the value shown is the worst class's.
    A class without eval rows cannot be judged (its recall is undefined): its part is INCONCLUSIVE. Details hold
    each class's precision, recall and F1 with their intervals, and the confusion matrix."""
    c, C, t = _tables(ctx)
    R, conf = ctx.replicates, ctx.confidence
    details = _f1_details(c, C, t, R, conf, label=label or None)
    n = len(c.y)
    if label:
        if label not in c.labels:
            return Measurement("performance.class_f1", None, n=n, details=details, error=(
                f"label: {label!r} is not a label of the model (its labels: {', '.join(map(repr, c.labels))})"))
        i = c.labels.index(label)
        m = _measurement(ctx, c, "performance.class_f1", t["f1"][:, i], details,
                         needs=f"rows of {label!r} or decisions of it are needed")
        m.n = int(round(t["support"][0, i]))
        if t["support"][0, i] == 0 and not m.inconclusive:
            m.inconclusive = f"no eval rows of {label!r}: its recall, and so its F1, says nothing of the class"
        return m
    one = _one_class(c)
    parts = []
    for i, name in enumerate(c.labels):
        row = details["classes"][i]
        p = Part(name, kind="class", value=row["f1"], ci_low=row["f1_ci"][0], ci_high=row["f1_ci"][1],
                 n=row["support"])
        if row["support"] == 0:
            p.inconclusive = f"no eval rows of {name!r}" + (f" ({row['decided']} rows decided as it)"
                                                           if row["decided"] else "")
        elif R and row["f1_ci"][0] is None:
            p.inconclusive = f"the interval is undefined on most resamples ({row['support']} rows of {name!r})"
        parts.append(p)
    m = Measurement("performance.class_f1", None, n=n, details=details, parts=parts, inconclusive=one)
    judged = [p for p in parts if p.value is not None and not p.inconclusive] or [p for p in parts if p.value is not None]
    if judged:
        worst = min(judged, key=lambda p: p.value)
        m.value, m.ci_low, m.ci_high = worst.value, worst.ci_low, worst.ci_high
        details["worst_class"] = worst.name
    return m


# ---------------------------------------------------------------- one-vs-rest ranking


def auc_and_ap(W: np.ndarray, hit: np.ndarray, score: np.ndarray, WT: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """Per row of W (1 + R, n): ROC-AUC (ties count one half; scikit-learn's roc_auc_score) and average precision
    (average_precision_score: the sum over distinct thresholds, high to low, of the recall gained times the
    precision there) of `score` for the rows with `hit`. NaN without such rows (AUC also without the others).
    `WT`: W.T as a contiguous (n, 1 + R) array, when the caller holds one for several classes.

    Only the hit rows' sums are needed: for each hit row, the other rows' weight scored below it (and at or below
    it: ties count half) and the hit rows' weight below it. Each row joins those sums from the first hit row
    scored above it (or at or above), so one sparse product adds every row's weights into its segment, and a
    cumulative sum over the hit rows turns the segments into the sums: O(n R) for the product and O(hits R) for
    the rest, one sort per class (no np.add.reduceat, which is slow on many segments)."""
    from scipy.sparse import csr_matrix

    WT = np.ascontiguousarray(W.T) if WT is None else WT
    n, R1 = WT.shape
    order = np.argsort(score, kind="mergesort")
    s = score[order]
    h = np.asarray(hit, dtype=bool)[order]
    group = np.cumsum(np.r_[True, s[1:] != s[:-1]])[:n] - 1  # each sorted row's distinct score, ascending
    pos_at = np.flatnonzero(h)
    m = len(pos_at)
    if m == 0:
        return np.full(R1, np.nan), np.full(R1, np.nan)
    g = group[pos_at]
    above = np.searchsorted(g, group, side="right")  # the first hit row scored above each row
    at = np.searchsorted(g, group, side="left")  # ... scored at or above it
    neg = ~h
    block = m + 1  # segment m: the row joins no hit row's sum
    seg_rows = np.r_[above[neg], block + at[neg], 2 * block + above[h]]
    seg_cols = np.r_[order[neg], order[neg], order[h]]
    S = csr_matrix((np.ones(len(seg_rows)), (seg_rows, seg_cols)), shape=(3 * block, n)) @ WT  # (3(m+1), R1)
    below_n = np.cumsum(S[:m], axis=0)  # other rows' weight scored below each hit row
    upto_n = np.cumsum(S[block:block + m], axis=0)  # ... scored below it or tied with it
    below_p = np.cumsum(S[2 * block:2 * block + m], axis=0)  # hit rows' weight scored below it
    Wp = WT[order[pos_at]]  # (m, R1)
    P = Wp.sum(axis=0)
    N = WT.sum(axis=0) - P
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = (Wp * (below_n + upto_n)).sum(axis=0) / (2 * P * N)
        tp, fp = P - below_p, N - below_n  # flagged at a threshold of each hit row's score
        ap = (Wp * np.where(tp + fp > 0, tp / np.where(tp + fp > 0, tp + fp, 1), 0.0)).sum(axis=0) / P
    return np.where((P > 0) & (N > 0), auc, np.nan), np.where(P > 0, ap, np.nan)


# The last context's one-vs-rest (AUC, AP) replicates per class: macro_roc_auc and macro_pr_auc read one sort per
# class, not two. One slot, holding the context weakly (a context's `shared` slots belong to other families).
_LAST_OVR: list = [None, None, None]  # [weakref to the context, key, {class index: (auc, ap)}]


def _ovr_values(ctx: CheckContext, c: cls.Classes, i: int, WT: list) -> tuple[np.ndarray, np.ndarray]:
    """Class i's (AUC, AP) replicates; `WT` a one-item list that holds the transposed weights once computed (by
    the caller, for its classes: the cache keeps only the results)."""
    import weakref

    W = ctx.weights
    key = (id(W), W.shape, id(c), id(c.probs))
    ref, held, values = _LAST_OVR
    if ref is None or ref() is not ctx or held != key:
        values = {}
        _LAST_OVR[:] = [weakref.ref(ctx), key, values]
    if i not in values:
        if not WT:
            WT.append(np.ascontiguousarray(W.T))
        values[i] = auc_and_ap(W, np.asarray(c.y) == i, c.probs[:, i].astype(float), WT[0])
    return values[i]


def _ovr(ctx: CheckContext, check_id: str, which: int, name: str) -> Measurement:
    """The macro of one-vs-rest ROC-AUC (which=0) or average precision (which=1) over the classes with eval rows,
    with each class's value and interval in the details."""
    c = run_classes(ctx)
    R, conf = ctx.replicates, ctx.confidence
    counts = _counts(c)
    y = np.asarray(c.y, dtype=np.int64)
    per, rows, left, WT = [], [], [], []
    for i, label in enumerate(c.labels):
        row = {"label": label, "support": int(counts[i]), "base_rate": float(counts[i] / len(y)) if len(y) else None}
        if counts[i] == 0 or counts[i] == len(y):
            row.update({name: None, f"{name}_ci": [None, None]})
            left.append({"label": label, "why": "no eval rows of this class" if counts[i] == 0
                         else "every eval row is of this class"})
        else:
            v = _ovr_values(ctx, c, i, WT)[which]
            per.append(v)
            row.update({name: _finite(v[0]), f"{name}_ci": _ci(v, R, conf)})
        rows.append(row)
    values = np.mean(per, axis=0) if per else np.full(1 + R, np.nan)
    details = {"classes": rows, "left_out": left, "scores": "each class's probability against the rest (one-vs-rest)",
               "average": f"mean over the {len(per)} classes with eval rows"}
    m = _measurement(ctx, c, check_id, values, details, needs="rows of two classes are needed")
    _note_left_out(m, [x for x in left if x["why"].startswith("no eval rows")], "macro average")
    return m


@check("performance.macro_roc_auc", classes="any", title="One-vs-rest ROC-AUC (macro)", direction="higher")
def macro_roc_auc(ctx: CheckContext) -> Measurement:
    """Mean over the classes of each class's ROC-AUC against the rest, from that class's probability
    (scikit-learn's roc_auc_score with multi_class="ovr", average="macro").

    0.5 is chance for every class and 1.0 a model that ranks each class's rows above all others; a class with a
    low value is one the model cannot tell from the rest, which the mean can hide: details list each class's
    ROC-AUC with its interval. For a binary model both classes' values equal performance.roc_auc."""
    return _ovr(ctx, "performance.macro_roc_auc", 0, "roc_auc")


@check("performance.macro_pr_auc", classes="any", title="One-vs-rest PR-AUC (macro average precision)",
       direction="higher")
def macro_pr_auc(ctx: CheckContext) -> Measurement:
    """Mean over the classes of each class's average precision against the rest, from that class's probability
    (scikit-learn's average_precision_score per class, then the mean).

    A random ranking scores each class's share of the rows (details: base_rate), so a rare class's value is
    low even for a useful model: compare each class's value with its base rate."""
    return _ovr(ctx, "performance.macro_pr_auc", 1, "average_precision")


# ---------------------------------------------------------------- top-k accuracy


def top_k_hits(y: np.ndarray, probs: np.ndarray, k: int) -> np.ndarray:
    """1 where the true class is among the k most probable classes of the row, ranked as scikit-learn's
    top_k_accuracy_score ranks them (a stable ascending sort, reversed: of tied classes the later comes first)."""
    top = np.argsort(probs, axis=1, kind="mergesort")[:, ::-1][:, :k]
    return (top == np.asarray(y)[:, None]).any(axis=1).astype(float)


def _validate_k(params: dict) -> None:
    k = params.get("k")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a whole number of at least 1, got {k!r}")


@check("performance.top_k_accuracy", classes="any", title="Top-k accuracy", direction="higher", unit="rate",
       params={"k": 2}, validate=_validate_k)
def top_k_accuracy(ctx: CheckContext, k: int = 2) -> Measurement:
    """Share of eval rows whose true class is among the model's k most probable classes (scikit-learn's
    top_k_accuracy_score).

    It says how often a reviewer shown the model's k best guesses would find the right one; k=1 is accuracy
    of the most probable class. With k at or above the number of classes every row is a hit (1.0, as
    scikit-learn), and the check does not apply: a rule on it is SKIPPED."""
    c = run_classes(ctx)
    k = int(k)
    if k >= c.k:  # scikit-learn's 1.0 (it warns that the score is meaningless); the judge skips the rule
        return Measurement("performance.top_k_accuracy", 1.0, 1.0, 1.0, n=len(c.y), details={"k": k, "classes": c.k},
                           skipped=f"k={k} covers all {c.k} classes of the model: every row is a hit")
    hits = top_k_hits(c.y, c.probs, k)
    W = ctx.weights
    total = W.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        values = np.where(total > 0, (W @ hits) / np.where(total > 0, total, 1), np.nan)
    y = np.asarray(c.y, dtype=np.int64)
    by_class = []
    for i, label in enumerate(c.labels):
        rows = y == i
        v = (W[:, rows] @ hits[rows]) / np.where(W[:, rows].sum(axis=1) > 0, W[:, rows].sum(axis=1), np.nan)
        by_class.append({"label": label, "support": int(rows.sum()), "top_k_accuracy": _finite(v[0]),
                         "top_k_accuracy_ci": _ci(v, ctx.replicates, ctx.confidence) if rows.any() else [None, None]})
    details = {"k": k, "hits": int(hits.sum()), "classes": by_class,
               "ranking": "the classes by probability, of tied classes the later first (as scikit-learn)"}
    return _measurement(ctx, c, "performance.top_k_accuracy", values, details, needs="labelled rows are needed")


# ---------------------------------------------------------------- class-wise calibration


def _validate_bins(params: dict) -> None:
    b = params.get("bins")
    if isinstance(b, bool) or not isinstance(b, int) or not 2 <= b <= 100:
        raise ValueError(f"bins must be a whole number from 2 to 100, got {b!r}")


def _bin_table(score: np.ndarray, hit: np.ndarray, bins: int) -> list[dict]:
    idx = stats.ece_bins(score, bins)
    table = []
    for b in range(bins):
        inside = idx == b
        count = int(inside.sum())
        table.append({"bin": b, "low": b / bins, "high": (b + 1) / bins, "count": count,
                      "mean_score": float(score[inside].mean()) if count else None,
                      "observed_rate": float(hit[inside].mean()) if count else None})
    return table


def _ece(gaps: np.ndarray, confidence: float, n: int, R: int) -> tuple[float | None, list[float | None]]:
    point = _finite(np.abs(gaps[0]).sum())
    if not R or point is None:
        return point, [None, None]
    return point, list(stats.ece_interval(gaps, confidence, n=n))


@check("performance.classwise_ece", classes="any", title="Top-label and class-wise calibration error",
       direction="lower", params={"bins": 10}, validate=_validate_bins)
def classwise_ece(ctx: CheckContext, bins: int = 10) -> Measurement:
    """Top-label expected calibration error: over equal-width bins of the probability the model gives its decided
    class, the row-weighted gap between that probability and the share of rows decided right (Guo et al. 2017);
    details add each class's one-vs-rest ECE.

    Exactly: with the decided class d_i of row i (the most probable; for a binary model, at the threshold) and
    its probability q_i, top-label ECE = sum over bins b of |sum_{i in b} (1[y_i = d_i] - q_i)| / N, bins as
    performance.ece's ((0.1, 0.2], the first including 0). Class c's ECE is performance.ece's formula on the
    probability of c against 1[y_i = c]; details also give the mean of the class ECEs (Kull et al. 2019's
    class-wise ECE). A high value means the model's probabilities cannot be read as chances. Intervals are
    performance.ece's max-contrast intervals, which hold their level at 0."""
    c = run_classes(ctx)
    bins = int(bins)
    W, R, conf = ctx.weights, ctx.replicates, ctx.confidence
    y = np.asarray(c.y, dtype=np.int64)
    n = len(y)
    pred = c.pred
    q = c.probs[np.arange(n), pred].astype(float)
    right = (pred == y).astype(float)
    gaps = stats.ece_gaps(W, right, q, bins)
    per, all_gaps = [], []
    for i, label in enumerate(c.labels):
        g = stats.ece_gaps(W, (y == i).astype(float), c.probs[:, i].astype(float), bins)
        all_gaps.append(g)
        value, ci = _ece(g, conf, n, R)
        per.append({"label": label, "support": int((y == i).sum()), "ece": value, "ece_ci": ci})
    stacked = np.concatenate(all_gaps, axis=1) / c.k  # mean of the class ECEs: sum over (class, bin) of |gap| / k
    mean_value, mean_ci = _ece(stacked, conf, n, R)
    details = {"bins": _bin_table(q, right, bins), "confidence": "the probability of the decided class",
               "classes": per, "mean_class_ece": mean_value, "mean_class_ece_ci": mean_ci,
               "interval": ECE_INTERVAL}
    interval: Callable = lambda v: stats.ece_interval(gaps, conf, n=n)  # noqa: E731
    return _measurement(ctx, c, "performance.classwise_ece", np.abs(gaps).sum(axis=1), details,
                        needs="labelled rows are needed", interval=interval)
