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
class Measurement:
    """What a check measured. `value` with its interval; `details` holds tables and curves for the report."""

    check_id: str
    value: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    n: int = 0
    details: dict[str, Any] = field(default_factory=dict)
    inconclusive: str | None = None  # why the data cannot support a judgement
    skipped: str | None = None  # why the check does not apply
    error: str | None = None  # the exception, when the check raised

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
    refs: list[str]
    message: str  # one plain sentence
    meaning: str  # what the check means for a reader
    reason: str = ""  # why INCONCLUSIVE, ERROR, SKIPPED or WAIVED
    waiver: dict[str, Any] | None = None
    unit: str = ""
    baseline_value: float | None = None  # the same check in the baseline run, when the rule compares
    baseline_delta: float | None = None  # value - baseline_value

    @property
    def blocking(self) -> bool:
        return self.severity == "block"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["status"] = self.status.value
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Finding:
        d = dict(d)
        d["status"] = Status(d["status"])
        return cls(**d)
