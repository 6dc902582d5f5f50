"""Drift family: does the current data (`audit run … --current FILE`) still look like the data the model learned from?

The reference is the model's training split (`ctx.dataset("train")`); the checks on the model's own outputs
(scores, embeddings) take `reference: eval` to compare against the held-out eval set instead, which the model did
not fit (see `prediction_psi`). Without a current set every check is SKIPPED with the reason; without a reference
(no training split in the manifest, or its data file changed) likewise.

Column drift runs evidently's DataDriftPreset once per run over the columns the text template uses, the protected
attributes' columns, the label and predicted label (declared categorical), the model's text, and four text
descriptors, each column with the test `audit.driftstats.choose_test` picks: two-sample tests that hold their level
where evidently's default does not (see that module). Every check of the family reads the same run.

evidently's own HTML reports are kept only when the runner asks for attachments: when `ctx.attachments` is
a dict, `share_drifted_columns` puts them there ({file name: HTML}) for the runner to write beside report.html
(`write_run(..., extra=...)`, inside the same all-or-nothing folder write), and records their names so the report
links them. Otherwise it notes that they were not kept and the report links nothing. They run over more columns
than the share counts (the label, the prediction, the text, the descriptors) and evidently's dataset summary uses
its own default share (0.5), so their headline differs from the finding: each page gets a title and a banner that
say it is context, not judged (`labelled_page`), and the report's link says the same.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from audit import driftstats as ds
from audit import stats
from audit.checks import check
from audit.context import CheckContext
from audit.result import Measurement

NO_CURRENT = "no current set to compare with the reference: give `audit run … --current FILE` (recent inputs; labels optional)"
NO_REFERENCE = ("no reference set: the model's manifest records no training split, or the training data file changed "
                "since training")
ATTACHMENT = "evidently-drift.html"
TEXT_ATTACHMENT = "evidently-text-drift.html"
TEXT = "model text"
PREDICTED = "predicted label"
DESCRIPTOR_PREFIX = "text: "
COUNTED = ("template input", "protected attribute")


@dataclass
class Side:
    """One side of a comparison: rows, texts and the model's outputs on them."""

    name: str  # "training split", "eval set", "current set"
    frame: Any
    texts: list[str]
    score: np.ndarray
    embeddings: np.ndarray | None
    y: np.ndarray | None  # 1 where the true label is the positive one; None without labels
    path: str = ""
    # the decisions (audit.rescore): 1 where favourable, and the decided class (index into the labels); the true
    # class (index) where labelled. None on a side built without them (binary: read from the score)
    favourable: np.ndarray | None = None
    predicted: np.ndarray | None = None
    y_class: np.ndarray | None = None

    def decisions(self, threshold: float) -> np.ndarray:
        """1 where the decision is favourable: at the threshold for a binary model (as every earlier release)."""
        return self.favourable if self.favourable is not None else (self.score >= threshold).astype(int)

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "rows": len(self.texts), "path": self.path,
                "labelled": self.y is not None}


def _side(scored, name: str, ctx: CheckContext | None = None) -> Side:
    """A scored dataset as a Side. For a model of more than two classes (ctx.multiclass) the score is the
    probability of a favourable class and `y` the true class is favourable (audit.classes), as for the eval set."""
    preds = scored.predictions
    if ctx is not None and ctx.multiclass:
        probs = np.asarray(preds.probs, dtype=float)
        c = ctx.classes
        yc = None if scored.y is None else np.asarray(scored.y, dtype=np.int64)
        y = None if yc is None else np.isin(yc, c.favourable).astype(int)
        return Side(name, scored.frame, list(scored.texts), c.favourable_score(probs), preds.embeddings, y,
                    scored.path, c.favourable_decision(probs), np.asarray(c.predict(probs), dtype=np.int64), yc)
    y = None if scored.y is None else (np.asarray(scored.y) == preds.positive_index).astype(int)
    return Side(name, scored.frame, list(scored.texts), np.asarray(preds.score), preds.embeddings, y, scored.path)


def _sets(ctx: CheckContext, reference: str = "train") -> tuple[Side, Side] | str:
    """(reference, current), or why there is nothing to compare."""
    if reference not in ("train", "eval"):
        raise ValueError(f"reference must be 'train' or 'eval', got {reference!r}")
    key = ("sets", reference)
    cache = ctx.shared.drift
    if key in cache:
        return cache[key]
    current = ctx.dataset("current")
    if current is None:
        out: tuple[Side, Side] | str = NO_CURRENT
    elif reference == "eval":
        preds = ctx.predictions
        ref = Side("eval set", ctx.frame, list(ctx.texts), np.asarray(ctx.score),
                   getattr(preds, "embeddings", None), np.asarray(ctx.y_true), ctx.eval_path)
        if ctx.multiclass:
            ref.favourable, ref.predicted = np.asarray(ctx.y_pred), np.asarray(ctx.classes.pred, dtype=np.int64)
            ref.y_class = None if ctx.classes.y is None else np.asarray(ctx.classes.y, dtype=np.int64)
        out = (ref, _side(current, "current set", ctx))
    else:
        train = ctx.dataset("train")
        out = NO_REFERENCE if train is None else (_side(train, "training split", ctx),
                                                  _side(current, "current set", ctx))
    cache[key] = out
    return out


def _skip(check_id: str, reason: str) -> Measurement:
    return Measurement(check_id, None, skipped=reason)


# ---------------------------------------------------------------- the shared evidently run


def _columns(manifest) -> dict[str, str]:
    """Column -> its role: the template's columns in the order the template names them, then the protected
    attributes' columns."""
    from audit.data import template_columns

    roles: dict[str, str] = {}
    template = manifest.text.template if manifest is not None else None
    if template:
        def first(c: str) -> int:
            hit = re.search(r"\b" + re.escape(c) + r"\b", template)
            return hit.start() if hit else len(template)

        for c in sorted(template_columns(template), key=lambda c: (first(c), c)):
            roles[c] = "template input"
    for name, attr in (manifest.protected_attributes.items() if manifest is not None else []):
        role = f"protected attribute ({name})"
        roles[attr.column] = f"{roles[attr.column]}; {role}" if attr.column in roles else role
    return roles


