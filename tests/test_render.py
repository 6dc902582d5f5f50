"""Renderers: report.html, junit.xml, summary.md and the atomic run folder, all from a result dict alone.

Golden files live in tests/gold/; regenerate them with `AUDIT_UPDATE_GOLD=1 pytest tests/test_render.py`
and review the diff.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest
from markupsafe import escape

from audit.errors import DataError, OutputError
from audit.render import outputs, render_html, render_junit, render_markdown, rerender, write_run

HERE = Path(__file__).parent
GOLD = HERE / "gold"
SAMPLE = json.loads((HERE / "fixtures" / "result_sample.json").read_text(encoding="utf-8"))
HOSTILE = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'
UPDATE_GOLD = os.environ.get("AUDIT_UPDATE_GOLD") == "1"


def sample() -> dict:
    return copy.deepcopy(SAMPLE)


def finding(check_id: str, status: str, severity: str = "block", **kw) -> dict:
    f = copy.deepcopy(SAMPLE["findings"][0])
    f.update(check_id=check_id, title=check_id.split(".")[-1], status=status, severity=severity,
             message=f"{check_id} is {status}.", reason="")
    f.update(kw)
    return f


def variants() -> dict:
    """The sample with one finding of every status; the verdict is FAIL."""
    r = sample()
    r["findings"] += [
        finding("performance.f1", "FAIL", message="F1 was 0.50; the policy requires at least 0.80."),
        finding("performance.precision", "ERROR", reason="ZeroDivisionError: no positive predictions"),
        finding("performance.recall", "SKIPPED", reason="no positive rows in the eval set"),
        finding("performance.accuracy", "WAIVED", reason="waived by MRM committee until 2027-01-31: seasonal",
                waiver={"reason": "seasonal", "approved_by": "MRM committee", "expires": "2027-01-31",
                        "status_waived": "FAIL"}),
        finding("performance.pr_auc", "INCONCLUSIVE", reason="too few positive rows (3)"),
        finding("performance.log_loss", "INCONCLUSIVE", severity="warn", reason="too few rows"),
    ]
    r["verdict"].update(status="FAIL", exit_code=1)
    return r


# ---------------------------------------------------------------- golden files


def scrub(text: str) -> str:
    """Blank what changes between runs and machines: run id, times, versions, absolute paths."""
    text = text.replace(SAMPLE["run"]["id"], "RUN-ID")
    text = re.sub(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?([+-]\d{2}:\d{2}|Z)?", "TIME", text)
    text = re.sub(r"\b\d+\.\d+\.\d+\b", "X.Y.Z", text)  # tool, python and package versions
    text = text.replace(str(HERE.parent), "ROOT")
    return text


def check_gold(name: str, actual: str) -> None:
    path = GOLD / name
    actual = scrub(actual)
    if UPDATE_GOLD or not path.exists():
        if not UPDATE_GOLD:
            pytest.fail(f"{path} is missing; run with AUDIT_UPDATE_GOLD=1 to create it")
        GOLD.mkdir(exist_ok=True)
        path.write_text(actual, encoding="utf-8")
    expected = path.read_text(encoding="utf-8")
    if actual != expected:
        for i, (a, b) in enumerate(zip(actual.splitlines(), expected.splitlines(), strict=False), 1):
            if a != b:
                pytest.fail(f"{name} differs from gold at line {i}:\n  gold:   {b[:200]}\n  actual: {a[:200]}\n"
                            "(AUDIT_UPDATE_GOLD=1 regenerates the gold copy after review)")
        pytest.fail(f"{name} differs from gold in length ({len(actual)} vs {len(expected)} characters)")


def test_report_html_matches_gold():
    check_gold("report.html", render_html(sample()))


def test_junit_matches_gold():
    check_gold("junit.xml", render_junit(variants()))


def test_summary_matches_gold():
    check_gold("summary.md", render_markdown(variants()))


# ---------------------------------------------------------------- HTML structure


class Outline(HTMLParser):
    def __init__(self):
        super().__init__()
        self.headings: list[int] = []
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if re.fullmatch(r"h[1-6]", tag):
            self.headings.append(int(tag[1]))


def outline(html: str) -> Outline:
    p = Outline()
    p.feed(html)
    return p


def test_verdict_comes_first_with_words_and_counts():
    html = render_html(variants())
    verdict = html.index('id="verdict"')
    assert verdict < html.index('<table class="findings"') < html.index('id="family-performance"')
    assert verdict < html.index('id="data-model"') < html.index('id="provenance"') < html.index('id="warnings"')
    assert "FAIL — 2 blocking findings failed, 1 without enough evidence" in html
    # the verdict names what stops the release and links to it; the reason is said once, in the findings table
    assert '<a href="#finding-performance.f1">' in html[verdict:html.index('id="sign-off"')]
    assert html.count("F1 was 0.50; the policy requires at least 0.80.") == 1
    assert html.index("F1 was 0.50; the policy requires at least 0.80.") > html.index('id="findings"')
    assert '<span class="n">1</span> WAIVED' in html
    assert "Approved by" in html and "MRM committee" in html and "2027-01-31" in html
    assert "ZeroDivisionError: no positive predictions" in html


def test_pass_headline_and_threshold_words():
    html = render_html(sample())
    assert "PASS — 2 of 2 blocking findings passed, 1 warning" in html
    assert "≥ 0.700 on the 95% CI lower bound" in html
    assert "≤ 0.100 on the point estimate" in html
    assert "0.855 (95% CI 0.807–0.898)" in html
    assert "SR 11-7 (model validation)" in html


def test_headings_descend_one_level_at_a_time():
    levels = outline(render_html(variants())).headings
    assert levels[0] == 1 and levels.count(1) == 1
    for before, after in zip(levels, levels[1:], strict=False):
        assert after <= before + 1


def test_charts_are_labelled_images():
    html = render_html(sample())
    svgs = [attrs for tag, attrs in outline(html).tags if tag == "svg"]
    assert len(svgs) >= 4 + len(SAMPLE["findings"])
    assert all(a.get("role") == "img" and len(a.get("aria-label", "")) > 20 for a in svgs)
    for chart in ("chart-roc", "chart-pr", "chart-calibration", "chart-confusion"):
        assert f'id="{chart}"' in html
    assert "133 predicted good (true positives)" in html
    assert "The dashed line at 0.543 is the share of positive rows" in html
    assert "Measured without a rule" in html and "PR AUC" in html


def test_report_is_small():
    assert len(render_html(variants()).encode()) < 200_000


def test_report_without_performance_or_optional_sections():
    r = sample()
    r["measurements"] = {"fairness.selection_rate_ratio": {"check_id": "fairness.selection_rate_ratio",
                                                           "value": 0.91, "ci_low": None, "ci_high": None, "n": 10,
                                                           "details": {}}}
    r["findings"] = []
    for key in ("model", "data", "inputs", "environment", "scoring", "warnings", "run", "tool"):
        del r[key]
    html = render_html(r)
    assert "Fairness evidence" in html and "Selection rate ratio" in html
    assert "Performance evidence" not in html and "chart-roc" not in html
    assert render_junit(r).count("<testcase") == 0
    render_markdown(r)


def test_partial_details_are_tolerated():
    r = sample()
    m = r["measurements"]
    m["performance.roc_auc"]["details"] = {"curve": {"fpr": [0.0, None], "tpr": [float("nan"), 1.0]}}
    m["performance.pr_auc"]["details"] = {}
    m["performance.ece"]["details"]["bins"] = [{"bin": 0, "count": 0, "mean_score": None, "observed_rate": None}]
    m["performance.accuracy"]["details"]["confusion_matrix"].pop("tp")
    html = render_html(r)
    assert "<h3>Charts</h3>" not in html


def test_user_template_overrides_by_name(tmp_path):
    (tmp_path / "performance.html").write_text("<h2>Custom {{ fam.title }}</h2>", encoding="utf-8")
    html = render_html(sample(), [tmp_path])
    assert "<h2>Custom Performance</h2>" in html and "chart-roc" not in html


def test_template_errors_are_one_line(tmp_path):
    (tmp_path / "report.html").write_text("{% if %}", encoding="utf-8")
    with pytest.raises(OutputError, match=r"report\.html:1") as e:
        render_html(sample(), [tmp_path])
    assert "\n" not in str(e.value)
    (tmp_path / "report.html").write_text("{{ r.no_such_field }}", encoding="utf-8")
    with pytest.raises(OutputError, match="no_such_field"):
        render_html(sample(), [tmp_path])


# ---------------------------------------------------------------- hostile text, no external URLs


def hostile() -> dict:
    r = variants()
    r["model"]["text"]["template"] = "Applicant: {{ name }} " + HOSTILE
    r["model"]["name"] = HOSTILE
    r["model"]["positive_label"] = HOSTILE
    r["measurements"]["performance.accuracy"]["details"]["confusion_matrix"]["positive_label"] = HOSTILE
    r["policy"]["name"] = HOSTILE
    r["findings"][0]["reason"] = HOSTILE
    r["findings"][0]["refs"] = [HOSTILE]
    r["findings"][1]["message"] = HOSTILE + " | @team `code` [x](javascript:alert(3))"
    r["findings"][2]["title"] = HOSTILE
    r["data"]["eval"]["path"] = HOSTILE
    r["warnings"].append(HOSTILE)
    return r


def test_hostile_text_is_escaped_in_html():
    html = render_html(hostile())
    assert "<script" not in html and "<img" not in html
    tags = outline(html).tags
    assert not [t for t, _ in tags if t in ("script", "img")]
    assert not [k for _, attrs in tags for k in attrs if k.startswith("on")]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(2)&gt;" in html
    assert html.count("&lt;script&gt;") >= 8


def test_hostile_text_is_inert_in_junit_and_markdown():
    r = hostile()
    r["findings"][3]["reason"] = "bad \x00 control \x1b chars"
    xml = render_junit(r)
    root = ET.fromstring(xml)
    assert root.find("testsuite").get("name") == HOSTILE
    assert "<script" not in xml
    text = render_markdown(r)
    assert "<script" not in text and "<img" not in text and "](javascript" not in text
    assert "@team" not in text  # no mention pings
    table = [line for line in text.splitlines() if line.startswith("| ")]
    assert table and all(len(re.findall(r"(?<!\\)\|", line)) == 5 for line in table)
    assert "Applicant" not in text  # the text recipe (dataset-shaped) never reaches the PR comment


def test_no_external_url_anywhere():
    html = render_html(sample())
    lower = html.lower()
    assert "http://" not in lower and "https://" not in lower
    assert "@import" not in lower and "url(" not in lower
    assert "<link" not in lower and "<script" not in lower and "<iframe" not in lower
    for _, attrs in outline(html).tags:
        for key in ("src", "href", "xlink:href", "action"):
            value = attrs.get(key)
            assert value is None or value.startswith("#"), (key, value)


# ---------------------------------------------------------------- JUnit


def test_junit_counts_match_statuses():
    root = ET.fromstring(render_junit(variants()))
    suite = root.find("testsuite")
    assert suite.get("name") == "consumer-credit-release"
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert len(cases) == 10 and {c.get("classname") for c in cases.values()} == {"performance"}
    # skipped: the SKIPPED finding, and WARN / a warn-level INCONCLUSIVE, which a CI view must not show as passes
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"), suite.get("skipped")) == \
        ("10", "2", "1", "3")
    assert root.attrib == {}  # Ant's aggregate <testsuites> takes no attributes; the suite has the counts
    assert cases["performance.f1"].find("failure").get("message").startswith("F1 was 0.50")
    assert cases["performance.pr_auc"].find("failure").get("type") == "INCONCLUSIVE"
    assert cases["performance.precision"].find("error") is not None
    assert cases["performance.recall"].find("skipped").get("message") == "no positive rows in the eval set"
    waived = cases["performance.accuracy"]
    out = suite.find("system-out").text
    assert list(waived) == [] and "approved_by=MRM committee" in out.split("performance.accuracy (performance)\n")[1].split("\n\n")[0]
    assert "performance.ece (performance)\n  WARN: Expected calibration error" in out
    assert cases["performance.ece"].find("skipped").text.startswith("WARN: Expected calibration error")
    assert cases["performance.ece"].find("skipped").get("message").startswith("WARN (does not block the release): ")
    log_loss = cases["performance.log_loss"]  # a warn-severity INCONCLUSIVE does not fail, and is not a pass
    assert log_loss.find("failure") is None
    assert log_loss.find("skipped").get("message").startswith("INCONCLUSIVE (does not block the release): ")
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["verdict"] == "FAIL" and props["exit_code"] == "1"


def test_junit_sample_all_pass():
    r = sample()
    suite = ET.fromstring(render_junit(r)).find("testsuite")
    warns = sum(f["status"] == "WARN" for f in r["findings"])
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"), suite.get("skipped")) == \
        ("4", "0", "0", str(warns))


def parted() -> dict:
    """A rule judged part by part: sex violates, foreign_worker could not be judged, age passes."""
    r = sample()
    parts = [
        {"name": "sex", "kind": "attribute", "status": "FAIL", "value": 0.149, "ci_low": 0.05, "ci_high": 0.25,
         "observed": 0.149, "n": 600, "reason": ""},
        {"name": "age", "kind": "attribute", "status": "PASS", "value": 0.04, "ci_low": 0.01, "ci_high": 0.09,
         "observed": 0.04, "n": 600, "reason": ""},
        {"name": "foreign_worker", "kind": "attribute", "status": "INCONCLUSIVE", "value": None, "ci_low": None,
         "ci_high": None, "observed": None, "n": 13, "reason": "fewer than two groups are large enough"},
    ]
    r["findings"].append(finding(
        "fairness.equalized_odds_difference", "FAIL", family="fairness", title="Equalized-odds difference",
        value=0.149, ci_low=0.05, ci_high=0.25, observed=0.149, min=None, max=0.10, basis="point", unit="rate",
        part="sex", n=600, evidence="rows", parts=parts, note="Similar error rates in every group.",
        decided_by="FAIL, because a judged part violates the rule, whatever the others show: sex violates the rule; "
                   "age passes; foreign_worker could not be judged.",
        reason="foreign_worker: fewer than two groups are large enough"))
    r["verdict"].update(status="FAIL", exit_code=1)
    return r


def test_junit_has_a_testcase_per_part_with_its_own_status():
    suite = ET.fromstring(render_junit(parted())).find("testsuite")
    cases = {(c.get("classname"), c.get("name")): c for c in suite.findall("testcase")}
    cid = "fairness.equalized_odds_difference"
    assert cases[("fairness", cid)].find("failure") is not None
    sex = cases[(cid, "sex")]
    assert sex.find("failure").get("message") == \
        "Equalized-odds difference for sex: 0.149 (95% CI 0.050–0.250) (600 rows)."
    assert list(cases[(cid, "age")]) == []  # a pass
    fw = cases[(cid, "foreign_worker")].find("skipped")
    assert fw.get("message").startswith("INCONCLUSIVE (could not be judged; the rule is FAIL)")
    assert suite.get("tests") == str(len(cases)) == "8"


def test_parts_read_the_same_in_the_report_and_the_summary():
    r = parted()
    html = render_html(r)
    md = render_markdown(r)
    assert "sex:</span> 0.149 (95% CI 0.050–0.250)" in html
    assert "Similar error rates in every group." in html
    for name, shown in (("sex", "0.149 (95% CI 0.050–0.250)"), ("age", "0.040 (95% CI 0.010–0.090)")):
        assert f"<td>{name} <span class=\"small muted\">(attribute)</span></td>" in html
        assert f"<td class=\"num\">{shown}</td>" in html
    assert "| FAIL | Equalized-odds difference (`fairness.equalized_odds_difference`) | sex\\: 0.149 (95% CI " \
           "0.050–0.250); 600 rows |" in md
    assert "| ↳ FAIL | sex | 0.149 (95% CI 0.050–0.250); 600 rows | |" in md
    assert "| ↳ INCONCLUSIVE | foreign\\_worker | not measured; 13 rows; fewer than two groups are large enough | |" in md


# ---------------------------------------------------------------- Markdown


def test_markdown_fits_a_pr_comment():
    r = variants()
    r["findings"] += [finding(f"fairness.check_{i}", "PASS") for i in range(40)]
    text = render_markdown(r)
    assert len(text.splitlines()) <= 60
    assert text.startswith("<!-- audit-summary -->\n## Audit verdict: **FAIL")
    assert "[report.html](report.html)" in text
    assert "more findings, all listed in the report" in text
    assert text.index("| FAIL |") < text.index("| PASS")


# ---------------------------------------------------------------- run folder


def test_write_run_writes_every_file(tmp_path):
    out = tmp_path / "runs" / "r1"
    r = sample()
    r["measurements"]["performance.f1"]["value"] = float("nan")
    r["measurements"]["performance.f1"]["ci_high"] = float("inf")
    assert write_run(out, r, "id,score\n1,0.5\n") == out
    names = sorted(p.name for p in out.iterdir())
    assert names == [".audit-run", "README.md", "evidence.json", "junit.xml", "predictions.csv", "report.html",
                     "result.json", "summary.md"]
    raw = (out / "result.json").read_text(encoding="utf-8")
    assert "NaN" not in raw and "Infinity" not in raw
    back = json.loads(raw)
    assert back["measurements"]["performance.f1"]["value"] is None
    assert back["measurements"]["performance.f1"]["ci_high"] is None
    assert list(back) == list(SAMPLE)  # key order kept
    assert raw.startswith('{\n "schema_version"')  # indent=1
    assert math.isnan(r["measurements"]["performance.f1"]["value"])  # the caller's dict is not changed
    ET.fromstring((out / "junit.xml").read_text(encoding="utf-8"))
    assert [p.name for p in out.parent.iterdir()] == ["r1"]


def test_write_run_replaces_an_earlier_run(tmp_path):
    out = tmp_path / "r"
    write_run(out, sample(), "a\n")
    r = variants()
    write_run(out, r, None)
    assert not (out / "predictions.csv").exists()
    assert json.loads((out / "result.json").read_text())["verdict"]["status"] == "FAIL"
    assert [p.name for p in tmp_path.iterdir()] == ["r"]


def test_write_run_replaces_only_what_audit_wrote(tmp_path, monkeypatch):
    out = tmp_path / "old"
    write_run(out, sample(), "a\n")  # a run folder with predictions.csv
    write_run(out, variants(), None)  # replaced whole: the stale predictions.csv goes
    assert not (out / "predictions.csv").exists() and (out / "report.html").exists()

    empty = tmp_path / "empty"
    empty.mkdir()
    write_run(empty, sample(), None)  # an empty folder loses nothing
    assert (empty / ".audit-run").is_file()

    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "stale.txt").write_text("mine")
    with pytest.raises(OutputError, match=r"will not replace .*notes: it holds the file stale.txt and no "
                                          r"\.audit-run marker \(audit did not write it\)"):
        write_run(notes, sample(), None)
    (out / "thesis.tex").write_text("mine")  # a run folder that also holds a file of the user's
    with pytest.raises(OutputError, match=r"will not replace .*old: it holds the file thesis.tex \(audit did"):
        write_run(out, sample(), None)
    assert (out / "thesis.tex").read_text() == "mine" and (notes / "stale.txt").read_text() == "mine"

    mine = tmp_path / "mine"
    (mine / "thesis").mkdir(parents=True)
    with pytest.raises(OutputError, match="will not replace .*mine: it holds the folder thesis"):
        write_run(mine, sample(), None)
    assert (mine / "thesis").is_dir()

    monkeypatch.chdir(mine / "thesis")
    with pytest.raises(OutputError, match="the working folder or one above it"):
        write_run(Path("."), sample(), None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "mine", "notes", "old"]


def existing_run(tmp_path) -> tuple[Path, dict[str, bytes]]:
    out = tmp_path / "out"
    write_run(out, sample(), "old\n")
    return out, {p.name: p.read_bytes() for p in out.iterdir()}


def test_render_failure_leaves_no_trace(tmp_path, monkeypatch):
    out, before = existing_run(tmp_path)

    def boom(result):
        raise RuntimeError("renderer bug")

    monkeypatch.setattr(outputs, "render_junit", boom)
    with pytest.raises(RuntimeError, match="renderer bug"):
        write_run(out, variants(), "new\n")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_read_only_parent_is_an_output_error(tmp_path, monkeypatch):
    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(args[0]))

    monkeypatch.setattr(outputs.os, "mkdir", denied)
    with pytest.raises(OutputError, match=r"cannot write the run folder .*: Permission denied") as e:
        write_run(tmp_path / "new", sample(), None)
    assert "\n" not in str(e.value)
    assert list(tmp_path.iterdir()) == []


def test_failed_write_of_a_file_cleans_up(tmp_path, monkeypatch):
    out, before = existing_run(tmp_path)
    real_open = open

    def full_disk(path, mode="r", *args, **kwargs):
        if "w" in mode and Path(path).name == "report.html":
            raise OSError(28, "No space left on device", str(path))
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", full_disk)
    with pytest.raises(OutputError, match="No space left on device"):
        write_run(out, variants(), None)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_failed_rename_restores_the_old_folder(tmp_path, monkeypatch):
    out, before = existing_run(tmp_path)
    real_replace = os.replace
    calls = []

    def flaky(src, dst):
        calls.append((Path(src).name, Path(dst).name))
        if len(calls) == 2:  # moving the new folder in
            raise PermissionError(13, "Permission denied", str(src))
        return real_replace(src, dst)

    monkeypatch.setattr(outputs.os, "replace", flaky)
    with pytest.raises(OutputError, match="Permission denied"):
        write_run(out, variants(), None)
    assert len(calls) == 3 and calls[2][1] == "out"
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_rerender_in_place_keeps_result_json(tmp_path):
    out, before = existing_run(tmp_path)
    (out / "report.html").write_text("stale")
    (out / "summary.md").write_text("stale")
    assert rerender(out / "result.json", None) == out
    after = {p.name: p.read_bytes() for p in out.iterdir()}
    assert after == before
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_rerender_to_another_folder_with_user_templates(tmp_path):
    out, _ = existing_run(tmp_path)
    tpl = tmp_path / "tpl"
    tpl.mkdir()
    (tpl / "base.html").write_text("<html><body>OURS {% block content %}{% endblock %}</body></html>")
    new = rerender(out / "result.json", tmp_path / "copy", [tpl])
    assert (new / "report.html").read_text().startswith("<html><body>OURS")
    assert (new / "predictions.csv").read_text() == "old\n"
    assert (new / "result.json").read_bytes() == (out / "result.json").read_bytes()


def test_rerender_rejects_what_is_not_a_result(tmp_path):
    bad = tmp_path / "result.json"
    bad.write_text("[1, 2]")
    with pytest.raises(DataError, match="not an audit result.json"):
        rerender(bad, None)
    with pytest.raises(DataError, match="cannot read"):
        rerender(tmp_path / "missing.json", None)


def test_renderers_import_no_heavy_libraries():
    code = "import sys, audit.render; bad = {'torch', 'numpy', 'transformers'} & set(sys.modules); assert not bad, bad"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=HERE.parent)


# ---------------------------------------------------------------- runs judged from statistics


def statistics_result() -> dict:
    """The sample as a merge of two silos' statistics, one noised, with a hostile silo name."""
    r = sample()
    r["statistics"] = {
        "kind": "merge", "rows": 1234, "positives": 700, "negatives": 534, "rows_exact": False,
        "sources": [
            {"name": HOSTILE + ".stats.json", "kind": "stats file", "sha256": "a" * 64, "rows": None,
             "rows_estimate": 733.6, "noised": True, "epsilon": 0.5, "noise_scale": 16.0, "l1_sensitivity": 8},
            {"name": "b.stats.json", "kind": "stats file", "sha256": "b" * 64, "rows": 500, "rows_estimate": None,
             "noised": False, "epsilon": None, "noise_scale": None, "l1_sensitivity": None}],
        "grid": {"score_bins": 20, "threshold_bins": 20, "ece_bins": 10, "replicates": 200, "seed": 0},
        "attributes": ["age", "sex"], "intersections": ["age × sex"],
        "noise": {"mechanism": "laplace", "noised_sources": 1, "sources": 2, "epsilons": [0.5], "scales": [16.0],
                  "per_count_sd": 22.627417, "replicates_released": False},
        "noised_measurements": ["performance.roc_auc"],
        "roc_auc_binning": {"score_bins": 20, "max_abs_error": 0.0123},
        "ks_bounds": {"lower": 0.0312, "upper": 0.0345},
        "reference": None, "needs_rows": ["explainability.prohibited_terms"]}
    return r


