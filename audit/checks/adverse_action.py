"""Adverse-action reasons (explainability family): what a declined applicant would be told, and whether it may
be told.

For the declined eval rows (decision below the threshold: for a model of more than two classes, a decided class
that is not one of the policy's favourable classes; every one when the budget's `rows` allows, else a
seeded sample of them: the budget is spent on declines, not on a random sample of all rows), shap's partition
explainer of the model's log-odds of the favourable outcome (for more than two classes, log P(favourable) /
P(unfavourable), P(favourable) summed over the favourable classes, whatever the family's `explain` says; for a
binary model the positive label's, as always) (audit.checks.explainability: the same explainer, masker and
batched scoring as the family's other checks) gives each word's push; audit/reasons.py aggregates it to the template's columns
(templated text) or to words (free text), keeps the principal reasons (share of the push towards the decline at
least `min_share`, at most `top_k`) and maps them to statements through the policy's `reason_codes` table.

Three checks share one explanation of the declines (cost "adverse_action"):
- `adverse_action_protected_reasons`: the share of declines whose principal reasons include a protected
  attribute's column, a listed proxy, or (free text) a term of the listed swap lists. Should be 0.
- `adverse_action_specific_reasons`: the share of declines with at least `min_reasons` principal reasons that
  are not protected. A decline the model cannot explain by specific reasons cannot be noticed as the law asks.
- `adverse_action_reason_stability`: the share of declines whose top reason is the same when the declines are
  explained again with a second seed (shap breaks ties between equal priorities at random, and with fewer
  evaluations than tokens its split of credit depends on them). An unstable top reason is not a reason.

Every interval is the run's Poisson bootstrap (ctx.weights) over the explained declines. An explanation that
does not add up (base value + SHAP values vs the model's log-odds, beyond `tolerance`) makes every measurement
carry an error, as in the rest of the family. Every notice is kept in the measurement's details (result.json);
the report shows a sample, and `audit run --adverse-action FILE` writes them as CSV.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from audit.checks import check
from audit.context import CheckContext
from audit.result import Measurement

AA_PARAMS: dict[str, Any] = {"rows": 40, "max_evals": 100, "min_share": 0.05, "top_k": 4, "min_reasons": 2,
                             "reason_codes": {}, "proxies": [], "term_lists": ["gender", "marital_status",
                                                                               "national_origin"],
                             "tolerance": 0.01}
SHOWN = 5  # notices in the report


def _whole(params: dict, key: str, lo: int, hi: int) -> int:
    v = params.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ValueError(f"{key} must be a whole number from {lo} to {hi}, got {v!r}")
    return v


def _validate(params: dict) -> None:
    """At policy load (raises ValueError naming the parameter)."""
    from audit.checks.explainability import load_terms

    _whole(params, "rows", 1, 5000)
    _whole(params, "max_evals", 2, 100000)
    top = _whole(params, "top_k", 1, 10)
    _whole(params, "min_reasons", 0, top)
    share = params.get("min_share")
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share < 1:
        raise ValueError(f"min_share must be a number from 0 to below 1, got {share!r}")
    tol = params.get("tolerance")
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not tol >= 0:
        raise ValueError(f"tolerance must be a number of at least 0, got {tol!r}")
    codes = params.get("reason_codes")
    if not isinstance(codes, dict) or not all(isinstance(k, str) and isinstance(v, str) and v.strip()
                                              for k, v in codes.items()):
        raise ValueError("reason_codes must map a column (or a word of free text) to the statement an applicant "
                         "reads, both text")
    proxies = params.get("proxies")
    if not isinstance(proxies, list) or not all(isinstance(p, str) and p.strip() for p in proxies):
        raise ValueError("proxies must be a list of columns (or words) that stand for a protected attribute")
    lists = params.get("term_lists")
    if not isinstance(lists, list):
        raise ValueError("term_lists must be a list of swap-list names or files")
    load_terms([], lists)


def _shap_declines(ctx: CheckContext, rows: list[int], max_evals: int, seed: int) -> list:
    """(pieces, values, base) per declined row, explained with numpy's global seed set to `seed` (shap's tie
    breaks draw from it); cached per (rows, max_evals, seed)."""
    from audit.checks.explainability import _model_predict, resolve_output, shap_explain

    key = (tuple(rows), max_evals, seed)
    cache = ctx.shared.declines
    if key not in cache:
        state = np.random.get_state()
        try:
            np.random.seed(seed)
            output = resolve_output(ctx, "favourable")  # binary: the positive label's log-odds, as always
            predict = _model_predict(ctx, [0], output=output)
            cache[key] = shap_explain(predict, ctx.bundle.tokenizer, [ctx.texts[i] for i in rows],
                                      max_evals=max_evals, progress=ctx.progress, desc="adverse-action reasons",
                                      columns=output.columns(ctx, rows))
        except Exception as exc:  # every check of the cost reports the same failure, computed once
            cache[key] = exc
        finally:
            np.random.set_state(state)
    got = cache[key]
    if isinstance(got, Exception):
        raise got
    return got


def _protected(ctx: CheckContext, params: dict, templated: bool) -> set[str]:
    from audit.checks.explainability import load_terms

    out = {p.strip().lower() for p in params.get("proxies") or []}
    if templated:
        out |= {a.column.lower() for a in ctx.manifest.protected_attributes.values()}
    else:
        single, multi = load_terms([], params.get("term_lists") or [])
        out |= set(single) | set(multi)
    return out


def notices(ctx: CheckContext, params: dict, seed: int) -> tuple[list, dict]:
    """The notices of the declined rows the budget covers (audit.reasons.Notice), and facts for the details."""
    from audit import reasons as R
    from audit.checks.explainability import _run_outputs, merge_pieces, resolve_output

    rows = R.declined_rows(ctx.y_pred, int(params["rows"]), ctx.seed)
    if not rows:
        return [], {"declined": 0}
    got = _shap_declines(ctx, rows, int(params["max_evals"]), seed)
    m = ctx.manifest
    templated = m is not None and getattr(m.text, "template", None) is not None and ctx.frame is not None
    spans = None
    if templated:
        from audit.data import template_columns

        spans = R.field_spans(ctx.frame.iloc[rows], m.text, sorted(template_columns(m.text.template)),
                              ctx.eval_path or "eval data")
    protected = _protected(ctx, params, templated)
    tok = ctx.bundle.tokenizer
    specials = frozenset(str(t) for t in getattr(tok, "all_special_tokens", []) or [])
    outputs = _run_outputs(ctx, resolve_output(ctx, "favourable"))
    decided = ctx.classes.labels if ctx.multiclass else None  # the class each decline was decided as
    pred = np.asarray(ctx.classes.pred) if ctx.multiclass else None
    ids = ctx.frame[m.id_column].astype(str).tolist() if (m is not None and m.id_column and ctx.frame is not None) \
        else None
    out, errors = [], []
    for j, (i, (pieces, values, base)) in enumerate(zip(rows, got)):
        units = merge_pieces(pieces, values, specials)
        contrib = R.sources(ctx.texts[i], units, spans[j] if spans is not None else None)
        errors.append(abs(base + float(np.sum(values)) - float(outputs[i])))
        out.append(R.notice(i, ids[i] if ids else str(i), float(ctx.score[i]), contrib,
                            table=dict(params.get("reason_codes") or {}), protected=protected,
                            min_share=float(params["min_share"]), top_k=int(params["top_k"]),
                            decided=decided[pred[i]] if decided is not None else None))
    facts = {"declined": int((np.asarray(ctx.y_pred) == 0).sum()), "explained": len(rows),
             "max_additivity_error": float(max(errors)) if errors else 0.0,
             "sources": "template columns" if templated else "words"}
    if ctx.multiclass:  # a decline is a decision that is not favourable: which classes those were
        facts.update(favourable=ctx.classes.favourable_labels, output=resolve_output(ctx, "favourable").what,
                     declined_as={c: int(n) for c, n in zip(ctx.classes.labels,
                                                            np.bincount(pred[np.asarray(ctx.y_pred) == 0],
                                                                        minlength=ctx.classes.k)) if n})
    return out, facts


def _share(ctx: CheckContext, rows: list[int], x: np.ndarray) -> tuple[float | None, float | None, float | None]:
    from audit.checks.fairness import _div, _f, _interval

    W = ctx.weights[:, rows]
    v = _div(W @ x.astype(float), W.sum(axis=1))
    lo, hi = _interval(v[1:], ctx.confidence) if W.shape[0] > 1 else (None, None)
    return _f(v[0]), lo, hi


def _measure(ctx: CheckContext, check_id: str, params: dict, kind: str) -> Measurement:
    _validate(params)
    m = Measurement(check_id, None)
    if not ctx.texts or len(ctx.texts) != len(ctx.score):
        m.inconclusive = "the eval texts are not available to this check"
        return m
    if ctx.bundle is None or getattr(ctx.bundle, "model", None) is None:
        m.inconclusive = "the run has no model loaded to explain the declines"
        return m
    first, facts = notices(ctx, params, ctx.seed)
    if not first:
        m.inconclusive = "no eval row was declined, so there is no adverse action to explain"
        m.details = facts
        return m
    rows = [n.row for n in first]
    k = int(params["min_reasons"])
    if kind == "protected":
        x = np.array([any(r.protected for r in n.reasons) for n in first])
    elif kind == "specific":
        x = np.array([sum(not r.protected for r in n.reasons) >= k for n in first])
    else:
        second, _ = notices(ctx, params, ctx.seed + 1)
        x = np.array([a.top_source == b.top_source for a, b in zip(first, second)])
        facts["changed"] = [{"row": a.row, "id": a.id, "first": a.top_source, "second": b.top_source}
                            for a, b in zip(first, second) if a.top_source != b.top_source][:20]
        facts["second_seed"] = ctx.seed + 1
    m.value, m.ci_low, m.ci_high = _share(ctx, rows, x)
    m.n = len(rows)
    missing = sorted({r.source for n in first for r in n.reasons if not r.has_statement})
    shown = sorted(range(len(first)), key=lambda j: (not x[j], j)) if kind == "protected" else range(len(first))
    m.details = {**facts, "kind": kind, "count": int(x.sum()), "min_share": params["min_share"],
                 "top_k": params["top_k"], "min_reasons": k, "reason_codes": dict(params.get("reason_codes") or {}),
                 "without_statement": missing, "notices": [n.to_dict() for n in first],
                 "shown": [first[j].row for j in list(shown)[:SHOWN]],
                 "caveats": ["Reasons come from the model's SHAP values on the declined rows; they explain the "
                             "model's score, not the creditor's whole decision process.",
                             "A reason without a statement in the policy's reason_codes table is named by its "
                             "column; a notice must use the creditor's own statements."]}
    if facts.get("max_additivity_error", 0) > float(params["tolerance"]):
        m.error = (f"the explanations of the declines do not add up: base value + SHAP values differ from the "
                   f"model's log-odds by up to {facts['max_additivity_error']:.3g}")
    return m


@check("explainability.adverse_action_protected_reasons", classes="favourable", title="Declines whose principal reasons are protected",
       direction="lower", unit="rate", params=AA_PARAMS, cost="adverse_action", validate=_validate,
       evidence="declined rows explained")
def adverse_action_protected_reasons(ctx: CheckContext, **params) -> Measurement:
    """Share of declined applicants whose principal reasons (from SHAP) include a protected attribute or a listed proxy.

    Each declined row's SHAP values are summed per template column (or per word of free text); the sources with
    the largest push towards the decline are its principal reasons. A protected one means the model's own
    account of the decline names sex, age, national origin or a stand-in for them: a notice could not state it,
    and the decision rests on it. Should be 0."""
    return _measure(ctx, "explainability.adverse_action_protected_reasons", params, "protected")


@check("explainability.adverse_action_specific_reasons", classes="favourable", title="Declines with enough specific reasons",
       direction="higher", unit="rate", params=AA_PARAMS, cost="adverse_action", validate=_validate,
       evidence="declined rows explained")
def adverse_action_specific_reasons(ctx: CheckContext, **params) -> Measurement:
    """Share of declined applicants with at least `min_reasons` principal reasons that are specific (not protected) and carry at least `min_share` of the push.

    A decline whose push is spread thin over the template's wording, or rests on protected attributes, cannot be
    explained to the applicant with specific reasons as Regulation B asks. Should be 1."""
    return _measure(ctx, "explainability.adverse_action_specific_reasons", params, "specific")


@check("explainability.adverse_action_reason_stability", classes="favourable", title="Stability of the top adverse-action reason",
       direction="higher", unit="rate", params=AA_PARAMS, cost="adverse_action", validate=_validate,
       evidence="declined rows explained")
def adverse_action_reason_stability(ctx: CheckContext, **params) -> Measurement:
    """Share of declined applicants whose top reason is the same when the declines are explained again with a second seed.

    The explainer's split of credit can depend on random tie-breaks; a top reason that changes with them is an
    artefact of the explanation, not a reason an applicant can act on. Near 1 is stable."""
    return _measure(ctx, "explainability.adverse_action_reason_stability", params, "stability")


def notices_of(result_measurements: dict[str, Any]) -> list[dict[str, Any]]:
    """The notices a run's measurements carry (any of the three checks), for the CSV and the report."""
    for cid in sorted(result_measurements):
        m = result_measurements[cid]
        d = (m.get("details") or {}) if isinstance(m, dict) else {}
        if cid.startswith("explainability.adverse_action_") and d.get("notices"):
            return list(d["notices"])
    return []