def _unique(name: str, taken) -> str:
    out, i = name, 2
    while out in taken:
        out, i = f"{name} ({i})", i + 1
    return out


def _evidently(ctx: CheckContext, alpha: float, distance: float, rules: dict[str, float]) -> dict[str, Any] | str:
    """One evidently run over every compared column, cached per (alpha, distance, the test-choice rules: RULES)."""
    import pandas as pd

    from audit import driftstats as ds

    key = ("evidently", float(alpha), float(distance), *(float(rules[k]) for k in RULES))
    cache = ctx.shared.drift
    if key in cache:
        return cache[key]
    sets = _sets(ctx, "train")
    if isinstance(sets, str):
        cache[key] = sets
        return sets
    ref, cur = sets
    m = ctx.manifest
    roles, ref_cols, cur_cols, kinds, notes = {}, {}, {}, {}, []
    for col, role in _columns(m).items():
        missing = [s.name for s in (ref, cur) if col not in s.frame.columns]
        if missing:
            notes.append(f"Column '{col}' ({role}) is absent from the {' and the '.join(missing)}: not compared.")
            continue
        kinds[col], ref_cols[col], cur_cols[col] = ds.column_kind(ref.frame[col], cur.frame[col],
                                                                  int(rules["max_levels"]))
        roles[col] = role
    positive, negative = ctx.positive_label, ctx.negative_label
    labels = np.asarray(ctx.classes.labels, dtype=object) if ctx.multiclass else None  # classes by name
    if ref.y is not None and cur.y is not None and m is not None:
        name = _unique(f"label ({m.label_column})", roles)
        roles[name], kinds[name] = "label (not counted)", "categorical"
        if labels is not None and ref.y_class is not None and cur.y_class is not None:
            ref_cols[name], cur_cols[name] = pd.Series(labels[ref.y_class]), pd.Series(labels[cur.y_class])
        else:
            ref_cols[name] = pd.Series(np.where(ref.y == 1, positive, negative))
            cur_cols[name] = pd.Series(np.where(cur.y == 1, positive, negative))
    name = _unique(PREDICTED, roles)
    roles[name], kinds[name] = "prediction (not counted)", "categorical"
    if labels is not None and ref.predicted is not None and cur.predicted is not None:
        ref_cols[name], cur_cols[name] = pd.Series(labels[ref.predicted]), pd.Series(labels[cur.predicted])
    else:
        ref_cols[name] = pd.Series(np.where(ref.score >= ctx.threshold, positive, negative))
        cur_cols[name] = pd.Series(np.where(cur.score >= ctx.threshold, positive, negative))
    text_col = _unique(TEXT, roles)
    roles[text_col] = "text (see text drift)"
    tokenizer = getattr(ctx.bundle, "tokenizer", None) if ctx.bundle is not None else None
    d_ref, d_cur = ds.text_descriptors(ref.texts, tokenizer), ds.text_descriptors(cur.texts, tokenizer)
    descriptor_cols = {}
    for d in d_ref:
        name = _unique(DESCRIPTOR_PREFIX + ds.DESCRIPTOR_NAMES[d], roles)
        descriptor_cols[name] = d
        kinds[name], ref_cols[name], cur_cols[name] = ds.column_kind(pd.Series(d_ref[d]), pd.Series(d_cur[d]),
                                                                     int(rules["max_levels"]))
        roles[name] = "text descriptor"
    tests = {}
    choice = {"small_n": int(rules["small_n"]), "min_expected": float(rules["min_expected"]),
              "text_auc_floor": float(rules["text_auc_floor"])}
    for col, kind in kinds.items():
        r, c = ref_cols[col], cur_cols[col]
        n_r, n_c = (int(r.notna().sum()), int(c.notna().sum())) if kind == "numeric" else (len(r), len(c))
        levels = int(pd.concat([r, c]).nunique()) if kind == "categorical" else 0
        tests[col] = ds.choose_test(kind, n_r, n_c, levels, alpha=alpha, distance=distance, **choice)
    ref_df, cur_df = pd.DataFrame(ref_cols), pd.DataFrame(cur_cols)
    want_html = ctx.attachments is not None
    # The text goes into the same report unless a side has more than TEXT_ROWS texts: then into a report of its
    # own, on a seeded sample (evidently fits its TF-IDF domain classifier six times per report, which at 100,000
    # texts a side cost more than every other column together).
    rng = np.random.default_rng(ctx.seed)
    r_txt, c_txt = _sample(ref.texts, rng), _sample(cur.texts, rng)
    sampled = len(r_txt) < len(ref.texts) or len(c_txt) < len(cur.texts)
    text_test = ds.choose_test("text", len(r_txt), len(c_txt), 0, alpha=alpha, **choice)
    text_error, pages = None, {}
    page_columns = {ATTACHMENT: len(kinds) + (0 if sampled else 1), TEXT_ATTACHMENT: 1}
    if sampled:
        notes.append(f"The text-content test used a seeded sample of at most {ds.TEXT_ROWS:,} texts a side.")
        results, pages[ATTACHMENT] = ds.run_evidently(ref_df, cur_df, kinds, tests, html=want_html)
    try:
        if sampled:
            text_results, pages[TEXT_ATTACHMENT] = ds.run_evidently(
                pd.DataFrame({text_col: r_txt}), pd.DataFrame({text_col: c_txt}), {text_col: "text"},
                {text_col: text_test}, html=want_html)
            results[text_col] = text_results[text_col]
        else:
            results, pages[ATTACHMENT] = ds.run_evidently(
                ref_df.assign(**{text_col: r_txt}), cur_df.assign(**{text_col: c_txt}), {**kinds, text_col: "text"},
                {**tests, text_col: text_test}, html=want_html)
    except ValueError as exc:  # the TF-IDF vocabulary can be empty (every word in over half the texts)
        text_error = f"{type(exc).__name__}: {exc}"
        notes.append(f"evidently's text-content drift could not run on these texts ({text_error}).")
        page_columns[ATTACHMENT] = len(kinds)
        if not sampled:
            results, pages[ATTACHMENT] = ds.run_evidently(ref_df, cur_df, kinds, tests, html=want_html)
    results = {col: results[col] for col in roles if col in results}  # the table's order
    rows = []
    for col, r in results.items():
        row = {"column": col, "role": roles[col], "kind": r.kind, "test": r.test.name, "method": r.test.method,
               "statistic": r.test.statistic, "score": r.score, "threshold": r.test.threshold,
               "drift_when": r.test.direction, "drifted": r.drifted, "n_reference": r.n_reference,
               "n_current": r.n_current, "counted": roles[col].startswith(COUNTED)}
        if r.kind == "numeric":
            row["mean_reference"] = _mean(ref_cols[col])
            row["mean_current"] = _mean(cur_cols[col])
            row["missing_reference"] = float(ref_cols[col].isna().mean())
            row["missing_current"] = float(cur_cols[col].isna().mean())
        rows.append(row)
    histograms = {row["column"]: ds.histogram(ref_cols[row["column"]], cur_cols[row["column"]], row["kind"])
                  for row in rows if row["drifted"] and row["kind"] != "text"}
    import evidently

    out = {"ref": ref, "cur": cur, "rows": rows, "histograms": histograms, "notes": notes,
           "html": {k: v for k, v in pages.items() if v}, "page_columns": page_columns,
           "text_column": text_col, "text_error": text_error, "descriptors": descriptor_cols,
           "descriptor_means": {d: (float(np.mean(d_ref[d])) if len(d_ref[d]) else None,
                                    float(np.mean(d_cur[d])) if len(d_cur[d]) else None) for d in d_ref},
           "evidently": evidently.__version__, "alpha": float(alpha), "distance": float(distance),
           "rules": {k: rules[k] for k in RULES}, "regime": _regime(len(ref.texts), len(cur.texts),
                                                                     int(rules["small_n"]))}
    cache[key] = out
    return out


