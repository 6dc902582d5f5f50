"""View-model of the drift section: the reference and current sets, one table of every compared column (test,
score, threshold, drifted), the text descriptors, score and embedding drift, performance on the current set, and
reference-vs-current histograms (inline SVG) for the score and each drifted column.

Built from result.json alone (the drift measurements' `details`); every string is formatted here and
reports/templates/drift.html only loops and prints. Any part may be missing from an older or partial result:
readers use `.get` and show less, never raise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from audit.render.charts import _num

DASH = "—"
SHARE = "drift.share_drifted_columns"
DESCRIPTORS = "drift.text_descriptors"
PSI = "drift.prediction_psi"
KS = "drift.prediction_ks"
RATE = "drift.favourable_rate_change"
EMBEDDING = "drift.embedding_auc"
CURRENT_AUC = "drift.current_roc_auc"
TEXT_AUC = "drift.text_content_auc"
REF_FILL, REF_STROKE, CUR_FILL = "#ffffff", "#4a5361", "#1d4f91"


def _d(x: Any) -> dict:
    return x if isinstance(x, dict) else {}


def _l(x: Any) -> list:
    return x if isinstance(x, list) else []


def f3(x: Any) -> str:
    v = _num(x)
    return DASH if v is None else f"{v:.3f}"


def pct(x: Any, digits: int = 1) -> str:
    v = _num(x)
    return DASH if v is None else f"{v:.{digits}%}"


def count(x: Any) -> str:
    v = _num(x)
    return DASH if v is None else f"{v:,.0f}"


def p_text(p: Any) -> str:
    v = _num(p)
    if v is None:
        return DASH
    return "p < 0.001" if v < 0.001 else f"p = {v:.3f}"


def score_text(row: dict) -> str:
    stat = row.get("statistic")
    if stat == "p-value":
        return p_text(row.get("score"))
    if stat == "AUC":
        return f"AUC {f3(row.get('score'))}"
    return f3(row.get("score"))


def threshold_text(row: dict) -> str:
    t = _num(row.get("threshold"))
    if t is None:
        return DASH
    if row.get("statistic") == "p-value":
        return f"p < {t:g}"
    if row.get("statistic") == "AUC":
        return f"AUC > {t:.3f}"
    return f"≥ {t:g}"


def ci_text(low: Any, high: Any, confidence: str, f=f3) -> str:
    if _num(low) is None or _num(high) is None:
        return ""
    return f" ({confidence} CI {f(low)}–{f(high)})"


# ---------------------------------------------------------------- dataclasses


@dataclass
class Attachment:
    href: str  # the file beside report.html
    text: str  # the link text: what the file is


@dataclass
class Fact:
    label: str
    value: str
    code: bool = False  # macros.kv_table prints code in monospace


@dataclass
class ColumnRow:
    column: str
    role: str
    kind: str
    test: str
    score: str
    threshold: str
    drifted: str  # "drifted", "no", or a dash when it could not be tested
    css: str
    detail: str  # means or the missing shares, when known


@dataclass
class MetricRow:
    title: str
    current: str
    eval: str


@dataclass
class HistRow:
    label: str
    full_label: str
    text_y: str
    ref_y: str
    cur_y: str
    ref_w: str
    cur_w: str
    tip: str


@dataclass
class HistChart:
    id: str
    title: str
    desc: str
    width: int
    height: int
    label_x: str
    plot_x: str
    bar_h: str
    rows: list[HistRow]
    ticks: list[tuple[str, str]]  # (x, text)
    tick_y: str
    grid_y1: str
    grid_y2: str
    legend_y: str
    legend_ty: str
    legend: list[tuple[str, str, str, str, str]]  # (x, text_x, fill, stroke, text)


@dataclass
class DriftView:
    intro: str
    skipped: str = ""
    facts: list[Fact] = field(default_factory=list)
    columns: list[ColumnRow] = field(default_factory=list)
    descriptors: list[ColumnRow] = field(default_factory=list)
    prediction: list[Fact] = field(default_factory=list)
    embedding: list[Fact] = field(default_factory=list)
    performance: list[MetricRow] = field(default_factory=list)
    performance_note: str = ""
    charts: list[HistChart] = field(default_factory=list)
    tests: list[Fact] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)  # evidently's HTML reports, beside report.html
    attachments_note: str = ""  # why their numbers differ from the judged finding
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- histogram chart

_W = 330
_LABEL_W = 118
_RIGHT = 46
_TOP = 34
_ROW = 20
_BAR = 7


def _c(v: float) -> str:
    return f"{v:.1f}"


def _short(label: str, n: int = 18) -> str:
    return label if len(label) <= n else label[: n - 1] + "…"


def hist_chart(id: str, title: str, hist: dict, ref_name: str, cur_name: str) -> HistChart | None:
    """Horizontal paired bars, one row per bin or category: the reference hollow, the current filled, so the
    chart reads in black and white too."""
    labels = [str(x) for x in _l(hist.get("labels"))]
    ref = [_num(x) or 0.0 for x in _l(hist.get("reference"))]
    cur = [_num(x) or 0.0 for x in _l(hist.get("current"))]
    if not labels or len(ref) != len(labels) or len(cur) != len(labels):
        return None
    top = max(ref + cur) or 1.0
    scale_max = min(1.0, (int(top * 10) + 1) / 10) if top > 0.1 else (int(top * 100) + 1) / 100
    plot_w = _W - _LABEL_W - _RIGHT

    def sx(v: float) -> float:
        return plot_w * min(v, scale_max) / scale_max

    rows = []
    for i, (lab, r, c) in enumerate(zip(labels, ref, cur)):
        y = _TOP + i * _ROW
        rows.append(HistRow(_short(lab), lab, _c(y + _BAR + 3), _c(y + 2), _c(y + 2 + _BAR), _c(max(sx(r), 0.5)),
                            _c(max(sx(c), 0.5)), f"{lab}: reference {pct(r)}, current {pct(c)}"))
    bottom = _TOP + len(labels) * _ROW
    ticks = [(_c(_LABEL_W + sx(t)), f"{t:.0%}" if scale_max >= 0.1 else f"{t:.1%}")
             for t in (0.0, scale_max / 2, scale_max)]
    worst = max(range(len(labels)), key=lambda i: abs(ref[i] - cur[i]))
    desc = (f"Share of rows per {'bin' if hist.get('kind') == 'numeric' else 'value'} of {title}: {ref_name} "
            f"(hollow bars) against {cur_name} (filled bars).")
    if abs(ref[worst] - cur[worst]) > 0:
        desc += (f" The largest difference is at {labels[worst]}: {pct(ref[worst])} of the reference, "
                 f"{pct(cur[worst])} of the current rows.")
    legend = [(_c(_LABEL_W), _c(_LABEL_W + 14), REF_FILL, REF_STROKE, f"reference ({count(hist.get('n_reference'))})"),
              (_c(_LABEL_W + 104), _c(_LABEL_W + 118), CUR_FILL, CUR_FILL, f"current ({count(hist.get('n_current'))})")]
    return HistChart(id=id, title=title, desc=desc, width=_W, height=bottom + 22, label_x=_c(_LABEL_W - 6),
                     plot_x=_c(_LABEL_W), bar_h=_c(_BAR), rows=rows, ticks=ticks, tick_y=_c(bottom + 14),
                     grid_y1=_c(_TOP - 2), grid_y2=_c(bottom), legend_y=_c(8), legend_ty=_c(17), legend=legend)


def score_chart(details: dict, ref_name: str, cur_name: str) -> HistChart | None:
    """The score's PSI bins (cut at the reference's quantiles, so each holds about the same share of the
    reference): what the PSI compares."""
    bins = [_d(b) for b in _l(details.get("bins"))]
    if not bins:
        return None

    def edge(x: Any, side: str) -> str:
        v = _num(x)
        return ("0" if side == "low" else "1") if v is None else f"{v:.3g}"

    hist = {"kind": "numeric", "labels": [f"{edge(b.get('low'), 'low')}–{edge(b.get('high'), 'high')}" for b in bins],
            "reference": [b.get("reference_share") for b in bins], "current": [b.get("current_share") for b in bins],
            "n_reference": _d(details.get("reference")).get("rows"), "n_current": _d(details.get("current")).get("rows")}
    name = str(_d(details.get("reference")).get("name") or ref_name)
    chart = hist_chart("drift-score", "the model's score, in the PSI's bins", hist, name, cur_name)
    if chart:
        chart.desc += " The bins are cut at the reference's quantiles, so the reference fills them about evenly."
    return chart


# ---------------------------------------------------------------- builders


def _column_row(row: dict) -> ColumnRow:
    drifted = row.get("drifted")
    detail = ""
    if _num(row.get("mean_reference")) is not None or _num(row.get("mean_current")) is not None:
        detail = f"mean {_g(row.get('mean_reference'))} → {_g(row.get('mean_current'))}"
        miss_r, miss_c = _num(row.get("missing_reference")), _num(row.get("missing_current"))
        if miss_r or miss_c:
            detail += f"; missing {pct(miss_r)} → {pct(miss_c)}"
    return ColumnRow(column=str(row.get("column", "")), role=str(row.get("role", "")), kind=str(row.get("kind", "")),
                     test=str(row.get("test", "")), score=score_text(row), threshold=threshold_text(row),
                     drifted=DASH if drifted is None else ("drifted" if drifted else "no"),
                     css="st-warn" if drifted else "", detail=detail)


def _g(x: Any) -> str:
    v = _num(x)
    return DASH if v is None else f"{v:.4g}"


def _side_text(side: Any) -> str:
    s = _d(side)
    if not s:
        return DASH
    out = f"{s.get('name', DASH)}, {count(s.get('rows'))} rows"
    if s.get("path"):
        out += f" ({s['path']})"
    if "labelled" in s:
        out += "; labelled" if s.get("labelled") else "; no labels"
    return out


def _attachments(view: DriftView, sd: dict) -> None:
    """evidently's own reports, linked as context that is not judged: they cover more columns than the finding
    counts and summarize them with evidently's default dataset rule, so their headline numbers differ from it."""
    names = [str(a) for a in _l(sd.get("attachments"))]
    if not names:
        return
    columns = _d(sd.get("attachment_columns"))
    counted = sum(1 for r in map(_d, _l(sd.get("columns"))) if r.get("counted") and r.get("drifted") is not None)
    for name in names:
        n = _num(columns.get(name))
        size = f"{n:.0f} column" + ("" if n == 1 else "s") if n is not None else "its own columns"
        view.attachments.append(Attachment(name, f"{name} (evidently's own report, {size}; not judged)"))
    view.attachments_note = (
        "Context, not judged by the audit: these files are evidently's own reports of the same comparison, with its "
        "plots. Their headline numbers are evidently's: its share of drifted columns is taken over every column it "
        "was given (the predicted label and the text descriptors too, and the label and the text when present), and its “dataset drift "
        "detected / not detected” uses evidently's default share of 0.5. The judged finding is the share of drifted "
        f"columns above, over the {counted} template-input and protected-attribute columns, against the policy's "
        "threshold; where the two disagree, the finding is what the verdict reads.")


