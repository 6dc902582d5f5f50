"""View-model of the privacy section: personal data found (counts by type, rows affected, redacted snippets) and
the membership-inference attack (AUC with its interval, TPR at low false-positive rates, what it means).

Built from result.json alone, like views.py; every string is formatted here and reports/templates/privacy.html
only loops and prints. Any part may be missing from an older or partial result: readers use `.get` and show
less, never raise. The snippets in result.json are already redacted by the check; they are redacted once more
here, so a result written by another tool cannot put personal data into the report either.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from audit.render import charts
from audit.render.charts import _num

DASH = "—"
PII_CHECKS = ("privacy.pii_in_training_text", "privacy.pii_rate")
MIA_AUC = "privacy.membership_inference_auc"
MIA_TPR = "privacy.mia_tpr_at_1pct_fpr"
DP_EPS = "privacy.dp_epsilon"
DATASET_NAMES = {"eval": "eval", "train": "training"}


def _d(x: Any) -> dict:
    return x if isinstance(x, dict) else {}


def _l(x: Any) -> list:
    return x if isinstance(x, list) else []


def pct(x: Any, digits: int = 1) -> str:
    v = _num(x)
    return DASH if v is None else f"{v:.{digits}%}"


def f3(x: Any) -> str:
    v = _num(x)
    return DASH if v is None else f"{v:.3f}"


def count(x: Any) -> str:
    v = _num(x)
    return DASH if v is None else f"{v:,.0f}"


def with_ci(value: Any, low: Any, high: Any, conf: str, f=f3) -> str:
    out = f(value)
    if _num(low) is not None and _num(high) is not None:
        out += f" ({conf} CI {f(low)}–{f(high)})"
    return out


def _redact(text: str) -> str:
    from audit.pii import redact

    return redact(text)


# ---------------------------------------------------------------- dataclasses


@dataclass
class PiiRow:
    label: str
    token: str
    finds: str
    rows: str
    share: str
    could_hold: str = DASH  # rows that could hold the type at all ("12 (rows with an @)")


@dataclass
class PiiExample:
    row: str
    types: str
    text: str


@dataclass
class PiiTable:
    check_id: str
    title: str
    sentence: str  # "12 of 120 eval rows (10.0%) hold personal data."
    rows: list[PiiRow]
    examples: list[PiiExample]
    reason: str  # why nothing could be measured, or ""
    not_detected: str


@dataclass
class LowFpr:
    fpr: str
    tpr: str
    chance: str
    note: str


@dataclass
class MiaView:
    auc: str
    advantage: str
    members: str
    non_members: str
    dropped: str
    mean_loss: str
    low_fpr: list[LowFpr]
    sentences: list[str]
    reason: str
    chart: charts.XYChart | None = None


@dataclass
class DpView:
    rows: list[tuple[str, str]]  # (setting, value), formatted
    sentence: str
    reason: str


@dataclass
class PrivacyView:
    intro: str
    pii: list[PiiTable] = field(default_factory=list)
    mia: MiaView | None = None
    dp: DpView | None = None


# ---------------------------------------------------------------- builders


def _pii_table(cid: str, m: dict, title: str) -> PiiTable:
    d = _d(m.get("details"))
    dataset = DATASET_NAMES.get(str(d.get("dataset")), str(d.get("dataset") or "eval"))
    n, k = _num(d.get("rows")), _num(d.get("rows_with_pii"))
    reason = str(m.get("error") or m.get("inconclusive") or m.get("skipped") or "")
    if n is not None and k is not None and not reason:
        share = f" ({k / n:.1%})" if n else ""
        verb = "holds" if k == 1 else "hold"
        sentence = f"{count(k)} of {count(n)} {dataset} rows{share} {verb} personal data of the types scanned."
        if not k:
            sentence = f"No personal data of the types scanned was found in the {count(n)} {dataset} rows."
        c = _num(d.get("rows_could_hold_any"))
        if c is not None:
            sentence += (f" {count(c)} of the {count(n)} rows could hold any of them at all (an @, a run of digits, "
                         f"a birth or phone word …; see the last column)." if c else
                         f" None of the {count(n)} rows could hold any of them at all (no @, no run of digits, no "
                         f"birth or phone word …): the scan had nothing to look at.")
    else:
        sentence = ""
    rows = [PiiRow(str(r.get("label") or r.get("type") or DASH), str(r.get("token") or ""), count(r.get("finds")),
                   count(r.get("rows")), pct(r.get("share")),
                   f"{count(r.get('could_hold'))} ({r['could_hold_means']})" if r.get("could_hold_means")
                   else count(r.get("could_hold")))
            for r in map(_d, _l(d.get("by_type")))]
    examples = [PiiExample(count(e.get("row")), ", ".join(str(t) for t in _l(e.get("types"))),
                           _redact(str(e.get("text") or "")))
                for e in map(_d, _l(d.get("examples")))]
    if cid == "privacy.pii_rate":
        title = f"{title} ({dataset} text)"
    return PiiTable(cid, title, sentence, rows, examples, reason,
                    str(d.get("not_detected") or ""))


def _mia(measurements: dict, conf: str) -> MiaView | None:
    auc_m, tpr_m = _d(measurements.get(MIA_AUC)), _d(measurements.get(MIA_TPR))
    if not auc_m and not tpr_m:
        return None
    main = auc_m or tpr_m
    d = _d(main.get("details"))
    reason = str(main.get("error") or main.get("inconclusive") or "")
    auc = _d(d.get("auc"))
    adv = _d(d.get("advantage"))
    low = []
    for row in map(_d, _l(d.get("tpr_at_fpr"))):
        note = "" if row.get("resolved", True) else (
            f"needs {count(1 / row['fpr'])} non-members to resolve; read as the rate at no false alarm"
            if _num(row.get("fpr")) else "")
        low.append(LowFpr(pct(row.get("fpr"), 1), with_ci(row.get("value"), row.get("ci_low"), row.get("ci_high"),
                                                            conf, lambda x: pct(x, 1)),
                          pct(row.get("chance"), 1), note))
    sentences: list[str] = []
    a = _num(auc.get("value"))
    if a is not None:
        sentences.append(f"Shown one training row and one row the model never saw, an attacker who compares the "
                         f"model's loss on them picks the training row {a:.0%} of the time; 50% is a coin toss.")
        if a <= 0.55:
            sentences.append("The model behaves almost the same on data it trained on and data it never saw: its "
                             "outputs reveal little about who was in the training set.")
        elif a <= 0.60:
            sentences.append("The model behaves somewhat differently on its training rows; watch this as the "
                             "model is retrained or trained longer.")
        else:
            sentences.append("The model behaves clearly differently on its training rows (it has memorised "
                             "them): anyone who can query it may learn that a person's record was used to train "
                             "it. Regularise, train for fewer epochs, or train with differential privacy.")
        hi = _num(auc.get("ci_high"))
        if a <= 0.60 and hi is not None and hi > 0.60:
            sentences.append(f"The interval is wide, though: its upper bound ({hi:.3f}) does not rule out a "
                             "leaking model. More training and eval rows narrow it.")
    first = next(iter(map(_d, _l(d.get("tpr_at_fpr")))), {})
    t1 = _num(first.get("value"))
    if t1 is not None and _num(first.get("fpr")) is not None:
        if first.get("resolved", True):
            sentences.append(f"Allowed to wrongly accuse only {first['fpr']:.0%} of unseen rows, the attacker "
                             f"identifies {t1:.1%} of training rows (chance: {first['fpr']:.0%}).")
        else:
            sentences.append(f"Without wrongly accusing a single unseen row (there are too few to resolve "
                             f"{first['fpr']:.0%}), the attacker identifies {t1:.1%} of training rows.")
    ml, mn = _num(d.get("mean_loss_members")), _num(d.get("mean_loss_non_members"))
    mean_loss = f"{ml:.3f} on training rows, {mn:.3f} on unseen rows" if ml is not None and mn is not None else DASH
    chart = None
    if d.get("curve"):
        chart = charts.roc_chart({"value": auc.get("value"), "details": {"curve": d.get("curve")}})
        if chart is not None:
            chart.id = "mia-roc"
            chart.title = f"Membership attack ROC (area {f3(auc.get('value'))})"
            chart.desc = ("ROC curve of the loss-threshold attack: the share of training rows the attacker flags "
                          "against the share of unseen rows it wrongly flags, over all loss thresholds. The dashed "
                          "diagonal is an attacker who guesses; a curve close to it means the model leaks little. "
                          "The part near the left edge (few false alarms) matters most.")
            chart.x_label, chart.y_label = "Unseen rows flagged (FPR)", "Training rows flagged (TPR)"
            for s in chart.series:
                if s.css == "s-model":
                    s.label = "attack"
            chart.legend = charts._legend(chart.series)
    return MiaView(
        auc=with_ci(auc.get("value"), auc.get("ci_low"), auc.get("ci_high"), conf),
        advantage=with_ci(adv.get("value"), adv.get("ci_low"), adv.get("ci_high"), conf),
        members=count(d.get("members")), non_members=count(d.get("non_members")),
        dropped=f"{count(d.get('members_dropped'))} / {count(d.get('non_members_dropped'))}", mean_loss=mean_loss,
        low_fpr=low, sentences=sentences,
        reason=reason, chart=chart)


def _g(x: Any) -> str:
    v = _num(x)
    return DASH if v is None else f"{v:.4g}"


def _dp(measurements: dict, result: dict) -> DpView | None:
    """DP-SGD settings from the dp_epsilon measurement, or from the model's training record when no rule asks."""
    m = _d(measurements.get(DP_EPS))
    training = _d(_d(result.get("model")).get("training"))
    dp = _d(_d(m.get("details")).get("dp")) or _d(training.get("dp"))
    if not dp:
        reason = str(m.get("inconclusive") or _d(m.get("details")).get("reason") or "")
        return DpView([], "", reason) if m else None
    rows = [("ε spent (target)", f"{_g(dp.get('epsilon'))} ({_g(dp.get('target_epsilon'))})"),
            ("δ", _g(dp.get("delta"))),
            ("Accountant", f"{dp.get('accountant') or DASH} ({dp.get('library') or 'opacus'})"),
            ("Noise multiplier", _g(dp.get("noise_multiplier"))),
            ("Per-sample clipping norm", _g(dp.get("max_grad_norm"))),
            ("Sampling rate", f"{_g(dp.get('sample_rate'))} ({dp.get('sampling') or 'poisson'} sampling), "
                              f"{count(dp.get('steps'))} steps"),
            ("Frozen for DP", ", ".join(str(x) for x in _l(dp.get("frozen_for_dp"))) or "none")]
    peft = _d(training.get("peft")) or _d(_d(m.get("details")).get("peft"))
    if peft:
        rows.append(("Adapters", f"LoRA rank {peft.get('r', DASH)} on "
                                 f"{', '.join(str(x) for x in _l(peft.get('target_modules'))) or DASH}"))
    eps = _num(dp.get("epsilon"))
    sentence = ("" if eps is None else
                f"Trained with differential privacy (DP-SGD): any one training row changes the odds of any outcome "
                f"of training by at most a factor e^ε = {math.exp(min(eps, 700)):.3g}, except with probability "
                f"δ = {_g(dp.get('delta'))}.")
    return DpView(rows, sentence, "")


def privacy_view(result: dict) -> PrivacyView:
    measurements = {k: _d(v) for k, v in _d(result.get("measurements")).items() if str(k).startswith("privacy.")}
    findings = {str(f.get("check_id")): _d(f) for f in _l(result.get("findings"))}
    conf_num = _num(_d(result.get("policy")).get("confidence"))
    conf = f"{conf_num:.0%}" if conf_num is not None else "the policy's"
    tables = []
    for cid in PII_CHECKS:
        if cid in measurements:
            title = str(findings.get(cid, {}).get("title") or "Rows with personal data")
            tables.append(_pii_table(cid, measurements[cid], title))
    intro = ("Personal data found in the text (e-mail, phone, payment card, IBAN, US SSN, IP address, date of "
             "birth; validated, e.g. card numbers by the Luhn check), and whether the model's outputs reveal "
             "which rows it was trained on. The report shows counts and redacted snippets only.")
    return PrivacyView(intro, tables, _mia(measurements, conf), _dp(measurements, result))


detail = privacy_view  # the family-view protocol: audit/render/views.py, family_views