def not_judged(name: str, n_columns: int, n_counted: int, version: str) -> str:
    """What evidently's own report is, in one paragraph: context that the audit does not judge, whose headline
    numbers are evidently's over its own columns, not the finding's."""
    if name == TEXT_ATTACHMENT:
        what = (f"evidently {version}'s own report of the text-content test alone, on a seeded sample of the texts; "
                "its headline numbers are evidently's over that one column")
    else:
        what = (f"evidently {version}'s own report of the comparison, over {n_columns} columns, each with the test "
                "the audit chose, some of which the finding does not count (such as the predicted label and the text "
                "descriptors); its headline (the share of drifted columns over "
                f"all {n_columns}, and dataset drift “detected” or “not detected” at evidently's default share of "
                "0.5) is evidently's own")
    return (f"Context, not judged by the audit. This is {what}. The audit's finding drift.share_drifted_columns "
            f"counts only the {n_counted} template-input and protected-attribute columns and is judged against the "
            "policy's threshold: read it in report.html, not here.")


def labelled_page(page: str, name: str, n_columns: int, n_counted: int, version: str) -> str:
    """evidently's HTML with a title and a banner at the top of its body that say it is context, not the finding."""
    import html

    text = html.escape(not_judged(name, n_columns, n_counted, version))
    banner = (f'<div id="audit-not-judged" role="note" style="font: 15px/1.4 sans-serif; background: #fff4d6; '
              f'color: #1d2330; border-bottom: 2px solid #b07d00; padding: 10px 16px;">{text}</div>')
    title = "<title>Context, not judged: evidently's drift report</title>"
    head = re.search(r"<head[^>]*>", page, re.I)
    if head:
        page = page[:head.end()] + title + page[head.end():]
    body = re.search(r"<body[^>]*>", page, re.I)
    return page[:body.end()] + banner + page[body.end():] if body else banner + page


def _sample(texts: list[str], rng) -> list[str]:
    from audit.driftstats import TEXT_ROWS

    if len(texts) <= TEXT_ROWS:
        return list(texts)
    return [texts[i] for i in np.sort(rng.choice(len(texts), size=TEXT_ROWS, replace=False))]


def _mean(s) -> float | None:
    v = s.mean()
    return None if v != v else float(v)


def _regime(n_ref: int, n_cur: int, small_n: int) -> str:
    if min(n_ref, n_cur) <= small_n:
        return (f"p-value tests: the smaller sample has {min(n_ref, n_cur):,} rows (at most {small_n:,}); a column "
                "drifted when its two-sample test rejects at the level alpha")
    return (f"distance tests: both samples have over {small_n:,} rows; a column drifted when its distance reaches "
            "the threshold (at this size a p-value flags shifts too small to matter)")


def _common(run: dict[str, Any]) -> dict[str, Any]:
    return {"reference": run["ref"].info(), "current": run["cur"].info(), "regime": run["regime"],
            "alpha": run["alpha"], "distance_threshold": run["distance"], **run["rules"],
            "evidently_version": run["evidently"], "notes": list(run["notes"])}


# ---------------------------------------------------------------- column and text drift

# A drift statistic compares two sets; it is as good as the smaller of them (each set's size is in the details)
NEEDS_ROWS = "it compares input columns, texts or embeddings, which the statistics do not carry"
SMALLER_SET = "rows in the smaller of the two sets (reference, current)"


def _smaller(ref: Any, cur: Any) -> int:
    return min(len(ref.texts), len(cur.texts))


# The rules that choose each column's test and decide its drift (audit.driftstats): parameters of the three
# checks that read the shared evidently run, so a policy sets them (give the three the same values, or a second
# run is made). Each value is recorded in the measurement's details.
RULES = ("small_n", "min_expected", "max_levels", "text_auc_floor")


