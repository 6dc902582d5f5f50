"""Judge: apply the policy's rules to measurements. It never computes a metric.

Per rule: the `basis` number (value, ci_low or ci_high) must clear `min` and/or `max`. A blocking rule that
fails is FAIL, a `warn` rule that fails is WARN. Missing evidence is INCONCLUSIVE, never a silent PASS.
A check that raised is ERROR; so is a measurement that carries an error beside its value (SHAP explanations
that do not add up), unless that value violates the rule: a measured violation is never hidden behind ERROR.
An active waiver turns a non-passing finding into WAIVED. A rule's `missing: fail` (a parameter of checks whose
value can be absent because no bound exists: privacy.dp_epsilon) counts a measurement without a value as the
worst value in the check's direction (ε = ∞) and judges it; `missing: inconclusive`, the default, leaves it
INCONCLUSIVE.

Verdict: FAIL if a blocking finding is FAIL or ERROR; else INCONCLUSIVE if a blocking finding is
INCONCLUSIVE (FAIL when the policy says `inconclusive: fail`); else PASS.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from audit.checks import CheckSpec
from audit.policy import Policy, Rule
from audit.result import EXIT_CODES, Finding, Measurement, Part, Status, Verdict


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


def _observed(m: Measurement | Part, basis: str) -> float | None:
    return {"point": m.value, "ci_low": m.ci_low, "ci_high": m.ci_high}[basis]


def _requirement(rule: Rule, unit: str) -> str:
    on = {"point": "", "ci_low": " on the interval's lower bound", "ci_high": " on the interval's upper bound"}
    parts = []
    if rule.min is not None:
        parts.append(f"at least {fmt(rule.min, unit)}")
    if rule.max is not None:
        parts.append(f"at most {fmt(rule.max, unit)}")
    return " and ".join(parts) + on[rule.basis] if parts else "no threshold"


def _sentence(title: str, unit: str, m: Measurement | Part, rule: Rule, confidence: float) -> str:
    value = f"{title} was {fmt(m.value, unit)}"
    if m.ci_low is not None and m.ci_high is not None:
        value += f" ({confidence:.0%} CI {fmt(m.ci_low, unit)}–{fmt(m.ci_high, unit)})"
    return f"{value}; the policy requires {_requirement(rule, unit)}."


def _margin(rule: Rule, observed: float) -> float:
    """How far `observed` is beyond the rule's line (positive: a violation); larger is worse."""
    out = []
    if rule.min is not None:
        out.append(rule.min - observed)
    if rule.max is not None:
        out.append(observed - rule.max)
    return max(out) if out else 0.0


def _parts(m: Measurement) -> list[Part]:
    """The parts a measurement is judged by: its own parts, or itself as one part. A measurement-level
    `inconclusive` beside parts (an attribute the policy names that the manifest does not map, say) is one
    more part that cannot be judged."""
    if not m.parts:
        return [Part("", value=m.value, ci_low=m.ci_low, ci_high=m.ci_high, n=m.n, inconclusive=m.inconclusive,
                     incomplete=m.incomplete)]
    parts = list(m.parts)
    if m.inconclusive:
        parts.append(Part("the rest of the rule", kind="problem", inconclusive=m.inconclusive))
    return parts


def _judge_part(spec: CheckSpec, rule: Rule, p: Part) -> tuple[Status, float | None, str]:
    """(status, the number the rule was applied to, why it is not PASS/FAIL/WARN) of one part.

    A violation that the part's own evidence shows is FAIL (WARN for a warn rule), whatever the part leaves out
    (`incomplete`) and however small its evidence (one SSN in three rows is PII in the training text); a part
    that cannot be judged is INCONCLUSIVE; a pass of an incomplete part, or of a part with less evidence than
    the rule's `min_evidence`, is INCONCLUSIVE."""
    observed = _observed(p, rule.basis)
    if p.inconclusive:
        return Status.INCONCLUSIVE, observed, p.inconclusive
    if observed is None:
        return Status.INCONCLUSIVE, None, f"the {rule.basis.replace('_', ' ')} is not available"
    if _margin(rule, observed) > 0:
        return (Status.FAIL if rule.severity == "block" else Status.WARN), observed, ""
    if rule.min_evidence is not None and p.n < rule.min_evidence:
        return Status.INCONCLUSIVE, observed, (f"only {p.n:,} {spec.evidence}, the policy asks for at least "
                                               f"{rule.min_evidence:,} before a pass counts")
    if p.incomplete:
        return Status.INCONCLUSIVE, observed, p.incomplete
    return Status.PASS, observed, ""


def _violated(spec: CheckSpec, rule: Rule, m: Measurement) -> bool:
    """Whether a measurement that carries an error (explanations that do not add up, say) still shows a
    violation of the rule with a value of its own: that violation is not hidden behind ERROR. A check that
    raised has no value, so it is ERROR as before."""
    if m.value is None and not m.parts:
        return False
    return any(_judge_part(spec, rule, p)[0] in (Status.FAIL, Status.WARN) for p in _parts(m))


def _names(items: list[dict]) -> str:
    names = [i["name"] for i in items]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _decided_by(status: Status, judged: list[dict]) -> str:
    """One sentence: which parts made the rule's status, which passed, which could not be judged."""
    bad = [j for j in judged if j["status"] in (Status.FAIL.value, Status.WARN.value)]
    ok = [j for j in judged if j["status"] == Status.PASS.value]
    unknown = [j for j in judged if j["status"] == Status.INCONCLUSIVE.value]
    bits = []
    if bad:
        bits.append(f"{_names(bad)} {'violates' if len(bad) == 1 else 'violate'} the rule")
    if ok:
        bits.append(f"{_names(ok)} {'passes' if len(ok) == 1 else 'pass'}")
    if unknown:
        bits.append(f"{_names(unknown)} could not be judged")
    if status == Status.INCONCLUSIVE:
        why = "no part violates the rule and some could not be judged"
    elif status == Status.PASS:
        why = "every part passes"
    else:
        why = "a judged part violates the rule, whatever the others show"
    return f"{status.value}, because {why}: " + "; ".join(bits) + "."


