"""The performance family's view: the ROC, PR and calibration charts and the confusion matrix, from result.json."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from audit.render import charts
from audit.render.format import as_dict


@dataclass
class PerformanceView:
    charts: list[charts.XYChart] = field(default_factory=list)
    confusion: charts.ConfusionChart | None = None


def performance_view(result: dict) -> PerformanceView:
    measurements = as_dict(result.get("measurements"))
    positive = str(as_dict(result.get("model")).get("positive_label") or "positive")
    got = (charts.roc_chart(as_dict(measurements.get("performance.roc_auc"))),
           charts.pr_chart(as_dict(measurements.get("performance.pr_auc"))),
           charts.calibration_chart(as_dict(measurements.get("performance.ece")), positive))
    return PerformanceView([c for c in got if c is not None],
                           charts.confusion_chart(as_dict(measurements.get("performance.accuracy"))))


detail: Any = performance_view  # the family-view protocol: audit/render/views.py, family_views