RULE_DEFAULTS = {"small_n": ds.SMALL_N, "min_expected": ds.MIN_EXPECTED, "max_levels": ds.MAX_LEVELS,
                 "text_auc_floor": ds.TEXT_AUC_FLOOR}


def _number(params: dict, key: str) -> float | None:
    """The parameter when it is a number (a value of another type is named by the policy's type check)."""
    v = params.get(key)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _validate_rules(params: dict) -> None:
    """At policy load: the test-choice rules are in range (`small_n`, `max_levels` whole numbers)."""
    for key in ("small_n", "max_levels"):
        v = _number(params, key)
        if v is not None and not (v.is_integer() and v >= 0):
            raise ValueError(f"{key} must be a whole number >= 0, got {v:g}")
    v = _number(params, "min_expected")
    if v is not None and not v >= 0:
        raise ValueError(f"min_expected must be >= 0, got {v:g}")
    v = _number(params, "text_auc_floor")
    if v is not None and not 0.5 <= v <= 1:
        raise ValueError(f"text_auc_floor must be between 0.5 and 1, got {v:g}")


def _validate_min_rows(params: dict) -> None:
    """At policy load: `min_rows` is a whole number >= 2 (each half of the split holds a row of each side)."""
    v = _number(params, "min_rows")
    if v is not None and not (v.is_integer() and v >= 2):
        raise ValueError(f"min_rows must be a whole number >= 2, got {v:g}")


def _from_stats(sctx, check_id: str, **params) -> Measurement:
    """The statistics form of the score-drift checks: all three from the merged score histograms of the audited
    and the reference statistics (drift_from_stats), once per run."""
    out = sctx.once("drift", lambda: drift_from_stats(
        sctx.stats, sctx.reference, sctx.threshold, sctx.confidence, sctx.stats.grid.replicates, sctx.stats.grid.seed,
        int(sctx.params.get("drift.prediction_psi", {}).get("bins", 10))))
    return out[check_id]


@check("drift.share_drifted_columns", classes="any", title="Share of drifted columns", direction="lower", unit="rate",
       params={"alpha": 0.05, "distance": 0.1, **RULE_DEFAULTS}, validate=_validate_rules,
       evidence=SMALLER_SET)
def share_drifted_columns(ctx: CheckContext, alpha: float = 0.05, distance: float = 0.1,
                          small_n: int = ds.SMALL_N, min_expected: float = ds.MIN_EXPECTED,
                          max_levels: int = ds.MAX_LEVELS, text_auc_floor: float = ds.TEXT_AUC_FLOOR) -> Measurement:
    """Share of the input columns (the text template's columns and the protected attributes') whose distribution
    in the current set differs from the training split.

    Each column gets a two-sample test while the smaller set has at most 1,000 rows (p below `alpha` is drift),
    and a distance above that (at least `distance` is drift); the table in the drift section names the test of
    each column and why. The column, text-descriptor and text-content checks read one shared evidently run: give
    them the same alpha and distance, or a second run is made. A drifted column means the model now meets inputs unlike those it learned from: read its
    other drift findings and its performance on recent labelled data before trusting its decisions."""
    cid = "drift.share_drifted_columns"
    run = _evidently(ctx, alpha, distance, {"small_n": small_n, "min_expected": min_expected,
                                            "max_levels": max_levels, "text_auc_floor": text_auc_floor})
    if isinstance(run, str):
        return _skip(cid, run)
    counted = [r for r in run["rows"] if r["counted"] and r["drifted"] is not None]
    details = {**_common(run), "columns": [r for r in run["rows"] if r["role"] != "text descriptor"],
               "histograms": {c: h for c, h in run["histograms"].items()
                              if any(r["column"] == c and r["role"] != "text descriptor" for r in run["rows"])},
               "drifted": [r["column"] for r in counted if r["drifted"]]}
    attachments = ctx.attachments
    if attachments is not None and run["html"]:
        columns = {name: run["page_columns"][name] for name in run["html"]}
        attachments.update({name: labelled_page(page, name, columns[name], len(counted), run["evidently"])
                            for name, page in run["html"].items()})
        details["attachments"] = sorted(run["html"])
        details["attachment_columns"] = columns
    else:
        details["notes"].append("evidently's own HTML report is not kept: this run does not write attachments.")
    m = Measurement(cid, len(details["drifted"]) / len(counted) if counted else None, n=_smaller(run["ref"], run["cur"]),
                    details=details)
    if not counted:
        m.inconclusive = "no input or protected-attribute columns to compare (the text comes from a column)"
    return m


@check("drift.text_descriptors", classes="any", title="Share of drifted text descriptors", direction="lower", unit="rate",
       params={"alpha": 0.05, "distance": 0.1, **RULE_DEFAULTS}, validate=_validate_rules,
       evidence=SMALLER_SET)
def text_descriptors(ctx: CheckContext, alpha: float = 0.05, distance: float = 0.1,
                     small_n: int = ds.SMALL_N, min_expected: float = ds.MIN_EXPECTED,
                     max_levels: int = ds.MAX_LEVELS, text_auc_floor: float = ds.TEXT_AUC_FLOOR) -> Measurement:
    """Share of the text descriptors (words and tokens per text, share of unknown-token pieces, share of non-ASCII
    characters) whose distribution moved between the training split and the current set.

    Longer texts may be truncated at the model's window; unknown tokens and non-ASCII characters are text the
    model cannot read well (another language, another alphabet, encoding damage)."""
    cid = "drift.text_descriptors"
    run = _evidently(ctx, alpha, distance, {"small_n": small_n, "min_expected": min_expected,
                                            "max_levels": max_levels, "text_auc_floor": text_auc_floor})
    if isinstance(run, str):
        return _skip(cid, run)
    rows = []
    for r in run["rows"]:
        if r["role"] != "text descriptor":
            continue
        key = run["descriptors"][r["column"]]
        mean_ref, mean_cur = run["descriptor_means"][key]
        from audit.driftstats import DESCRIPTORS

        rows.append({**r, "descriptor": key, "meaning": DESCRIPTORS[key], "mean_reference": mean_ref,
                     "mean_current": mean_cur})
    judged = [r for r in rows if r["drifted"] is not None]
    drifted = [r["column"] for r in judged if r["drifted"]]
    details = {**_common(run), "descriptors": rows, "drifted": drifted,
               "histograms": {c: run["histograms"][c] for c in drifted if c in run["histograms"]}}
    if ctx.bundle is None or getattr(ctx.bundle, "tokenizer", None) is None:
        details["notes"].append("No tokenizer was loaded: token counts and unknown-token shares are not measured.")
    m = Measurement(cid, len(drifted) / len(judged) if judged else None, n=_smaller(run["ref"], run["cur"]),
                    details=details)
    if not judged:
        m.inconclusive = "no text descriptors could be compared"
    return m