def drift_view(result: dict) -> DriftView | None:
    ms = _d(result.get("measurements"))
    mine = {k: _d(v) for k, v in ms.items() if str(k).startswith("drift.")}
    if not mine:
        return None
    confidence = _num(_d(result.get("policy")).get("confidence"))
    conf = f"{confidence:.0%}" if confidence is not None else ""
    view = DriftView(intro=("The current set against the reference: input columns, the text, the model's scores and "
                            "its embeddings. A drift finding is a warning that the model meets data unlike what it "
                            "learned from; with labels, the performance on the current set shows whether it has "
                            "cost accuracy yet."))
    ran = {k: m for k, m in mine.items() if not m.get("skipped")}
    if not ran:
        reasons = {str(m.get("skipped")) for m in mine.values() if m.get("skipped")}
        view.skipped = "; ".join(sorted(reasons))
        return view
    share = _d(mine.get(SHARE))
    sd = _d(share.get("details"))
    if sd:
        view.facts = [Fact("Reference", _side_text(sd.get("reference"))), Fact("Current", _side_text(sd.get("current"))),
                      Fact("Tests", str(sd.get("regime") or DASH)),
                      Fact("Level and distance threshold",
                           f"alpha {_g(sd.get('alpha'))} for p-values; {_g(sd.get('distance_threshold'))} for distances"),
                      Fact("Engine", f"evidently {sd.get('evidently_version', DASH)} (DataDriftPreset), with a two-sample "
                                     "chi-square in place of its goodness-of-fit test")]
        view.columns = [_column_row(r) for r in map(_d, _l(sd.get("columns")))]
        view.notes += [str(n) for n in _l(sd.get("notes"))]
        _attachments(view, sd)
    dd = _d(_d(mine.get(DESCRIPTORS)).get("details"))
    used = {str(r.get("method")): str(r.get("test"))
            for r in map(_d, _l(sd.get("columns")) + _l(dd.get("descriptors")))}
    from audit.driftstats import WHY  # plain text constants; no heavy import

    view.tests = [Fact(name, WHY.get(method, "")) for method, name in used.items()]
    for r in map(_d, _l(dd.get("descriptors"))):
        row = _column_row(r)
        row.role = str(r.get("meaning", ""))
        view.descriptors.append(row)
    for n in _l(dd.get("notes")):
        if str(n) not in view.notes:
            view.notes.append(str(n))
    ref_name = str(_d(sd.get("reference")).get("name") or "reference")
    cur_name = str(_d(sd.get("current")).get("name") or "current set")
    _prediction(view, mine, conf)
    _embedding(view, _d(mine.get(EMBEDDING)), conf)
    _performance(view, _d(mine.get(CURRENT_AUC)), conf)
    chart = score_chart(_d(_d(mine.get(PSI)).get("details")), ref_name, cur_name)
    if chart:
        view.charts.append(chart)
    hists = {**_d(sd.get("histograms")), **_d(dd.get("histograms"))}
    for i, (column, h) in enumerate(hists.items()):
        chart = hist_chart(f"drift-col-{i}", str(column), _d(h), ref_name, cur_name)
        if chart:
            view.charts.append(chart)
    return view


