"""View-model of the fairness section: per attribute a table, charts of each group's rate with interval whiskers
and the policy's line, one plain sentence per finding, the groups too small to judge, and the caveats.

Built from result.json alone (the measurements' `details` and the findings), like views.py; every string is
formatted here and reports/templates/fairness.html only loops and prints. Any part may be missing from an
older or partial result: readers use `.get` and fall back to showing less, never to an exception.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from audit.render.charts import _num
from audit.render.format import humanize

DASH = "—"
RATIO = "fairness.selection_rate_ratio"
CHART_RATES = {  # check -> the group rates its chart shows
    "fairness.demographic_parity_difference": ("selection_rate",),
    "fairness.equalized_odds_difference": ("tpr", "fpr"),
    "fairness.equal_opportunity_difference": ("tpr",),
    "fairness.predictive_parity_difference": ("precision",),
    "fairness.auc_gap": ("roc_auc",),
}
RATE_TITLES = {"selection_rate": "Selection rate", "tpr": "True-positive rate", "fpr": "False-positive rate",
               "fnr": "False-negative rate", "precision": "Precision", "accuracy": "Accuracy", "roc_auc": "ROC-AUC"}
TABLE_RATES = ("selection_rate", "tpr", "fpr", "precision", "accuracy", "roc_auc")
COUNTERFACTUAL = ("fairness.counterfactual_flip_rate", "fairness.counterfactual_score_change")
PROXY = "fairness.proxy_auc"
REPRESENTATION_NAMES = {"embeddings": "the model's embeddings", "words": "the words of the text"}


def _d(x: Any) -> dict:
    return x if isinstance(x, dict) else {}


def _l(x: Any) -> list:
    return x if isinstance(x, list) else []


def fnum(x: Any) -> str:
    """A rate, ratio or difference as every output prints it (the judge's three decimals): one quantity reads
    one way in the fairness section, the findings table and summary.md."""
    from audit.render.format import fmt

    return DASH if _num(x) is None else fmt(x)


def f3(x: Any) -> str:
    v = _num(x)
    return DASH if v is None else f"{v:.3f}"


def f4(x: Any) -> str:
    v = _num(x)
    return DASH if v is None else f"{v:.4f}"


def pct(x: Any) -> str:
    v = _num(x)
    return DASH if v is None else f"{v:.1%}"


def _ci(ci: Any) -> tuple[Any, Any]:
    ci = _l(ci)
    return (ci[0], ci[1]) if len(ci) == 2 else (None, None)


def ci_text(ci: Any, confidence: str, f=fnum) -> str:
    lo, hi = _ci(ci)
    if _num(lo) is None or _num(hi) is None:
        return ""
    return f"{confidence} CI {f(lo)}–{f(hi)}"


def count(x: Any) -> str:
    v = _num(x)
    return DASH if v is None else f"{v:,.0f}"


# ---------------------------------------------------------------- dataclasses


@dataclass
class Cell:
    value: str
    ci: str  # "0.45–0.74", or ""


@dataclass
class GroupRow:
    group: str
    count: str
    positives: str
    predicted: str
    ratio: Cell
    rates: list[Cell]
    note: str  # why the group is too small to judge
    small: bool


@dataclass
class BarRow:
    label: str
    full_label: str
    value_text: str
    y: str
    text_y: str
    cap1: str
    cap2: str
    x: str | None  # the dot
    x1: str | None  # the whisker
    x2: str | None
    muted: bool


@dataclass
class Line:
    x: str
    label: str
    label_x: str
    anchor: str


@dataclass
class GroupChart:
    """Each group's value as a dot with its interval whisker, on one shared scale, with the policy's line."""

    id: str
    title: str
    desc: str
    width: int
    height: int
    plot_x1: str
    plot_x2: str
    top: str
    bottom: str
    label_x: str
    tick_y: str
    zone_h: str
    line_y1: str
    line_text_y: str
    ticks: list[tuple[str, str]]  # (x, text)
    rows: list[BarRow]
    lines: list[Line]
    zones: list[tuple[str, str]]  # (x, width): where the rule is broken


@dataclass
class AttributeView:
    id: str
    name: str
    kind: str  # "attribute" or "intersection"
    columns: str
    reference: str
    sentences: list[str]
    headers: list[str]
    rows: list[GroupRow]
    charts: list[GroupChart]
    notes: list[str]


@dataclass
class Example:
    id: str
    before: str
    after: str
    scores: str
    decision: str
    flipped: bool


@dataclass
class SwapView:
    name: str
    source: str
    sentence: str
    terms: str
    examples: list[Example]
    after_header: str = "With terms swapped"


@dataclass
class ProxyView:
    name: str
    sentence: str  # both representations' AUCs with their intervals, and the rule
    words: str  # the words that carry it, with the group each points to
    note: str


@dataclass
class FairnessView:
    favourable: str
    sentences: list[str]  # the headline per finding, and what could not be judged
    attributes: list[AttributeView]
    small_groups: list[str]
    swaps: list[SwapView]
    caveats: list[str]
    intro: str = ""
    proxies: list[ProxyView] = field(default_factory=list)
    swaps_title: str = "Counterfactual term swaps"


# ---------------------------------------------------------------- charts


def _ticks(a: float, b: float) -> list[float]:
    span = b - a
    step = next(s for s in (0.05, 0.1, 0.2, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 1e9) if span / s <= 6)
    first = int(a / step + 0.999999) * step
    out, t = [], first
    while t <= b + 1e-9:
        out.append(round(t, 6))
        t += step
    return out


def group_chart(id: str, title: str, what: str, rows: list[tuple[str, Any, Any, Any, bool, str]],
                confidence: str, minimum: Any = None, maximum: Any = None, line_label: str = "") -> GroupChart | None:
    """rows: (group, value, ci_low, ci_high, judged, suffix). A `minimum` line shades what lies left of it,
    a `maximum` line what lies right of it."""
    rows = [r for r in rows if _num(r[1]) is not None]
    if not rows:
        return None
    mn, mx = _num(minimum), _num(maximum)
    known = [v for r in rows for v in (_num(r[1]), _num(r[2]), _num(r[3])) if v is not None]
    known += [v for v in (mn, mx) if v is not None]
    a, b = min(0.0, min(known)), max(1.0, max(known))
    width, label_w, right, row_h, top = 520, 170, 24, 24, 26
    x1, x2 = float(label_w + 10), float(width - right)
    height = top + row_h * len(rows) + 30

    def sx(v: float) -> float:
        return x1 + (v - a) / (b - a) * (x2 - x1)

    bars, parts = [], []
    for i, (group, value, lo, hi, judged, suffix) in enumerate(rows):
        y = top + row_h * i + row_h / 2
        v, lo_, hi_ = _num(value), _num(lo), _num(hi)
        has_ci = lo_ is not None and hi_ is not None
        interval = f" ({confidence} CI {fnum(lo_)}–{fnum(hi_)})" if has_ci else ""
        text = f"{fnum(v)}{interval}{suffix}"
        label = group if len(group) <= 26 else group[:25] + "…"
        bars.append(BarRow(label + ("" if judged else " *"), group, text, f"{y:.1f}", f"{y + 4:.1f}", f"{y - 5:.1f}",
                           f"{y + 5:.1f}",
                           f"{sx(v):.1f}", f"{sx(lo_):.1f}" if has_ci else None, f"{sx(hi_):.1f}" if has_ci else None,
                           not judged))
        parts.append(f"{group}: {text}" + ("" if judged else " (too small to judge)"))
    lines, zones, said = [], [], ""
    bottom = top + row_h * len(rows)
    if mn is not None:
        lines.append(Line(f"{sx(mn):.1f}", line_label or f"{mn:g}", f"{sx(mn):.1f}", "middle"))
        zones.append((f"{x1:.1f}", f"{max(sx(mn) - x1, 0):.1f}"))
        said = f" The dashed line at {fnum(mn)} is the policy's minimum; the shaded part fails it."
    if mx is not None:
        lines.append(Line(f"{sx(mx):.1f}", line_label or f"{mx:g}", f"{sx(mx):.1f}", "middle"))
        zones.append((f"{sx(mx):.1f}", f"{max(x2 - sx(mx), 0):.1f}"))
        said = (f" The dashed line at {fnum(mx)} is the lowest judged group's value plus the most the policy allows "
                f"between groups; a group to its right breaks the rule.")
    desc = f"{what}, per group, with {confidence} intervals.{said} " + "; ".join(parts) + "."
    return GroupChart(id, title, desc, width, height + 4, f"{x1:.1f}", f"{x2:.1f}", f"{top:.1f}", f"{bottom:.1f}",
                      f"{label_w:.1f}", f"{bottom + 16:.1f}", f"{bottom - top:.1f}", f"{top - 6:.1f}",
                      f"{top - 10:.1f}", [(f"{sx(t):.1f}", f"{t:g}") for t in _ticks(a, b)],
                      bars, lines, zones)


# ---------------------------------------------------------------- sentences


def _requirement(f: dict, conf: str, fmt=fnum) -> str:
    side = {"ci_low": f" on the {conf} CI lower bound", "ci_high": f" on the {conf} CI upper bound"}.get(
        str(f.get("basis")), "")
    if _num(f.get("min")) is not None:
        return f"the policy requires at least {fmt(f['min'])}{side}"
    if _num(f.get("max")) is not None:
        return f"the policy allows at most {fmt(f['max'])}{side}"
    return "the policy sets no threshold"


def _paren(ci: str) -> str:
    return f" ({ci})" if ci else ""


def ratio_sentence(a: dict, favourable: str, conf: str, finding: dict | None) -> str:
    """'Group “under 25” (age) received the favourable decision (good) 0.71 times as often as group “25 and
    over” (95% CI 0.58–0.86); the policy requires at least 0.80.'"""
    name = a.get("attribute", "?")
    if _num(a.get("value")) is None:
        return f"The selection-rate ratio by {name} could not be measured: {a.get('note') or 'no value'}."
    ci = ci_text([a.get("ci_low"), a.get("ci_high")], conf)
    rule = "; " + _requirement(finding, conf) if finding else ""
    return (f"Group “{a.get('worst_group')}” ({name}) received the favourable decision ({favourable}) "
            f"{fnum(a.get('value'))} times as often as group “{a.get('versus_group')}”{_paren(ci)}{rule}.")


def difference_sentence(title: str, a: dict, conf: str, finding: dict | None) -> str:
    """'By sex, the equalized-odds difference was 0.15 (95% CI 0.08–0.35): the true-positive rate was 0.97
    for “male” against 0.82 for “female”; the policy allows at most 0.10.'"""
    name = a.get("attribute", "?")
    lower = title[:1].lower() + title[1:]
    if _num(a.get("value")) is None:
        return f"The {lower} by {name} could not be measured: {a.get('note') or 'no value'}."
    rate = str(a.get("worst_rate") or "")
    r = _d(_d(a.get("rates")).get(rate))
    ci = ci_text([a.get("ci_low"), a.get("ci_high")], conf)
    rule = "; " + _requirement(finding, conf) if finding else ""
    gap = ""
    if r:
        gap = (f": the {RATE_TITLES.get(rate, rate).lower()} was {fnum(r.get('highest'))} for “{r.get('highest_group')}” "
               f"against {fnum(r.get('lowest'))} for “{r.get('lowest_group')}”")
    return f"By {name}, the {lower} was {fnum(a.get('value'))}{_paren(ci)}{gap}{rule}."


def swap_sentence(lst: dict, conf: str, flip_rule: dict | None, change_rule: dict | None) -> str:
    if not _num(lst.get("rows_changed")):
        return f"No eval text contains a term of the {lst.get('list')} list, so no swap could be made."
    ci = ci_text(lst.get("flip_rate_ci"), conf, pct)
    rule = "; " + _requirement(flip_rule, conf, pct) if flip_rule else ""
    change_ci = ci_text(lst.get("mean_abs_score_change_ci"), conf, g3)
    change = f"; {_requirement(change_rule, conf, g3)}" if change_rule else ""
    share = f" ({pct(lst.get('share_changed'))} had a term to swap)" if _num(lst.get("share_changed")) is not None else ""
    return (f"Swapping {lst.get('list')} terms changed {count(lst.get('rows_changed'))} of "
            f"{count(lst.get('rows_total'))} eval texts{share}; {count(lst.get('flips'))} of their decisions flipped, "
            f"{pct(lst.get('flip_rate'))}{_paren(ci)}{rule}. The score moved by {g3(lst.get('mean_abs_score_change'))} "
            f"on average{_paren(change_ci)}{change}.")


def column_swap_sentence(e: dict, conf: str, flip_rule: dict | None, change_rule: dict | None) -> str:
    """Templated text: the attribute's column swapped and the text rendered again."""
    name = e.get("attribute", "?")
    if e.get("inconclusive") and not _num(e.get("texts")):
        return f"{name}: nothing could be swapped: {e.get('inconclusive')}."
    ci = ci_text(e.get("flip_rate_ci"), conf, pct)
    rule = "; " + _requirement(flip_rule, conf, pct) if flip_rule else ""
    change_ci = ci_text(e.get("mean_abs_score_change_ci"), conf, g3)
    change = f"; {_requirement(change_rule, conf, g3)}" if change_rule else ""
    return (f"Swapping the applicant's {name} (column {e.get('column')}) and rendering the text again changed "
            f"{count(e.get('rows_swapped'))} of {count(e.get('rows_total'))} eval rows into "
            f"{count(e.get('texts'))} counterfactual applications; the decision flipped for "
            f"{pct(e.get('flip_rate'))} of them{_paren(ci)}{rule}. The score moved by "
            f"{g3(e.get('mean_abs_score_change'))} on average{_paren(change_ci)}{change}.")


def pair_text(p: dict, conf: str) -> str:
    ci = ci_text(p.get("flip_rate_ci"), conf, pct)
    return (f"{p.get('from')} → {p.get('to')}: {count(p.get('rows'))} rows, flip rate {pct(p.get('flip_rate'))}"
            f"{_paren(ci)}, mean |Δ score| {g3(p.get('mean_abs_score_change'))}")


def g3(x: Any) -> str:
    v = _num(x)
    return DASH if v is None else f"{v:.3g}"


def span(ci: Any, f=f3) -> str:
    lo, hi = _ci(ci)
    return f"{f(lo)}–{f(hi)}" if _num(lo) is not None and _num(hi) is not None else ""


# ---------------------------------------------------------------- builder


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-") or "x"


def _rate_rows(groups: list[dict], rate: str) -> list:
    out = []
    for g in groups:
        if not _num(g.get("count")):
            continue
        lo, hi = _ci(g.get(rate + "_ci"))
        out.append((str(g.get("group")), g.get(rate), lo, hi, bool(g.get("judged", True)), ""))
    return out


def _small_note(g: dict, k: Any, favourable: str, unfavourable: str) -> str:
    """What a group lacks, in one phrase: 'only 13 rows' or '27 true good, 15 true bad rows (30 needed)'."""
    k = _num(k) or 0
    n = _num(g.get("count")) or 0
    if n == 0:
        return "no rows in the eval set"
    if n < k:
        return f"only {count(n)} rows ({count(k)} needed)"
    lacking = [f"{count(g.get(key))} {what}" for key, what in (("positives", f"true {favourable}"),
                                                               ("negatives", f"true {unfavourable}"),
                                                               ("predicted_positive", f"predicted {favourable}"))
               if (_num(g.get(key)) or 0) < k]
    return (", ".join(lacking) + f" rows ({count(k)} needed for the rates that use them)") if lacking else ""


def fairness_view(result: dict) -> FairnessView:
    measurements = {k: _d(v) for k, v in _d(result.get("measurements")).items() if str(k).startswith("fairness.")}
    findings = {str(f.get("check_id")): f for f in map(_d, _l(result.get("findings")))}
    conf_num = _num(_d(result.get("policy")).get("confidence"))
    conf = f"{conf_num:.0%}" if conf_num is not None else "the policy's"
    model = _d(result.get("model"))
    favourable = str(model.get("positive_label") or "favourable")
    unfavourable = str(model.get("negative_label") or "unfavourable")
    titles = {cid: str(findings.get(cid, {}).get("title") or humanize(cid)) for cid in measurements}

    # one table per attribute, from whichever measurement has it; "too small" merged over the checks
    order: list[str] = []
    attrs: dict[str, dict] = {}
    small_by: dict[tuple[str, str], list[str]] = {}  # (attribute, group) -> titles of the checks it blocks
    floor: dict[str, Any] = {}
    for cid, m in measurements.items():
        details = _d(m.get("details"))
        for a in map(_d, _l(details.get("attributes"))):
            if not a.get("attribute"):
                continue
            name = str(a.get("attribute"))
            if name not in attrs:
                order.append(name)
                attrs[name] = {"kind": a.get("kind"), "columns": a.get("columns"), "groups": {}, "by_check": {}}
            attrs[name]["by_check"][cid] = a
            floor.setdefault(name, details.get("min_group_size"))
            for g in map(_d, _l(a.get("groups"))):
                attrs[name]["groups"].setdefault(str(g.get("group")), g)
                if g.get("too_small"):
                    small_by.setdefault((name, str(g.get("group"))), []).append(titles[cid])

    # the headline: one sentence per fairness finding, from the attribute that decides it
    sentences: list[str] = []
    for cid, f in findings.items():
        m = measurements.get(cid)
        if m is None or cid in COUNTERFACTUAL or cid == PROXY:
            continue
        details = _d(m.get("details"))
        # the part whose numbers the finding shows (the judge's choice), else the worst part of the measurement
        attributes = [x for x in map(_d, _l(details.get("attributes"))) if x.get("attribute")]
        worst = str(f.get("part") or "")
        if not any(x.get("attribute") == worst for x in attributes):
            worst = str(_d(details.get("worst")).get("attribute") or "")
        a = next((x for x in attributes if x.get("attribute") == worst), None)
        status = str(f.get("status") or "")
        if a is None:
            sentence = f"{titles[cid]} could not be measured."
        elif cid == RATIO:
            sentence = ratio_sentence(a, favourable, conf, f)
        else:
            sentence = difference_sentence(titles[cid], a, conf, f)
        if status == "INCONCLUSIVE" and f.get("reason"):
            sentence += f" It cannot be judged: {f['reason']}."
        sentences.append(f"{status}: {sentence}" if status else sentence)

    views: list[AttributeView] = []
    for name in order:
        info = attrs[name]
        by = info["by_check"]
        groups = list(info["groups"].values())
        ratio_attr = _d(by.get(RATIO))
        ratio_rows = {str(g.get("group")): g for g in map(_d, _l(ratio_attr.get("groups")))}
        reference = str(ratio_attr.get("reference_group") or "")
        attr_sentences = []
        if RATIO in by and RATIO in findings:
            attr_sentences.append(ratio_sentence(ratio_attr, favourable, conf, findings[RATIO]))
        for cid in CHART_RATES:
            if cid in by and cid in findings:
                attr_sentences.append(difference_sentence(titles[cid], by[cid], conf, findings[cid]))
        rows = []
        for g in groups:
            key = (name, str(g.get("group")))
            r = _d(ratio_rows.get(key[1]))
            is_ref = bool(r) and key[1] == reference
            ratio = Cell("1 (reference)" if is_ref else fnum(r.get("ratio_to_reference")),
                         span(r.get("ratio_to_reference_ci"), fnum))
            note = _small_note(g, floor.get(name), favourable, unfavourable) if key in small_by else ""
            rows.append(GroupRow(
                group=key[1], count=count(g.get("count")), positives=count(g.get("positives")),
                predicted=count(g.get("predicted_positive")), ratio=ratio,
                rates=[Cell(f3(g.get(rate)), span(g.get(rate + "_ci"))) for rate in TABLE_RATES],
                note=note, small=key in small_by))
        charts = []
        if ratio_rows:
            chart_rows = []
            for key, g in ratio_rows.items():
                if not _num(g.get("count")):
                    continue
                lo, hi = _ci(g.get("ratio_to_reference_ci"))
                chart_rows.append((key, g.get("ratio_to_reference"), lo, hi, bool(g.get("judged")),
                                   " (reference)" if key == reference else ""))
            c = group_chart(f"ratio-{_slug(name)}", f"Selection rate relative to “{reference}”, by {name}",
                            f"Each {name} group's selection rate divided by that of “{reference}”", chart_rows, conf,
                            minimum=_d(findings.get(RATIO)).get("min"))
            if c:
                charts.append(c)
        shown = {r for cid, rates in CHART_RATES.items() if cid in findings and cid in by for r in rates}
        shown = shown or {"selection_rate"}
        for rate in [r for r in ("selection_rate", "tpr", "fpr", "precision", "roc_auc") if r in shown]:
            limit, label = None, ""
            for cid, rates in CHART_RATES.items():  # a max rule on a difference: the lowest judged group + max
                f = _d(findings.get(cid))
                judged = [_num(g.get(rate)) for g in map(_d, _l(_d(by.get(cid)).get("groups"))) if g.get("judged")]
                judged = [v for v in judged if v is not None]
                if rate in rates and _num(f.get("max")) is not None and len(judged) >= 2:
                    limit = min(judged) + float(f["max"])
                    label = f"lowest + {float(f['max']):g}"
            c = group_chart(f"{rate}-{_slug(name)}", f"{RATE_TITLES[rate]} by {name}",
                            f"{RATE_TITLES[rate]} of each {name} group", _rate_rows(groups, rate), conf,
                            maximum=limit, line_label=label)
            if c:
                charts.append(c)
        missing = next((a.get("missing_rows") for a in by.values() if a.get("missing_rows")), None)
        notes = [f"{count(missing)} eval rows have no value for {name} and are left out of its groups."] if missing else []
        views.append(AttributeView(
            id=_slug(name), name=name, kind="intersection" if info.get("kind") == "intersection" else "attribute",
            columns=", ".join(str(c) for c in _l(info.get("columns"))), reference=reference,
            sentences=attr_sentences,
            headers=["Group", "Rows", f"True {favourable}", f"Predicted {favourable}", "Selection rate",
                     "Ratio to reference", "TPR", "FPR", "Precision", "Accuracy", "ROC-AUC", "Too small to judge"],
            rows=rows, charts=charts, notes=notes))

    small = []
    for (name, group), checks in small_by.items():
        g = _d(attrs[name]["groups"].get(group))
        small.append(f"{name} “{group}”: {_small_note(g, floor.get(name), favourable, unfavourable)} "
                     f"(affects {', '.join(dict.fromkeys(checks))})")

    caveats: list[str] = []
    for m in measurements.values():
        caveats += [str(c) for c in _l(_d(m.get("details")).get("caveats"))]
    if RATIO in measurements and not any("four-fifths" in c for c in caveats):
        caveats.append("The four-fifths rule is a screening heuristic for adverse impact, not a legal test of "
                       "discrimination.")
    caveats.sort(key=lambda c: "four-fifths" not in c)  # the screen's caveat first, then the data's

    swaps = []
    lists: list = []
    for cid in COUNTERFACTUAL:
        m = _d(measurements.get(cid))
        f = findings.get(cid)
        lists = lists or _l(_d(m.get("details")).get("lists"))
        if f and f.get("status") == "INCONCLUSIVE":
            sentences.append(f"INCONCLUSIVE: {titles[cid]} cannot be judged: {f.get('reason') or m.get('inconclusive')}.")
    columns: list = []
    for cid in COUNTERFACTUAL:
        columns = columns or _l(_d(_d(measurements.get(cid)).get("details")).get("swapped_attributes"))
    for e in map(_d, columns):
        sentence = column_swap_sentence(e, conf, findings.get(COUNTERFACTUAL[0]), findings.get(COUNTERFACTUAL[1]))
        flip = findings.get(COUNTERFACTUAL[0])
        if flip and flip.get("status") != "INCONCLUSIVE":
            sentences.append(f"{flip.get('status')}: {sentence}")
        examples = [Example(str(x.get("id", x.get("row", ""))), str(x.get("before", "")), str(x.get("after", "")),
                            f"{f4(x.get('score_before'))} → {f4(x.get('score_after'))}",
                            f"{x.get('decision_before', DASH)} → {x.get('decision_after', DASH)}", bool(x.get("flipped")))
                    for x in map(_d, _l(e.get("examples")))]
        swaps.append(SwapView(str(e.get("attribute")), f"column {e.get('column')}", sentence,
                              "; ".join(pair_text(p, conf) for p in map(_d, _l(e.get("pairs")))), examples,
                              "Rendered again with the attribute swapped"))
    for lst in map(_d, lists):
        sentence = swap_sentence(lst, conf, findings.get(COUNTERFACTUAL[0]), findings.get(COUNTERFACTUAL[1]))
        flip = findings.get(COUNTERFACTUAL[0])
        if flip and flip.get("status") != "INCONCLUSIVE":
            sentences.append(f"{flip.get('status')}: {sentence}")
        terms = ", ".join(f"{t} ({n})" for t, n in _d(lst.get("terms_swapped")).items())
        examples = [Example(str(e.get("id", e.get("row", ""))), str(e.get("before", "")), str(e.get("after", "")),
                            f"{f4(e.get('score_before'))} → {f4(e.get('score_after'))}",
                            f"{e.get('decision_before', DASH)} → {e.get('decision_after', DASH)}", bool(e.get("flipped")))
                    for e in map(_d, _l(lst.get("examples")))]
        swaps.append(SwapView(str(lst.get("list")), str(lst.get("source", "")), sentence, terms, examples))

    proxies = proxy_views(_d(measurements.get(PROXY)), findings.get(PROXY), conf)
    f = findings.get(PROXY)
    if f:
        sentences.append(f"{f.get('status')}: {f.get('message')}" if f.get("status") != "INCONCLUSIVE" else
                         f"INCONCLUSIVE: {f.get('title') or humanize(PROXY)} cannot be judged: {f.get('reason')}.")

    intro = (f"How the model's decisions and errors differ between protected groups. The favourable decision is "
             f"“{favourable}”; a group's selection rate is the share of it given that decision. A group's rate has a "
             f"{conf} bootstrap percentile interval, resampled within groups; a difference is the largest minus the "
             f"smallest group value, and its interval is one built for a largest gap (a percentile interval would "
             f"overstate it). Each attribute and each intersection is judged on its own: a violation by one fails "
             f"the rule whatever the others show.")
    title = "Counterfactual swaps of the applicant's attributes" if columns else "Counterfactual term swaps"
    return FairnessView(favourable, sentences, views, small, swaps, list(dict.fromkeys(caveats)), intro, proxies,
                        title)


def proxy_sentence(e: dict, conf: str, finding: dict | None) -> str:
    """'From the words of the text a classifier tells the sex groups apart with ROC-AUC 1.000 (95% CI
    1.000–1.000); from the model's embeddings 0.981 (…); the policy allows at most 0.600.'"""
    name = e.get("attribute", "?")
    bits = []
    for rep, d in _d(e.get("representations")).items():
        d = _d(d)
        what = REPRESENTATION_NAMES.get(rep, rep)
        if _num(d.get("auc")) is None:
            bits.append(f"from {what} it was not measured ({d.get('note') or 'no value'})")
        else:
            bits.append(f"from {what} ROC-AUC {fnum(d.get('auc'))}"
                        f"{_paren(ci_text([d.get('ci_low'), d.get('ci_high')], conf))}")
    if not bits:
        return f"Whether the text reveals {name} could not be measured: {e.get('note') or 'no value'}."
    rule = "; " + _requirement(finding, conf) if finding else ""
    rows = count(e.get("rows"))
    return (f"A cross-validated classifier reads {name} from the eval texts ({rows} rows; 0.5 is chance): "
            + "; ".join(bits) + f"{rule}.")


def proxy_views(m: dict, finding: dict | None, conf: str) -> list[ProxyView]:
    out = []
    for e in map(_d, _l(_d(m.get("details")).get("proxies"))):
        words = ", ".join(f"{w.get('word')} (→ {w.get('group')})" for w in map(_d, _l(e.get("words"))))
        out.append(ProxyView(str(e.get("attribute", "")), proxy_sentence(e, conf, finding), words,
                             str(e.get("note") or "")))
    return out


detail = fairness_view  # the family-view protocol: audit/render/views.py, family_views