@check("drift.text_content_auc", classes="any", title="Text content drift (domain classifier AUC)", direction="lower",
       params={"alpha": 0.05, "distance": 0.1, **RULE_DEFAULTS}, validate=_validate_rules,
       evidence=SMALLER_SET)
def text_content_auc(ctx: CheckContext, alpha: float = 0.05, distance: float = 0.1,
                     small_n: int = ds.SMALL_N, min_expected: float = ds.MIN_EXPECTED,
                     max_levels: int = ds.MAX_LEVELS, text_auc_floor: float = ds.TEXT_AUC_FLOOR) -> Measurement:
    """How well evidently's TF-IDF domain classifier tells current texts from training texts: ROC-AUC on a
    held-out half (0.5 = indistinguishable).

    The report's drift table gives the threshold chance would reach at these sizes. A high value means new words
    or phrasings; evidently's HTML attachment lists the words most typical of each side."""
    cid = "drift.text_content_auc"
    run = _evidently(ctx, alpha, distance, {"small_n": small_n, "min_expected": min_expected,
                                            "max_levels": max_levels, "text_auc_floor": text_auc_floor})
    if isinstance(run, str):
        return _skip(cid, run)
    row = next((r for r in run["rows"] if r["column"] == run["text_column"]), None)
    details = {**_common(run), "text": row}
    m = Measurement(cid, row["score"] if row else None, n=_smaller(run["ref"], run["cur"]), details=details)
    if row is None or row["score"] is None:
        m.inconclusive = f"the text domain classifier could not run: {run['text_error'] or 'no score'}"
    return m


# ---------------------------------------------------------------- prediction drift

REFERENCE_NOTE = {
    "train": ("the training split: the model fitted these rows, so its scores on them can be more confident than "
              "on any new rows of the same population"),
    "eval": "the held-out eval set, which the model did not fit",
}


@check("drift.prediction_psi", classes="favourable", title="Score drift (PSI)", direction="lower",
       params={"bins": 10, "reference": "train"}, evidence=SMALLER_SET,
       stats=_from_stats, stats_form="binned")
def prediction_psi(ctx: CheckContext, bins: int = 10, reference: str = "train") -> Measurement:
    """Population stability index of the model's score, current set against the reference, over `bins` bins
    cut at the reference's quantiles.

    Common reading: below 0.1 stable, 0.1–0.25 a moderate shift, above 0.25 a major one. Two samples of one
    population also give a positive PSI, about (bins − 1)(1/n_ref + 1/n_cur), shown beside it. A shifted score
    means the model now decides differently on average, through drifted inputs or a changed population."""
    from audit import driftstats as ds

    cid = "drift.prediction_psi"
    sets = _sets(ctx, reference)
    if isinstance(sets, str):
        return _skip(cid, sets)
    ref, cur = sets
    edges = ds.psi_edges(ref.score, int(bins))
    rc, cc = ds.bin_counts(ref.score, edges), ds.bin_counts(cur.score, edges)
    value = float(ds.psi_from_counts(rc, cc))
    low, high = ds.psi_interval(rc, cc, ctx.replicates, ctx.seed, ctx.confidence)
    lows, highs = np.r_[-np.inf, edges], np.r_[edges, np.inf]
    r_sh, c_sh = rc / rc.sum(), cc / cc.sum()
    rf, cf = np.maximum(r_sh, ds.PSI_EPS), np.maximum(c_sh, ds.PSI_EPS)
    table = [{"low": None if not np.isfinite(lo) else float(lo), "high": None if not np.isfinite(hi) else float(hi),
              "reference_count": int(a), "current_count": int(b), "reference_share": float(p), "current_share": float(q),
              "contribution": float((y - x) * np.log(y / x))}
             for lo, hi, a, b, p, q, x, y in zip(lows, highs, rc, cc, r_sh, c_sh, rf, cf)]
    d, p = ds.ks_two_sample(ref.score, cur.score)
    details = {"reference": ref.info(), "current": cur.info(), "reference_is": REFERENCE_NOTE[reference],
               "bins": table, "epsilon": ds.PSI_EPS,
               "epsilon_note": (f"a bin's share is floored at {ds.PSI_EPS:g} before the logarithm, so an empty bin "
                                "adds a large but finite term"),
               "null_mean": ds.psi_null_mean(len(table), len(ref.score), len(cur.score)),
               "ks_statistic": d, "ks_p_value": p,
               "interval": ("basic bootstrap interval, clipped at 0: bin counts of both sets resampled, bins held "
                            "fixed; PSI is biased upwards, and the basic interval reflects that bias back")}
    return Measurement(cid, value, low, high, n=min(len(ref.score), len(cur.score)), details=details)


@check("drift.prediction_ks", classes="favourable", title="Score drift (two-sample KS statistic)", direction="lower",
       params={"reference": "train"}, evidence=SMALLER_SET,
       stats=_from_stats, stats_form="binned")
