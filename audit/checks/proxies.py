"""Proxies (fairness family): can the text reveal a protected attribute the model is not given?

Dropping the protected column does not make a model blind when the text carries the attribute anyway (a
marital-status phrase that tells the applicant's sex, a first name, a neighbourhood). For each protected
attribute the manifest maps, a cross-validated classifier is trained to predict the attribute from what the
model reads:

- `embeddings`: the model's own mean-pooled last-layer embeddings of the eval texts (audit.scoring, the same
  pass that scored them), standardized, into scikit-learn's LogisticRegression;
- `words`: a binary bag of words of the eval texts (scikit-learn's CountVectorizer, words that occur in at
  least two texts) into the same classifier (liblinear for two groups, lbfgs for more).

Each classifier's out-of-fold probabilities (StratifiedKFold, `folds` folds, shuffled with the policy's seed)
give its ROC-AUC: two groups, the usual AUC; more, the one-vs-rest macro average (scikit-learn's
`roc_auc_score(..., multi_class="ovr", average="macro")`). 0.5 says this classifier found nothing in the text
that tells the groups apart; 1.0 says the attribute can be read off the text. The interval is the run's Poisson
bootstrap (ctx.weights) over the out-of-fold predictions: it carries the sampling of rows, not the refitting of
the classifier on each replicate, so it is somewhat narrow. A high AUC does not show that the model USES the
attribute (the counterfactual and SHAP checks ask that); it shows that a model which wanted to could, so a
blind protected column is no defence.

The words that carry it: the largest coefficients of the bag-of-words classifier refitted on all rows (for two
groups, the largest positive and negative ones, each named with the group it points to; for more, each group's
largest positive ones).

Each attribute is one Part (kind "attribute") whose value is the larger of its representations' AUCs, with that
representation's own interval; details["proxies"] holds both. Groups with fewer rows than `min_group_size` are
left out of the classifier (the part is then `incomplete`); fewer than two groups left make the part
INCONCLUSIVE, as does an attribute that the policy names and the manifest does not map.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from audit.checks import check
from audit.context import CheckContext
from audit.result import Measurement, Part

REPRESENTATIONS = ("embeddings", "words")
PROXY_PARAMS: dict[str, Any] = {"attributes": [], "representations": list(REPRESENTATIONS), "folds": 5,
                                "top_words": 10, "min_group_size": 0, "C": 1.0}
MIN_DF = 2  # a word in one text only is an identifier, not a proxy


def _validate(params: dict) -> None:
    """At policy load (raises ValueError naming the parameter)."""
    reps = params.get("representations")
    if not isinstance(reps, list) or not reps or any(r not in REPRESENTATIONS for r in reps):
        raise ValueError(f"representations must be a non-empty list of {', '.join(REPRESENTATIONS)}, got {reps!r}")
    folds = params.get("folds")
    if isinstance(folds, bool) or not isinstance(folds, int) or not 2 <= folds <= 20:
        raise ValueError(f"folds must be a whole number from 2 to 20, got {folds!r}")
    top = params.get("top_words")
    if isinstance(top, bool) or not isinstance(top, int) or not 0 <= top <= 100:
        raise ValueError(f"top_words must be a whole number from 0 to 100, got {top!r}")
    c = params.get("C")
    if isinstance(c, bool) or not isinstance(c, (int, float)) or not c > 0:
        raise ValueError(f"C (the inverse regularization strength) must be a positive number, got {c!r}")
    if not isinstance(params.get("attributes"), list):
        raise ValueError("attributes must be a list of the manifest's attribute names")
    k = params.get("min_group_size")
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise ValueError(f"min_group_size must be 0 (the policy's) or a whole number, got {k!r}")


def classifier(C: float, groups: int):
    """scikit-learn's LogisticRegression: liblinear for two groups (ten times faster than lbfgs on these small
    sparse problems), lbfgs (multinomial) for more."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=C, max_iter=2000, solver="liblinear" if groups == 2 else "lbfgs")


def out_of_fold(X, codes: np.ndarray, *, folds: int, seed: int, C: float, scale: bool) -> np.ndarray:
    """(n, G) out-of-fold class probabilities of a logistic regression from X to the group codes 0..G-1."""
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    G = int(codes.max()) + 1
    out = np.zeros((len(codes), G))
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(codes)), codes):
        lr = classifier(C, G)
        model = make_pipeline(StandardScaler(), lr) if scale else lr
        model.fit(X[train], codes[train])
        out[np.ix_(test, lr.classes_)] = model.predict_proba(X[test])
    return out


