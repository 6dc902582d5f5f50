"""junit.xml: one testsuite (the policy), one testcase per finding (classname = family, name = check id).

How statuses map, chosen so that a CI dashboard shows red exactly when the gate does not pass:

    PASS          passes
    FAIL          <failure type="FAIL" message="the finding's sentence">
    ERROR         <error type="ERROR" message="...">, whatever the severity (the check raised)
    SKIPPED       <skipped message="the reason">
    WAIVED        passes; the waiver (approver, expiry, reason, the status it waived) is in the suite's <system-out>
    WARN          <skipped message="WARN (does not block the release): the sentence">: not red, but not shown
                  as a plain pass either (JUnit has no warning; CI test views show skipped cases with the message)
    INCONCLUSIVE  a blocking one is <failure type="INCONCLUSIVE"> when the verdict is not PASS (it is then
                  what holds the release back); otherwise <skipped message="INCONCLUSIVE (…): the reason">

A rule judged part by part (each protected attribute, intersection or swap list on its own) has one more
testcase per part, classname = the check id, name = the part, with the part's own status, value and interval;
a part marks failure only when its rule does (so the part that decided a FAIL is red, not the others).

The file is valid against both common JUnit schemas (tests/fixtures/junit/): the Apache Ant one (Windy Road's
JUnit.xsd, the strictest) and Jenkins' (the xunit plugin's junit-10.xsd, which pytest also validates against).
So: a bare <testsuites> wrapper (Ant's aggregate form: no attributes; the inner suite carries package and id);
the suite's attributes name, tests, failures, errors, skipped, time, timestamp (UTC, ISO 8601 without an offset,
as the Ant schema demands) and hostname ("localhost" unless the result records one, as the Ant schema advises);
<properties> first, then the testcases, then one <system-out> and one <system-err>. A testcase carries name,
classname and time (the check's own seconds; 0 for a part, whose time is its rule's) and at most one child
(skipped, error or failure) whose text holds the details. The Ant schema allows no <system-out> inside a testcase,
so each case's "STATUS: sentence" lines (reason, waiver, what the rule serves) are in the suite's <system-out>,
one block per testcase. The suite's properties hold the verdict, the exit code, the run id and the policy
version. ElementTree does the escaping.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from audit.render.format import text

# Characters XML 1.0 cannot hold at all, even escaped: ElementTree would write them and break the file.
_NOT_XML = re.compile(r"[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _clean(el: ET.Element) -> None:
    for node in el.iter():
        if node.text:
            node.text = _NOT_XML.sub("\ufffd", node.text)
        for k, v in node.attrib.items():
            node.attrib[k] = _NOT_XML.sub("\ufffd", v)


def _outcome(f: dict, verdict: str) -> tuple[str, str] | None:
    """The child element (tag, type) that marks this finding, or None when it passes."""
    status = f.get("status")
    if f.get("part_of") and status == "INCONCLUSIVE" and f.get("part_of") != "INCONCLUSIVE":
        return "skipped", status  # an unjudged part of a rule that its other parts decided
    if status == "FAIL":
        return "failure", "FAIL"
    if status == "ERROR":
        return "error", "ERROR"
    if status == "SKIPPED":
        return "skipped", "SKIPPED"
    if status == "INCONCLUSIVE" and f.get("severity") == "block" and verdict != "PASS":
        return "failure", "INCONCLUSIVE"
    if status in ("WARN", "INCONCLUSIVE"):
        return "skipped", status
    return None


def _skip_message(f: dict, kind: str) -> str:
    if kind == "SKIPPED":
        return str(f.get("reason") or "not applicable")
    if f.get("part_of") and kind == "INCONCLUSIVE":
        why = f"could not be judged; the rule is {f['part_of']}"
    else:
        why = "does not block the release" if f.get("severity") != "block" or kind == "WARN" else "not blocking now"
    return f"{kind} ({why}): {f.get('message') or f.get('reason') or ''}".rstrip(": ")


def _part_case(f: dict, p: dict) -> dict:
    """A part of a finding as a finding of its own (its status, numbers and reason), for its testcase."""
    from audit.render.format import evidence_text, observed_text

    status = str(p.get("status") or "")
    if status in ("FAIL", "WARN") and f.get("status") != status:
        status = str(f.get("status"))  # a waived rule waives its parts
    observed = (observed_text(p.get("value"), p.get("ci_low"), p.get("ci_high"), f.get("confidence"),
                              str(f.get("unit") or "")) if p.get("value") is not None else "not measured")
    size = evidence_text(p.get("n"), f.get("evidence"))
    message = f"{f.get('title') or f.get('check_id')} for {p.get('name')}: {observed}" + (f" ({size})" if size else "")
    return {"status": status, "severity": f.get("severity"), "message": message + ".", "part_of": f.get("status"),
            "reason": p.get("reason") or "", "refs": f.get("refs") or []}


def _detail_lines(f: dict) -> list[str]:
    """What a case says beyond its status: "STATUS: sentence", the reason, a waiver, what the rule serves."""
    lines = [f"{f.get('status')}: {f.get('message') or ''}".rstrip()]
    if f.get("reason"):
        lines.append(f"reason: {f['reason']}")
    waiver = f.get("waiver") if isinstance(f.get("waiver"), dict) else None
    if waiver:
        lines.append("waiver: " + "; ".join(f"{k}={text(v)}" for k, v in waiver.items()))
    if f.get("refs"):
        lines.append("serves: " + "; ".join(str(r) for r in f["refs"]))
    return lines


def _timestamp(run: dict) -> str:
    """When the run started, in UTC, as the Ant schema wants it: YYYY-MM-DDTHH:MM:SS, no offset, no fraction.
    A result without a readable start time (a hand-made one) gets the epoch rather than an invalid file."""
    import datetime as dt

    for key in ("started", "finished"):
        try:
            t = dt.datetime.fromisoformat(str(run.get(key) or ""))
        except ValueError:
            continue
        if t.tzinfo is not None:
            t = t.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return t.strftime("%Y-%m-%dT%H:%M:%S")
    return "1970-01-01T00:00:00"


def _seconds(value: object) -> str:
    """A duration as both schemas read it (xs:decimal and Surefire's pattern): fixed point, never 1e-05."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 or value == float("inf"):
        return "0.000"
    return f"{value:.3f}"


def _token(value: object, fallback: str) -> str:
    """A name attribute (xs:token, at least one character): whitespace collapsed, never empty."""
    return " ".join(str(value or "").split()) or fallback


def _statistics_properties(result: dict) -> list[tuple[str, object]]:
    """Suite properties of a run judged from statistics (merge or prediction log); none for a normal run."""
    st = result.get("statistics")
    if not isinstance(st, dict):
        return []
    noise = st.get("noise") if isinstance(st.get("noise"), dict) else {}
    sources = st.get("sources") if isinstance(st.get("sources"), list) else []
    return [("judged_from", f"statistics: {st.get('kind')}"), ("statistics_rows", st.get("rows")),
            ("statistics_sources", len(sources)),
            ("statistics_noise", "laplace, epsilon " + ", ".join(text(e) for e in noise.get("epsilons") or [])
             if noise else "none")]


def render_junit(result: dict) -> str:
    """JUnit XML for a CI dashboard; the exit code stays the gate."""
    policy = result.get("policy") or {}
    run = result.get("run") or {}
    verdict = result.get("verdict") or {}
    verdict_status = str(verdict.get("status") or "")
    findings = [f for f in result.get("findings") or [] if isinstance(f, dict)]
    name = _token(policy.get("name"), "audit")
    environment = result.get("environment") if isinstance(result.get("environment"), dict) else {}
    timings = run.get("timings") if isinstance(run.get("timings"), dict) else {}
    check_seconds = timings.get("checks_s") if isinstance(timings.get("checks_s"), dict) else {}

    suites = ET.Element("testsuites")  # Ant's aggregate form: the wrapper has no attributes of its own
    suite = ET.SubElement(suites, "testsuite", name=name)
    props = ET.SubElement(suite, "properties")
    for key, value in (("verdict", verdict_status), ("exit_code", verdict.get("exit_code")),
                       ("policy_version", policy.get("version")), ("run_id", run.get("id")),
                       ("model", (result.get("model") or {}).get("name")), *_statistics_properties(result)):
        if value is not None:
            ET.SubElement(props, "property", name=key, value=str(value))

    counts = {"failure": 0, "error": 0, "skipped": 0}
    cases = []
    for f in findings:
        cid = str(f.get("check_id") or "")
        cases.append((_token(f.get("family"), "audit"), _token(cid, "unnamed"), f, check_seconds.get(cid)))
        for p in f.get("parts") or []:
            if isinstance(p, dict):
                cases.append((_token(cid, "unnamed"), _token(p.get("name"), "unnamed"), _part_case(f, p), 0))
    out_lines = [f"verdict: {verdict_status or 'n/a'} (exit code {verdict.get('exit_code', 'n/a')})"]
    for classname, case_name, f, seconds in cases:
        case = ET.SubElement(suite, "testcase", classname=classname, name=case_name, time=_seconds(seconds))
        details = _detail_lines(f)
        out_lines += ["", f"{case_name} ({classname})", *(f"  {line}" for line in details)]
        outcome = _outcome(f, verdict_status)
        if outcome:
            tag, kind = outcome
            counts[tag] += 1
            message = _skip_message(f, kind) if tag == "skipped" else str(f.get("message") or f.get("reason") or kind)
            child = ET.SubElement(case, tag, message=message)
            if tag != "skipped":
                child.set("type", kind)
            child.text = "\n".join(details) + "\n"
    ET.SubElement(suite, "system-out").text = "\n".join(out_lines) + "\n"
    ET.SubElement(suite, "system-err")

    for k, v in (("tests", str(len(cases))), ("failures", str(counts["failure"])), ("errors", str(counts["error"])),
                 ("skipped", str(counts["skipped"])), ("time", _seconds(run.get("duration_s"))),
                 ("timestamp", _timestamp(run)), ("hostname", _token(environment.get("hostname"), "localhost")),
                 ("package", name), ("id", "0")):
        suite.set(k, v)
    _clean(suites)
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"
