"""summary.md as a pull-request comment: the hidden marker a CI step finds it by, and `--report-url` links."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from audit.cli import cli
from audit.errors import UsageError
from audit.render import render_markdown, write_run
from audit.render.markdown import MARKER, report_url

SAMPLE = json.loads((Path(__file__).parent / "fixtures" / "result_sample.json").read_text(encoding="utf-8"))


def last_line(text: str) -> str:
    return text.rstrip("\n").splitlines()[-1]


def test_the_marker_opens_summary_md():
    text = render_markdown(copy.deepcopy(SAMPLE))
    assert text.splitlines()[0] == MARKER == "<!-- audit-summary -->"
    assert text.count(MARKER) == 1


def test_hostile_text_cannot_forge_the_marker():
    r = copy.deepcopy(SAMPLE)
    r["findings"][0]["title"] = MARKER + " <!-- x"
    text = render_markdown(r)
    assert text.count("<!--") == 1 and "&lt;\\!-- audit-summary --&gt; &lt;\\!-- x" in text


def test_links_are_relative_without_a_report_url():
    assert last_line(render_markdown(copy.deepcopy(SAMPLE))) == \
        "Full report: [report.html](report.html) · machine-readable: `result.json`, `junit.xml`"


def test_report_url_makes_every_link_absolute():
    r = copy.deepcopy(SAMPLE)
    r["links"] = {"report_url": "https://ci.example.org/org/repo/-/jobs/42/artifacts/file/reports/gate/"}
    base = "https://ci.example.org/org/repo/-/jobs/42/artifacts/file/reports/gate"
    assert last_line(render_markdown(r)) == (
        f"Full report: [report.html]({base}/report.html) · machine-readable: [result.json]({base}/result.json), "
        f"[junit.xml]({base}/junit.xml)")


@pytest.mark.parametrize("bad, why", [
    ("javascript:alert(1)", "give the http(s) address"),
    ("ftp://example.org/run", "give the http(s) address"),
    ("https://", "give the http(s) address"),
    ("reports/gate", "give the http(s) address"),
    ("https://user:secret@example.org/run", "user name or password"),
    ("https://example.org/run?sig=abc", "without ?query"),
    ("https://example.org/run#top", "without ?query"),
    ("https://example.org/my run", "without ?query, #fragment or spaces"),
])
def test_a_bad_report_url_is_refused(bad, why):
    with pytest.raises(UsageError, match="--report-url") as e:
        report_url(bad)
    assert why in str(e.value)


def test_a_report_url_cannot_break_out_of_the_link():
    url = report_url("https://example.org/a)[x](javascript:alert(1)/'\"<b>")
    assert not set("()[]<>'\" ") & set(url)
    assert url == "https://example.org/a%29%5Bx%5D%28javascript:alert%281%29/%27%22%3Cb%3E"


def test_audit_report_with_report_url(tmp_path):
    out = write_run(tmp_path / "run", copy.deepcopy(SAMPLE), None)
    before = (out / "result.json").read_text()
    r = CliRunner().invoke(cli, ["report", str(out), "--report-url", "https://example.org/audits/7"],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    summary = (out / "summary.md").read_text()
    assert "[report.html](https://example.org/audits/7/report.html)" in summary
    assert "[junit.xml](https://example.org/audits/7/junit.xml)" in summary
    assert (out / "result.json").read_text() == before  # re-rendered in place: result.json stays as it was
    # written elsewhere, the URL is recorded in the new folder's result.json
    r = CliRunner().invoke(cli, ["report", str(out), "--out", str(tmp_path / "copy"), "--report-url",
                                 "https://example.org/audits/8"], catch_exceptions=False)
    assert r.exit_code == 0
    assert json.loads((tmp_path / "copy" / "result.json").read_text())["links"] == \
        {"report_url": "https://example.org/audits/8"}


@pytest.mark.parametrize("command", [["run", "no-such-model", "--policy", "fin"], ["report", "no-such-run"]])
def test_a_bad_report_url_exits_2_before_anything_else(command, tmp_path):
    r = CliRunner().invoke(cli, [*command, "--report-url", "javascript:alert(1)"])
    assert r.exit_code == 2
    assert r.output == ("error: --report-url 'javascript:alert(1)': give the http(s) address of the published run "
                        "folder, e.g. https://example.org/audits/run-42\n")