def prediction_ks(ctx: CheckContext, reference: str = "train") -> Measurement:
    """Largest gap between the cumulative score distributions of the reference and the current set (the
    two-sample Kolmogorov–Smirnov statistic D, 0 to 1), with its p-value in the details.

    D is the share of rows that one threshold places differently in the two sets at worst."""
    from audit import driftstats as ds

    cid = "drift.prediction_ks"
    sets = _sets(ctx, reference)
    if isinstance(sets, str):
        return _skip(cid, sets)
    ref, cur = sets
    d, p = ds.ks_two_sample(ref.score, cur.score)
    return Measurement(cid, d, n=min(len(ref.score), len(cur.score)),
                       details={"reference": ref.info(), "current": cur.info(), "p_value": p,
                                "reference_is": REFERENCE_NOTE[reference], "test": "scipy.stats.ks_2samp, two-sided"})


@check("drift.favourable_rate_change", classes="favourable", title="Change in the predicted-favourable rate",
       direction="none",
       params={"reference": "train"}, evidence=SMALLER_SET,
       stats=_from_stats, stats_form="binned")
def favourable_rate_change(ctx: CheckContext, reference: str = "train") -> Measurement:
    """Share of current rows the model gives the favourable label, minus that share on the reference
    (at the policy's decision threshold), with Newcombe's interval for a difference of two proportions.

    For a model of more than two classes a decision is favourable when the most probable class is one of the
    policy's favourable classes (audit.classes).

    A large change means the model now approves (or refuses) a different share of applicants; with labels, read it
    beside the performance on the current set."""
    from audit import driftstats as ds

    cid = "drift.favourable_rate_change"
    sets = _sets(ctx, reference)
    if isinstance(sets, str):
        return _skip(cid, sets)
    ref, cur = sets
    k1, n1 = float(ref.decisions(ctx.threshold).sum()), len(ref.score)
    k2, n2 = float(cur.decisions(ctx.threshold).sum()), len(cur.score)
    d, low, high = ds.newcombe_diff(k1, n1, k2, n2, ctx.confidence)
    extra = {"favourable": ctx.classes.favourable_labels} if ctx.multiclass else {}
    return Measurement(cid, d, low, high, n=min(n1, n2),
                       details={"reference": ref.info(), "current": cur.info(), "reference_is": REFERENCE_NOTE[reference],
                                "reference_rate": k1 / n1, "current_rate": k2 / n2, "threshold": ctx.threshold,
                                "positive_label": ctx.positive_label, **extra,
                                "interval": "Newcombe hybrid score interval (1998, method 10)"})


def _class_labels(ctx: CheckContext) -> list[str]:
    """Every class of the model in its output order (a binary model: its two labels)."""
    if ctx.classes is not None:
        return list(ctx.classes.labels)
    m = ctx.manifest
    if m is not None and len(getattr(m, "labels", []) or []) == 2:
        return list(m.labels)
    return [ctx.negative_label, ctx.positive_label]


def _predicted_classes(side: Side, ctx: CheckContext, labels: list[str]) -> np.ndarray:
    """Each row's decided class (index into `labels`): the side's own for a model of more classes; for a binary
    model the positive label where the score is at or above the threshold, else the other."""
    if side.predicted is not None and ctx.multiclass:
        return np.asarray(side.predicted, dtype=np.int64)
    pos = labels.index(ctx.positive_label) if ctx.positive_label in labels else 1
    return np.where(side.decisions(ctx.threshold) == 1, pos, 1 - pos).astype(np.int64)


@check("drift.predicted_class_shift", classes="any", title="Predicted-class drift (PSI over the classes)",
       direction="lower", params={"reference": "train"}, evidence=SMALLER_SET)
def predicted_class_shift(ctx: CheckContext, reference: str = "train") -> Measurement:
    """Population stability index of the distribution of the model's decided classes, current set against the
    reference, one bin per class, with a chi-square test of homogeneity in the details.

    Each class's share of the decisions on both sets; an empty class's share is floored (as drift.prediction_psi
    floors an empty bin), so a class that vanishes adds a large but finite term. For a binary model the two bins
    are the two decisions at the threshold: the same shift that drift.favourable_rate_change reads as a
    difference of rates. For more classes it sees a shift between unfavourable classes (more `decline`, fewer
    `refer`) that the favourable rate cannot. The interval is the basic bootstrap interval of
    drift.prediction_psi (class counts of both sets resampled); the chi-square p-value (scipy's
    chi2_contingency on the 2 x k table, classes expected to hold fewer than 5 rows pooled) says whether the
    shift is more than sampling noise."""
    from audit import driftstats as ds

    cid = "drift.predicted_class_shift"
    sets = _sets(ctx, reference)
    if isinstance(sets, str):
        return _skip(cid, sets)
    ref, cur = sets
    labels = _class_labels(ctx)
    k = len(labels)
    pr, pc = _predicted_classes(ref, ctx, labels), _predicted_classes(cur, ctx, labels)
    rc = np.bincount(pr, minlength=k).astype(float)
    cc = np.bincount(pc, minlength=k).astype(float)
    if not rc.sum() or not cc.sum():
        empty = "reference" if not rc.sum() else "current"
        return Measurement(cid, None, n=int(min(rc.sum(), cc.sum())), inconclusive=f"the {empty} set has no rows")
    value = float(ds.psi_from_counts(rc, cc))
    low, high = ds.psi_interval(rc, cc, ctx.replicates, ctx.seed, ctx.confidence)
    r_sh, c_sh = rc / rc.sum(), cc / cc.sum()
    rf, cf = np.maximum(r_sh, ds.PSI_EPS), np.maximum(c_sh, ds.PSI_EPS)
    table = [{"class": label, "reference_count": int(a), "current_count": int(b), "reference_share": float(p),
              "current_share": float(q), "change": float(q - p), "contribution": float((y - x) * np.log(y / x))}
             for label, a, b, p, q, x, y in zip(labels, rc, cc, r_sh, c_sh, rf, cf)]
    names = np.asarray(labels, dtype=object)
    p_value = ds.chi2_two_sample(names[pr], names[pc])
    details = {"reference": ref.info(), "current": cur.info(), "reference_is": REFERENCE_NOTE[reference],
               "classes": table, "epsilon": ds.PSI_EPS,
               "epsilon_note": (f"a class's share is floored at {ds.PSI_EPS:g} before the logarithm, so a class "
                                "that one set never decides adds a large but finite term"),
               "null_mean": ds.psi_null_mean(k, len(pr), len(pc)),
               "chi2_p_value": p_value,
               "test": "scipy.stats.chi2_contingency on the 2 x k table of decided classes, no continuity "
                       f"correction; classes expected to hold fewer than {ds.MIN_EXPECTED:g} rows pooled",
               "decision": ("the most probable class" if ctx.multiclass
                            else f"'{ctx.positive_label}' at a score of at least {ctx.threshold:g}"),
               "interval": ("basic bootstrap interval, clipped at 0: class counts of both sets resampled; PSI is "
                            "biased upwards, and the basic interval reflects that bias back")}
    return Measurement(cid, value, low, high, n=int(min(len(pr), len(pc))), details=details)


