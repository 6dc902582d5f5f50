"""Plain values that flow down the data path: measurements, findings, the verdict.

They serialize to JSON (`to_dict`) and back (`from_dict`), so every output renders from result.json alone.
Statuses and severities are small ordered enums: "block at or above" is a comparison.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any

SCHEMA_VERSION = "1.0"


class Status(str, enum.Enum):
    PASS = "PASS"
    WARN = "WARN"
    FAIL = "FAIL"
    INCONCLUSIVE = "INCONCLUSIVE"
    ERROR = "ERROR"  # the check raised; the run goes on; counts as failed when blocking
    SKIPPED = "SKIPPED"  # not applicable, with the reason
    WAIVED = "WAIVED"  # a policy waiver with a reason, an approver and an unexpired date


class Verdict(str, enum.Enum):
    PASS = "PASS"
    FAIL = "FAIL"
    INCONCLUSIVE = "INCONCLUSIVE"


EXIT_CODES = {Verdict.PASS: 0, Verdict.FAIL: 1, Verdict.INCONCLUSIVE: 3}
EXIT_USAGE = 2  # the tool could not run


@dataclass
class Part:
    """One piece of a measurement that is judged on its own: a protected attribute, an intersection, a swap list.

    `inconclusive`: why this part cannot be judged at all (its value, if any, is shown but not judged).
    `incomplete`: what the part's value leaves out (small groups set aside, an unstable ranking): a violation it
    shows stands, a pass is only INCONCLUSIVE. `n` is the size of the part's evidence (what it counts is the
    check's `evidence` label); a rule's `min_evidence` makes a part with less INCONCLUSIVE."""

    name: str
    kind: str = ""  # "attribute", "intersection", "swap list", ...
    value: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    n: int = 0
    inconclusive: str | None = None
    incomplete: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Part:
        return cls(**{k: d.get(k) for k in cls.__dataclass_fields__ if k in d})


@dataclass
class Measurement:
    """What a check measured. `value` with its interval; `details` holds tables and curves for the report.

    A measurement with `parts` is judged part by part (each attribute on its own); `value` and its interval
    are then those of the worst part, never a statistic over several parts at once. Without parts, the
    measurement is its own single part."""

    check_id: str
    value: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    n: int = 0
    details: dict[str, Any] = field(default_factory=dict)
    inconclusive: str | None = None  # why the data cannot support a judgement
    skipped: str | None = None  # why the check does not apply
    error: str | None = None  # the exception, when the check raised; beside a value, a problem that makes the
    # finding ERROR unless the value violates the rule (a measured violation stands: audit.judge)
    incomplete: str | None = None  # what the value leaves out: a violation stands, a pass is INCONCLUSIVE
    parts: list[Part] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Measurement:
        d = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        d["parts"] = [Part.from_dict(p) for p in d.get("parts") or []]
        return cls(**d)


@dataclass
class Finding:
    """A measurement judged against the policy's rule."""

    check_id: str
    family: str
    title: str
    status: Status
    severity: str
    min: float | None
    max: float | None
    basis: str
    value: float | None
    ci_low: float | None
    ci_high: float | None
    observed: float | None  # the number the rule was applied to (value, ci_low or ci_high per basis)
    confidence: float
    refs: list[str]  # one line per clause reference the rule gives, as written (or made from its mapping)
    message: str  # one plain sentence
    meaning: str  # what the check means for a reader
    reason: str = ""  # why INCONCLUSIVE, ERROR, SKIPPED or WAIVED
    waiver: dict[str, Any] | None = None
    unit: str = ""
    baseline_value: float | None = None  # the same check in the baseline run, when the rule compares
    baseline_delta: float | None = None  # value - baseline_value
    note: str = ""  # the policy's plain-language requirement for this rule
    evidence: str = ""  # what `n` counts ("rows", "rows scanned", "texts with a term to swap")
    n: int | None = None  # the size of the evidence behind the deciding part
    part: str = ""  # the part whose numbers the finding shows ("sex"); "" for a single-part measurement
    decided_by: str = ""  # which parts made the status, in one sentence
    parts: list[dict[str, Any]] = field(default_factory=list)  # each part's own status, value, interval, reason
    clauses: list[dict[str, Any]] = field(default_factory=list)  # each clause served: clause, regulation, text, partial
    references: list[str] = field(default_factory=list)  # papers and guidance behind the rule that are not clauses

    @property
    def blocking(self) -> bool:
        return self.severity == "block"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["status"] = self.status.value
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Finding:
        d = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        d["status"] = Status(d["status"])
        return cls(**d)