def test_statistics_section_comes_after_the_verdict_with_its_figures_escaped():
    html = render_html(statistics_result())
    verdict, findings, section = (html.index(f'id="{x}"') for x in ("verdict", "findings", "statistics"))
    assert verdict < findings < section  # the verdict, the sign-off and the findings come first
    body = html[section:html.index('id="summary"')]
    assert HOSTILE not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    for figure in ("Each of 2 data silos", "about 1,234 rows (700 with the favourable label", "534 without",
                   "about 734 (noised; the exact count was not released)", "ε = 0.5, scale 16",
                   "at most 8 in total", "b" * 64, "<td class=\"num\">500</td>", "20 bins of width 0.05",
                   "intersection of attributes (age × sex)", "200 bootstrap replicates",
                   "standard deviation of 22.6 rows", "by at most 0.0123", "between 0.0312 and 0.0345",
                   "multiples of 0.05", "explainability.prohibited_terms", "Measured from noised counts"):
        assert figure in body, figure
    md = render_markdown(statistics_result())
    assert ("Judged from the merged statistics of 2 silos, about 1,234 rows, without seeing a row; 1 source added "
            "differential-privacy noise (ε = 0.5) and intervals include it.") in md
    props = {p.get("name"): p.get("value") for p in ET.fromstring(render_junit(statistics_result())).iter("property")}
    assert props["judged_from"] == "statistics: merge" and props["statistics_rows"] == "1234"
    assert props["statistics_noise"] == "laplace, epsilon 0.5" and props["statistics_sources"] == "2"


