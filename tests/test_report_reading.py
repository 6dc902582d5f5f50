"""A report a person reads to the end: verdict, sign-off and findings first; each reason said once with what would
resolve it; the details of each family folded (no script) and printed open; the first screen and the first PDF
page checked in headless Chromium (skipped, with the reason, where Chromium or selenium is missing)."""

from __future__ import annotations

import html as htmllib
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest

from audit.render.html import render_html
from audit.render.pdf import opened

HERE = Path(__file__).parent
DEMO = json.loads((HERE / "fixtures" / "result_demo.json").read_text(encoding="utf-8"))  # a fin-policy run


@pytest.fixture(scope="module")
def report() -> str:
    return render_html(DEMO)


class Text(HTMLParser):
    """The text a reader sees, style and SVG left out."""

    def __init__(self):
        super().__init__()
        self.parts, self.skip = [], 0

    def handle_starttag(self, tag, attrs):
        self.skip += tag in ("style", "svg", "title")

    def handle_endtag(self, tag):
        self.skip -= tag in ("style", "svg", "title")

    def handle_data(self, data):
        if not self.skip:
            self.parts.append(data)


def visible(html: str) -> str:
    p = Text()
    p.feed(html)
    return re.sub(r"\s+", " ", "".join(p.parts))


def finding_rows(report: str, check_id: str) -> str:
    """The rows of one finding in the findings table (up to the next finding, or the table's end)."""
    body = report[report.index(f'<tbody id="finding-{check_id}">') + 1:]
    return body[:min(i for i in (body.find('<tbody id="finding-'), body.find('</table>\n</section>')) if i >= 0)]


def not_passed():
    return [f for f in DEMO["findings"] if f["status"] not in ("PASS", "SKIPPED")]


def test_the_demo_fixture_has_reasons_to_repeat():
    assert len(not_passed()) == 6 and all(f["reason"] for f in not_passed())


@pytest.mark.parametrize("f", not_passed(), ids=lambda f: f["check_id"])
def test_each_finding_that_did_not_pass_says_once_why_and_what_would_resolve_it(report, f):
    text = visible(report)
    sharing = sum(g["reason"] == f["reason"] for g in not_passed())  # two findings may share one reason
    assert text.count(" ".join(f["reason"].split())) <= sharing, "the reason is repeated"
    assert text.count(" ".join(f["message"].split())) <= 1, "the message is repeated"
    body = finding_rows(report, f["check_id"])
    rows = visible(body)
    assert rows.count("Why:") == 1 and rows.count("What would resolve it:") == 1
    for part in (p for p in f.get("parts") or [] if p["status"] == "INCONCLUSIVE"):
        assert " ".join(part["reason"].split()) in rows  # the reason of each part, in the finding's own rows


def test_what_would_resolve_names_the_groups_and_the_ways_out(report):
    body = visible(finding_rows(report, "fairness.selection_rate_ratio"))
    resolve = body[body.index("What would resolve it:"):][:400]
    assert "more eval rows for the group '<25' of age (at least 30 rows each)" in resolve.lower()
    assert "map 'foreign_worker' to a column in the model's manifest" in resolve
    assert "a waiver in the policy" in resolve and "a policy change" in resolve
    dp = visible(finding_rows(report, "privacy.dp_epsilon"))
    assert "What would resolve it: Train with DP-SGD (audit train --dp-epsilon)" in dp


def test_verdict_signoff_and_findings_come_first_and_the_rest_folds(report):
    order = [report.index(f'id="{i}"') for i in ("contents", "verdict", "sign-off", "findings", "summary",
                                                  "regulation-map", "family-fairness", "model-card", "provenance")]
    assert order == sorted(order)
    assert "<script" not in report
    for fam in ("performance", "fairness", "explainability", "drift", "privacy"):
        section = report[report.index(f'id="family-{fam}"'):]
        assert section.startswith(f'id="family-{fam}" aria-labelledby="h-family-{fam}">\n<details class="fold">\n'
                                  f'<summary><h2 id="h-family-{fam}">')
    assert '<details class="fold" open' not in report
    toc = report[report.index('id="contents"'):report.index('id="verdict"')]
    assert all(f'href="#{i}"' in toc for i in ("verdict", "sign-off", "findings", "family-privacy", "provenance"))


