"""View-model of the robustness section: per perturbation, how many texts it changed, the decision flip rate and
the mean |score change| with their intervals, and a few flipped examples side by side.

Built from result.json alone; every string is formatted here and reports/templates/robustness.html only loops and
prints (jinja2 autoescapes every text). The example texts in result.json are redacted by the check; they are
redacted once more here, so a result written by another tool cannot put personal data into the report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from audit.render.format import DASH, as_dict, as_list, conf_text, num

CHECKS = ("robustness.flip_rate", "robustness.score_change")


def _pct(x: Any) -> str:
    v = num(x)
    return DASH if v is None else f"{v:.1%}"


def _f3(x: Any) -> str:
    v = num(x)
    return DASH if v is None else f"{v:.3f}"


def _with_ci(value: Any, ci: Any, conf: str, f) -> str:
    out = f(value)
    ci = as_list(ci)
    if len(ci) == 2 and num(ci[0]) is not None and num(ci[1]) is not None:
        out += f" ({conf} CI {f(ci[0])}–{f(ci[1])})"
    return out


def _redact(text: str) -> str:
    from audit.pii import redact

    return redact(text)


@dataclass
class Example:
    id: str
    before: str
    after: str
    scores: str
    decision: str
    flipped: bool


@dataclass
class PerturbationRow:
    name: str
    what: str
    changed: str  # "212 of 300"
    same_tokens: str  # "212 read as the same tokens", or ""
    flip_rate: str
    flips: str  # "3 (2 to bad, 1 to good)"
    score_change: str
    max_change: str
    note: str  # why it cannot be judged, or what it leaves out
    examples: list[Example] = field(default_factory=list)


@dataclass
class RobustnessView:
    intro: str
    rows: list[PerturbationRow]
    not_applicable: list[str]
    caveats: list[str]
    reason: str = ""


def robustness_view(result: dict) -> RobustnessView | None:
    measurements = as_dict(result.get("measurements"))
    m = next((as_dict(measurements[c]) for c in CHECKS if c in measurements), None)
    if m is None:
        return None
    conf = conf_text(as_dict(result.get("policy")).get("confidence"))
    d = as_dict(m.get("details"))
    fav = str(d.get("favourable_label") or "favourable")
    rows = []
    for e in map(as_dict, as_list(d.get("perturbations"))):
        same = num(e.get("rows_same_tokens"))
        flips_to_fav, flips_to_unfav = num(e.get("flips_to_favourable")), num(e.get("flips_to_unfavourable"))
        flips = f"{num(e.get('flips')) or 0:,.0f}"
        if flips_to_fav or flips_to_unfav:
            flips += f" ({flips_to_fav or 0:,.0f} to {fav}, {flips_to_unfav or 0:,.0f} away from it)"
        examples = [Example(str(x.get("id", x.get("row", ""))), _redact(str(x.get("before", ""))),
                            _redact(str(x.get("after", ""))),
                            f"{_f3(x.get('score_before'))} → {_f3(x.get('score_after'))}",
                            f"{x.get('decision_before', DASH)} → {x.get('decision_after', DASH)}", bool(x.get("flipped")))
                    for x in map(as_dict, as_list(e.get("examples")))]
        rows.append(PerturbationRow(
            name=str(e.get("perturbation") or DASH), what=str(e.get("what") or ""),
            changed=f"{num(e.get('rows_changed')) or 0:,.0f} of {num(e.get('rows_scanned')) or 0:,.0f}",
            same_tokens=(f"{same:,.0f} of them read by the model's tokenizer as the same tokens" if same else ""),
            flip_rate=_with_ci(e.get("flip_rate"), e.get("flip_rate_ci"), conf, _pct), flips=flips,
            score_change=_with_ci(e.get("mean_abs_score_change"), e.get("mean_abs_score_change_ci"), conf, _f3),
            max_change=_f3(e.get("max_abs_score_change")),
            note=str(e.get("inconclusive") or e.get("incomplete") or ""), examples=examples))
    na = [f"{x.get('perturbation')}: {x.get('why')}" for x in map(as_dict, as_list(d.get("not_applicable")))]
    scanned = num(d.get("rows_scanned"))
    total = num(d.get("rows_total"))
    sample = (f" on a seeded sample of {scanned:,.0f} of the {total:,.0f} eval rows"
              if scanned is not None and total is not None and scanned < total else "")
    intro = ("Each eval text was changed in ways that do not change what it says (typos, case, punctuation, "
             f"number formats, the order of a template's sentences){sample}, and only the changed texts were "
             "scored again. A sound credit model gives the same decision; a flip means the decision rests on the "
             "form of the text. Each perturbation is judged on its own, on the texts it changed.")
    reason = str(m.get("error") or m.get("inconclusive") or "")
    return RobustnessView(intro, rows, na, [str(c) for c in as_list(d.get("caveats"))], reason)


detail = robustness_view  # the family-view protocol: audit/render/views.py, family_views
