"""Fairness family: how the model's decisions and errors differ between protected groups, and whether its
decision changes when only identity words in a text change.

Groups. Each protected attribute that the model's manifest maps to a column (binned, mapped or raw values)
gives one grouping; the policy may also ask for intersections (`intersections: ["sex×age"]` or
`[[sex, age]]`), whose groups are the combinations ("female × under 25"). Every group the manifest defines is
listed, also one with no rows in the eval set. Rows without a value for an attribute are left out of that
attribute only (the count is reported).

Per group (details, with bootstrap intervals): rows, favourable true labels ("positives"), favourable
decisions, and these rates, where the favourable label is the model's positive label (for credit: approval)
and a decision is the score at or above the policy's decision threshold:

    selection rate  favourable decisions / rows                      (fairlearn `selection_rate`)
    TPR             favourable decisions / favourable true labels    (`true_positive_rate`)
    FPR             favourable decisions / unfavourable true labels  (`false_positive_rate`)
    FNR             1 - TPR                                          (`false_negative_rate`)
    precision       favourable true labels / favourable decisions    (precision; "predictive parity")
    accuracy        right decisions / rows
    ROC-AUC         ranking quality of the score inside the group

Disparities. Every difference is fairlearn's `between_groups` difference: the largest minus the smallest group
value, so 0 is parity and it never says which group is ahead (details do). Each attribute and each intersection
asked is one `Part` of the measurement (audit.result.Part), with its own value, interval and evidence size (the
rows in its judged groups), and the judge judges each on its own: a violation by one part fails the rule
whatever the others show. The measurement's `value` and interval are those of the worst part (smallest ratio,
largest difference), never a statistic over several parts at once; details["worst"] names it, and
details["attributes"][i] holds exactly the numbers of part i.

Uncertainty. Every group rate has a percentile interval over the run's Poisson bootstrap replicates
(`ctx.weights`): each row enters each replicate k ~ Poisson(1) times independently, so every group is
resampled within itself. A disparity is a maximum over contrasts (every ordered pair of judged groups, i minus
j; for equalized odds the pairs of both TPR and FPR; for the ratio, differences of log selection rates,
ratio = exp(-max), over pairs (reference, i) when the reference is fixed and every pair when it is the most
favoured group, which is then re-chosen on every replicate as the statistic does). A percentile interval of the
replicated max is biased upwards, most where the groups are equal (it then never contains the true gap of 0,
and can exclude its own estimate), so the interval is stats.max_contrast_interval: per-contrast upper bounds,
and a simultaneous max-t lower bound over the contrasts that can be the max, clipped to the statistic's range
and always containing the estimate; tests/test_coverage.py measures its coverage. All replicates are computed
at once with matrix products (no Python loop over replicates).

No silent passes. A group is too small to judge when it has fewer rows than `min_group_size` (the policy's,
unless the rule sets its own), or when a rate it needs has fewer rows than that in its denominator: TPR and FNR
need favourable true labels, FPR unfavourable ones, precision favourable decisions, ROC-AUC both labels. With
`small_groups: inconclusive` (the default) a part with such groups is `incomplete`: its value is computed over
the groups large enough, a violation it shows stands, a pass is INCONCLUSIVE; with `small_groups: exclude` the
small groups are left out of the judgement and still listed. A part with fewer than two groups large enough
(or whose reference group is too small), and an attribute the policy names that the manifest does not map, is
an inconclusive part of its own; a model without protected attributes makes the whole measurement INCONCLUSIVE.

What `basis` means here (see also audit/policy.py):
- `min` rules (selection_rate_ratio): `basis: ci_low` passes only when the whole interval is at or above the
  line, i.e. the evidence shows compliance at the policy's confidence; `point` judges the estimate; `ci_high`
  fails only when the whole interval is below the line, i.e. on evidence of a violation.
- `max` rules (every difference, the AUC gap, the counterfactual flip rate and score change): `basis: ci_high`
  demands evidence of compliance (the whole interval at or below the line); `ci_low` fails only on evidence of
  a violation.

Counterfactual swaps of templated text (`mode: auto` when the manifest's text is a template, or `template`):
the protected column's value itself is swapped and the text rendered again from the row (audit/swaps.py,
column_alternatives), so the whole phrase that tells the attribute changes and the application is one that
could occur. Each attribute asked is one Part (kind "attribute"): the share of its swapped rows whose decision
flips (a row swapped to k values counts the share of them that flip) or the mean |score change|, with the
bootstrap interval over rows; every pair of groups (from -> to) is listed with its own numbers.

Counterfactual swaps of free text (audit/swaps.py, term lists in audit/data/terms/). Identity terms in each eval text are
swapped (he -> she ...), only the texts that changed are re-scored, batched, through the run's model, and the
decision flip rate and the mean |score change| are measured over those rows alone, with intervals. Each swap
list is one part of the measurement (`Part`, kind "swap list"), judged on its own: its n is the number of texts
it changed, a list that changed fewer than `min_group_size` texts (or than the rule's `min_evidence`) is
INCONCLUSIVE while another list's violation still stands, and the measurement's value and interval are the
worst judgeable list's own (not a maximum over the lists taken on each bootstrap replicate).

The four-fifths rule (EEOC Uniform Guidelines, 29 CFR 1607.4(D)) is a screening heuristic for adverse impact,
not a legal test of discrimination; the report says so.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from audit import pii, stats
from audit.checks import check
from audit.context import CheckContext
from audit.rescore import decision_label
from audit.result import Measurement, Part

if TYPE_CHECKING:
    from audit.mergeable import GroupConfusion

RATES = ("selection_rate", "tpr", "fpr", "fnr", "precision", "accuracy", "roc_auc")
RATE_NAMES = {"selection_rate": "selection rate", "tpr": "true-positive rate", "fpr": "false-positive rate",
              "fnr": "false-negative rate", "precision": "precision", "accuracy": "accuracy", "roc_auc": "ROC-AUC"}
NEEDS_ROWS = "it re-scores edited texts through the model, and the statistics carry no text"
SEP = " × "
MAX_LISTED = 8  # groups named in one reason
MAX_TEXT = 600  # characters of an example text kept in details

GROUP_PARAMS: dict[str, Any] = {"attributes": [], "intersections": [], "min_group_size": 0,
                                "small_groups": "inconclusive", "exclude_below_share": 0.0, "outcome": ""}
FOUR_FIFTHS = ("The four-fifths rule (EEOC Uniform Guidelines, 29 CFR 1607.4(D)) is a screening heuristic for "
               "adverse impact, not a legal test of discrimination: a ratio below 0.80 calls for a closer look, "
               "and a ratio above it does not show that the model is lawful.")
LABEL_CAVEAT = ("Error rates (TPR, FPR, precision) are measured against the labels in the data, which may carry "
                "the bias of past decisions.")


def _f(x: Any) -> float | None:
    """A finite float, or None (JSON has no NaN)."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None


def _interval(reps: np.ndarray, confidence: float) -> list[float | None]:
    if reps.size == 0:
        return [None, None]
    return list(stats.percentile_interval(reps, confidence))


# ---------------------------------------------------------------- groups


@dataclass
class Grouping:
    """One protected attribute, or an intersection of several: a group index per eval row."""

    name: str  # "age", or "sex × age"
    kind: str  # "attribute" or "intersection"
    parts: list[str]
    columns: list[str]
    groups: list[str]
    codes: np.ndarray  # (n,) index into groups; -1 where a value is missing
    notes: list[str]

    @property
    def missing(self) -> int:
        return int((self.codes < 0).sum())


@dataclass
class GroupTable:
    """Counts, point rates (fairlearn MetricFrame) and bootstrap replicates of every rate, per group."""

    grouping: Grouping
    count: np.ndarray  # (G,) rows
    positives: np.ndarray  # favourable true labels
    negatives: np.ndarray
    predicted: np.ndarray  # favourable decisions
    point: dict[str, np.ndarray]  # rate -> (G,)
    reps: dict[str, np.ndarray]  # rate -> (R, G), one row per bootstrap replicate

    def denominators(self, rate: str) -> list[tuple[np.ndarray, str]]:
        need = {"tpr": [(self.positives, "pos")], "fnr": [(self.positives, "pos")],
                "fpr": [(self.negatives, "neg")], "precision": [(self.predicted, "pred")],
                "roc_auc": [(self.positives, "pos"), (self.negatives, "neg")]}
        return need.get(rate, [])


def _parse_intersection(item: Any) -> list[str]:
    if isinstance(item, list):
        parts = [str(p).strip() for p in item]
    elif isinstance(item, str):
        parts = [p.strip() for p in re.split(r"\s*[×*&]\s*|\s+x\s+", item)]
    else:
        raise ValueError(f"an intersection is 'a×b' or a list [a, b], got {item!r}")
    if len(parts) < 2 or not all(parts) or len(set(parts)) != len(parts):
        raise ValueError(f"an intersection needs two or more different attributes, got {item!r}")
    return parts


def _attribute(ctx: CheckContext, name: str) -> tuple[list[str], np.ndarray]:
    """Group names of one manifest attribute (its defined groups first, then other values seen, sorted), and
    each row's index into them (-1 where the value is missing)."""
    import pandas as pd

    from audit.data import group_series

    attr = ctx.manifest.protected_attributes[name]
    series = group_series(ctx.frame, name, attr, ctx.eval_path or "eval data")
    values = pd.Series(series.to_numpy(dtype=object)).map(lambda v: None if v is None or v != v else str(v))
    known = [str(g) for g in attr.group_names()]
    groups = known + sorted(set(values.dropna()) - set(known))
    codes = pd.Categorical(values, categories=groups).codes.astype(np.int64)
    return groups, codes


