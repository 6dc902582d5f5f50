"""junit.xml against the published JUnit schemas and a real reader, offline.

Schemas (tests/fixtures/junit/, written down with their origin and licence in each file's header):
- ant-junit.xsd: Apache Ant's JUnit result schema (Windy Road's JUnit.xsd), the strictest common one;
- jenkins-junit-10.xsd: Jenkins xUnit plugin's junit-10.xsd (what Jenkins' xUnit plugin checks its input with).
Both validate the whole document, <testsuites> wrapper included, with `xmlschema` (a real XSD 1.0 validator).

Reader: junitparser (PyPI) parses the file as a CI would, and its counts, times and statuses are compared to a
hand count. GitLab's reader (Ruby, inside GitLab) and Jenkins' JUnit plugin (Java) cannot run here: GitLab
reads testsuites/testsuite/testcase with classname, name, time and a failure/error/skipped child, which is the
structure both schemas check; that it shows them as we expect is not tested.
"""

from __future__ import annotations

import copy
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from audit.render import render_junit

xmlschema = pytest.importorskip("xmlschema", reason="pip install xmlschema (the dev extra)")
junitparser = pytest.importorskip("junitparser", reason="pip install junitparser (the dev extra)")

from test_render import hostile, parted, sample, statistics_result, variants  # noqa: E402

SCHEMAS = Path(__file__).parent / "fixtures" / "junit"


@pytest.fixture(scope="module", params=["ant-junit.xsd", "jenkins-junit-10.xsd"])
def schema(request):
    return xmlschema.XMLSchema(str(SCHEMAS / request.param))


def timed(r: dict) -> dict:
    r = copy.deepcopy(r)
    r["run"]["timings"] = {"checks_s": {"performance.f1": 0.25, "performance.roc_auc": 1.5e-05}}
    r["run"]["duration_s"] = 12.5
    return r


CASES = {"variants": variants, "parted": parted, "sample": sample, "hostile": hostile,
         "statistics": statistics_result, "timed": lambda: timed(variants()),
         "empty": lambda: {"verdict": {"status": "PASS", "exit_code": 0}, "findings": []}}


@pytest.mark.parametrize("case", sorted(CASES))
def test_junit_is_valid_against_the_schema(schema, case):
    xml = render_junit(CASES[case]())
    errors = [f"{e.path}: {e.reason}" for e in schema.iter_errors(xml)]
    assert errors == []


def test_the_schemas_reject_what_the_old_file_did(schema):
    """The validators are not vacuous: the defects the issue names (an offset in the timestamp, a testcase
    without time, system-out inside a testcase, attributes on the wrapper) are each caught by at least the
    Ant schema, and a file with a misplaced element by both."""
    good = render_junit(variants())
    assert schema.is_valid(good)
    misplaced = good.replace("<properties>", '<failure type="FAIL" /><properties>', 1)  # a result outside a case
    assert not schema.is_valid(misplaced)
    if "ant" in schema.url:
        for bad in (good.replace('timestamp="2026-11-28T17:00:00"', 'timestamp="2026-11-28T17:00:00+00:00"'),
                    good.replace(' time="0.000" />', " />", 1),
                    good.replace("</testcase>", "<system-out>x</system-out></testcase>", 1),
                    good.replace("<testsuites>", '<testsuites name="audit">')):
            assert bad != good and not schema.is_valid(bad)
    else:
        assert not schema.is_valid(good.replace("<testsuites>", '<testsuites skipped="3">'))


def test_suite_attributes_and_case_times():
    suite = ET.fromstring(render_junit(timed(variants()))).find("testsuite")
    assert suite.get("timestamp") == "2026-11-28T17:00:00"  # the sample's start, 17:00:00+00:00, in UTC
    assert suite.get("hostname") == "localhost" and suite.get("time") == "12.500"
    assert (suite.get("package"), suite.get("id")) == ("consumer-credit-release", "0")
    times = {c.get("name"): c.get("time") for c in suite.iter("testcase")}
    assert times["performance.f1"] == "0.250" and times["performance.roc_auc"] == "0.000"
    assert set(times.values()) == {"0.000", "0.250"}
    assert [child.tag for child in suite][0] == "properties"
    assert [child.tag for child in suite][-2:] == ["system-out", "system-err"]


def test_timestamp_is_converted_to_utc_without_an_offset():
    r = sample()
    r["run"]["started"] = "2026-11-28T18:30:05+01:30"
    r["environment"]["hostname"] = "ci-runner-7"
    suite = ET.fromstring(render_junit(r)).find("testsuite")
    assert suite.get("timestamp") == "2026-11-28T17:00:05" and suite.get("hostname") == "ci-runner-7"


def test_junitparser_reads_what_we_count(tmp_path):
    path = tmp_path / "junit.xml"
    path.write_text(render_junit(timed(parted())), encoding="utf-8")
    xml = junitparser.JUnitXml.fromfile(str(path))
    suites = list(xml)
    assert len(suites) == 1
    suite = suites[0]
    cases = list(suite)
    r = parted()
    findings, parts = r["findings"], [p for f in r["findings"] for p in f.get("parts") or []]
    assert suite.tests == len(cases) == len(findings) + len(parts) == 8
    # a hand count: the FAIL rule and its violating part fail; the WARN finding and the unjudged part are skipped
    statuses = {(c.classname, c.name): ("failure" if any(isinstance(x, junitparser.Failure) for x in c.result) else
                                        "error" if any(isinstance(x, junitparser.Error) for x in c.result) else
                                        "skipped" if c.is_skipped else "passed") for c in cases}
    cid = "fairness.equalized_odds_difference"
    assert statuses[("fairness", cid)] == statuses[(cid, "sex")] == "failure"
    assert statuses[(cid, "foreign_worker")] == "skipped" and statuses[(cid, "age")] == "passed"
    warns = [f["check_id"] for f in findings if f["status"] == "WARN"]
    assert warns and all(statuses[(next(f["family"] for f in findings if f["check_id"] == w), w)] == "skipped"
                         for w in warns)
    assert (suite.failures, suite.errors, suite.skipped) == (2, 0, len(warns) + 1)
    assert suite.hostname == "localhost" and suite.timestamp == "2026-11-28T17:00:00" and suite.time == 12.5
    assert all(isinstance(c.time, float) for c in cases)
    assert suite.child(junitparser.SystemOut).text.startswith("verdict: FAIL (exit code 1)")
    failure = next(x for x in next(c for c in cases if c.name == "sex").result)
    assert failure.message.startswith("Equalized-odds difference for sex: 0.149")


def test_hostile_names_stay_valid_tokens():
    r = hostile()
    r["findings"][0]["check_id"] = "  \n "  # whitespace only: the schema's token needs a character
    r["policy"]["name"] = "\t"
    suite = ET.fromstring(render_junit(r)).find("testsuite")
    assert suite.get("name") == "audit" and suite.find("testcase").get("name") == "unnamed"