def test_no_statistics_section_for_a_normal_run():
    assert 'id="statistics"' not in render_html(sample()) and "statistics" not in SAMPLE
    assert "Judged from" not in render_markdown(sample())
    assert "judged_from" not in render_junit(sample())


def test_a_partial_statistics_section_is_tolerated():
    r = sample()
    r["statistics"] = {"kind": "predictions-log"}
    html = render_html(r)
    assert 'id="statistics"' in html and "No sources are recorded." in html
    r["statistics"] = {"sources": "junk", "grid": [], "noise": 3}
    assert 'id="statistics"' in render_html(r) and render_markdown(r) and render_junit(r)


# ---------------------------------------------------------------- regulation map and the policy's statements


def _section(html: str, id_: str) -> str:
    start = html.index(f'id="{id_}"')
    return html[start:html.index("</section>", start)]


def test_regulation_map_has_one_row_per_clause_however_it_is_written():
    from audit.render.governance import regulation_map

    r = sample()  # refs "SR 11-7 (model validation)" and "SR 11-7": one clause written two ways
    r["findings"] += [
        finding("fairness.selection_rate_ratio", "FAIL", refs=["ECOA / Regulation B (12 CFR 1002.4(a), 1002.6(a)): x"]),
        finding("fairness.counterfactual_flip_rate", "PASS",
                refs=["ECOA / Regulation B (12 CFR 1002.6(b)(1)), in part: gendered words"],
                clauses=[{"clause": "12 CFR 1002.6(b)(1)", "regulation": "ECOA / Regulation B",
                          "text": "gendered words", "partial": True},
                         {"clause": "EU AI Act Article 10 (2)(f)", "text": "swaps", "partial": True}],
                references=["Ponomareva et al. 2023, How to DP-fy ML"]),
        finding("fairness.equalized_odds_difference", "WARN", severity="warn", refs=[],
                clauses=[{"clause": "EU AI Act Art. 10(2)(f)", "text": "error rates", "partial": True},
                         {"clause": "12 cfr 1002.6(a)", "text": "error rates", "partial": False}]),
    ]
    rows = {row.clause: row for row in regulation_map(r)}
    assert sorted(rows) == ["12 CFR 1002.4(a)", "12 CFR 1002.6(a)", "12 CFR 1002.6(b)(1)",
                            "EU AI Act Article 10 (2)(f)", "SR 11-7"]
    sr = rows["SR 11-7"]
    assert [f.check_id for f in sr.findings] == ["performance.roc_auc", "performance.balanced_accuracy",
                                                 "performance.ece", "performance.brier_score"]
    assert sr.status == "WARN"  # the ECE finding; the others pass
    assert rows["12 CFR 1002.6(a)"].status == "FAIL"  # FAIL beats WARN
    assert [f.check_id for f in rows["12 CFR 1002.6(a)"].findings] == ["fairness.selection_rate_ratio",
                                                                      "fairness.equalized_odds_difference"]
    eu = rows["EU AI Act Article 10 (2)(f)"]
    assert eu.status == "WARN" and eu.partial and [f.text for f in eu.findings] == ["swaps", "error rates"]
    assert not rows["12 CFR 1002.6(a)"].partial
    html = _section(render_html(r), "regulation-map")
    assert "Ponomareva" not in html  # a paper is not a clause
    assert html.count("<tr><td><strong>") == 5
    assert '<a href="#finding-fairness.counterfactual_flip_rate">counterfactual_flip_rate</a> (PASS), in part: ' \
           "gendered words" in html