def missing_counts_as(spec: CheckSpec, rule: Rule, m: Measurement) -> Measurement:
    """The measurement judged under the rule's `missing` (a parameter only the checks that declare it take):
    with `missing: fail`, a measurement that has no value and no parts, and is inconclusive only for that,
    counts as the worst value in the check's direction (+∞ when lower is better, −∞ when higher is)."""
    if "missing" not in spec.params or spec.direction == "none":
        return m
    if rule.params.get("missing", spec.params["missing"]) != "fail":
        return m
    if m.value is not None or m.parts or m.error or m.skipped or not m.inconclusive:
        return m
    worst = float("inf") if spec.direction == "lower" else float("-inf")
    return dataclasses.replace(m, value=worst, inconclusive=None)


def judge_one(spec: CheckSpec, rule: Rule, m: Measurement, policy: Policy, today: dt.date,
              baseline: dict[str, Any] | None = None) -> Finding:
    """The rule's finding. Each part (attribute, intersection, swap list) is judged on its own: the rule is
    FAIL/WARN when any judgeable part violates it, INCONCLUSIVE only when none violates and some part could not
    be judged, PASS otherwise. The finding shows the numbers of the part that decided it."""
    m = missing_counts_as(spec, rule, m)
    reason, decided_by, judged, shown = "", "", [], None
    if m.error and not _violated(spec, rule, m):
        status, reason = Status.ERROR, m.error
        message = f"{spec.title} could not be measured: {m.error}"
    elif m.skipped:
        status, reason = Status.SKIPPED, m.skipped
        message = f"{spec.title} does not apply: {m.skipped}"
    else:
        parts = _parts(m)
        for p in parts:
            st, obs, why = _judge_part(spec, rule, p)
            judged.append({"name": p.name, "kind": p.kind, "status": st.value, "value": p.value,
                           "ci_low": p.ci_low, "ci_high": p.ci_high, "observed": obs, "n": p.n, "reason": why,
                           "_part": p})
        statuses = {j["status"] for j in judged}
        bad = [j for j in judged if j["status"] in (Status.FAIL.value, Status.WARN.value)]
        if bad:
            status = Status(bad[0]["status"])
            pool = bad
        elif Status.INCONCLUSIVE.value in statuses:
            status = Status.INCONCLUSIVE
            pool = [j for j in judged if j["observed"] is not None]
        else:
            status, pool = Status.PASS, judged
        # the part whose numbers the finding shows: the worst one the rule could be applied to
        shown = max(pool, key=lambda j: _margin(rule, j["observed"])) if pool else None
        unjudged = [j for j in judged if j["status"] == Status.INCONCLUSIVE.value]
        if len(judged) > 1:
            reason = "; ".join(f"{j['name']}: {j['reason']}" for j in unjudged)
            decided_by = _decided_by(status, judged)
        else:
            reason = unjudged[0]["reason"] if unjudged else ""
        message = _message(spec, rule, policy, status, shown, reason, len(judged) > 1)
        if m.error:  # a violation measured despite the error (see _violated): it stands, the error beside it
            reason = f"{reason}; {m.error}" if reason else m.error
            message = f"{message} The measurement also reports a problem: {m.error}."
    p = shown["_part"] if shown else None
    value = p.value if p else (None if (m.error or m.skipped) else m.value)
    ci_low, ci_high = (p.ci_low, p.ci_high) if p else (m.ci_low, m.ci_high)
    observed = shown["observed"] if shown else None
    finding_status, baseline_note, bv = _apply_baseline(spec, rule, m, status, baseline)
    if finding_status is not status:
        status = finding_status
        if status == Status.INCONCLUSIVE:
            reason = baseline_note
    if baseline_note:
        message = f"{message} {baseline_note}"
    finding = Finding(
        check_id=spec.id, family=spec.family, title=spec.title, status=status, severity=rule.severity,
        min=rule.min, max=rule.max, basis=rule.basis, value=value, ci_low=ci_low, ci_high=ci_high,
        observed=observed, confidence=policy.confidence, refs=rule.ref_labels, message=message,
        meaning=spec.meaning or spec.summary, reason=reason, unit=spec.unit, baseline_value=bv,
        baseline_delta=(m.value - bv) if (bv is not None and m.value is not None) else None,
        note=rule.note, evidence=spec.evidence, n=(p.n if p else m.n),
        part=(p.name if p and len(judged) > 1 else ""), decided_by=decided_by,
        parts=[{k: v for k, v in j.items() if k != "_part"} for j in judged] if len(judged) > 1 else [],
        clauses=[c.to_dict() for c in rule.cites], references=list(rule.references),
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


def _message(spec: CheckSpec, rule: Rule, policy: Policy, status: Status, shown: dict | None, reason: str,
             multi: bool) -> str:
    """One plain sentence: the shown part's number against the rule, and what could not be judged."""
    if shown is None:
        return f"{spec.title} cannot be judged: {reason}."
    p: Part = shown["_part"]
    title = f"{spec.title} for {p.name}" if multi and p.name else spec.title
    text = _sentence(title, spec.unit, p, rule, policy.confidence)
    if status == Status.INCONCLUSIVE:
        text += f" It cannot be judged: {reason}."
    return text


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