def _prediction(view: DriftView, mine: dict, conf: str) -> None:
    psi, ks, rate = _d(mine.get(PSI)), _d(mine.get(KS)), _d(mine.get(RATE))
    pd_, kd, rd = _d(psi.get("details")), _d(ks.get("details")), _d(rate.get("details"))
    if pd_:
        bins = len(_l(pd_.get("bins")))
        view.prediction.append(Fact(
            f"PSI of the score ({bins} bins at the reference's quantiles)",
            f"{f3(psi.get('value'))}{ci_text(psi.get('ci_low'), psi.get('ci_high'), conf)}; two samples of one "
            f"population give about {f3(pd_.get('null_mean'))} at these sizes. {pd_.get('epsilon_note', '')}".strip()))
        view.prediction.append(Fact("Reference for the model's outputs", str(pd_.get("reference_is") or DASH)))
    if kd or pd_:
        d = ks.get("value") if kd else pd_.get("ks_statistic")
        p = kd.get("p_value") if kd else pd_.get("ks_p_value")
        view.prediction.append(Fact("Two-sample KS on the score", f"D = {f3(d)}, {p_text(p)}"))
    if rd:
        view.prediction.append(Fact(
            f"Predicted {rd.get('positive_label', 'favourable')} (score ≥ {_g(rd.get('threshold'))})",
            f"{pct(rd.get('reference_rate'))} of the reference → {pct(rd.get('current_rate'))} of the current set; "
            f"change {_pts(rate.get('value'))}{_pts_ci(rate, conf)}"))
    elif rate.get("skipped"):
        view.prediction.append(Fact("Predicted-favourable rate", f"skipped: {rate['skipped']}"))