def test_not_covered_lists_the_policys_items_and_unserved_scope():
    r = sample()
    r["policy"]["scope"] = [{"clause": "SR 11-7", "regulation": "", "text": "", "partial": False},
                            {"clause": "EU AI Act Art. 14", "regulation": "EU AI Act", "text": "", "partial": False},
                            {"clause": "EU AI Act Art. 12", "regulation": "", "text": "", "partial": False}]
    r["policy"]["not_covered"] = [
        {"clause": "12 CFR 1002.9(b)(2)", "regulation": "ECOA / Regulation B",
         "text": "adverse-action reasons per applicant", "reason": "The ranking is global."},
        {"clause": "EU AI Act Art. 12", "regulation": "", "text": "logs", "reason": "Not the model's."},
        {"clause": "sr 11-7", "regulation": "", "text": "a conceptual soundness review", "reason": "A validator's."}]
    from audit.render.governance import governance_view

    g = governance_view(r)
    assert [(n.clause, n.partly) for n in g.not_covered] == [
        ("12 CFR 1002.9(b)(2)", False), ("EU AI Act Art. 12", False), ("sr 11-7", True), ("EU AI Act Art. 14", False)]
    assert g.not_covered[-1].reason == "The policy's scope names this clause, but no rule of the policy serves it."
    assert [c.clause for c in g.clauses] == ["SR 11-7"] and g.clauses[0].not_covered == "a conceptual soundness review"
    html = _section(render_html(r), "regulation-map")
    nc = html[html.index('id="not-covered"'):]
    assert "<strong>12 CFR 1002.9(b)(2)</strong> (ECOA / Regulation B): adverse-action reasons per applicant. " \
           "The ranking is global." in nc
    assert "EU AI Act Art. 14" in nc and "1002.9(b)(2)" not in html[:html.index('id="not-covered"')]
    plain = render_html(sample())
    assert "what this audit does not test is not stated" in _section(plain, "regulation-map")


