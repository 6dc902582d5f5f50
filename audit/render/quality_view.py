"""View-model of the data-quality section: duplicates, training texts in the eval set (with the metrics re-measured
without them), conflicting labels, short texts and likely label errors, each with the rows it lists.

Built from result.json alone; every string is formatted here and reports/templates/quality.html only loops and
prints (jinja2 autoescapes every text). Listed texts are redacted by the check and once more here, as every text
the report shows (audit.pii.redact).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from audit.render.format import DASH, as_dict, as_list, conf_text, num

TITLES = {
    "quality.duplicate_share": "Duplicate texts",
    "quality.train_overlap_share": "Training texts in the eval set",
    "quality.conflicting_labels_share": "The same text with different labels",
    "quality.short_text_share": "Empty or very short texts",
    "quality.label_issue_share": "Likely label errors",
}


def _pct(x: Any) -> str:
    v = num(x)
    return DASH if v is None else f"{v:.1%}"


def _f3(x: Any) -> str:
    v = num(x)
    return DASH if v is None else f"{v:.3f}"


def _n(x: Any) -> str:
    v = num(x)
    return DASH if v is None else f"{v:,.0f}"


def _signed(x: Any) -> str:
    v = num(x)
    return DASH if v is None else f"{v:+.3f}"


def _redact(text: Any) -> str:
    from audit.pii import redact

    return redact(str(text or ""))


@dataclass
class Listed:
    rows: str  # "row 3 (id app-0003)" or "rows 1, 7, 9 (3 rows)"
    text: str
    note: str = ""  # labels, kind, probability


@dataclass
class MetricRow:
    metric: str
    everything: str
    held_out: str
    inflation: str


@dataclass
class QualitySection:
    check_id: str
    title: str
    sentence: str
    reason: str
    listed: list[Listed] = field(default_factory=list)
    metrics: list[MetricRow] = field(default_factory=list)
    caveats: list[str] = field(default_factory=list)


@dataclass
class QualityView:
    intro: str
    sections: list[QualitySection]


def _ids(ids: list, rows: list, size: Any) -> str:
    shown = ", ".join(str(i) for i in ids[:8])
    more = (num(size) or len(ids)) - min(len(ids), 8)
    return f"{shown}{f' and {more:,.0f} more' if more > 0 else ''}"


def _share_sentence(m: dict, what: str, more: str = "") -> str:
    """'12 of 300 eval rows (4.0%) WHAT. MORE', or '' when the result does not carry the counts."""
    d = as_dict(m.get("details"))
    k, n = num(d.get("rows_flagged")), num(d.get("rows"))
    if k is None or n is None:
        return ""
    return f"{_n(k)} of {_n(n)} eval rows ({_pct(m.get('value'))}) {what}." + (f" {more}" if more else "")


def _section(cid: str, m: dict, conf: str) -> QualitySection:
    d = as_dict(m.get("details"))
    reason = str(m.get("error") or m.get("inconclusive") or m.get("skipped") or "")
    s = QualitySection(cid, TITLES.get(cid, cid), "", reason, caveats=[str(c) for c in as_list(d.get("caveats"))])
    if num(m.get("ci_low")) is not None and num(m.get("ci_high")) is not None:
        ci = f", {conf} CI {_pct(m.get('ci_low'))}–{_pct(m.get('ci_high'))}"
    else:
        ci = ""
    listed = list(map(as_dict, as_list(d.get("listed"))))
    if cid in ("quality.duplicate_share", "quality.conflicting_labels_share"):
        if cid == "quality.duplicate_share":
            s.sentence = _share_sentence(m, "repeat the text of an earlier row",
                                         f"Exact: {_n(d.get('exact_duplicate_rows'))}, near ({d.get('near')}): "
                                         f"{_n(d.get('near_duplicate_rows'))}, in {_n(d.get('groups'))} groups.")
        else:
            s.sentence = _share_sentence(m, "share their text with a row of the other label",
                                         f"{_n(d.get('conflicting_groups'))} texts have both labels.")
        for g in listed:
            labels = as_dict(g.get("labels"))
            note = ", ".join(f"{k}: {_n(v)}" for k, v in labels.items()) if labels else str(g.get("kind") or "")
            variants = [_redact(v) for v in as_list(g.get("variants"))]
            text = _redact(g.get("text")) + ("" if not variants else "  ≈  " + "  ≈  ".join(variants))
            s.listed.append(Listed(f"ids {_ids(as_list(g.get('ids')), as_list(g.get('rows')), g.get('size'))} "
                                   f"({_n(g.get('size'))} rows)", text, note))
    elif cid == "quality.train_overlap_share":
        s.sentence = _share_sentence(m, f"have a text of the model's training split ({d.get('match')} match)",
                                     f"Exact matches: {_n(d.get('shared_exact'))}; with another label in training: "
                                     f"{_n(d.get('shared_other_label'))}; training rows: {_n(d.get('training_rows'))}.")
        a, b, inf = as_dict(d.get("all_rows")), as_dict(d.get("without_shared")), as_dict(d.get("inflation"))
        if a:
            s.metrics = [MetricRow(label, _f3(a.get(k)), _f3(b.get(k)), _signed(inf.get(k)))
                         for k, label in (("roc_auc", "ROC-AUC"), ("accuracy", "Accuracy"))]
            s.metrics.append(MetricRow("Rows", _n(a.get("rows")), _n(b.get("rows")), ""))
        for r in listed:
            note = ("exact" if r.get("exact") else "near") + (
                "; another label in training" if r.get("other_label_in_training") else "")
            s.listed.append(Listed(f"id {r.get('id')}", _redact(r.get("text")), note))
    elif cid == "quality.short_text_share":
        s.sentence = _share_sentence(m, f"have fewer than {_n(d.get('min_words'))} words",
                                     f"Empty: {_n(d.get('empty_rows'))}.")
        s.listed = [Listed(f"id {r.get('id')}", _redact(r.get("text")), f"{_n(r.get('words'))} words")
                    for r in listed]
    elif cid == "quality.label_issue_share":
        s.sentence = _share_sentence(m, "carry a label the model's probabilities make unlikely",
                                     f"Method: {d.get('used') or d.get('method') or DASH}.")
        s.listed = [Listed(f"id {r.get('id')}", _redact(r.get("text")),
                           f"label {r.get('label')}; the model gives it {_pct(r.get('label_probability'))}")
                    for r in listed]
    if s.sentence and ci:
        s.sentence = s.sentence.replace(f"({_pct(m.get('value'))})", f"({_pct(m.get('value'))}{ci})", 1)
    return s


def quality_view(result: dict) -> QualityView | None:
    measurements = {k: as_dict(v) for k, v in as_dict(result.get("measurements")).items()
                    if str(k).startswith("quality.")}
    if not measurements:
        return None
    conf = conf_text(as_dict(result.get("policy")).get("confidence"))
    order = [c for c in TITLES if c in measurements] + sorted(set(measurements) - set(TITLES))
    intro = ("Is the eval set fit to judge the model on? Repeated rows count twice in every metric, training texts "
             "flatter it, a text with both labels caps it, near-empty texts give the model nothing to read, and "
             "wrong labels count the model's right answers as errors. Listed rows are redacted.")
    return QualityView(intro, [_section(c, measurements[c], conf) for c in order])


detail = quality_view  # the family-view protocol: audit/render/views.py, family_views
