"""The performance family's view: the ROC, PR and calibration charts and the confusion matrix, from result.json.

For a model of more than two classes (or any run that measured the class-wise checks of
audit/checks/classwise.py) also the confusion matrix of every class as a heat map, the top-label reliability
plot, and the per-class table: each class's rows, precision, recall, F1, one-vs-rest ROC-AUC and average
precision, top-k accuracy and ECE, each number with its interval. Labels are data: the template escapes them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from audit.render import charts
from audit.render.format import DASH, as_dict, as_list, conf_text, fmt, num

# the measurements whose details carry the confusion matrix of every class, in the order they are looked for
MATRIX_FROM = ("performance.accuracy", "performance.balanced_accuracy", "performance.class_f1",
               "performance.macro_f1", "performance.weighted_f1")
F1_FROM = ("performance.class_f1", "performance.macro_f1", "performance.weighted_f1")
# (check whose details["classes"] holds the column, key of the value in each row, column heading)
COLUMNS = (("performance.macro_roc_auc", "roc_auc", "ROC-AUC"),
           ("performance.macro_pr_auc", "average_precision", "PR-AUC"),
           ("performance.top_k_accuracy", "top_k_accuracy", "Top-{k} accuracy"),
           ("performance.classwise_ece", "ece", "ECE"))


@dataclass
class ValueCell:
    value: str
    ci: str  # "0.41–0.55" (the interval at the policy's confidence, which the table's note states), or ""


@dataclass
class ClassRow:
    label: str
    support: str
    decided: str
    cells: list[ValueCell]


@dataclass
class ClassTable:
    headers: list[str]  # after Class, Rows, Decided as it
    rows: list[ClassRow]
    intro: str = ""  # what the numbers are, and the intervals' level
    notes: list[str] = field(default_factory=list)


@dataclass
class PerformanceView:
    charts: list[charts.XYChart] = field(default_factory=list)
    confusion: charts.ConfusionChart | None = None
    class_matrix: charts.ClassMatrixChart | None = None
    class_table: ClassTable | None = None


def _cell(row: dict, key: str) -> ValueCell:
    ci = as_list(row.get(f"{key}_ci"))
    lo, hi = (ci + [None, None])[:2]
    interval = f"{fmt(lo)}–{fmt(hi)}" if num(lo) is not None and num(hi) is not None else ""
    return ValueCell(fmt(row.get(key)) if num(row.get(key)) is not None else DASH, interval)


def _and(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _rows_of(measurement: Any) -> dict[str, dict]:
    return {str(r.get("label")): r for r in map(as_dict, as_list(as_dict(as_dict(measurement).get("details"))
                                                                    .get("classes")))}


def class_table(measurements: dict, confidence: Any) -> ClassTable | None:
    """Every class's numbers from the class-wise checks that ran; None when none of them did."""
    conf = conf_text(confidence)
    f1 = next((_rows_of(measurements[c]) for c in F1_FROM if _rows_of(measurements.get(c))), {})
    columns = []
    for cid, key, head in COLUMNS:
        rows = _rows_of(measurements.get(cid))
        if rows:
            k = as_dict(as_dict(measurements.get(cid)).get("details")).get("k")
            columns.append((rows, key, head.format(k=k if k is not None else "k")))
    labels = list(f1) or next((list(rows) for rows, _, _ in columns), [])
    if not labels:
        return None
    headers = (["Precision", "Recall", "F1"] if f1 else []) + [head for _, _, head in columns]
    out = []
    for label in labels:
        base = f1.get(label) or next((rows[label] for rows, _, _ in columns if label in rows), {})
        cells = [_cell(f1.get(label, {}), key) for key in ("precision", "recall", "f1")] if f1 else []
        cells += [_cell(rows.get(label, {}), key) for rows, key, _ in columns]
        decided = base.get("decided")
        out.append(ClassRow(label, fmt(base.get("support"), "count") if num(base.get("support")) is not None else DASH,
                            fmt(decided, "count") if num(decided) is not None else DASH, cells))
    notes = []
    for cid in ("performance.macro_f1", "performance.macro_roc_auc", "performance.macro_pr_auc"):
        for x in map(as_dict, as_list(as_dict(as_dict(measurements.get(cid)).get("details")).get("left_out"))):
            notes.append(f"{x.get('label')}: {x.get('why')} (left out of the macro average of {cid})")
    ovr = [head for _, _, head in columns if head in ("ROC-AUC", "PR-AUC", "ECE")]
    intro = (f"Beneath each number, its {conf} bootstrap interval."
             + (f" {_and(ovr)} read each class's probability against the rest (one-vs-rest)." if ovr else "")
             + (" Precision, recall and F1 read the decided class." if f1 else ""))
    return ClassTable(headers, out, intro, notes)


def _class_matrix(measurements: dict) -> charts.ClassMatrixChart | None:
    for cid in MATRIX_FROM:
        cm = as_dict(as_dict(measurements.get(cid)).get("details")).get("confusion_matrix")
        if isinstance(cm, dict) and "matrix" in cm:
            return charts.class_matrix_chart(cm)
    return None


def _top_label_chart(measurement: Any) -> charts.XYChart | None:
    chart = charts.calibration_chart(as_dict(measurement) or None, "rows decided right")
    if chart is None:
        return None
    ece = num(as_dict(measurement).get("value"))
    return dataclasses.replace(
        chart, id="top-label-calibration", x_label="Probability of the decided class",
        y_label="Observed share decided right",
        title=f"Top-label calibration (ECE {charts.fmt3(ece)})" if ece is not None else "Top-label calibration",
        desc=chart.desc.replace("mean predicted score", "mean probability of the decided class"))


def performance_view(result: dict) -> PerformanceView:
    measurements = as_dict(result.get("measurements"))
    positive = str(as_dict(result.get("model")).get("positive_label") or "positive")
    got = (charts.roc_chart(as_dict(measurements.get("performance.roc_auc"))),
           charts.pr_chart(as_dict(measurements.get("performance.pr_auc"))),
           charts.calibration_chart(as_dict(measurements.get("performance.ece")), positive),
           _top_label_chart(measurements.get("performance.classwise_ece")))
    confusion = charts.confusion_chart(as_dict(measurements.get("performance.accuracy")))
    return PerformanceView([c for c in got if c is not None], confusion,
                           None if confusion is not None else _class_matrix(measurements),
                           class_table(measurements, as_dict(result.get("policy")).get("confidence")))


detail: Any = performance_view  # the family-view protocol: audit/render/views.py, family_views