# ---------------------------------------------------------------- embedding drift


@check("drift.embedding_auc", classes="any", title="Embedding drift (domain classifier AUC)", direction="lower",
       params={"max_rows": 5000, "reference": "train", "min_rows": ds.MIN_CLASSIFIER_ROWS},
       validate=_validate_min_rows, evidence=SMALLER_SET, embeddings=True)
def embedding_auc(ctx: CheckContext, max_rows: int = 5000, reference: str = "train",
                  min_rows: int = ds.MIN_CLASSIFIER_ROWS) -> Measurement:
    """How well a logistic regression on the model's mean-pooled last-layer embeddings tells current rows from
    reference rows: ROC-AUC on held-out rows (fitted on one half, scored on the other), with DeLong's interval.

    0.5 means the model represents the two sets alike; towards 1.0 the current inputs occupy parts of the
    model's representation it saw little of in the reference. Each side is capped at `max_rows` (a seeded sample);
    with fewer than `min_rows` (default 10) on a side it is INCONCLUSIVE."""
    from audit import driftstats as ds

    cid = "drift.embedding_auc"
    sets = _sets(ctx, reference)
    if isinstance(sets, str):
        return _skip(cid, sets)
    ref, cur = sets
    if ref.embeddings is None or cur.embeddings is None:
        return Measurement(cid, None, n=min(len(ref.texts), len(cur.texts)),
                           inconclusive="the scoring pass kept no embeddings for one of the sets")
    res = ds.domain_classifier_auc(ref.embeddings, cur.embeddings, seed=ctx.seed, max_rows=int(max_rows),
                                   min_rows=int(min_rows))
    details = {"reference": ref.info(), "current": cur.info(), "reference_is": REFERENCE_NOTE[reference], **res,
               "dimensions": int(np.asarray(cur.embeddings).shape[1]),
               "interval": "AUC ± z × DeLong standard error, clipped to [0, 1]", "min_rows": int(min_rows)}
    m = Measurement(cid, res["auc"], n=min(res["n_reference"], res["n_current"]), details=details)
    if res["auc"] is None or res["auc"] != res["auc"]:
        m.value = None
        m.inconclusive = (f"too few rows to fit and test a classifier ({res['n_reference']} reference, "
                          f"{res['n_current']} current; {int(min_rows)} of each are needed, the rule's `min_rows`)")
        return m
    from scipy.stats import norm

    z = float(norm.ppf(0.5 + ctx.confidence / 2))
    m.ci_low, m.ci_high = max(0.0, res["auc"] - z * res["se"]), min(1.0, res["auc"] + z * res["se"])
    return m


# ---------------------------------------------------------------- performance on the current set

METRICS = {  # name -> (title, function of (confusion counts, W, y, score))
    "roc_auc": ("ROC-AUC", lambda c, W, y, s: stats.roc_auc(W, y, s)),
    "accuracy": ("Accuracy", lambda c, W, y, s: stats.accuracy(c)),
    "balanced_accuracy": ("Balanced accuracy", lambda c, W, y, s: stats.balanced_accuracy(c)),
    "precision": ("Precision", lambda c, W, y, s: stats.precision(c)),
    "recall": ("Recall", lambda c, W, y, s: stats.tpr(c)),
    "f1": ("F1", lambda c, W, y, s: stats.f1(c)),
    "brier_score": ("Brier score", lambda c, W, y, s: stats.brier(W, y, s)),
}


def _metrics(W: np.ndarray, y: np.ndarray, score: np.ndarray, y_pred: np.ndarray) -> dict[str, np.ndarray]:
    c = stats.confusion(W, y, y_pred)
    return {k: f(c, W, y, score) for k, (_, f) in METRICS.items()}