def test_print_opens_every_details(report):
    printed = opened(report)
    folded = report.count("<details")
    passed = report.count('<details class="more" data-print="closed">')  # a passed finding's rule and clauses
    assert passed == sum(f["status"] == "PASS" for f in DEMO["findings"]) == 16
    assert printed.count("<details open") == folded - passed > 10
    assert printed.count('<details open class="fold">') == report.count('<details class="fold">') == 9
    assert "details:not([data-print=closed])::details-content" in report  # a browser's own print opens them too


def test_no_raw_dicts_in_the_model_card_or_provenance(report):
    for sid, end in (("model-card", 'id="data-model"'), ("data-model", 'id="provenance"'),
                     ("provenance", 'id="warnings"')):
        text = htmllib.unescape(visible(report[report.index(f'id="{sid}"'):report.index(end)]))
        raw = re.search(r".{0,40}(\{'|\{\"|': |\[\{|\b[a-z]+_[a-z_]+: [\d(]).{0,40}", text)  # a dict, or its keys
        assert raw is None, (sid, raw and raw.group(0))


# ---------------------------------------------------------------- in a real browser


def _chrome(tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    chromedriver = shutil.which("chromedriver")
    if not chromium or not chromedriver:
        pytest.skip("Chromium or ChromeDriver is not installed (apt-get install chromium chromium-driver)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install selenium)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'p'}"):
        opts.add_argument(flag)
    return webdriver.Chrome(options=opts, service=Service(executable_path=chromedriver))


BOXES = """return Object.fromEntries([['verdict', '#verdict'], ['signoff', '#sign-off'], ['findings', 'table.findings'],
  ['first_row', 'table.findings tbody tr']].map(([k, sel]) => { const r = document.querySelector(sel)
  .getBoundingClientRect(); return [k, [r.top, r.bottom, r.height]]; }));"""


@pytest.mark.parametrize("media, width, height", [("screen", 1280, 900),
                                                  ("print", 688, 1001)])  # A4 less the 14 mm / 16 mm margins
def test_the_first_screen_holds_the_verdict_signoff_and_findings(report, tmp_path, media, width, height):
    page = tmp_path / "report.html"
    page.write_text(report, encoding="utf-8")
    driver = _chrome(tmp_path)
    try:
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": media})
        driver.get(page.as_uri())
        assert driver.execute_script("return window.innerHeight") == height
        box = driver.execute_script(BOXES)
    finally:
        driver.quit()
    assert 0 <= box["verdict"][0] < box["verdict"][1] <= box["signoff"][0] < box["signoff"][1] <= box["findings"][0]
    assert box["signoff"][1] <= height and box["findings"][0] < height
    assert box["first_row"][1] <= height  # the table's head and its first finding, not just its top edge
    assert box["verdict"][2] > 100 and box["signoff"][2] > 100  # both laid out, not collapsed


def test_the_pdf_first_page_holds_the_verdict_and_findings_and_every_page_a_footer(report, tmp_path):
    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    from audit.render.pdf import html_to_pdf
    from tests.pdftext import pages, squash

    src = tmp_path / "report.html"
    src.write_text(report, encoding="utf-8")
    pdf = html_to_pdf(src, tmp_path / "report.pdf")
    text = pages(pdf)
    assert len(text) > 3
    first = squash(text[0])
    for expected in ("INCONCLUSIVE — 3 blocking findings without enough evidence", "Sign-off",
                     "No decision recorded yet", "Findings", "Selection-rate ratio (adverse impact)",
                     "fairness.selection_rate_ratio"):
        assert squash(expected) in first, expected
    run_id = DEMO["run"]["id"]
    for n, page in enumerate(text, 1):
        assert squash(f"page {n} of {len(text)}") in squash(page) and squash(f"audit run {run_id}") in squash(page)
    raw = pdf.read_bytes()
    for heading in (b"(Findings)", b"(Sign-off)", b"(Provenance)"):  # the PDF's outline
        assert b"/Title " + heading in raw
    assert squash("What would resolve it") in squash("".join(text))  # details printed open
    assert squash("The policy requires:") in squash("".join(text))


# ---------------------------------------------------------------- chart axes


from audit.render import charts  # noqa: E402


@pytest.mark.parametrize("lo, hi, expected", [
    (0.62, 0.97, (0.6, 1.0, 0.1)),  # hand-worked: span 0.35 / 4 = 0.0875 -> step 0.1
    (0.3, 0.7, (0.3, 0.7, 0.1)),
    (0.0, 1.0, (0.0, 1.0, 0.25)),
    (-0.0123, 0.0345, (-0.02, 0.04, 0.02)),  # span 0.0468 / 4 = 0.0117 -> 0.02
    (12.0, 870.0, (0.0, 1000.0, 250.0)),  # span 858 / 4 = 214.5 -> 250
])
def test_nice_ranges_are_round(lo, hi, expected):
    start, end, step = charts.nice_range(lo, hi, 4)
    assert (round(start, 9), round(end, 9), step) == expected
    assert start <= lo and end >= hi


def test_tick_labels_are_rounded():
    assert [charts.tick_label(v, 0.25) for v in charts.tick_values(0, 1, 0.25)] == ["0", "0.25", "0.5", "0.75", "1"]
    assert [charts.tick_label(v, 0.1) for v in charts.tick_values(0.6, 1.0, 0.1)] == ["0.6", "0.7", "0.8", "0.9", "1"]
    assert charts.tick_label(-0.0, 0.02) == "0" and charts.tick_label(250.0, 250.0) == "250"


def _labels_overlap(ticks, attr="pos"):
    xs = [(float(getattr(t, attr)), t.text) for t in ticks]
    return any(abs(a[0] - b[0]) < (len(a[1]) + len(b[1])) * charts._CHAR_PX / 2 for a, b in zip(xs, xs[1:]))


def test_calibration_axes_follow_the_scores_and_pr_the_precision():
    bins = [{"mean_score": m, "observed_rate": o, "count": 10, "low": m - 0.05, "high": m + 0.05}
            for m, o in ((0.42, 0.40), (0.55, 0.61), (0.68, 0.70))]
    c = charts.calibration_chart({"value": 0.03, "details": {"bins": bins}})
    assert [t.text for t in c.xticks] == ["0.4", "0.5", "0.6", "0.7"] == [t.text for t in c.yticks]
    assert float(c.xticks[0].pos) == pytest.approx(charts._LEFT)  # the axis starts at the first tick
    pr = charts.pr_chart({"value": 0.9, "details": {"positive_rate": 0.65,
                                                   "curve": {"recall": [0, 0.5, 1], "precision": [1, 0.9, 0.65]}}})
    assert [t.text for t in pr.yticks] == ["0.6", "0.7", "0.8", "0.9", "1"]
    assert [t.text for t in pr.xticks] == ["0", "0.25", "0.5", "0.75", "1"]
    for chart in (c, pr):
        assert not _labels_overlap(chart.xticks)
        ys = [float(t.pos) for t in chart.yticks]
        assert all(abs(a - b) >= 14 for a, b in zip(ys, ys[1:]))


def test_many_ticks_are_thinned_so_labels_never_overlap():
    ticks = [(10 + i * 12.0, f"{0.001 * i:.3f}") for i in range(11)]  # 5-character labels 12 px apart
    kept = charts.spaced(ticks, 6)
    assert kept[0] == ticks[0] and kept[-1] == ticks[-1] and len(kept) < len(ticks)
    assert all(b[0] - a[0] >= 5 * charts._CHAR_PX + 6 for a, b in zip(kept, kept[1:]))


def test_a_bar_scale_is_round_and_its_end_labels_give_way_to_a_threshold():
    b = charts.ci_bar(3.27, 2.9, 3.61, maximum=4.0)
    assert (b.lo_text, b.hi_text) == ("2.5", "") and [t.text for t in b.thresholds] == ["4"]  # 4 sits at the end
    b = charts.ci_bar(0.9, 0.85, 0.93, minimum=0.97)
    assert (b.lo_text, b.hi_text) == ("0", "") and b.thresholds[0].text == "0.97"
    b = charts.ci_bar(0.9, 0.85, 0.93, minimum=0.5)
    assert (b.lo_text, b.hi_text) == ("0", "1")