def _grouping(ctx: CheckContext, parts: list[str]) -> Grouping:
    cache = ctx.shared.groupings
    key = tuple(parts)
    if key in cache:
        return cache[key]
    import itertools

    found = [_attribute(ctx, p) for p in parts]
    groups = [SEP.join(c) for c in itertools.product(*(g for g, _ in found))]
    codes = np.zeros(len(found[0][1]), dtype=np.int64)
    for names, part in found:  # row-major over the parts, as itertools.product orders the combinations
        codes = codes * len(names) + part
    codes[np.any([part < 0 for _, part in found], axis=0)] = -1
    attrs = ctx.manifest.protected_attributes
    notes = [f"{p}: {' '.join(attrs[p].note.split())}" if len(parts) > 1 else " ".join(attrs[p].note.split())
             for p in parts if attrs[p].note.strip()]
    g = Grouping(SEP.join(parts), "attribute" if len(parts) == 1 else "intersection", list(parts),
                 [attrs[p].column for p in parts], groups, codes, notes)
    cache[key] = g
    return g


def _groupings(ctx: CheckContext, attributes: list, intersections: list
               ) -> tuple[list[Grouping], list[tuple[str, str, str]]]:
    """The groupings a rule asks for, and (name, kind, why) of each asked grouping that cannot be formed."""
    if ctx.manifest is None or not ctx.manifest.protected_attributes:
        raise _NoGroups("the model's manifest maps no protected attributes to columns, so no group can be formed")
    if ctx.frame is None:
        raise _NoGroups("the eval rows' columns are not available to this check")
    mapped = list(ctx.manifest.protected_attributes)
    if not isinstance(attributes, list) or not isinstance(intersections, list):
        raise ValueError("attributes and intersections must be lists")
    wanted = [str(a) for a in attributes] or mapped
    specs = [[a] for a in dict.fromkeys(wanted)] + [_parse_intersection(i) for i in intersections]
    # a context built from statistics (audit.from_stats) holds the groupings it carries and says why others lack
    not_carried = ctx.not_carried
    problems, out = [], []
    for parts in specs:
        name, kind = SEP.join(parts), ("attribute" if len(parts) == 1 else "intersection")
        unknown = [p for p in parts if p not in mapped]
        if unknown:
            problems.append((name, kind, f"the policy names {', '.join(repr(u) for u in unknown)}, which the "
                                         f"model's manifest does not map to a column (it maps {', '.join(mapped)})"))
        elif not_carried is not None and tuple(parts) not in ctx.shared.groupings:
            problems.append((name, kind, f"not in the statistics: the {kind} '{name}' ({not_carried})"))
        else:
            out.append(_grouping(ctx, parts))
    return out, problems


class _NoGroups(Exception):
    """No grouping at all can be formed: the measurement is INCONCLUSIVE as a whole."""


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1.0), np.nan)