def weighted_macro_auc(W: np.ndarray, codes: np.ndarray, P: np.ndarray) -> np.ndarray:
    """The AUC of probabilities P (n, G) for group codes on every row of the weights W (R, n): for two groups
    the AUC of P[:, 1]; for more, the mean over groups of the one-vs-rest AUC of P[:, g]."""
    from audit.checks.fairness import _weighted_auc

    idx = np.arange(len(codes))
    G = P.shape[1]
    if G == 2:
        return _weighted_auc(W, idx, (codes == 1).astype(int), P[:, 1])
    return np.mean([_weighted_auc(W, idx, (codes == g).astype(int), P[:, g]) for g in range(G)], axis=0)


def _words(texts: list[str]):
    from sklearn.feature_extraction.text import CountVectorizer

    vec = CountVectorizer(binary=True, min_df=MIN_DF, lowercase=True)
    try:
        X = vec.fit_transform(texts)
    except ValueError:  # no word occurs in two texts
        return None, []
    return X.tocsr(), list(vec.get_feature_names_out())


def carrying_words(X, vocab: list[str], codes: np.ndarray, groups: list[str], *, C: float, top: int) -> list[dict]:
    """The bag-of-words coefficients that carry the attribute: for two groups the `top` largest |coefficients|
    (a positive one points to groups[1]); for more, each group's `top` largest positive ones."""
    from audit import pii

    if top <= 0:
        return []
    lr = classifier(C, len(groups)).fit(X, codes)
    coef = lr.coef_
    out = []
    if coef.shape[0] == 1:
        w = coef[0]
        for j in np.lexsort((np.arange(len(w)), -np.abs(w)))[:top]:
            out.append({"word": pii.redact(vocab[j]), "coefficient": round(float(w[j]), 4),
                        "group": groups[1] if w[j] > 0 else groups[0]})
    else:
        for g, w in enumerate(coef):
            for j in np.lexsort((np.arange(len(w)), -w))[:top]:
                if w[j] > 0:
                    out.append({"word": pii.redact(vocab[j]), "coefficient": round(float(w[j]), 4),
                                "group": groups[int(lr.classes_[g])]})
    return out


def _interval(reps: np.ndarray, confidence: float) -> tuple[float | None, float | None]:
    from audit import stats

    reps = reps[np.isfinite(reps)]
    if reps.size == 0:
        return None, None
    lo, hi = stats.percentile_interval(reps, confidence)
    return lo, hi


@check("fairness.proxy_auc", classes="any", title="Proxy AUC: the protected attribute read from the text", direction="lower",
       params=PROXY_PARAMS, cost="proxy", validate=_validate, evidence="rows with a value for the attribute",
       embeddings=True)
