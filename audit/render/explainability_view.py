"""View-model of the explainability family: a bar chart of the top-k words, the word table, and example texts
with each word highlighted by the sign and strength of its SHAP value.

Built from result.json alone (the measurements' details), every string formatted here; the template only loops
and prints. Sign is never shown by colour alone: a word that pushes towards the positive label has a solid
underline, one that pushes towards the negative label a dashed one, and every highlighted word carries its
value as a tooltip and as visually hidden text for screen readers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from audit.render.charts import _num

# Light fills (dark text keeps more than 7:1 contrast on each), weakest first.
POS_FILLS = ("#e3edf8", "#c2d8ef", "#95b9e2")
NEG_FILLS = ("#fbeadb", "#f6d0aa", "#efb078")
POS_LINE = "2px solid #1d4f91"
NEG_LINE = "2px dashed #8a4500"
BAR_POS, BAR_NEG, PROHIBITED = "#1d4f91", "#b35f00", "#9b1616"
STEPS = (0.15, 0.4, 0.7)  # strength buckets as shares of the largest |value| shown


@dataclass
class Bar:
    y: str
    h: str
    width: str
    fill: str
    label: str
    label_y: str
    value_text: str
    value_x: str
    prohibited: bool
    title: str


@dataclass
class BarChart:
    id: str
    title: str
    desc: str
    width: int
    height: int
    label_x: str
    plot_x: str
    plot_right: str
    top: str
    bottom: str
    tick_y: str
    axis_label: str
    axis_label_x: str
    axis_label_y: str
    ticks: list[tuple[str, str]]  # (x, text)
    bars: list[Bar]


@dataclass
class WordRow:
    rank: str
    word: str
    mean_abs: str
    mean_signed: str
    direction: str
    share: str
    rows: str
    prohibited: bool


@dataclass
class Span:
    text: str  # the unit without its trailing whitespace
    tail: str  # the whitespace after it
    style: str  # "" when the unit is not highlighted
    title: str
    note: str  # the visually hidden annotation, "+0.12"


@dataclass
class Example:
    title: str
    why: str
    facts: str
    spans: list[Span]


@dataclass
class Swatch:
    style: str
    label: str


@dataclass
class NoticeView:
    """One declined applicant's adverse-action notice, as the applicant would read it, and its reasons."""

    title: str
    text: str
    reasons: list[str]  # "Your credit history: 34% of the push towards the decline (column credit_history)"
    protected: bool  # a principal reason is a protected attribute or a listed proxy


@dataclass
class ExplainView:
    intro: str
    notes: list[str]
    chart: BarChart | None
    words: list[WordRow]
    words_caption: str
    examples: list[Example]
    legend: list[Swatch]
    legend_note: str
    notices: list[NoticeView] = field(default_factory=list)
    notices_intro: str = ""


def _d(x: Any) -> dict:
    return x if isinstance(x, dict) else {}


def _l(x: Any) -> list:
    return x if isinstance(x, list) else []


def _c(v: float) -> str:
    return f"{v:.1f}"


def _signed(v: float) -> str:
    return f"{v:+.3f}".replace("-", "−")


def _nice_step(top: float) -> float:
    raw = top / 4 if top > 0 else 1.0
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def bar_chart(rows: list[dict], positive: str, negative: str, prohibited: set[str], top_k: int) -> BarChart | None:
    """Horizontal bars of mean |SHAP| per row for the top-k words; colour and the (+)/(−) mark give the average
    direction, prohibited terms are outlined in red and named as such."""
    rows = [r for r in rows if _num(r.get("mean_abs")) is not None][:top_k]
    if not rows:
        return None
    width, label_w, right_pad, row_h, top = 640, 140, 92, 18, 26
    plot_x, plot_right = label_w, width - right_pad
    height = top + row_h * len(rows) + 34
    biggest = max(_num(r["mean_abs"]) for r in rows) or 1.0
    step = _nice_step(biggest)
    scale_top = math.ceil(biggest / step - 1e-9) * step or step

    def sx(v: float) -> float:
        return plot_x + v / scale_top * (plot_right - plot_x)

    bars = []
    for i, r in enumerate(rows):
        v = _num(r["mean_abs"])
        signed = _num(r.get("mean_signed")) or 0.0
        word = str(r.get("word", ""))
        bad = word in prohibited
        y = top + i * row_h + 3
        toward = positive if signed >= 0 else negative
        mark = "(+)" if signed >= 0 else "(−)"
        label = word if len(word) <= 20 else word[:19] + "…"
        bars.append(Bar(_c(y), _c(row_h - 6), _c(max(sx(v) - plot_x, 0.5)), BAR_POS if signed >= 0 else BAR_NEG,
                        label + (" ⚑" if bad else ""), _c(y + row_h - 8), f"{v:.3f} {mark}", _c(sx(v) + 4), bad,
                        f"{word}: mean |SHAP| {v:.3f} per row, on average towards '{toward}' ({_signed(signed)})"
                        + ("; a prohibited term" if bad else "")))
    ticks = []
    t = 0.0
    while t <= scale_top + 1e-12:
        ticks.append((_c(sx(t)), f"{t:g}"))
        t += step
    named = [r["word"] for r in rows if r.get("word") in prohibited]
    desc = (f"The {len(rows)} words the model leans on most, by mean |SHAP| per sampled row (log-odds). "
            f"Blue bars marked (+) push towards '{positive}' on average, orange bars marked (−) towards '{negative}'. "
            + (f"Prohibited terms among them, outlined in red and flagged ⚑: {', '.join(named)}."
               if named else "No prohibited term is among them."))
    bottom = top + row_h * len(rows)
    return BarChart("explain-top-words", f"Top {len(rows)} words by mean |SHAP|", desc, width, height,
                    _c(plot_x - 6), _c(plot_x), _c(plot_right), _c(top), _c(bottom), _c(bottom + 14),
                    "mean |SHAP| per row (log-odds)", _c((plot_x + plot_right) / 2), _c(bottom + 30), ticks, bars)


