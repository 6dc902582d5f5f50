"""Judge: apply the policy's rules to measurements. It never computes a metric.

Per rule: the `basis` number (value, ci_low or ci_high) must clear `min` and/or `max`. A blocking rule that
fails is FAIL, a `warn` rule that fails is WARN. Missing evidence is INCONCLUSIVE, never a silent PASS.
A check that raised is ERROR. An active waiver turns a non-passing finding into WAIVED.

Verdict: FAIL if a blocking finding is FAIL or ERROR; else INCONCLUSIVE if a blocking finding is
INCONCLUSIVE (FAIL when the policy says `inconclusive: fail`); else PASS.
"""

from __future__ import annotations

import datetime as dt

from audit.checks import CheckSpec
from audit.policy import Policy, Rule
from audit.result import EXIT_CODES, Finding, Measurement, Status, Verdict


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if unit == "count":
        return f"{value:,.0f}"
    return f"{value:.3f}"


def _observed(m: Measurement, basis: str) -> float | None:
    return {"point": m.value, "ci_low": m.ci_low, "ci_high": m.ci_high}[basis]


def _requirement(rule: Rule, unit: str) -> str:
    on = {"point": "", "ci_low": " on the interval's lower bound", "ci_high": " on the interval's upper bound"}
    parts = []
    if rule.min is not None:
        parts.append(f"at least {fmt(rule.min, unit)}")
    if rule.max is not None:
        parts.append(f"at most {fmt(rule.max, unit)}")
    return " and ".join(parts) + on[rule.basis] if parts else "no threshold"


def _sentence(spec: CheckSpec, m: Measurement, rule: Rule, confidence: float) -> str:
    value = f"{spec.title} was {fmt(m.value, spec.unit)}"
    if m.ci_low is not None and m.ci_high is not None:
        value += f" ({confidence:.0%} CI {fmt(m.ci_low, spec.unit)}–{fmt(m.ci_high, spec.unit)})"
    return f"{value}; the policy requires {_requirement(rule, spec.unit)}."


def judge_one(spec: CheckSpec, rule: Rule, m: Measurement, policy: Policy, today: dt.date) -> Finding:
    observed = _observed(m, rule.basis)
    reason = ""
    if m.error:
        status, reason = Status.ERROR, m.error
        message = f"{spec.title} could not be measured: {m.error}"
    elif m.skipped:
        status, reason = Status.SKIPPED, m.skipped
        message = f"{spec.title} does not apply: {m.skipped}"
    elif m.inconclusive or observed is None:
        status = Status.INCONCLUSIVE
        reason = m.inconclusive or f"the {rule.basis.replace('_', ' ')} is not available"
        message = f"{spec.title} cannot be judged: {reason}."
    else:
        ok = (rule.min is None or observed >= rule.min) and (rule.max is None or observed <= rule.max)
        status = Status.PASS if ok else (Status.FAIL if rule.severity == "block" else Status.WARN)
        message = _sentence(spec, m, rule, policy.confidence)
    finding = Finding(
        check_id=spec.id, family=spec.family, title=spec.title, status=status, severity=rule.severity,
        min=rule.min, max=rule.max, basis=rule.basis, value=m.value, ci_low=m.ci_low, ci_high=m.ci_high,
        observed=observed, confidence=policy.confidence, refs=list(rule.refs), message=message,
        meaning=spec.meaning or spec.summary, reason=reason, unit=spec.unit,
    )
    if status not in (Status.PASS, Status.SKIPPED):
        for waiver in policy.waivers:
            if waiver.check == spec.id and waiver.active(today):
                finding.waiver = {"reason": waiver.reason, "approved_by": waiver.approved_by,
                                  "expires": waiver.expires.isoformat(), "status_waived": status.value}
                finding.reason = f"waived by {waiver.approved_by} until {waiver.expires.isoformat()}: {waiver.reason}"
                finding.status = Status.WAIVED
    return finding


def judge(policy: Policy, specs: dict[str, CheckSpec], measurements: dict[str, Measurement],
          today: dt.date | None = None) -> list[Finding]:
    today = today or dt.date.today()
    return [judge_one(specs[cid], rule, measurements[cid], policy, today) for cid, rule in policy.checks.items()]


def verdict(findings: list[Finding], policy: Policy) -> Verdict:
    blocking = [f.status for f in findings if f.blocking]
    if Status.FAIL in blocking or Status.ERROR in blocking:
        return Verdict.FAIL
    if Status.INCONCLUSIVE in blocking:
        return Verdict.FAIL if policy.inconclusive == "fail" else Verdict.INCONCLUSIVE
    return Verdict.PASS


def exit_code(v: Verdict, findings: list[Finding], strict: bool = False) -> int:
    """The CI gate's table: PASS 0, FAIL 1, INCONCLUSIVE 3; with `strict`, a PASS with warnings is 1."""
    if strict and v == Verdict.PASS and any(
        f.status in (Status.WARN, Status.INCONCLUSIVE, Status.ERROR) for f in findings
    ):
        return 1
    return EXIT_CODES[v]