def test_bundled_policy_map_from_a_judged_result():
    """fin.yaml judged end to end (values made up): its map serves the adverse-action clause in part and lists
    what it does not test as not covered."""
    from audit.checks import all_checks
    from audit.judge import judge
    from audit.policy import load_policy
    from audit.render.governance import governance_view
    from audit.result import Measurement
    from audit.runner import policy_section

    fin = load_policy("fin")
    findings = judge(fin, all_checks(), {cid: Measurement(cid, 0.0) for cid in fin.checks})
    r = sample()
    r["findings"] = [f.to_dict() for f in findings]
    r["policy"] = json.loads(json.dumps(policy_section(fin, 200)))
    g = governance_view(r)
    clauses = [c.clause for c in g.clauses]
    # the adverse-action rules serve 1002.9(b)(2) in part; what they do not test stays listed as not covered
    aa = next(c for c in g.clauses if c.clause == "12 CFR 1002.9(b)(2)")
    assert {f.check_id for f in aa.findings} == {f"explainability.adverse_action_{x}" for x in
                                                 ("protected_reasons", "specific_reasons", "reason_stability")}
    assert len(clauses) == len(set(clauses))
    assert "12 CFR 1002.9(b)(2)" in [n.clause for n in g.not_covered]
    assert {"EU AI Act Art. 10(2)(f)", "EU AI Act Art. 10(2)(g)", "EU AI Act Art. 15(5)"} <= set(clauses)
    mia = next(c for c in g.clauses if c.clause == "EU AI Act Art. 15(5)")
    assert {f.check_id for f in mia.findings} == {"privacy.membership_inference_auc", "privacy.mia_tpr_at_1pct_fpr"}
    html = render_html(r)
    # every rule's plain-language requirement is in its finding's detail
    for f in findings:
        body = html[html.index(f'<tbody id="finding-{f.check_id}">'):]
        body = body[:body.index("</tbody>")]
        assert f"<strong>The policy requires:</strong> {escape(f.note)}" in body, f.check_id
    dp = html[html.index('<tbody id="finding-privacy.dp_epsilon">'):]
    assert "Sources (not clauses):</strong> Ponomareva et al. 2023" in dp[:dp.index("</tbody>")]


