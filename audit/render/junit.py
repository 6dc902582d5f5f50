"""junit.xml: one testsuite (the policy), one testcase per finding (classname = family, name = check id).

How statuses map, chosen so that a CI dashboard shows red exactly when the gate does not pass:

    PASS          passes
    FAIL          <failure type="FAIL" message="the finding's sentence">
    ERROR         <error type="ERROR" message="...">, whatever the severity (the check raised)
    SKIPPED       <skipped message="the reason">
    WAIVED        passes; the waiver (approver, expiry, reason, the status it waived) is in <system-out>
    WARN          passes; the sentence is in <system-out>
    INCONCLUSIVE  a blocking one is <failure type="INCONCLUSIVE"> when the verdict is not PASS (it is then
                  what holds the release back); otherwise it passes with the reason in <system-out>

Every testcase carries "STATUS: sentence" in <system-out>. The suite's properties hold the verdict, the exit
code, the run id and the policy version. ElementTree does the escaping.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from audit.render.views import text

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
    if status == "FAIL":
        return "failure", "FAIL"
    if status == "ERROR":
        return "error", "ERROR"
    if status == "SKIPPED":
        return "skipped", "SKIPPED"
    if status == "INCONCLUSIVE" and f.get("severity") == "block" and verdict != "PASS":
        return "failure", "INCONCLUSIVE"
    return None


def _system_out(f: dict) -> str:
    lines = [f"{f.get('status')}: {f.get('message') or ''}".rstrip()]
    if f.get("reason"):
        lines.append(f"reason: {f['reason']}")
    waiver = f.get("waiver") if isinstance(f.get("waiver"), dict) else None
    if waiver:
        lines.append("waiver: " + "; ".join(f"{k}={text(v)}" for k, v in waiver.items()))
    if f.get("refs"):
        lines.append("serves: " + "; ".join(str(r) for r in f["refs"]))
    return "\n".join(lines) + "\n"


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
    name = str(policy.get("name") or "audit")

    suites = ET.Element("testsuites", name="audit")
    suite = ET.SubElement(suites, "testsuite", name=name)
    props = ET.SubElement(suite, "properties")
    for key, value in (("verdict", verdict_status), ("exit_code", verdict.get("exit_code")),
                       ("policy_version", policy.get("version")), ("run_id", run.get("id")),
                       ("model", (result.get("model") or {}).get("name")), *_statistics_properties(result)):
        if value is not None:
            ET.SubElement(props, "property", name=key, value=str(value))

    counts = {"failure": 0, "error": 0, "skipped": 0}
    for f in findings:
        case = ET.SubElement(suite, "testcase", classname=str(f.get("family") or "audit"),
                             name=str(f.get("check_id") or ""))
        outcome = _outcome(f, verdict_status)
        if outcome:
            tag, kind = outcome
            counts[tag] += 1
            message = str(f.get("reason") if tag == "skipped" else f.get("message") or f.get("reason") or kind)
            child = ET.SubElement(case, tag, message=message)
            if tag != "skipped":
                child.set("type", kind)
                child.text = "\n".join(str(x) for x in (f.get("message"), f.get("reason")) if x) or kind
        ET.SubElement(case, "system-out").text = _system_out(f)

    attrs = {"tests": str(len(findings)), "failures": str(counts["failure"]), "errors": str(counts["error"]),
             "skipped": str(counts["skipped"])}
    if isinstance(run.get("duration_s"), (int, float)):
        attrs["time"] = f"{run['duration_s']:g}"
    for el in (suites, suite):
        for k, v in attrs.items():
            el.set(k, v)
    if run.get("started"):
        suite.set("timestamp", str(run["started"]))
    _clean(suites)
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"
