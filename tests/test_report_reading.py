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
    assert report.count("<details") == printed.count("<details open") > 10
    assert "details::details-content" in report  # and a browser's own print opens them too


def test_no_raw_dicts_in_the_model_card_or_provenance(report):
    for sid, end in (("model-card", 'id="data-model"'), ("data-model", 'id="provenance"'),
                     ("provenance", 'id="warnings"')):
        text = htmllib.unescape(visible(report[report.index(f'id="{sid}"'):report.index(end)]))
        assert not re.search(r"\{'|\{\"|': |\[\{", text), (sid, re.search(r".{40}(\{'|\{\"|': |\[\{).{40}", text))


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
