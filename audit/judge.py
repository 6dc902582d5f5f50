"""Judge: apply the policy's rules to measurements. It never computes a metric.

Per rule: the `basis` number (value, ci_low or ci_high) must clear `min` and/or `max`. A blocking rule that
fails is FAIL, a `warn` rule that fails is WARN. Missing evidence is INCONCLUSIVE, never a silent PASS.
A check that raised is ERROR. An active waiver turns a non-passing finding into WAIVED.

Verdict: FAIL if a blocking finding is FAIL or ERROR; else INCONCLUSIVE if a blocking finding is
INCONCLUSIVE (FAIL when the policy says `inconclusive: fail`); else PASS.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from audit.checks import CheckSpec
from audit.policy import Policy, Rule
from audit.result import EXIT_CODES, Finding, Measurement, Status, Verdict


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if value in (float("inf"), float("-inf")):
        return "∞" if value > 0 else "−∞"  # e.g. the ε of a model trained without differential privacy
    if unit == "count":
        return f"{value:,.0f}"
    if value != 0 and abs(value) < 0.001:
        return f"{value:.2g}"  # 0.00012, not 0.000
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


def judge_one(spec: CheckSpec, rule: Rule, m: Measurement, policy: Policy, today: dt.date,
              baseline: dict[str, Any] | None = None) -> Finding:
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
    finding_status, baseline_note, bv = _apply_baseline(spec, rule, m, status, baseline)
    if finding_status is not status:
        status = finding_status
        if status == Status.INCONCLUSIVE:
            reason = baseline_note
    if baseline_note:
        message = f"{message} {baseline_note}"
    finding = Finding(
        check_id=spec.id, family=spec.family, title=spec.title, status=status, severity=rule.severity,
        min=rule.min, max=rule.max, basis=rule.basis, value=m.value, ci_low=m.ci_low, ci_high=m.ci_high,
        observed=observed, confidence=policy.confidence, refs=list(rule.refs), message=message,
        meaning=spec.meaning or spec.summary, reason=reason, unit=spec.unit, baseline_value=bv,
        baseline_delta=(m.value - bv) if (bv is not None and m.value is not None) else None,
    )
    if status not in (Status.PASS, Status.SKIPPED):
        for waiver in policy.waivers:
            if waiver.check != spec.id:
                continue
            record = {"reason": waiver.reason, "approved_by": waiver.approved_by,
                      "expires": waiver.expires.isoformat(), "status_waived": status.value}
            if waiver.active(today):
                finding.waiver = {**record, "expired": False}
                finding.reason = f"waived by {waiver.approved_by} until {waiver.expires.isoformat()}: {waiver.reason}"
                finding.status = Status.WAIVED
                break
            finding.waiver = {**record, "expired": True}
            note = (f"A waiver by {waiver.approved_by} expired on {waiver.expires.isoformat()} and no longer "
                    f"applies ({waiver.reason}).")
            finding.reason = f"{finding.reason} {note}".strip()
    return finding


def _apply_baseline(spec: CheckSpec, rule: Rule, m: Measurement, status: Status,
                    baseline: dict[str, Any] | None) -> tuple[Status, str, float | None]:
    """The baseline comparison of a rule: (status after it, a sentence, the baseline's value)."""
    if rule.baseline is None or status in (Status.ERROR, Status.SKIPPED, Status.INCONCLUSIVE):
        return status, "", None
    if baseline is None:
        return Status.INCONCLUSIVE, "The policy compares with a baseline run; give --baseline RUN_DIR.", None
    bv = (baseline.get(spec.id) or {}).get("value")
    if bv is None or m.value is None:
        return Status.INCONCLUSIVE, "The baseline run has no value for this check.", None
    drop = (bv - m.value) if spec.direction == "higher" else (m.value - bv)
    rel = drop / abs(bv) if bv else (0.0 if drop <= 0 else float("inf"))
    b = rule.baseline
    too_far = (b.max_drop is not None and drop > b.max_drop + 1e-12) or (
        b.max_relative_drop is not None and rel > b.max_relative_drop + 1e-12)
    allowed = " and ".join(x for x in (
        f"{fmt(b.max_drop)} absolute" if b.max_drop is not None else "",
        f"{b.max_relative_drop:.1%} relative" if b.max_relative_drop is not None else "") if x)
    change = "worse" if drop > 0 else "not worse"
    note = (f"The baseline run scored {fmt(bv, spec.unit)}; this model is {change} by {fmt(abs(drop), spec.unit)} "
            f"({abs(rel):.1%}); the policy allows a drop of at most {allowed}.")
    if too_far and status == Status.PASS:
        status = Status.FAIL if rule.severity == "block" else Status.WARN
    return status, note, bv


def judge(policy: Policy, specs: dict[str, CheckSpec], measurements: dict[str, Measurement],
          today: dt.date | None = None, baseline: dict[str, Any] | None = None) -> list[Finding]:
    """`baseline`: the measurements of a baseline run's result.json, for rules with a `baseline` part."""
    today = today or dt.date.today()
    return [judge_one(specs[cid], rule, measurements[cid], policy, today, baseline)
            for cid, rule in policy.checks.items()]


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