def _strength(v: float, scale: float) -> int:
    if scale <= 0:
        return 0
    share = abs(v) / scale
    return sum(share >= s for s in STEPS)


def _style(v: float, level: int) -> str:
    fills, line = (POS_FILLS, POS_LINE) if v >= 0 else (NEG_FILLS, NEG_LINE)
    return f"background:{fills[level - 1]};border-bottom:{line}"


def _spans(units: list, scale: float, positive: str, negative: str) -> list[Span]:
    out = []
    for u in units:
        if not isinstance(u, list) or len(u) < 2:
            continue
        text, v = str(u[0]), _num(u[1]) or 0.0
        core = text.rstrip()
        tail = text[len(core):]
        level = _strength(v, scale) if (len(u) < 3 or u[2] == "word") else 0  # punctuation is not highlighted
        if level == 0 or not core:
            out.append(Span(core, tail, "", "", ""))
            continue
        toward = positive if v >= 0 else negative
        out.append(Span(core, tail, _style(v, level), f"{_signed(v)} log-odds, towards '{toward}'",
                        "(" + f"{v:+.2f}".replace("-", "−") + ")"))
    return out


def _legend(scale: float, positive: str, negative: str) -> tuple[list[Swatch], str]:
    bounds = [s * scale for s in STEPS]
    out = []
    for v, who in ((1.0, positive), (-1.0, negative)):
        for level in (1, 2, 3):
            lo = bounds[level - 1]
            hi = f"–{bounds[level]:.2f}" if level < 3 else " and more"
            out.append(Swatch(_style(v, level), f"towards '{who}', |SHAP| {lo:.2f}{hi}"))
    note = (f"Solid underline: the word raises the log-odds of '{positive}'; dashed underline: it lowers them "
            f"(towards '{negative}'). Darker means stronger; words under {bounds[0]:.2f} are not highlighted. "
            "Punctuation is not highlighted. Hover a word, or read it with a screen reader, for its value.")
    return out, note


# Example kinds the check picks from the random sample alone, and the title that says so.
SAMPLED = {"lowest-scored": "Lowest-scored sampled row"}


def _beyond_sample(e: dict, shown: list[dict]) -> str:
    """A sentence when another row shown scores lower than the sample's lowest-scored one (the surest false
    negative, picked from every eval row), so the title's "lowest" is read as the sample's, not the report's."""
    score = _num(e.get("score"))
    if score is None:
        return ""
    lower = [(s, x) for x in shown if x is not e and (s := _num(x.get("score"))) is not None and s < score]
    if not lower:
        return ""
    s, x = min(lower, key=lambda t: t[0])
    return (f" Row {x.get('row_id')} ({x.get('kind')}, shown here too) scores lower, {s:.3f}: it was picked from "
            "every eval row, not from the random sample.")


