"""`audit merge --report-url`, as `audit run --report-url`: summary.md's links point at the published folder."""

from __future__ import annotations

import json

from tests.test_federated import invoke, silos  # noqa: F401 (a fixture)


def test_merge_takes_report_url(silos):  # noqa: F811
    out = silos["folder"] / "merged-url"
    r = invoke("merge", silos["a"], silos["b"], "--policy", silos["policy"], "--out", out,
               "--report-url", "https://example.org/audits/fed-1")
    assert r.exit_code in (0, 1, 3), r.output
    summary = (out / "summary.md").read_text()
    assert "[report.html](https://example.org/audits/fed-1/report.html)" in summary
    assert json.loads((out / "result.json").read_text())["links"] == {"report_url": "https://example.org/audits/fed-1"}


def test_merge_refuses_a_bad_report_url_before_reading_anything(tmp_path):
    r = invoke("merge", tmp_path / "missing.json", "--policy", "fin", "--report-url", "javascript:alert(1)")
    assert r.exit_code == 2
    assert r.output == ("error: --report-url 'javascript:alert(1)': give the http(s) address of the published run "
                        "folder, e.g. https://example.org/audits/run-42\n")