def _pts(x: Any) -> str:
    v = _num(x)
    return DASH if v is None else f"{v * 100:+.1f} points"


def _pts_ci(m: dict, conf: str) -> str:
    lo, hi = _num(m.get("ci_low")), _num(m.get("ci_high"))
    if lo is None or hi is None:
        return ""
    return f" ({conf} CI {lo * 100:+.1f} to {hi * 100:+.1f})"


def _embedding(view: DriftView, m: dict, conf: str) -> None:
    d = _d(m.get("details"))
    if m.get("inconclusive"):
        view.embedding.append(Fact("Domain classifier AUC", f"not measured: {m['inconclusive']}"))
    if not d or _num(m.get("value")) is None:
        return
    sampled = _d(d.get("sampled"))
    cap = f"; each side capped at {count(next(iter(sampled.values())))} rows (seeded sample)" if sampled else ""
    view.embedding.append(Fact("Domain classifier AUC (0.5 = indistinguishable)",
                               f"{f3(m.get('value'))}{ci_text(m.get('ci_low'), m.get('ci_high'), conf)}"))
    view.embedding.append(Fact("How", f"{d.get('classifier', DASH)}: {count(d.get('n_reference'))} reference and "
                                      f"{count(d.get('n_current'))} current rows ({count(d.get('n_test'))} held out), "
                                      f"{count(d.get('dimensions'))} dimensions{cap}; {d.get('interval', '')}"))
    view.embedding.append(Fact("Reference for the model's outputs", str(d.get("reference_is") or DASH)))


def _performance(view: DriftView, m: dict, conf: str) -> None:
    if m.get("skipped"):
        view.performance_note = f"Not measured: {m['skipped']}."
        return
    d = _d(m.get("details"))
    for r in map(_d, _l(d.get("metrics"))):
        view.performance.append(MetricRow(str(r.get("title", "")),
                                          f"{f3(r.get('current'))}{ci_text(r.get('ci_low'), r.get('ci_high'), conf)}",
                                          f3(r.get("eval"))))
    if d:
        view.performance_note = (f"{count(d.get('positives'))} positive and {count(d.get('negatives'))} negative rows "
                                 f"in the current set; decision threshold {_g(d.get('threshold'))}. Intervals are "
                                 "Poisson bootstrap intervals; the eval column repeats the performance family's "
                                 "point estimates.")


detail = drift_view  # the family-view protocol: audit/render/views.py, family_views
