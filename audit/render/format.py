"""Formatting shared by every output (report, summary.md, junit.xml, the family views): one function per kind of
number or text, so that one quantity reads one way everywhere (tests/test_one_number.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from audit.render.charts import _num

DASH = "—"
# Most urgent first: the order of the counts and of the findings table.
STATUSES = ("FAIL", "ERROR", "INCONCLUSIVE", "WARN", "WAIVED", "SKIPPED", "PASS")
BASIS_WORDS = {
    "point": "on the point estimate",
    "ci_low": "on the {conf} CI lower bound",
    "ci_high": "on the {conf} CI upper bound",
}


def num(x: Any) -> float | None:
    return _num(x)


def fmt(value: Any, unit: str = "") -> str:
    """A measured number as the judge's sentences print it: three decimals, counts with thousands commas."""
    from audit.judge import fmt as judge_fmt

    return judge_fmt(num(value), unit)


def conf_text(confidence: Any) -> str:
    c = num(confidence)
    return f"{c:.0%}" if c is not None else "the policy's"


def text(x: Any) -> str:
    """Any scalar as display text: None becomes an em dash."""
    if x is None or x == "":
        return DASH
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        return f"{x:g}" if math.isfinite(x) else "n/a"
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, (list, tuple)):
        return ", ".join(text(i) for i in x) or DASH
    return str(x)


_ACRONYMS = {"auc": "AUC", "roc": "ROC", "pr": "PR", "ece": "ECE", "f1": "F1", "pii": "PII", "shap": "SHAP",
             "dp": "DP", "id": "id", "psi": "PSI", "ks": "KS", "tpr": "TPR", "fpr": "FPR"}


def humanize(check_id: str) -> str:
    """'performance.pr_auc' -> 'PR AUC': a readable name when the result carries no title."""
    words = check_id.split(".", 1)[-1].split("_")
    words = [_ACRONYMS.get(w.lower(), w) for w in words if w]
    if words and words[0] == words[0].lower():
        words[0] = words[0].capitalize()
    return " ".join(words)


def threshold_text(minimum: Any, maximum: Any, basis: Any, confidence: Any, unit: str = "") -> str:
    """'≥ 0.700 on the 95% CI lower bound', '≤ 0.100 on the point estimate', or 'no threshold'."""
    parts = []
    if num(minimum) is not None:
        parts.append(f"≥ {fmt(minimum, unit)}")
    if num(maximum) is not None:
        parts.append(f"≤ {fmt(maximum, unit)}")
    if not parts:
        return "no threshold"
    on = BASIS_WORDS.get(str(basis), "on " + str(basis)).format(conf=conf_text(confidence))
    return " and ".join(parts) + " " + on


def observed_text(value: Any, ci_low: Any, ci_high: Any, confidence: Any, unit: str = "") -> str:
    """'0.855 (95% CI 0.807–0.898)', or the value alone when there is no interval."""
    out = fmt(value, unit)
    if num(ci_low) is not None and num(ci_high) is not None:
        out += f" ({conf_text(confidence)} CI {fmt(ci_low, unit)}–{fmt(ci_high, unit)})"
    return out


def finding_observed(f: dict, default_confidence: Any = None) -> str:
    """A finding's number as every output prints it: 'sex: 0.149 (95% CI 0.050–0.250)' (the part named when the
    rule is judged part by part), in the finding's unit. One function, so one quantity reads one way."""
    out = observed_text(f.get("value"), f.get("ci_low"), f.get("ci_high"), f.get("confidence", default_confidence),
                        str(f.get("unit") or ""))
    return f"{f['part']}: {out}" if f.get("part") else out


def evidence_text(n: Any, what: Any) -> str:
    """'800 rows scanned': the size of the evidence beside a number; '' when the result does not say."""
    if num(n) is None or isinstance(n, bool):
        return ""
    return f"{fmt(n, 'count')} {what or 'rows'}"



def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def as_dict(x: Any) -> dict:
    return x if isinstance(x, dict) else {}


def as_list(x: Any) -> list:
    return x if isinstance(x, list) else []


def json_safe(x: Any) -> Any:
    """A deep copy that `json.dumps(allow_nan=False)` accepts: NaN and infinities become None, numpy scalars
    plain numbers, tuples lists, paths strings."""
    if isinstance(x, dict):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if isinstance(x, bool) or x is None or isinstance(x, (str, int)):
        return x
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, Path):
        return str(x)
    item = getattr(x, "item", None)  # numpy scalars, without importing numpy
    if callable(item):
        try:
            return json_safe(item())
        except (TypeError, ValueError):
            pass
    if hasattr(x, "tolist"):
        return json_safe(x.tolist())
    return x


def result_json(result: dict) -> str:
    return json.dumps(json_safe(result), indent=1, sort_keys=False, allow_nan=False, ensure_ascii=False) + "\n"