def explain_view(result: dict) -> ExplainView | None:
    ms = _d(result.get("measurements"))
    model = _d(result.get("model"))
    positive = str(model.get("positive_label") or "positive")
    negative = str(model.get("negative_label") or "negative")
    add = _d(_d(ms.get("explainability.additivity_error")).get("details"))
    stab = _d(_d(ms.get("explainability.stability")).get("details"))
    share_d = _d(_d(ms.get("explainability.prohibited_terms")).get("details"))
    topk_d = _d(_d(ms.get("explainability.prohibited_terms_in_top_k")).get("details"))
    budget = add or stab or share_d or topk_d
    notices, notices_intro = notice_views(ms)
    if not budget:
        if not notices_intro:
            return None
        return ExplainView("", [], None, [], "", [], [], "", notices, notices_intro)
    prohibited = {str(t) for t in _l(share_d.get("terms")) + _l(topk_d.get("terms"))}
    top_k = int(_num(topk_d.get("top_k")) or _num(share_d.get("top_k")) or _num(stab.get("top_k")) or 20)
    timings = _d(_d(_d(result.get("run")).get("timings")).get("checks_s"))
    spent = [_num(v) for k, v in timings.items() if str(k).startswith("explainability.")]
    seconds = sum(v for v in spent if v is not None) if spent else None
    reviewer = _d(budget.get("reviewer_rows"))
    n_review = sum(int(_num(v) or 0) for v in reviewer.values())
    output = f"log-odds of '{positive}'"
    if budget.get("explain"):  # another output than the binary default (explainability.Output): say which
        output = str(budget.get("output") or output)
        positive = str(budget.get("towards") or positive).strip("'")
        negative = str(budget.get("against") or negative).strip("'")
        shown = _d(budget.get("explained_classes"))
        if shown:
            output += " (sampled rows per explained class: " + ", ".join(
                f"{k} {int(_num(v) or 0)}" for k, v in shown.items()) + ")"
    intro = (f"SHAP values of the model's {output} (shap's partition explainer over a Text masker, "
             f"scored in batches through the audited model): {_num(budget.get('sample_rows')) or 0:.0f} eval rows "
             f"drawn at random with the policy's seed give the word ranking, and {n_review} more rows were "
             f"explained for review; {_num(budget.get('max_evals')) or 0:.0f} model calls per text, "
             f"{_num(budget.get('model_evaluations')) or 0:,.0f} in all"
             + (f", {seconds:.0f} s." if seconds is not None else "."))
    notes = ["A word's importance is the mean over the sampled rows of the sum of |SHAP| of its occurrences (a row "
             "without the word counts 0); sub-word pieces are merged into words and special tokens dropped. With "
             "fewer model calls than tokens, the explainer resolves the groups of tokens that matter most and "
             "shares the credit of a group it did not split evenly among its words."]
    words = []
    for r in map(_d, _l(stab.get("importance"))[:top_k]):
        signed = _num(r.get("mean_signed")) or 0.0
        share = _num(r.get("share"))
        words.append(WordRow(str(r.get("rank", "")), str(r.get("word", "")), f"{_num(r.get('mean_abs')) or 0:.4f}",
                             _signed(signed), f"towards '{positive if signed >= 0 else negative}'",
                             f"{share:.1%}" if share is not None else "—",
                             f"{r.get('rows', '—')} of {_num(budget.get('sample_rows')) or 0:.0f}",
                             str(r.get("word")) in prohibited))
    chart = bar_chart([_d(r) for r in _l(stab.get("importance"))], positive, negative, prohibited, top_k)
    raw = [_d(e) for e in _l(add.get("examples"))]
    values = [abs(_num(u[1]) or 0.0) for e in raw for u in _l(e.get("units")) if isinstance(u, list) and len(u) > 1]
    scale = max(values) if values else 0.0
    examples = []
    for e in raw:
        why = str(e.get("why") or "")
        kind = str(e.get("kind") or "example")
        title = kind[:1].upper() + kind[1:] + " row"
        if kind in SAMPLED:  # chosen from the random sample only: a reviewer's row shown beside it may go further
            title = SAMPLED[kind]
            why += _beyond_sample(e, raw)
        facts = (f"Row {e.get('row_id')}: score {_num(e.get('score')) or 0:.3f}, predicted '{e.get('predicted')}', "
                 f"true label '{e.get('true')}'. Base value {_signed(_num(e.get('base_value')) or 0)} + sum of SHAP "
                 f"{_signed(_num(e.get('shap_sum')) or 0)} = log-odds {_signed(_num(e.get('output')) or 0)}.")
        examples.append(Example(title, why, facts, _spans(_l(e.get("units")), scale, positive, negative)))
    if _d(ms.get("explainability.additivity_error")).get("error"):
        notes.insert(0, "These explanations do not add up to the model's output (see the additivity finding): they "
                        "are shown for diagnosis and are not evidence of what the model leans on.")
    notes.extend(precision_notes(result))
    if any(e.get("redacted") for e in raw):
        notes.append("Personal data found in an example text (e-mail, phone, card, IBAN, SSN, IP address, date of "
                     "birth) is replaced by its type, such as [PHONE], and carries the summed value of what it replaced.")
    legend, legend_note = _legend(scale, positive, negative) if scale > 0 else ([], "")
    return ExplainView(intro, notes, chart, words,
                       f"The top {len(words)} words by mean |SHAP| per sampled row" +
                       ("; ⚑ marks a prohibited term" if prohibited else ""),
                       examples, legend, legend_note, notices, notices_intro)