def proxy_auc(ctx: CheckContext, **params) -> Measurement:
    """How well a cross-validated classifier reads each protected attribute from the model's embeddings or the words of the text (ROC-AUC, worst attribute).

    0.5 means the classifier found nothing in the text that tells the groups apart; near 1.0 the attribute can be
    read off the text, so leaving the protected column out does not keep it from the model. It shows that the
    model COULD use the attribute, not that it does (the counterfactual and SHAP checks ask that); the words
    listed are the ones that carry it."""
    from audit.checks.fairness import _f, _floor, _groupings, _NoGroups

    _validate(params)
    k = _floor(ctx, params.get("min_group_size"))
    folds, C, top = int(params["folds"]), float(params["C"]), int(params["top_words"])
    m = Measurement("fairness.proxy_auc", None, n=len(ctx.texts))
    if not ctx.texts or len(ctx.texts) != len(ctx.y_true):
        m.inconclusive = "the eval texts are not available to this check"
        return m
    try:
        groupings, problems = _groupings(ctx, params.get("attributes") or [], [])
    except _NoGroups as exc:
        m.inconclusive = str(exc)
        return m
    emb = getattr(ctx.predictions, "embeddings", None)
    W_all = ctx.weights
    entries, parts = [], []
    bag = None
    for grouping in groupings:
        codes_all = grouping.codes
        counts = np.bincount(codes_all[codes_all >= 0], minlength=len(grouping.groups))
        kept_groups = [g for g in range(len(grouping.groups)) if counts[g] >= max(k, folds)]
        small = [f"'{grouping.groups[g]}' ({counts[g]} rows)" for g in range(len(grouping.groups))
                 if 0 < counts[g] < max(k, folds)]
        rows = np.flatnonzero(np.isin(codes_all, kept_groups))
        remap = {g: i for i, g in enumerate(kept_groups)}
        codes = np.array([remap[c] for c in codes_all[rows]], dtype=np.int64)
        names = [grouping.groups[g] for g in kept_groups]
        entry: dict[str, Any] = {"attribute": grouping.name, "columns": grouping.columns, "groups": names,
                                 "group_rows": [int(counts[g]) for g in kept_groups], "rows": int(len(rows)),
                                 "left_out": small, "missing_rows": grouping.missing, "representations": {},
                                 "words": [], "value": None, "ci_low": None, "ci_high": None, "representation": None}
        part = Part(grouping.name, kind="attribute", n=int(len(rows)))
        if len(kept_groups) < 2:
            part.inconclusive = (f"fewer than two groups of {grouping.name} have at least {max(k, folds)} rows"
                                 + (f" (too small: {', '.join(small)})" if small else ""))
        else:
            W = W_all[:, rows]
            for rep in params["representations"]:
                if rep == "embeddings":
                    if emb is None or len(emb) != len(ctx.texts):
                        entry["representations"][rep] = {"note": "the run has no embeddings of the eval texts"}
                        continue
                    X, scale = np.asarray(emb, dtype=float)[rows], True
                else:
                    if bag is None:
                        bag = _words(list(ctx.texts))
                    if bag[0] is None:
                        entry["representations"][rep] = {"note": "no word occurs in two eval texts"}
                        continue
                    X, scale = bag[0][rows], False
                P = out_of_fold(X, codes, folds=folds, seed=ctx.seed, C=C, scale=scale)
                aucs = weighted_macro_auc(W, codes, P)
                lo, hi = _interval(aucs[1:], ctx.confidence) if W.shape[0] > 1 else (None, None)
                entry["representations"][rep] = {"auc": _f(aucs[0]), "ci_low": _f(lo), "ci_high": _f(hi),
                                                 "folds": folds}
                if rep == "words":
                    entry["words"] = carrying_words(X, bag[1], codes, names, C=C, top=top)
            measured = [(r, d) for r, d in entry["representations"].items() if d.get("auc") is not None]
            if not measured:
                part.inconclusive = "; ".join(d.get("note", "") for d in entry["representations"].values()) or \
                    "no representation could be measured"
            else:
                rep, d = max(measured, key=lambda rd: rd[1]["auc"])
                part.value, part.ci_low, part.ci_high = d["auc"], d["ci_low"], d["ci_high"]
                entry.update(value=d["auc"], ci_low=d["ci_low"], ci_high=d["ci_high"], representation=rep)
                if W.shape[0] > 1 and d["ci_low"] is None:
                    part.inconclusive = "the interval is undefined on the bootstrap replicates"
                elif small:
                    part.incomplete = f"groups too small for the classifier, left out: {', '.join(small)}"
        entry["note"] = part.inconclusive or part.incomplete or ""
        entries.append(entry)
        parts.append(part)
    parts += [Part(name, kind=kind_, inconclusive=why) for name, kind_, why in problems]
    m.parts = parts
    judged = [p for p in parts if p.value is not None and not p.inconclusive] or [p for p in parts if p.value is not None]
    worst = max(judged, key=lambda p: p.value) if judged else None
    if worst is not None:
        m.value, m.ci_low, m.ci_high = worst.value, worst.ci_low, worst.ci_high
    m.details = {"proxies": entries, "worst": worst.name if worst else None, "folds": folds, "min_group_size": k,
                 "not_measured": [{"attribute": n, "reason": w} for n, _, w in problems],
                 "caveats": ["A proxy AUC shows that the text carries the attribute, so the model could use it; it "
                             "does not show that the model does (see the counterfactual and explanation checks).",
                             "The interval resamples the rows' out-of-fold predictions; it does not refit the "
                             "classifier on each replicate."]}
    return m