def _replicated(y: np.ndarray, score: np.ndarray, y_pred: np.ndarray, replicates: int, seed: int,
                cells: int = 4_000_000) -> dict[str, np.ndarray]:
    """Each metric at the point (index 0) and over Poisson bootstrap replicates, drawn in chunks so memory stays
    near `cells` weights whatever the row count."""
    n = len(y)
    rng = np.random.default_rng(seed)
    out = {k: [v] for k, v in _metrics(np.ones((1, n)), y, score, y_pred).items()}
    step = max(1, cells // max(n, 1))
    done = 0
    while done < replicates:
        r = min(step, replicates - done)
        for k, v in _metrics(rng.poisson(1.0, size=(r, n)).astype(np.float64), y, score, y_pred).items():
            out[k].append(v)
        done += r
    return {k: np.concatenate(v) for k, v in out.items()}


@check("drift.current_roc_auc", classes="favourable", title="ROC-AUC on the current set", direction="higher",
       evidence="labelled current rows")
def current_roc_auc(ctx: CheckContext) -> Measurement:
    """ROC-AUC of the model on the labelled current set, with a bootstrap interval; the details compare every
    performance metric on the current set with the eval set.

    For a model of more than two classes every number is the favourable outcome's (audit.classes): the ROC-AUC
    of the probability of a favourable class against the true class being favourable, and the decision metrics
    of the favourable decision.

    It shows whether the drift that the other checks measure has already cost accuracy. SKIPPED when the current
    set has no labels."""
    cid = "drift.current_roc_auc"
    cur = ctx.dataset("current")
    if cur is None:
        return _skip(cid, NO_CURRENT)
    side = _side(cur, "current set", ctx)
    if side.y is None:
        column = ctx.manifest.label_column if ctx.manifest is not None else "label"
        return _skip(cid, f"the current set has no label column '{column}', so performance on it cannot be measured")
    y_pred = side.decisions(ctx.threshold)
    values = _replicated(side.y, side.score, y_pred, ctx.replicates, ctx.seed)
    eval_pred = np.asarray(ctx.y_pred) if ctx.multiclass else (np.asarray(ctx.score) >= ctx.threshold).astype(int)
    on_eval = _metrics(np.ones((1, len(ctx.y_true))), np.asarray(ctx.y_true), np.asarray(ctx.score), eval_pred) \
        if len(ctx.y_true) else {}
    table = []
    for k, (title, _) in METRICS.items():
        v = values[k]
        lo, hi = stats.percentile_interval(v[1:], ctx.confidence)
        ev = float(on_eval[k][0]) if k in on_eval else float("nan")
        table.append({"metric": k, "title": title, "current": None if np.isnan(v[0]) else float(v[0]),
                      "ci_low": lo, "ci_high": hi, "eval": None if np.isnan(ev) else ev})
    auc = values["roc_auc"]
    point = None if np.isnan(auc[0]) else float(auc[0])
    low, high = stats.percentile_interval(auc[1:], ctx.confidence)
    n_pos = int(side.y.sum())
    details = {"current": side.info(), "positives": n_pos, "negatives": len(side.y) - n_pos, "metrics": table,
               "threshold": ctx.threshold,
               **({"favourable": ctx.classes.favourable_labels} if ctx.multiclass else {})}
    m = Measurement(cid, point, low, high, n=len(side.y), details=details)
    if point is None:
        m.inconclusive = f"both classes are needed ({n_pos} positive, {len(side.y) - n_pos} negative rows)"
    elif ctx.replicates and low is None:
        m.inconclusive = "the interval is undefined on most resamples: too few rows of one class"
    return m


# ---------------------------------------------------------------- score drift from mergeable statistics


def drift_from_stats(stats, reference, threshold: float, confidence: float,
          replicates: int, seed: int, bins: int = 10) -> dict[str, Measurement]:
    """Score drift between the reference statistics and the audited ones, from their score histograms: the same
    PSI bin table, KS bounds and Newcombe interval (audit.driftstats) as in memory, on the statistics' grid."""
    from audit import driftstats as ds
    from audit.mergeable import ScoreDrift, threshold_index

    ids = ("drift.prediction_psi", "drift.prediction_ks", "drift.favourable_rate_change")
    if reference is None:
        why = ("no reference statistics to compare with: give `audit merge … --reference REF.stats.json` "
               "(statistics of the training split or an earlier period)")
        return {cid: Measurement(cid, None, skipped=why) for cid in ids}
    d = ScoreDrift.of(reference.scores, stats.scores)
    rc, cc, cut = d.psi_counts(int(bins))
    value = float(ds.psi_from_counts(rc, cc))
    low, high = ds.psi_interval(rc, cc, replicates, seed, confidence)
    lows, highs = np.r_[-np.inf, cut], np.r_[cut, np.inf]
    r_sh, c_sh = rc / rc.sum(), cc / cc.sum()
    rf, cf = np.maximum(r_sh, ds.PSI_EPS), np.maximum(c_sh, ds.PSI_EPS)
    table = [{"low": None if not np.isfinite(lo) else float(lo), "high": None if not np.isfinite(hi) else float(hi),
              "reference_count": int(round(a)), "current_count": int(round(b)), "reference_share": float(p),
              "current_share": float(q), "contribution": float((y - x) * np.log(y / x))}
             for lo, hi, a, b, p, q, x, y in zip(lows, highs, rc, cc, r_sh, c_sh, rf, cf)]
    n_ref, n_cur = int(round(d.reference.sum())), int(round(d.current.sum()))
    ref_info = {"name": "reference statistics", "rows": n_ref, "labelled": True}
    cur_info = {"name": "audited statistics", "rows": n_cur, "labelled": True}
    d_low, d_high = d.ks()
    out = {"drift.prediction_psi": Measurement("drift.prediction_psi", value, low, high, n=n_cur, details={
        "reference": ref_info, "current": cur_info, "bins": table, "epsilon": ds.PSI_EPS,
        "null_mean": ds.psi_null_mean(len(table), n_ref, n_cur), "ks_statistic": d_low,
        "ks_p_value": d.ks_p_value(d_low),
        "binned": (f"bins cut at the reference's quantiles rounded to the score grid (1/{stats.scores.bins})")})}
    out["drift.prediction_ks"] = Measurement("drift.prediction_ks", d_low, n=n_cur, details={
        "reference": ref_info, "current": cur_info, "p_value": d.ks_p_value(d_low),
        "ks_upper_bound": d_high,
        "test": (f"two-sample KS from histograms of width 1/{stats.scores.bins}: the raw-score D lies between the "
                 f"value ({d_low:.4f}) and {d_high:.4f}; asymptotic p-value")})
    k = threshold_index(threshold, stats.scores.bins)
    if k is None:
        out["drift.favourable_rate_change"] = Measurement("drift.favourable_rate_change", None, n=n_cur,
                                                          inconclusive="the decision threshold is off the score grid")
    else:
        k1, k2 = float(d.reference[k:].sum()), float(d.current[k:].sum())
        diff, lo, hi = ds.newcombe_diff(k1, n_ref, k2, n_cur, confidence)
        out["drift.favourable_rate_change"] = Measurement("drift.favourable_rate_change", diff, lo, hi, n=n_cur, details={
            "reference": ref_info, "current": cur_info, "reference_rate": k1 / n_ref if n_ref else None,
            "current_rate": k2 / n_cur if n_cur else None, "threshold": threshold,
            "interval": "Newcombe hybrid score interval (1998, method 10)"})
    return out