def _weighted_auc(W: np.ndarray, idx: np.ndarray, y: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Weighted ROC-AUC (ties count one half) of the rows `idx`, on every row of W: the Mann-Whitney sum
    over positives of the weight of negatives scored below them. Replicates go in chunks of about a million
    weights: that bounds the memory and keeps each chunk in cache (3x faster than 20M-weight chunks on 50k
    rows). Equals stats.roc_auc (tested)."""
    y, s = y[idx], s[idx]
    pos, neg = idx[y == 1], idx[y == 0]
    s_pos = s[y == 1]
    order = np.argsort(s[y == 0], kind="mergesort")
    neg, s_neg = neg[order], s[y == 0][order]
    left = np.searchsorted(s_neg, s_pos, side="left")
    right = np.searchsorted(s_neg, s_pos, side="right")
    ties = bool((right > left).any())
    out = np.empty(W.shape[0])
    step = max(1, int(1e6 // max(len(idx), 1)))
    for a in range(0, W.shape[0], step):
        Wn = W[a:a + step][:, neg]
        cum = np.zeros((Wn.shape[0], len(neg) + 1))
        np.cumsum(Wn, axis=1, out=cum[:, 1:])
        Wp = W[a:a + step][:, pos]
        below = cum[:, left]
        if ties:
            below += 0.5 * (cum[:, right] - below)
        out[a:a + step] = _div((Wp * below).sum(axis=1), Wp.sum(axis=1) * cum[:, -1])
    return out


def _metricframe_point(grouping: Grouping, y: np.ndarray, p: np.ndarray, s: np.ndarray) -> dict[str, np.ndarray]:
    """Point rates per group from fairlearn's MetricFrame (NaN where a rate is undefined).

    The label metrics depend only on each group's confusion counts, so MetricFrame runs on one row per
    (group, true label, decision) cell weighted by its count: the same numbers as on the rows themselves
    (tested), in milliseconds at any size; the cells are the small, mergeable statistics a partitioned or
    federated audit would ship. ROC-AUC needs the scores: scikit-learn's roc_auc_score per group."""
    import pandas as pd
    from fairlearn.metrics import (
        MetricFrame,
        false_negative_rate,
        false_positive_rate,
        selection_rate,
        true_positive_rate,
    )
    from sklearn.metrics import accuracy_score, precision_score, roc_auc_score

    def guard(fn: Callable, need: Callable[[np.ndarray, np.ndarray], bool]) -> Callable:
        def metric(yt, yp, sample_weight):
            yt, yp, w = np.asarray(yt), np.asarray(yp), np.asarray(sample_weight)
            return float(fn(yt, yp, sample_weight=w)) if need(yt[w > 0], yp[w > 0]) else np.nan
        return metric

    labels = {
        "selection_rate": guard(lambda yt, yp, **kw: selection_rate(yt, yp, pos_label=1, **kw),
                                lambda yt, yp: len(yt) > 0),
        "tpr": guard(lambda yt, yp, **kw: true_positive_rate(yt, yp, pos_label=1, **kw),
                     lambda yt, yp: (yt == 1).any()),
        "fpr": guard(lambda yt, yp, **kw: false_positive_rate(yt, yp, pos_label=1, **kw),
                     lambda yt, yp: (yt == 0).any()),
        "fnr": guard(lambda yt, yp, **kw: false_negative_rate(yt, yp, pos_label=1, **kw),
                     lambda yt, yp: (yt == 1).any()),
        "precision": guard(lambda yt, yp, **kw: precision_score(yt, yp, pos_label=1, zero_division=np.nan, **kw),
                           lambda yt, yp: (yp == 1).any()),
        "accuracy": guard(accuracy_score, lambda yt, yp: len(yt) > 0),
    }
    G = len(grouping.groups)
    out = {r: np.full(G, np.nan) for r in RATES}
    keep = grouping.codes >= 0
    if not keep.any():
        return out
    cells = np.bincount(grouping.codes[keep] * 4 + y[keep] * 2 + p[keep], minlength=4 * G)
    live = np.flatnonzero(cells)
    sf = pd.Series(np.asarray(grouping.groups, dtype=object)[live // 4], name=grouping.name)
    weight = {"sample_weight": cells[live].astype(float)}
    by = MetricFrame(metrics=labels, y_true=(live // 2) % 2, y_pred=live % 2, sensitive_features=sf,
                     sample_params={r: weight for r in labels}).by_group
    index = {g: i for i, g in enumerate(grouping.groups)}
    for g in by.index:
        for r in labels:
            out[r][index[g]] = by.loc[g, r]
    for g in range(G):
        rows = grouping.codes == g
        if 0 < y[rows].sum() < rows.sum():
            out["roc_auc"][g] = roc_auc_score(y[rows], s[rows])
    return out


def _table(ctx: CheckContext, grouping: Grouping) -> GroupTable:
    cache = ctx.shared.group_tables
    if grouping.name in cache:
        return cache[grouping.name]
    y_int, p_int, score = (np.asarray(a) for a in (ctx.y_true, ctx.y_pred, ctx.score))
    y, p = y_int.astype(float), p_int.astype(float)
    G = len(grouping.groups)
    onehot = np.zeros((len(y), G))
    rows = np.flatnonzero(grouping.codes >= 0)
    onehot[rows, grouping.codes[rows]] = 1.0
    X = np.hstack([onehot, onehot * y[:, None], onehot * p[:, None], onehot * (y * p)[:, None]])
    c = X.sum(axis=0)
    W = ctx.weights[1:]
    M = W @ X  # (R, 4G): rows, positives, favourable decisions, true positives, per replicate and group
    n, pos, pp, tp = (M[:, i * G:(i + 1) * G] for i in range(4))
    fp, fn = pp - tp, pos - tp
    neg = n - pos
    tn = neg - fp
    reps = {"selection_rate": _div(pp, n), "tpr": _div(tp, pos), "fpr": _div(fp, neg), "fnr": _div(fn, pos),
            "precision": _div(tp, pp), "accuracy": _div(tp + tn, n), "roc_auc": np.full((W.shape[0], G), np.nan)}
    for g in range(G):
        if c[G + g] > 0 and c[g] - c[G + g] > 0:  # both labels present: AUC is defined on the point
            reps["roc_auc"][:, g] = _weighted_auc(W, np.flatnonzero(grouping.codes == g), y_int, score)
    point = _metricframe_point(grouping, y_int.astype(np.int64), p_int.astype(np.int64), score)
    t = GroupTable(grouping, c[:G].astype(int), c[G:2 * G].astype(int), (c[:G] - c[G:2 * G]).astype(int),
                   c[2 * G:3 * G].astype(int), point, reps)
    cache[grouping.name] = t
    return t


def _floor(ctx: CheckContext, min_group_size: Any) -> int:
    k = int(min_group_size or 0)
    if k < 0:
        raise ValueError(f"min_group_size must be 0 (the policy's) or more, got {min_group_size}")
    return k or int(ctx.min_group_size)


def _why_small(ctx: CheckContext, t: GroupTable, g: int, rates: tuple[str, ...], k: int) -> str:
    """Why group g cannot be judged for `rates`, or "" when it can."""
    if t.count[g] < k:
        return f"{t.count[g]} rows, at least {k} needed" if t.count[g] else "no rows in the eval set"
    words = {"pos": f"true '{ctx.positive_label}'", "neg": f"true '{ctx.negative_label}'",
             "pred": f"predicted '{ctx.positive_label}'"}
    lacking = {}
    for r in rates:
        for arr, kind in t.denominators(r):
            if arr[g] < k:
                lacking.setdefault(kind, (int(arr[g]), []))[1].append(RATE_NAMES[r])
    return "; ".join(f"{n} {words[kind]} rows, the {' and '.join(dict.fromkeys(names))} needs at least {k}"
                     for kind, (n, names) in lacking.items())


def _group_rows(ctx: CheckContext, t: GroupTable, why: list[str]) -> list[dict]:
    rows = []
    for g, name in enumerate(t.grouping.groups):
        row: dict[str, Any] = {"group": name, "count": int(t.count[g]), "positives": int(t.positives[g]),
                               "negatives": int(t.negatives[g]), "predicted_positive": int(t.predicted[g])}
        for r in RATES:
            row[r] = _f(t.point[r][g])
            row[r + "_ci"] = _interval(t.reps[r][:, g], ctx.confidence) if row[r] is not None else [None, None]
        row["judged"] = not why[g]
        row["too_small"] = why[g]
        rows.append(row)
    return rows


def _listing(items: list[str]) -> str:
    shown = "; ".join(items[:MAX_LISTED])
    return shown + (f"; and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else "")


# ---------------------------------------------------------------- disparities


def _pairs(ok: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Every ordered pair (i, j), i != j, of the judged groups: max over pairs of x_i - x_j is max - min."""
    i, j = np.meshgrid(ok, ok, indexing="ij")
    off = i != j
    return i[off], j[off]


def _difference(ctx: CheckContext, t: GroupTable, ok: list[int], rates: tuple[str, ...], entry: dict,
                n: int) -> tuple[float, float | None, float | None]:
    """fairlearn's between-groups difference (max - min over the judged groups; for several rates, as equalized
    odds, the largest of their differences) with its interval: the max over the contrasts rate_i - rate_j of every
    ordered pair (and every rate), stats.max_contrast_interval."""
    i, j = _pairs(ok)
    groups, per_rate, points, reps = t.grouping.groups, {}, [], []
    for r in rates:
        pt, rp = t.point[r], t.reps[r]
        hi, lo = max(ok, key=lambda g: (pt[g], -g)), min(ok, key=lambda g: (pt[g], g))
        c0, cr = pt[i] - pt[j], rp[:, i] - rp[:, j]
        points.append(c0)
        reps.append(cr)
        ci = stats.max_contrast_interval(c0, cr, ctx.confidence, n=n, low=0.0) if len(cr) else (None, None)
        per_rate[r] = {"difference": _f(pt[hi] - pt[lo]), "ci": list(ci), "highest_group": groups[hi],
                       "lowest_group": groups[lo], "highest": _f(pt[hi]), "lowest": _f(pt[lo])}
    worst = max(rates, key=lambda r: per_rate[r]["difference"] if per_rate[r]["difference"] is not None else -1)
    entry.update(rates=per_rate, worst_rate=worst, worst_group=per_rate[worst]["lowest_group"],
                 versus_group=per_rate[worst]["highest_group"])
    value = max(per_rate[r]["difference"] for r in rates)
    if len(rates) == 1:
        lo, hi = per_rate[rates[0]]["ci"]
    else:  # equalized odds: the max over the contrasts of both rates
        c0, cr = np.concatenate(points), np.hstack(reps)
        lo, hi = stats.max_contrast_interval(c0, cr, ctx.confidence, n=n, low=0.0) if len(cr) else (None, None)
    return value, lo, hi


def _disparity(ctx: CheckContext, check_id: str, rates: tuple[str, ...], kind: str, params: dict) -> Measurement:
    """One group disparity, one Part per grouping asked (attribute or intersection), each with its own value and
    interval; the measurement shows the worst part. `kind` is "ratio" (selection-rate ratio) or "difference"."""

    if params.get("outcome"):
        ctx = one_vs_rest(ctx, str(params["outcome"]))
    k = _floor(ctx, params.get("min_group_size"))
    mode = params.get("small_groups", "inconclusive")
    if mode not in ("inconclusive", "exclude"):
        raise ValueError(f"small_groups must be 'inconclusive' or 'exclude', got {mode!r}")
    share = _share_floor(params)
    try:
        groupings, problems = _groupings(ctx, params.get("attributes", []), params.get("intersections", []))
    except _NoGroups as exc:
        return Measurement(check_id, None, n=len(ctx.y_true), inconclusive=str(exc),
                           details={"favourable_label": ctx.positive_label, "decision_threshold": ctx.threshold,
                                    "min_group_size": k, "small_groups_rule": mode, "rates": list(rates),
                                    "attributes": [], "small_groups": []})
    reference = str(params.get("reference", "most_favoured"))
    R = ctx.weights.shape[0] - 1
    per_attr, parts, small, caveats, excluded = [], [], [], [], []
    for grouping in groupings:
        t = _table(ctx, grouping)
        why = [_why_small(ctx, t, g, rates, k) for g in range(len(grouping.groups))]
        total = float(t.count.sum())
        # a category under the rule's share of the rows with a value is left out of the comparison and still
        # listed with its count and rates (NYC LL144 rules, 6 RCNY § 5-301(d)); it never makes the part incomplete
        shares = [float(t.count[g]) / total if total else 0.0 for g in range(len(grouping.groups))]
        below = [g for g in range(len(grouping.groups)) if share and t.count[g] and shares[g] < share]
        for g in below:
            why[g] = (f"{shares[g]:.1%} of the rows with a value, under the rule's exclude_below_share "
                      f"{share:.1%}: left out of the comparison")
        ok = [g for g in range(len(grouping.groups)) if not why[g]]
        excluded += [{"attribute": grouping.name, "group": grouping.groups[g], "count": int(t.count[g]),
                      "share": shares[g], "selection_rate": _f(t.point["selection_rate"][g])} for g in below]
        mine = [{"attribute": grouping.name, "group": grouping.groups[g], "count": int(t.count[g]),
                 "reason": why[g]} for g in range(len(grouping.groups)) if why[g] and g not in below]
        small += mine
        caveats += [f"{grouping.name if grouping.kind == 'attribute' else 'Intersection ' + grouping.name}: {n}"
                    for n in grouping.notes]
        if grouping.missing:
            caveats.append(f"{grouping.missing} eval rows have no value for {grouping.name} and are left out of "
                           f"its groups.")
        entry: dict[str, Any] = {"attribute": grouping.name, "kind": grouping.kind, "columns": grouping.columns,
                                 "missing_rows": grouping.missing, "value": None, "ci_low": None, "ci_high": None,
                                 "note": "", "groups": _group_rows(ctx, t, why)}
        part = Part(grouping.name, kind=grouping.kind, n=int(t.count[ok].sum()) if ok else 0)
        too_small = _listing([f"'{s['group']}' ({s['reason']})" for s in mine])
        value = lo = hi = None
        if len(ok) < 2:
            part.inconclusive = (f"fewer than two groups of {grouping.name} are large enough to compare "
                                 f"({len(ok)} of {len(grouping.groups)})" + (f"; too small: {too_small}" if mine else ""))
        elif kind == "ratio":
            value, lo, hi, problem = _ratio(ctx, t, ok, reference, entry, part.n)
            part.inconclusive = problem
        else:
            value, lo, hi = _difference(ctx, t, ok, rates, entry, part.n)
        if value is not None and R and lo is None and not part.inconclusive:
            part.inconclusive = "the interval is undefined on too many bootstrap replicates"
        if mine and not part.inconclusive and mode == "inconclusive":
            part.incomplete = f"groups too small to judge: {too_small}"
        part.value, part.ci_low, part.ci_high = _f(value), _f(lo), _f(hi)
        entry.update(value=part.value, ci_low=part.ci_low, ci_high=part.ci_high, note=part.inconclusive or "",
                     incomplete=part.incomplete or "")
        per_attr.append(entry)
        parts.append(part)
    parts += [Part(name, kind=kind_, inconclusive=why_) for name, kind_, why_ in problems]

    details: dict[str, Any] = {"favourable_label": ctx.positive_label, "decision_threshold": ctx.threshold,
                               "min_group_size": k, "small_groups_rule": mode, "rates": list(rates),
                               "attributes": per_attr, "small_groups": small,
                               "not_measured": [{"attribute": name, "kind": kind_, "reason": why_}
                                                for name, kind_, why_ in problems]}
    if params.get("outcome"):
        details["outcome"] = {"label": ctx.positive_label,
                              "view": f"'{ctx.positive_label}' against the other classes: the true class, the "
                                      "decided class and the probability of that one class"}
    elif ctx.multiclass:  # the favourable view of a model of more classes: which classes are favourable
        details["favourable"] = ctx.classes.favourable_labels
        details["favourable_label"] = ctx.classes.describe()
    if share:
        details["exclude_below_share"] = share
        details["excluded_by_share"] = excluded
        if excluded:
            caveats.append(f"{len(excluded)} categor{'y is' if len(excluded) == 1 else 'ies are'} under "
                           f"{share:.1%} of the rows and left out of the comparison by the rule's "
                           "exclude_below_share; each is listed with its count and selection rate.")
    if kind == "ratio":
        details["reference"] = reference
        caveats.append(FOUR_FIFTHS)
    elif set(rates) & {"tpr", "fpr", "precision", "roc_auc"}:
        caveats.append(LABEL_CAVEAT)
    details["caveats"] = list(dict.fromkeys(caveats))
    m = Measurement(check_id, None, n=len(ctx.y_true), details=details, parts=parts)
    valued = [p for p in parts if p.value is not None]
    pool = [p for p in valued if not p.inconclusive] or valued
    if pool:  # the worst part: smallest ratio, largest difference; its own value and interval
        w = min(pool, key=lambda p: p.value) if kind == "ratio" else max(pool, key=lambda p: p.value)
        m.value, m.ci_low, m.ci_high = w.value, w.ci_low, w.ci_high
        e = next(e for e in per_attr if e["attribute"] == w.name)
        details["worst"] = {"attribute": w.name, "group": e.get("worst_group"), "versus": e.get("versus_group"),
                            "rate": e.get("worst_rate", "selection_rate")}
    if not parts:
        m.inconclusive = "no group disparity could be computed"
    return m


def one_vs_rest(ctx: CheckContext, label: str) -> CheckContext:
    """The context of one class against the rest (a group rule's `outcome: <label>`): the true class is `label`,
    the decision is `label`, the score is its probability. The rows, groups and bootstrap weights are the run's;
    group tables are computed afresh for this view. For a binary model, the positive label's view is the run's own
    and the other label's is its mirror (at the same threshold)."""
    from dataclasses import replace

    from audit.context import Shared

    classes = ctx.classes
    labels = list(classes.labels if classes is not None else (ctx.manifest.labels if ctx.manifest else []))
    if label not in labels:
        raise ValueError(f"outcome: {label!r} is not a label of the model (its labels: "
                         f"{', '.join(map(repr, labels))})")
    if classes is None:  # a binary context without its classes (built from statistics, or in a test)
        if label == ctx.positive_label:
            return ctx
        y, decided, score = 1 - np.asarray(ctx.y_true), 1 - np.asarray(ctx.y_pred), 1 - np.asarray(ctx.score)
    else:
        i = labels.index(label)
        y = (np.asarray(classes.y) == i).astype(int)
        decided = (np.asarray(classes.pred) == i).astype(int)
        score = np.asarray(classes.probs)[:, i]
    view = replace(ctx, y_true=y, score=score, positive_label=label, negative_label=f"not {label}",
                   shared=Shared(groupings=ctx.shared.groupings), check_seconds={})
    view.__dict__["y_pred"] = decided  # the decided class, not a threshold on this class's probability
    if "weights" in ctx.__dict__:
        view.__dict__["weights"] = ctx.__dict__["weights"]  # the run's replicates, computed once
    return view


def _share_floor(params: dict) -> float:
    """The rule's `exclude_below_share`: categories under this share of the rows are left out (0: none)."""
    share = params.get("exclude_below_share", 0.0)
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share < 0.5:
        raise ValueError(f"exclude_below_share must be a share from 0 to under 0.5 (0.02 is 2%), got {share!r}")
    return float(share)


def _validate_groups(params: dict) -> None:
    """At policy load: the group parameters' values (raises ValueError naming the problem)."""
    _share_floor(params)
    if params.get("small_groups", "inconclusive") not in ("inconclusive", "exclude"):
        raise ValueError(f"small_groups must be 'inconclusive' or 'exclude', got {params.get('small_groups')!r}")


def _ratio(ctx: CheckContext, t: GroupTable, ok: list[int], reference: str, entry: dict,
           n: int) -> tuple[float | None, float | None, float | None, str | None]:
    """Smallest selection-rate ratio of a judged group to the reference: (value, ci_low, ci_high, why not).

    The interval is stats.max_contrast_interval on log rates: ratio = exp(-max_k c_k) with c_k = log rate_ref -
    log rate_i (i the other judged groups); with the most favoured group as reference, over every ordered pair
    (log max - log min), the reference re-chosen on every replicate as the statistic does. A rate of 0 enters
    the log as half a decision over the group's rows, so a group nobody in which is selected keeps a finite
    contrast."""
    groups = t.grouping.groups
    point, reps = t.point["selection_rate"], t.reps["selection_rate"]
    choice = reference
    if reference == "largest":
        ref = max(ok, key=lambda g: (t.count[g], -g))
    elif reference not in ("most_favoured", "largest") and reference in groups:
        ref = groups.index(reference)
        if ref not in ok:
            return None, None, None, f"the reference group {t.grouping.name} '{reference}' is too small to judge"
    else:
        if reference != "most_favoured":
            choice = f"most_favoured ('{reference}' is not a group of {t.grouping.name})"
        ref = max(ok, key=lambda g: (point[g], -g))
    entry.update(reference_group=groups[ref], reference_choice=choice)
    if not point[ref] > 0:
        return None, None, None, (
            f"no {t.grouping.name} group received a favourable decision, so no ratio is defined"
            if choice.startswith("most") else
            f"the reference group {t.grouping.name} '{groups[ref]}' received no favourable decision")
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio_reps = reps / reps[:, [ref]]
    for row, g in zip(entry["groups"], range(len(groups))):
        row["ratio_to_reference"] = _f(point[g] / point[ref]) if row["selection_rate"] is not None else None
        row["ratio_to_reference_ci"] = (_interval(ratio_reps[:, g], ctx.confidence)
                                        if row["ratio_to_reference"] is not None and g != ref else [None, None])
    others = [g for g in ok if g != ref]
    worst = min(others, key=lambda g: (point[g] / point[ref], g))
    entry.update(worst_group=groups[worst], versus_group=groups[ref])
    value = float(point[worst] / point[ref])
    floor = 0.5 / np.maximum(t.count, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_point = np.log(np.maximum(point, floor))
        log_reps = np.log(np.maximum(reps, floor[None]))
    if choice.startswith("most"):
        i, j = _pairs(ok)
        low = 0.0
    else:
        i, j = np.full(len(others), ref), np.array(others)
        low = None
    if not len(reps):
        return value, None, None, None
    dlo, dhi = stats.max_contrast_interval(log_point[i] - log_point[j], log_reps[:, i] - log_reps[:, j],
                                           ctx.confidence, n=n, low=low)
    if dlo is None:
        return value, None, None, None
    return value, min(float(np.exp(-dhi)), value), max(float(np.exp(-dlo)), value), None


def _from_stats(sctx, check_id: str, **params) -> Measurement:
    """The statistics form of the group checks: the check itself, on a context whose groupings and group tables
    are built from the merged statistics (fairness_context, once per run), so the disparity, its interval and
    its parts come from the same code as in memory; the evidence size is the statistics' rows."""
    from audit.checks import all_checks

    def build():
        specs = all_checks()
        fair = [{**specs[cid].params, **sctx.params.get(cid, {})} for cid in specs
                if specs[cid].family == "fairness" and specs[cid].stats is not None]
        ctx = fairness_context(sctx.stats, sctx.replicates, sctx.manifest, sctx.threshold, sctx.confidence,
                               sctx.min_group_size, asked_intersections(fair, list(sctx.manifest.protected_attributes)))
        if ctx is not None:  # what a rule asks for and the statistics lack is its own inconclusive part
            carried = sctx.stats.intersection_names()
            ctx.not_carried = (
                f"the statistics carry the attributes {', '.join(sctx.stats.attributes) or 'none'} and the "
                f"intersections {', '.join(carried) or 'none'}; `audit stats` carries every pair of attributes, a "
                "streaming audit those its policy asks")
        return ctx

    ctx = sctx.once("fairness", build)
    if ctx is None:
        return Measurement(check_id, None, inconclusive=(
            f"the decision threshold {sctx.threshold} is not on the statistics' threshold grid "
            f"(multiples of 1/{sctx.stats.grid.threshold_bins})"))
    m = all_checks()[check_id].fn(ctx, **params)
    m.n = ctx.stats_rows
    return m


@check("fairness.auc_gap", classes="favourable", title="ROC-AUC gap between groups", direction="lower", params=GROUP_PARAMS, validate=_validate_groups,
       stats=_from_stats, stats_form="binned")
def auc_gap(ctx: CheckContext, **params) -> Measurement:
    """Largest minus smallest group ROC-AUC, over the attributes asked (MetricFrame(roc_auc_score).difference()).

    A gap means the score ranks applicants of one group less well than another's, whatever the threshold."""
    return _disparity(ctx, "fairness.auc_gap", ("roc_auc",), "difference", params)


@check("fairness.demographic_parity_difference", classes="favourable", title="Demographic-parity difference", direction="lower",
       unit="rate", params=GROUP_PARAMS, validate=_validate_groups,
       stats=_from_stats, stats_form="binned")
def demographic_parity_difference(ctx: CheckContext, **params) -> Measurement:
    """Largest minus smallest group selection rate, over the attributes asked (fairlearn's demographic_parity_difference).

    0 means every group gets the favourable decision equally often; 0.10 means the most favoured group gets it
    10 percentage points more often than the least favoured one, whatever the groups' true labels."""
    return _disparity(ctx, "fairness.demographic_parity_difference", ("selection_rate",), "difference", params)


@check("fairness.equal_opportunity_difference", classes="favourable", title="Equal-opportunity difference", direction="lower",
       unit="rate", params=GROUP_PARAMS, validate=_validate_groups,
       stats=_from_stats, stats_form="binned")
def equal_opportunity_difference(ctx: CheckContext, **params) -> Measurement:
    """Largest minus smallest group true-positive rate, over the attributes asked (fairlearn's equal_opportunity_difference).

    Among rows whose true label is the favourable one, how much more often one group is given the favourable
    decision than another."""
    return _disparity(ctx, "fairness.equal_opportunity_difference", ("tpr",), "difference", params)


@check("fairness.equalized_odds_difference", classes="favourable", title="Equalized-odds difference", direction="lower", unit="rate",
       params=GROUP_PARAMS, validate=_validate_groups,
       stats=_from_stats, stats_form="binned")
def equalized_odds_difference(ctx: CheckContext, **params) -> Measurement:
    """The larger of the between-group differences (max minus min) in true-positive rate and in false-positive rate (fairlearn's equalized_odds_difference).

    It asks whether applicants who deserve the favourable outcome get it equally often in every group, and
    whether those who do not get it by mistake equally often. A group needs enough rows of both true labels."""
    return _disparity(ctx, "fairness.equalized_odds_difference", ("tpr", "fpr"), "difference", params)


@check("fairness.predictive_parity_difference", classes="favourable", title="Predictive-parity difference", direction="lower",
       unit="rate", params=GROUP_PARAMS, validate=_validate_groups,
       stats=_from_stats, stats_form="binned")
def predictive_parity_difference(ctx: CheckContext, **params) -> Measurement:
    """Largest minus smallest group precision, over the attributes asked (MetricFrame(precision).difference()).

    Precision is the share of favourable decisions that turn out right; a gap means a favourable decision is
    worth more in one group than in another."""
    return _disparity(ctx, "fairness.predictive_parity_difference", ("precision",), "difference", params)


@check("fairness.selection_rate_ratio", classes="favourable", title="Selection-rate ratio (adverse impact)", direction="higher",
       unit="ratio", params={**GROUP_PARAMS, "reference": "most_favoured"}, validate=_validate_groups,
       stats=_from_stats, stats_form="binned")
def selection_rate_ratio(ctx: CheckContext, **params) -> Measurement:
    """Lowest group selection rate divided by the reference group's, over the attributes asked: the adverse-impact ratio.

    The selection rate is the share of a group that the model gives the favourable decision. With the most
    favoured group as reference this is fairlearn's MetricFrame.ratio() of the selection rate (smallest over
    largest); 1.0 is parity. Below 0.80 a group is selected less than four-fifths as often as the reference,
    the EEOC's screening rule for adverse impact, which is a heuristic, not a legal test. The reference may
    also be the largest group or a group the policy names."""
    return _disparity(ctx, "fairness.selection_rate_ratio", ("selection_rate",), "ratio", params)


# ---------------------------------------------------------------- counterfactual swaps
#
# A model of more than two classes (audit.classes): the swapped texts are re-scored through audit.rescore; a
# flip is a decision that turns from a favourable class (the policy's `favourable`) to an unfavourable one or
# back, so `refer` becoming `decline` is not a flip when neither is favourable (robustness.flip_rate counts any
# change of class); the score is the probability of a favourable class (the sum over them). The details then
# name the favourable classes and say what a flip is. (The check's own docstring is the report's text of every
# binary run, kept as it was.)


CF_PARAMS: dict[str, Any] = {"swaps": None, "examples": 5, "min_group_size": 0, "mode": "auto", "attributes": [],
                             "pairs": {}}
CF_MODES = ("auto", "template", "words")


@dataclass
class SwapOutcome:
    name: str
    source: str
    rows: np.ndarray  # eval rows whose text changed
    before: list[str]
    after: list[str]
    terms: dict[str, int]  # term -> times swapped
    old: np.ndarray  # scores
    new: np.ndarray
    old_fav: np.ndarray | None = None  # 1 where the decision is favourable (audit.rescore), before and after
    new_fav: np.ndarray | None = None
    old_cls: np.ndarray | None = None  # the decided class, before and after
    new_cls: np.ndarray | None = None


def _swap_outcomes(ctx: CheckContext, swaps: Any) -> list[SwapOutcome]:
    from audit import swaps as sw
    from audit.rescore import rescore, run_decisions

    lists = sw.load_all("gender" if swaps is None else swaps)
    cache = ctx.shared.swaps
    out = []
    for sl in lists:
        key = (sl.name, sl.source)
        if key not in cache:
            rows, before, after, terms = [], [], [], {}
            for i, text in enumerate(ctx.texts):
                new, found = sl.swap(text)
                if found and new != text:
                    rows.append(i)
                    before.append(text)
                    after.append(new)
                    for term in found:
                        terms[term] = terms.get(term, 0) + 1
            rows_ = np.array(rows, dtype=np.int64)
            got = rescore(ctx, after, desc=f"counterfactual swaps ({sl.name})")
            run = run_decisions(ctx)
            cache[key] = SwapOutcome(sl.name, sl.source, rows_, before, after, terms, ctx.score[rows_], got.score,
                                     run.favourable[rows_], got.favourable, run.predicted[rows_], got.predicted)
        out.append(cache[key])
    return out


def _clip(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT - 1] + "…"


# ---------------------------------------------------------------- counterfactuals of templated text


@dataclass
class ColumnSwapOutcome:
    """One protected attribute of templated text: each eval row re-rendered with the attribute's column set to
    each other value (audit.swaps.column_alternatives), and the re-scored texts."""

    name: str
    column: str
    rows: np.ndarray  # (C,) the eval row of each counterfactual text
    old_values: list[str]
    new_values: list[str]
    old_groups: list[str]
    new_groups: list[str]
    after: list[str]
    old: np.ndarray  # (C,) the rows' scores
    new: np.ndarray  # (C,) the counterfactual texts' scores
    problem: str = ""  # why nothing could be swapped
    old_fav: np.ndarray | None = None  # (C,) 1 where the decision is favourable (audit.rescore), before and after
    new_fav: np.ndarray | None = None
    old_cls: np.ndarray | None = None  # (C,) the decided class, before and after
    new_cls: np.ndarray | None = None


def _cf_mode(ctx: CheckContext, params: dict) -> str:
    """"template" when the text is a template (and the rule does not ask for words), else "words"."""
    mode = params.get("mode", "auto")
    if mode not in CF_MODES:
        raise ValueError(f"mode must be one of {', '.join(CF_MODES)}, got {mode!r}")
    templated = ctx.manifest is not None and getattr(ctx.manifest.text, "template", None) is not None
    if mode == "auto":
        return "template" if templated and ctx.frame is not None else "words"
    return mode


def _column_swaps(ctx: CheckContext, name: str, pairs: list | None) -> ColumnSwapOutcome:
    import json

    from audit import swaps as sw
    from audit.data import group_series, template_columns

    key = (name, json.dumps(pairs, sort_keys=True, default=str))
    cache = ctx.shared.column_swaps
    if key in cache:
        return cache[key]
    m = ctx.manifest
    attr = m.protected_attributes[name]
    empty = np.empty(0)

    def outcome(problem: str = "", **kw) -> ColumnSwapOutcome:
        none = np.empty(0, dtype=np.int64)
        base = dict(rows=np.empty(0, dtype=np.int64), old_values=[], new_values=[], old_groups=[], new_groups=[],
                    after=[], old=empty, new=empty, old_fav=none, new_fav=none, old_cls=none, new_cls=none)
        return ColumnSwapOutcome(name, attr.column, **{**base, **kw}, problem=problem)

    if attr.column not in template_columns(m.text.template):
        cache[key] = outcome(f"the text template does not use the column '{attr.column}' of {name}, so swapping "
                             f"its value changes no text")
        return cache[key]
    path = ctx.eval_path or "eval data"
    raw = [None if v is None or v != v else str(v) for v in ctx.frame[attr.column].tolist()]
    groups = group_series(ctx.frame, name, attr, path)
    group_list = [None if g is None or g != g else str(g) for g in groups.tolist()]
    group_of = {v: g for v, g in zip(raw, group_list) if v is not None and g is not None}
    if attr.bins is not None:
        reps = sw.bin_representatives(raw, attr.bins, attr.group_names())
        candidates = [reps[g] for g in attr.group_names() if g in reps]
        group_of.update({v: g for g, v in reps.items()})
    else:
        candidates = sorted(set(attr.map) if attr.map else set()) or sorted(set(group_of))
        if attr.map:
            group_of.update({str(k): str(v) for k, v in attr.map.items()})
    alts = sw.column_alternatives(raw, group_of, candidates, pairs)
    rows, old_v, new_v = [], [], []
    for i, v in enumerate(raw):
        for w in alts.get(v, []) if v is not None else []:
            rows.append(i)
            old_v.append(v)
            new_v.append(w)
    if not rows:
        why = ("no eval row has a value of the policy's pairs for " + name) if pairs else (
            f"no eval row of {name} has a value of another group to swap to")
        cache[key] = outcome(why)
        return cache[key]
    if attr.bins is not None:  # a pair's values may lie outside the representatives: bin them
        edges = np.asarray(attr.bins, dtype=float)
        labels = attr.group_names()

        def grp(v: str) -> str:
            try:
                return labels[int(np.searchsorted(edges, float(v), side="right"))]
            except ValueError:
                return "?"
    else:
        def grp(v: str) -> str:
            return group_of.get(v, v)
    after = sw.render_with(ctx.frame, m.text, attr.column, rows, new_v, path)
    rows_ = np.asarray(rows, dtype=np.int64)
    from audit.rescore import rescore, run_decisions

    got, run = rescore(ctx, after, desc=f"counterfactual swaps ({name})"), run_decisions(ctx)
    cache[key] = outcome(rows=rows_, old_values=old_v, new_values=new_v, old_groups=[grp(v) for v in old_v],
                         new_groups=[grp(v) for v in new_v], after=after, old=ctx.score[rows_], new=got.score,
                         old_fav=run.favourable[rows_], new_fav=got.favourable, old_cls=run.predicted[rows_],
                         new_cls=got.predicted)
    return cache[key]


def _row_means(W: np.ndarray, rows: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per eval row, the mean of x over its counterfactual texts (each row counts once, however many values it
    was swapped to), and the replicated weighted mean over those rows: (rows, (1 + R,))."""
    uniq, inv = np.unique(rows, return_inverse=True)
    per_row = np.bincount(inv, weights=x, minlength=len(uniq)) / np.bincount(inv, minlength=len(uniq))
    Wr = W[:, uniq]
    return uniq, _div(Wr @ per_row, Wr.sum(axis=1))


def _template_counterfactual(ctx: CheckContext, check_id: str, stat: str, params: dict) -> Measurement:
    """The counterfactual measurement of templated text: one Part per attribute, whose value is the share of
    its swapped rows whose decision flips (a row swapped to several values counts the share of them that
    flip) or the mean |score change|, with the bootstrap interval over rows; details list every pair of
    groups (from -> to) with its own numbers."""
    k = _floor(ctx, params.get("min_group_size"))
    examples = int(params.get("examples", 5))
    m = Measurement(check_id, None, n=0)
    try:
        from audit.data import make_texts

        groupings, problems = _groupings(ctx, params.get("attributes") or [], [])
    except _NoGroups as exc:
        m.inconclusive = str(exc)
        return m
    if make_texts(ctx.frame, ctx.manifest.text, ctx.eval_path or "eval data") != list(ctx.texts):
        m.inconclusive = ("rendering the text template again from the eval rows does not give the texts the model "
                          "scored, so a re-rendered counterfactual would change more than the attribute")
        return m
    pairs_by = params.get("pairs") or {}
    W, thr = ctx.weights, ctx.threshold
    replicated = W.shape[0] > 1
    ids = ctx.frame[ctx.manifest.id_column].astype(str).tolist() if ctx.manifest.id_column else None
    entries, parts, all_rows = [], [], []
    for grouping in groupings:
        o = _column_swaps(ctx, grouping.name, pairs_by.get(grouping.name))
        part = Part(grouping.name, kind="attribute")
        entry: dict[str, Any] = {"attribute": grouping.name, "column": o.column, "rows_total": len(ctx.texts),
                                 "rows_swapped": 0, "texts": len(o.rows), "value": None, "ci_low": None,
                                 "ci_high": None, "pairs": [], "examples": [], "inconclusive": o.problem or None}
        if o.problem:
            part.inconclusive = o.problem
            entries.append(entry)
            parts.append(part)
            continue
        flips = (o.old_fav != o.new_fav).astype(float)  # the decision is favourable on one side only
        delta = o.new - o.old
        uniq, flip_rate = _row_means(W, o.rows, flips)
        _, mean_abs = _row_means(W, o.rows, np.abs(delta))
        all_rows.append(uniq)
        v = flip_rate if stat == "flip_rate" else mean_abs
        low, high = _interval(v[1:], ctx.confidence) if replicated else [None, None]
        part.value, part.ci_low, part.ci_high, part.n = _f(v[0]), low, high, len(uniq)
        if len(uniq) < k:
            part.incomplete = f"only {len(uniq)} eval rows of {grouping.name} could be swapped (at least {k} needed)"
        if part.value is not None and replicated and low is None:
            part.inconclusive = "the interval is undefined on too many bootstrap replicates"
        pair_rows = []
        keys = list(dict.fromkeys(zip(o.old_groups, o.new_groups)))
        for a, b in keys:
            sel = np.array([(x, y) == (a, b) for x, y in zip(o.old_groups, o.new_groups)])
            u, fr = _row_means(W, o.rows[sel], flips[sel])
            _, ma = _row_means(W, o.rows[sel], np.abs(delta[sel]))
            pair_rows.append({
                "from": a, "to": b, "rows": len(u), "texts": int(sel.sum()),
                "values": sorted({f"{x} → {y}" for x, y, s_ in zip(o.old_values, o.new_values, sel) if s_})[:6],
                "flip_rate": _f(fr[0]), "flip_rate_ci": _interval(fr[1:], ctx.confidence) if replicated else [None, None],
                "flips": int(flips[sel].sum()),
                "mean_abs_score_change": _f(ma[0]),
                "mean_abs_score_change_ci": _interval(ma[1:], ctx.confidence) if replicated else [None, None],
                "mean_score_change": _f(delta[sel].mean())})
        order = np.lexsort((np.arange(len(delta)), -np.abs(delta), flips == 0))[:max(examples, 0)]
        entry.update(
            rows_swapped=len(uniq), value=part.value, ci_low=low, ci_high=high,
            inconclusive=part.inconclusive, incomplete=part.incomplete,
            flip_rate=_f(flip_rate[0]), flip_rate_ci=_interval(flip_rate[1:], ctx.confidence),
            flips=int(flips.sum()), rows_flipped=int(len(np.unique(o.rows[flips > 0]))),
            mean_abs_score_change=_f(mean_abs[0]), mean_abs_score_change_ci=_interval(mean_abs[1:], ctx.confidence),
            pairs=pair_rows,
            examples=[{"row": int(o.rows[j]), "id": ids[o.rows[j]] if ids else str(int(o.rows[j])),
                       "before": _clip(pii.redact(ctx.texts[o.rows[j]])), "after": _clip(pii.redact(o.after[j])),
                       "swap": f"{o.old_values[j]} → {o.new_values[j]}",
                       "score_before": _f(o.old[j]), "score_after": _f(o.new[j]),
                       "decision_before": decision_label(ctx, o.old_fav[j], o.old_cls[j]),
                       "decision_after": decision_label(ctx, o.new_fav[j], o.new_cls[j]),
                       "flipped": bool(flips[j])} for j in order])
        entries.append(entry)
        parts.append(part)
    parts += [Part(name, kind=kind_, inconclusive=why) for name, kind_, why in problems]
    m.parts = parts
    m.n = int(len(np.unique(np.concatenate(all_rows)))) if all_rows else 0
    judged = [p for p in parts if p.value is not None and not p.inconclusive] or [p for p in parts if p.value is not None]
    worst = max(judged, key=lambda p: p.value) if judged else None
    if worst is not None:
        m.value, m.ci_low, m.ci_high = worst.value, worst.ci_low, worst.ci_high
    m.details = {"statistic": stat, "mode": "template", "decision_threshold": thr,
                 "favourable_label": ctx.positive_label, **_favourable_details(ctx), "min_group_size": k,
                 "swapped_attributes": entries,
                 "worst_attribute": worst.name if worst else None, "rows_total": len(ctx.texts), "rows_changed": m.n,
                 "caveats": ["The text is made by a template from columns: each eval row is rendered again with "
                             "the protected column set to each value of another group, everything else as it was.",
                             "A row swapped to several values counts the share of them that flip its decision.",
                             "Other columns can still carry the attribute (see the proxy check)."]}
    return m


def _favourable_details(ctx: CheckContext) -> dict[str, Any]:
    """For a model of more than two classes: which classes are favourable (a flip crosses between them and the
    others). Nothing for a binary model, whose details are those of every earlier release."""
    if not ctx.multiclass:
        return {}
    return {"favourable": ctx.classes.favourable_labels, "classes": list(ctx.classes.labels),
            "flip": "the decided class turns from a favourable class to an unfavourable one, or back"}


def _counterfactual(ctx: CheckContext, check_id: str, stat: str, params: dict) -> Measurement:
    k = _floor(ctx, params.get("min_group_size"))
    examples = int(params.get("examples", 5))
    m = Measurement(check_id, None, n=0)
    if not ctx.texts or len(ctx.texts) != len(ctx.score):
        m.inconclusive = "the eval texts are not available to this check"
        return m
    if ctx.bundle is None or getattr(ctx.bundle, "model", None) is None:
        m.inconclusive = "the run has no model loaded to re-score the swapped texts"
        return m
    if _cf_mode(ctx, params) == "template":
        return _template_counterfactual(ctx, check_id, stat, params)
    outcomes = _swap_outcomes(ctx, params.get("swaps"))
    W = ctx.weights
    ids = None
    if ctx.frame is not None and ctx.manifest is not None and getattr(ctx.manifest, "id_column", None):
        ids = ctx.frame[ctx.manifest.id_column].astype(str).tolist()
    lists, parts = [], []
    replicated = W.shape[0] > 1
    for o in outcomes:
        flips = o.old_fav != o.new_fav  # the decision is favourable on one side only
        delta = o.new - o.old
        Wc = W[:, o.rows]  # the bootstrap weights of the changed rows only
        total = Wc.sum(axis=1)
        flip_rate = _div(Wc @ flips.astype(float), total)
        mean_abs = _div(Wc @ np.abs(delta), total)
        v = flip_rate if stat == "flip_rate" else mean_abs
        order = np.lexsort((o.rows, -np.abs(delta), ~flips))[:max(examples, 0)]  # flips first, then |change|
        # each list is its own part, with its own interval: a list with few changed rows cannot widen or hide
        # the verdict on another
        low, high = _interval(v[1:], ctx.confidence) if replicated else [None, None]
        why, few = "", ""
        if not len(o.rows):
            why = f"no eval text contains a term of the '{o.name}' list"
        elif len(o.rows) < k:  # a flip seen on few texts is still a flip: a violation stands, a pass does not
            texts = "eval text contains" if len(o.rows) == 1 else "eval texts contain"
            few = f"only {len(o.rows)} {texts} a term of the '{o.name}' list (at least {k} needed for a pass)"
        if not why and _f(v[0]) is not None and replicated and low is None:
            why = f"the interval of the '{o.name}' list is undefined on too many bootstrap replicates"
        entry = {
            "list": o.name, "source": o.source, "rows_total": len(ctx.texts), "rows_changed": len(o.rows),
            "share_changed": len(o.rows) / len(ctx.texts),
            "value": _f(v[0]), "ci_low": low, "ci_high": high, "inconclusive": why or None,
            "incomplete": few or None,
            "terms_swapped": dict(sorted(o.terms.items(), key=lambda kv: (-kv[1], kv[0]))[:20]),
            "flip_rate": _f(flip_rate[0]), "flip_rate_ci": _interval(flip_rate[1:], ctx.confidence),
            "flips": int(flips.sum()),
            "flips_to_favourable": int(((o.old_fav == 0) & (o.new_fav == 1)).sum()),
            "flips_to_unfavourable": int(((o.old_fav == 1) & (o.new_fav == 0)).sum()),
            "mean_abs_score_change": _f(mean_abs[0]), "mean_abs_score_change_ci": _interval(mean_abs[1:], ctx.confidence),
            "mean_score_change": _f(delta.mean()) if len(delta) else None,
            "max_abs_score_change": _f(np.abs(delta).max()) if len(delta) else None,
            "examples": [{"row": int(o.rows[j]), "id": ids[o.rows[j]] if ids else str(int(o.rows[j])),
                          "before": _clip(pii.redact(o.before[j])), "after": _clip(pii.redact(o.after[j])),
                          "score_before": _f(o.old[j]), "score_after": _f(o.new[j]),
                          "decision_before": decision_label(ctx, o.old_fav[j], o.old_cls[j]),
                          "decision_after": decision_label(ctx, o.new_fav[j], o.new_cls[j]),
                          "flipped": bool(flips[j])} for j in order],
        }
        lists.append(entry)
        parts.append(Part(o.name, kind="swap list", value=entry["value"], ci_low=low, ci_high=high,
                          n=len(o.rows), inconclusive=why or None, incomplete=few or None))
    m.parts = parts
    m.n = int(len(np.unique(np.concatenate([o.rows for o in outcomes])))) if outcomes else 0
    # the value is the worst list's own number and interval (not a maximum over lists bootstrapped jointly):
    # the worst of the lists that can be judged, else the worst of those with a number at all
    judged = [p for p in parts if p.value is not None and not p.inconclusive] or [p for p in parts if p.value is not None]
    worst = max(judged, key=lambda p: p.value) if judged else None
    if worst is not None:
        m.value, m.ci_low, m.ci_high = worst.value, worst.ci_low, worst.ci_high
    m.details = {"statistic": stat, "mode": "words", "decision_threshold": ctx.threshold,
                 "favourable_label": ctx.positive_label, **_favourable_details(ctx), "min_group_size": k, "lists": lists, "worst_list": worst.name if worst else None,
                 "rows_total": len(ctx.texts), "rows_changed": m.n,
                 "caveats": ["Only texts that contain a term of a swap list count; the others carry no evidence "
                             "either way.", "Each swap list is judged on its own, on the texts it changed; the "
                             "value shown is the worst list's.", "A swap changes words, not facts: a model may "
                             "also read a protected attribute through proxies (names, places, amounts) that no "
                             "list swaps."]}
    return m


# ---------------------------------------------------------------- counterfactual swaps from a silo's counts


def _swap_key(swaps: Any, threshold: float) -> dict[str, Any]:
    from audit import swaps as sw

    lists = sw.load_all("gender" if swaps is None else swaps)
    return {"lists": [[sl.name, sl.source] for sl in lists], "threshold": float(threshold)}


def _counterfactual_collect(ctx: CheckContext, check_id: str, **params):
    """In the silo: per swap list, the rows swapped, the flips, the sum of |score change| (with their bootstrap
    sums under the run's row-id weights, as in memory), the flips each way, the sum of score changes, the
    largest |change| and the terms swapped. Sensitivity (one row added or removed), per list: at most 1 in the
    rows scanned, the rows swapped, the flips, the flips of one direction, the sum of |change| and the sum of
    change (scores are in [0, 1]): L1 = 6 per list. The largest change and the term tallies are not bounded
    and are not released under noise."""
    from audit.mergeable import Counts, SiloStat

    if not ctx.texts or ctx.bundle is None or getattr(ctx.bundle, "model", None) is None:
        return None
    outcomes = _swap_outcomes(ctx, params.get("swaps"))
    W = ctx.weights
    R = W.shape[0] - 1
    thr = ctx.threshold
    st = SiloStat("counterfactual", _swap_key(params.get("swaps"), thr), l1=6.0 * len(outcomes))
    for o in outcomes:
        flips = o.old_fav != o.new_fav
        delta = o.new - o.old
        Wc = W[:, o.rows]
        sums = np.column_stack([Wc.sum(axis=1), Wc @ flips.astype(float), Wc @ np.abs(delta)])
        st.tables[f"replicated {o.name}"] = Counts((3,), R, sums[0].copy(), sums[1:].copy() if R else None)
        st.tables[f"counts {o.name}"] = Counts((4,), 0, np.array([
            float(len(ctx.texts)), float(((o.old_fav == 0) & (o.new_fav == 1)).sum()),
            float(((o.old_fav == 1) & (o.new_fav == 0)).sum()), float(delta.sum())]))
        st.maxima[f"max_abs {o.name}"] = float(np.abs(delta).max()) if len(delta) else 0.0
        st.tallies[f"terms {o.name}"] = {k: float(v) for k, v in o.terms.items()}
    return st


def _counterfactual_from_stats(sctx, check_id: str, stat: str, params: dict) -> Measurement:
    """The counterfactual check from silos' counts: per swap list the same rate, interval and part as in
    memory on one silo's rows (the same sums under the same row-id weights); silos' counts added. No example
    text leaves a silo."""
    from audit.from_stats import carried

    key = _swap_key(params.get("swaps"), sctx.threshold)
    st, why = carried(sctx, check_id, "counterfactual", key)
    if st is None:
        return why
    k = _floor(sctx, params.get("min_group_size"))
    m = Measurement(check_id, None, n=0)
    lists, parts = [], []
    rows_total = 0
    for name, source in key["lists"]:
        rep = st.tables[f"replicated {name}"]
        M = sctx.replicates.table(rep)
        cnt = st.tables[f"counts {name}"].point
        rows_total = int(round(max(float(cnt[0]), 0.0)))
        changed = int(round(max(float(rep.point[0]), 0.0)))
        replicated = M.shape[0] > 1
        flip_rate = _div(M[:, 1], M[:, 0])
        mean_abs = _div(M[:, 2], M[:, 0])
        v = flip_rate if stat == "flip_rate" else mean_abs
        low, high = _interval(v[1:], sctx.confidence) if replicated else [None, None]
        why, few = "", ""
        if not changed:
            why = f"no eval text contains a term of the '{name}' list"
        elif changed < k:
            texts = "eval text contains" if changed == 1 else "eval texts contain"
            few = f"only {changed} {texts} a term of the '{name}' list (at least {k} needed for a pass)"
        if not why and _f(v[0]) is not None and replicated and low is None:
            why = f"the interval of the '{name}' list is undefined on too many bootstrap replicates"
        terms = st.tallies.get(f"terms {name}") or {}
        biggest = st.maxima.get(f"max_abs {name}")
        entry = {
            "list": name, "source": source, "rows_total": rows_total, "rows_changed": changed,
            "value": _f(v[0]), "ci_low": low, "ci_high": high, "inconclusive": why or None,
            "incomplete": few or None,
            "terms_swapped": {t: int(round(c)) for t, c in sorted(terms.items(), key=lambda kv: (-kv[1], kv[0]))[:20]},
            "flip_rate": _f(flip_rate[0]), "flip_rate_ci": _interval(flip_rate[1:], sctx.confidence),
            "flips": int(round(float(rep.point[1]))),
            "flips_to_favourable": int(round(float(cnt[1]))), "flips_to_unfavourable": int(round(float(cnt[2]))),
            "mean_abs_score_change": _f(mean_abs[0]),
            "mean_abs_score_change_ci": _interval(mean_abs[1:], sctx.confidence),
            "mean_score_change": _f(cnt[3] / changed) if changed else None,
            "max_abs_score_change": _f(biggest) if changed and biggest is not None else None,
            "examples": [],
        }
        lists.append(entry)
        parts.append(Part(name, kind="swap list", value=entry["value"], ci_low=low, ci_high=high, n=changed,
                          inconclusive=why or None, incomplete=few or None))
    m.parts = parts
    # texts changed by any list: a silo's counts do not say which rows two lists share, so the largest list's
    m.n = max((p.n for p in parts), default=0)
    judged = [p for p in parts if p.value is not None and not p.inconclusive] or [p for p in parts if p.value is not None]
    worst = max(judged, key=lambda p: p.value) if judged else None
    if worst is not None:
        m.value, m.ci_low, m.ci_high = worst.value, worst.ci_low, worst.ci_high
    m.details = {"statistic": stat, "decision_threshold": sctx.threshold, "favourable_label": sctx.manifest.positive_label,
                 "min_group_size": k, "lists": lists, "worst_list": worst.name if worst else None,
                 "rows_total": rows_total, "rows_changed": m.n,
                 "examples_note": "no example text leaves a silo: only counts were merged",
                 "caveats": ["Only texts that contain a term of a swap list count; the others carry no evidence "
                             "either way.", "Each swap list is judged on its own, on the texts it changed; the "
                             "value shown is the worst list's.", "A swap changes words, not facts: a model may "
                             "also read a protected attribute through proxies (names, places, amounts) that no "
                             "list swaps."]}
    return m


def _cf_flip_stats(sctx, check_id: str, **params) -> Measurement:
    return _counterfactual_from_stats(sctx, check_id, "flip_rate", params)


def _cf_change_stats(sctx, check_id: str, **params) -> Measurement:
    return _counterfactual_from_stats(sctx, check_id, "score_change", params)


_cf_flip_stats.collect = _counterfactual_collect  # type: ignore[attr-defined]
_cf_change_stats.collect = _counterfactual_collect  # type: ignore[attr-defined]


def _validate_swaps(params: dict) -> None:
    """At policy load: the swap lists must exist and parse (raises ValueError naming the problem)."""
    from audit import swaps

    if params.get("swaps") is not None:
        swaps.load_all(params["swaps"])
    if params.get("mode", "auto") not in CF_MODES:
        raise ValueError(f"mode must be one of {', '.join(CF_MODES)}, got {params.get('mode')!r}")
    if not isinstance(params.get("attributes", []), list):
        raise ValueError("attributes must be a list of the manifest's attribute names")
    swaps.validate_pairs(params.get("pairs") or None)


@check("fairness.counterfactual_flip_rate", classes="favourable", title="Counterfactual decision flip rate", direction="lower",
       unit="rate", params=CF_PARAMS, cost="counterfactual", validate=_validate_swaps,
       evidence="texts with a term to swap", stats=_cf_flip_stats, stats_form="silo")
def counterfactual_flip_rate(ctx: CheckContext, **params) -> Measurement:
    """Share of eval texts whose decision changes when the applicant's protected attribute is swapped, worst attribute or swap list.

    Templated text (the manifest's recipe is a template over columns): each row is rendered again with the
    protected column set to each value of another group (or the policy's `pairs`) and re-scored, one part per
    attribute. Free text: identity terms are swapped (he/she, Mr/Ms, ...), one part per swap list, and only texts
    that contain a term of the list count; the policy's swaps name bundled lists (gender, national_origin, age,
    marital_status, religion, race) or YAML files of pairs; the default is gender. A flip is a decision on the
    other side of the threshold: a model should not change its decision because of who the applicant is. A part
    with nothing to swap is INCONCLUSIVE, never a pass."""
    return _counterfactual(ctx, "fairness.counterfactual_flip_rate", "flip_rate", params)


@check("fairness.counterfactual_score_change", classes="favourable", title="Counterfactual mean score change", direction="lower",
       unit="rate", params=CF_PARAMS, cost="counterfactual", validate=_validate_swaps,
       evidence="texts with a term to swap", stats=_cf_change_stats, stats_form="silo")
def counterfactual_score_change(ctx: CheckContext, **params) -> Measurement:
    """Mean absolute change of the score when the applicant's protected attribute (templated text) or identity terms (free text) are swapped, worst part.

    It counts every change, also those that do not cross the threshold: a model that moves its score by 0.05
    when "he" becomes "she", or when the applicant's sex column is swapped, reads it even if few decisions flip.
    The score is the probability of the favourable outcome (for more than two classes, the sum over the
    favourable classes)."""
    return _counterfactual(ctx, "fairness.counterfactual_score_change", "score_change", params)


# ---------------------------------------------------------------- the group checks from mergeable statistics


def group_table(g: GroupConfusion, M: np.ndarray, threshold_k: int, grouping):
    """The GroupTable of one attribute from its (1 + R, G, 2, bins) counts: the same rates as _table computes
    from rows, from the counts at the threshold on the grid (and a binned per-group ROC-AUC)."""
    from audit.mergeable import binned_auc

    pos_rows, neg_rows = M[:, :, 1, :], M[:, :, 0, :]
    # sums first, then clipped: with noised counts a cell can be negative, and clipping cells would bias sums
    pos = np.clip(pos_rows.sum(axis=2), 0, None)
    neg = np.clip(neg_rows.sum(axis=2), 0, None)
    tp = np.clip(pos_rows[:, :, threshold_k:].sum(axis=2), 0, pos)
    fp = np.clip(neg_rows[:, :, threshold_k:].sum(axis=2), 0, neg)
    n, pp = pos + neg, tp + fp
    tn, fn = neg - fp, pos - tp
    rates = {"selection_rate": _div(pp, n), "tpr": _div(tp, pos), "fpr": _div(fp, neg), "fnr": _div(fn, pos),
             "precision": _div(tp, pp), "accuracy": _div(tp + tn, n), "roc_auc": np.clip(binned_auc(pos_rows, neg_rows), 0, 1)}
    r0 = {k: v[0] for k, v in rates.items()}
    return GroupTable(grouping, np.round(n[0]).astype(int), np.round(pos[0]).astype(int),
                      np.round(neg[0]).astype(int), np.round(pp[0]).astype(int), r0,
                      {k: v[1:] for k, v in rates.items()})


def canonical_groups(names: list[str], known: list[str]) -> list[str]:
    """Group order of the in-memory fairness check (audit.checks.fairness._attribute): the manifest's defined
    groups first, then the other values, sorted."""
    return known + sorted(set(names) - set(known))


def _intersection_table(stats, parts: list[str], order: dict[str, list[str]]) -> GroupConfusion | None:
    """The table of the intersection `parts` with its groups in the in-memory check's order (every combination
    of the parts' groups, row-major as itertools.product): from the carried table of the same parts, in this or
    another order (groups renamed); None when the statistics do not carry it."""
    import itertools

    from audit.mergeable import intersection_name

    stored = next((p for p in stats.intersections if sorted(p) == sorted(parts)), None)
    if stored is None or any(p not in order for p in parts):
        return None
    g = stats.crossed[intersection_name(stored)]
    names, source = [], []
    for combo in itertools.product(*(order[p] for p in parts)):
        by_part = dict(zip(parts, combo))
        names.append(intersection_name(combo))
        source.append(intersection_name([by_part[p] for p in stored]))
    extra = [x for x in g.groups if x not in set(source)]  # not a combination of known groups: kept, at the end
    t = g.aligned(source + extra)
    t.groups = names + extra
    t.attribute = intersection_name(parts)
    return t


def asked_intersections(rule_params: list[dict[str, Any]], mapped: list[str]) -> list[list[str]]:
    """The intersections the fairness rules ask for whose parts the manifest maps, each once, in policy order
    (items that do not parse are left to the check, which reports them)."""
    out: dict[tuple[str, ...], list[str]] = {}
    for p in rule_params:
        items = p.get("intersections") or []
        for item in items if isinstance(items, list) else []:
            try:
                parts = _parse_intersection(item)
            except ValueError:
                continue
            if all(x in mapped for x in parts):
                out.setdefault(tuple(parts), parts)
    return list(out.values())


def policy_intersections(policy, available: list[str]) -> list[list[str]]:
    """The intersections a policy's fairness rules ask for that can be formed from the `available` attributes
    (what a streaming audit, which knows the policy, carries), each set of parts once."""
    from audit.checks import all_checks

    specs = all_checks()
    params = [{**specs[cid].params, **r.params} for cid, r in policy.checks.items()
              if cid in specs and specs[cid].family == "fairness"]
    out, seen = [], set()
    for parts in asked_intersections(params, available):
        if frozenset(parts) not in seen:
            seen.add(frozenset(parts))
            out.append(parts)
    return out


def fairness_context(stats, reps, manifest, threshold: float, confidence: float,
                     min_group_size: int, intersections: list[list[str]] | None = None):
    """A CheckContext whose fairness caches hold group tables built from the statistics, so the fairness
    family's own disparity code (audit.checks.fairness) judges them: one per attribute, and one per intersection
    in `intersections` that the statistics carry (in any order of its parts). Groups are listed in the in-memory
    check's order. None when the threshold is off the grid."""
    import pandas as pd

    from audit.context import CheckContext
    from audit.mergeable import threshold_index

    k = threshold_index(threshold, stats.grid.threshold_bins)
    if k is None:
        return None

    class StatsGrouping(Grouping):
        @property
        def missing(self) -> int:  # type: ignore[override]
            return self._missing

    ctx = CheckContext(y_true=np.zeros(0, dtype=np.int8), score=np.zeros(0), threshold=threshold,
                       confidence=confidence, replicates=stats.grid.replicates, seed=stats.grid.seed,
                       min_group_size=min_group_size, positive_label=manifest.positive_label,
                       negative_label=manifest.negative_label, frame=pd.DataFrame(), manifest=manifest)
    ctx.__dict__["weights"] = np.zeros((1 + stats.grid.replicates, 0))
    groupings, tables = {}, {}
    attrs = manifest.protected_attributes
    order: dict[str, list[str]] = {}

    from audit.mergeable import intersection_name

    def add(parts: list[str], g: GroupConfusion) -> None:
        name = intersection_name(parts)
        if len(parts) == 1:
            notes = [" ".join(attrs[name].note.split())] if name in attrs and attrs[name].note.strip() else []
        else:
            notes = [f"{p}: {' '.join(attrs[p].note.split())}" for p in parts if p in attrs and attrs[p].note.strip()]
        grouping = StatsGrouping(name, "attribute" if len(parts) == 1 else "intersection", list(parts),
                                 [attrs[p].column if p in attrs else p for p in parts], list(g.groups),
                                 np.zeros(0, dtype=np.int64), notes)
        grouping._missing = int(round(max(g.missing, 0)))
        groupings[tuple(parts)] = grouping
        tables[name] = group_table(g, reps.groups(g), k, grouping)

    for name, g in stats.groups.items():
        known = [str(x) for x in attrs[name].group_names()] if name in attrs else []
        order[name] = canonical_groups(g.groups, known)
        add([name], g.aligned(order[name]))
    for parts in intersections or []:
        t = _intersection_table(stats, list(parts), order)
        if t is not None:
            add(list(parts), t)
    ctx.shared.groupings.update(groupings)
    ctx.shared.group_tables.update(tables)
    ctx.stats_rows = int(round(stats.scores.counts.point.clip(0).sum()))
    return ctx