def notice_views(ms: dict) -> tuple[list[NoticeView], str]:
    """The sample of adverse-action notices the measurements chose to show (details["shown"]), and a sentence on
    where they come from; ([], "") without an adverse-action measurement."""
    d = {}
    for cid in sorted(ms):
        dd = _d(_d(ms[cid]).get("details"))
        if str(cid).startswith("explainability.adverse_action_") and _l(dd.get("notices")):
            d = dd
            if dd.get("kind") == "protected":
                break  # that one shows the declines with a protected reason first
    if not d:
        return [], ""
    by_row = {n.get("row"): n for n in map(_d, _l(d.get("notices")))}
    shown = [by_row[r] for r in _l(d.get("shown")) if r in by_row] or list(by_row.values())[:5]
    out = []
    for n in shown:
        reasons, protected = [], False
        for r in map(_d, _l(n.get("reasons"))):
            share = _num(r.get("share"))
            flag = " ⚑ protected" if r.get("protected") else ""
            protected = protected or bool(r.get("protected"))
            missing = "" if r.get("has_statement") else "; no statement in the policy's reason codes"
            reasons.append(f"{r.get('statement')}: {share:.0%} of the push towards the decline "
                           f"(source {r.get('source')}{missing}){flag}" if share is not None else str(r.get("statement")))
        score = _num(n.get("score"))
        title = f"Row {n.get('id', n.get('row'))}" + (f", score {score:.3f}" if score is not None else "")
        out.append(NoticeView(title, str(n.get("notice") or ""), reasons, protected))
    sources = "template columns" if d.get("sources") == "template columns" else "words"
    intro = (f"Adverse-action reasons: {_num(d.get('explained')) or 0:.0f} of the "
             f"{_num(d.get('declined')) or 0:.0f} declined eval rows were explained; each row's SHAP values are "
             f"summed per {sources[:-1]}, and those with at least {(_num(d.get('min_share')) or 0):.0%} of the push "
             f"towards the decline (at most {_num(d.get('top_k')) or 0:.0f}) are its principal reasons, in the words of "
             f"the policy's reason codes. {len(out)} notices are shown as an applicant would read them; result.json "
             "holds every one (audit run --adverse-action FILE writes them as CSV).")
    return out, intro


def precision_notes(result: dict) -> list[str]:
    """What the reduced precision of the explanations cost (audit.precision, audit.shapstep.compare), one note per
    explained budget; nothing when they ran in fp32."""
    stage = _d(_d(_d(_d(result.get("scoring")).get("precision_plan")).get("stages")).get("explanations"))
    out = []
    for f in map(_d, _l(stage.get("fidelity"))):
        rho, diff = _num(f.get("spearman")), _num(f.get("max_abs_diff"))
        gap = _num(_d(f.get("model_gap")).get("max"))
        agree = "agree" if f.get("top_words_agree") else "do not agree"
        low, full = ", ".join(map(str, _l(f.get("top_words_low")))), ", ".join(map(str, _l(f.get("top_words_fp32"))))
        out.append(
            f"The masked evaluations of these explanations ran in {f.get('precision', 'bf16')} "
            f"({stage.get('why', '')}). {_num(f.get('rows')) or 0:.0f} sampled rows were explained in fp32 too: the "
            f"largest difference of any attribution was {diff if diff is not None else float('nan'):.2g}, the "
            f"Spearman correlation of the two word rankings "
            + (f"{rho:.3f}" if rho is not None else "undefined")
            + f", and the top {_num(f.get('top_words')) or 0:.0f} words {agree} ({f.get('precision', 'bf16')}: {low}; "
            f"fp32: {full}). The additivity check compares with the function that was explained; it differs from "
            f"the fp32 model by up to {gap if gap is not None else float('nan'):.2g} in log-odds on the "
            f"{_num(_d(f.get('model_gap')).get('rows')) or 0:.0f} explained rows.")
    return out


detail = explain_view  # the family-view protocol: audit/render/views.py, family_views
