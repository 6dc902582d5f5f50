"""What would resolve a finding that did not pass: one sentence, said once, beside the finding's reason.

The ways out are the same four everywhere: more evidence (rows for a named group, rows the model never trained
on), a model fix, a waiver in the policy (reason, approver, expiry), or a policy change. Which of them fits is
read from the finding's status and from the reasons its parts give; the sentence names groups and attributes
as the reasons do.
"""

from __future__ import annotations

import re
from typing import Any

WAIVER = "a waiver in the policy (reason, approver, expiry date)"


def _parts(f: dict) -> list[tuple[str, str]]:
    """(part name, reason) of each part that could not be judged; the finding's own reason when it has none."""
    out = [(str(p.get("name") or ""), str(p.get("reason") or "")) for p in f.get("parts") or []
           if isinstance(p, dict) and p.get("status") == "INCONCLUSIVE" and p.get("reason")]
    return out or [("", str(f.get("reason") or ""))]


def _evidence_step(name: str, why: str, min_group: Any) -> str:
    low = why.lower()
    if "does not map" in low or "not map" in low:
        return (f"map '{name}' to a column in the model's manifest (protected_attributes), or take it out of the "
                "rule's attributes") if name else "map the attribute the rule names in the model's manifest"
    if "without differential privacy" in low:
        return "train with DP-SGD (audit train --dp-epsilon), or drop the rule for a model trained without it"
    if "never trained on" in low or "left out because their text occurs" in low:
        return "more eval rows whose text the model never trained on (a held-out file that shares no text)"
    if "term of the" in low or "contains a term" in low:
        return "eval texts that mention the swap list's terms, or a swap list that fits the texts"
    groups = re.findall(r"'([^']+)' \(", why)
    if groups or "too small" in low or "too few" in low or "large enough" in low:
        need = f" (at least {min_group} rows each)" if min_group else ""
        who = ", ".join(f"'{g}'" for g in dict.fromkeys(groups))
        of = f" of {name}" if name else ""
        return f"more eval rows for the group{'s' if len(groups) != 1 else ''} {who}{of}{need}" if who else \
            f"more eval rows{of}{need}"
    return ""


def resolution(f: dict, min_group_size: Any = None) -> str:
    """One sentence: what would resolve the finding `f` (a finding as in result.json); '' when it passed."""
    status = str(f.get("status") or "")
    blocking = f.get("severity") == "block"
    if status in ("PASS", "SKIPPED", ""):
        return ""
    if status == "WAIVED":
        w = f.get("waiver") if isinstance(f.get("waiver"), dict) else {}
        return (f"Nothing while the waiver holds; it expires on {w.get('expires')}, and the finding is judged "
                "again then." if w.get("expires") else "Nothing while the waiver holds.")
    if status == "ERROR":
        return ("Fix what made the check fail (above) and run again; until then the finding counts as failed"
                + (" and blocks the release." if blocking else "."))
    if status == "INCONCLUSIVE":
        steps = [s for s in (_evidence_step(n, w, min_group_size) for n, w in _parts(f)) if s]
        first = "; ".join(dict.fromkeys(steps)) if steps else "more evidence for the check"
        example = " (e.g. its min_group_size)" if "rows for the group" in first else ""
        tail = f", or {WAIVER}, or a policy change{example}" if blocking else ""
        return f"{first[0].upper()}{first[1:]}{tail}."
    if status == "FAIL":
        return (f"A model fix (retrain, rebalance the data or move the decision threshold) so that the value clears "
                f"the threshold, or {WAIVER}, or a policy change.")
    if status == "WARN":
        return ("Not blocking: a model fix clears it; otherwise it stands as a warning (--strict makes warnings "
                "fail the gate).")
    return ""