def test_note_is_escaped_and_absent_notes_leave_no_label():
    r = sample()
    r["findings"][0]["note"] = HOSTILE
    html = render_html(r)
    assert HOSTILE not in html and escape(HOSTILE) in html
    assert html.count("The policy requires:") == 1


def _explained(examples: list[dict]) -> dict:
    return {"model": {"positive_label": "good", "negative_label": "bad"}, "findings": [], "measurements": {
        "explainability.additivity_error": {"value": 0.0, "details": {
            "sample_rows": 10, "max_evals": 40, "model_evaluations": 400, "examples": examples}}}}


def _example(row_id: str, kind: str, score: float) -> dict:
    return {"row_id": row_id, "kind": kind, "why": f"{kind}.", "score": score, "predicted": "bad", "true": "good",
            "base_value": 0.0, "shap_sum": 0.0, "output": 0.0, "units": [["word", 0.1, "word"]]}


def test_lowest_scored_label_says_it_is_the_samples_lowest():
    """The check picks the lowest-scored example from the random sample only; the surest false negative comes from
    every eval row and can score lower. The title must not claim the lowest row shown."""
    from audit.render.explainability_view import explain_view

    fn, low = _example("3", "false negative", 0.02), _example("9", "lowest-scored", 0.11)
    view = explain_view(_explained([_example("1", "highest-scored", 0.97), fn, low]))
    titles = [e.title for e in view.examples]
    assert titles == ["Highest-scored row", "False negative row", "Lowest-scored sampled row"]
    shown = {e.title: e for e in view.examples}
    # the false negative scores lower than the sample's lowest, and the lowest-scored row's text says so
    assert shown["Lowest-scored sampled row"].why == (
        "lowest-scored. Row 3 (false negative, shown here too) scores lower, 0.020: it was picked from every eval "
        "row, not from the random sample.")
    # when it is the lowest shown, nothing is added
    alone = explain_view(_explained([_example("1", "highest-scored", 0.97), _example("9", "lowest-scored", 0.11)]))
    assert alone.examples[1].why == "lowest-scored."
    html = render_html(_explained([fn, low]))
    assert "Lowest-scored sampled row</h4>" in html and "Lowest-scored row</h4>" not in html
