"""The report in a real browser: headless Chromium loads it from disk, makes no network request, logs no
console error, and shows planted script payloads as text without running them. Skips with the reason where
Chromium, ChromeDriver or selenium is missing (.ci/run installs them where apt-get works)."""

import json
import shutil
import time

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from audit.cli import cli
from audit.data import sha256_file
from tests.conftest import MIN_POLICY, make_frame

PAYLOAD_SCRIPT = "<script>window.__pwned = 1; document.title = 'pwned'</script>"
PAYLOAD_IMG = '"><img src=x onerror="document.body.dataset.pwned = 1">'


def _driver(tmp_path):
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
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    return webdriver.Chrome(options=opts, service=Service(executable_path=chromedriver))


@pytest.fixture
def hostile_report(tiny_model, tmp_path, policy_file):
    """A run whose model name, text recipe and eval texts carry script payloads."""
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    m = yaml.safe_load((model / "audit-model.yaml").read_text())
    m["name"] = f"credit {PAYLOAD_SCRIPT}"
    m["text"] = {"template": "{{ text }} " + PAYLOAD_IMG.replace('"', "'")}
    (model / "audit-model.yaml").write_text(yaml.safe_dump(m))
    frame = make_frame(60, seed=4)
    frame.loc[:5, "text"] = frame.loc[:5, "text"] + " " + PAYLOAD_SCRIPT
    frame.loc[6:10, "text"] = frame.loc[6:10, "text"] + " " + PAYLOAD_IMG
    data = tmp_path / "eval.csv"
    frame.to_csv(data, index=False)
    out = tmp_path / "run"
    r = CliRunner().invoke(cli, ["run", str(model), "--policy", str(policy_file(MIN_POLICY)), "--data", str(data),
                                 "--out", str(out), "--no-progress"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return out / "report.html"


def test_report_in_headless_chromium(hostile_report, tmp_path):
    driver = _driver(tmp_path)
    try:
        driver.get(hostile_report.as_uri())
        body = driver.find_element("tag name", "body")
        assert driver.title != "pwned"
        assert driver.execute_script("return window.__pwned === undefined && !document.body.dataset.pwned")
        assert PAYLOAD_SCRIPT in body.text  # shown as text
        assert driver.find_elements("css selector", "script") == []
        shot = tmp_path / "report.png"
        driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
        console = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
        assert console == [], console
        requests = []
        for entry in driver.get_log("performance"):
            msg = json.loads(entry["message"])["message"]
            if msg["method"] == "Network.requestWillBeSent":
                requests.append(msg["params"]["request"]["url"])
        external = [u for u in requests if not u.startswith(("file:", "data:", "chrome:", "chrome-untrusted:", "about:"))]
        assert external == [], external
    finally:
        driver.quit()


def test_pdf_from_run_folder(hostile_report, tmp_path):
    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    run = hostile_report.parent
    r = CliRunner().invoke(cli, ["report", str(run), "--pdf"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    pdf = run.parent / f"{run.name}.pdf"  # beside the sealed folder, not in it
    raw = pdf.read_bytes()
    assert raw[:5] == b"%PDF-" and pdf.stat().st_size > 5_000
    assert b"/Subtype /Image" not in raw and b"/Subtype/Image" not in raw  # charts stay vector, no raster
    assert not (run / "report.pdf").exists()
    v = CliRunner().invoke(cli, ["verify", str(run)])
    assert v.exit_code == 0, v.output  # the folder still verifies


def test_pdf_without_chromium_is_one_line(hostile_report, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("AUDIT_CHROMIUM", raising=False)
    r = CliRunner().invoke(cli, ["report", str(hostile_report.parent), "--pdf"], catch_exceptions=False)
    assert r.exit_code == 2
    assert r.output.splitlines()[-1] == ("error: --pdf needs Chromium: install it (Debian/Ubuntu: apt-get install "
                                         "chromium) or set AUDIT_CHROMIUM to its path")


def _marker(field: str, tail: str = "\u2028") -> str:
    """A payload that, if it ever runs, records `field` in window.__pwned: a script block breaking out of its
    own block, an inline event handler, and a javascript: link."""
    run = f"(window.__pwned = (window.__pwned || []).concat(['{field}']))"
    return (f"</script><script>{run}</script><img src=x onerror=\"{run}\"><svg onload=\"{run}\">"
            f"<!--<a href=\"javascript:{run}\">x</a>{tail}")


HOSTILE_DRIFT_POLICY = """\
policy: hostile
version: "1"
checks:
  performance.roc_auc: {min: 0.5}
  fairness.selection_rate_ratio: {min: 0.5, severity: warn}
  drift.share_drifted_columns: {max: 0.3, severity: warn}
  drift.prediction_psi: {max: 0.25, severity: warn}
  drift.text_descriptors: {max: 0.25, severity: warn}
budget: {bootstrap: 50, seed: 0}
min_group_size: 5
"""


@pytest.fixture
def hostile_run_folder(tiny_model, tmp_path, policy_file):
    """A run with --current whose every data field carries payloads: texts, ids, label names, protected attribute
    names, columns and values, the model name; both data files and the manifest agree on the hostile names."""
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    text_col, sex_col, label_col = _marker("text column"), _marker("sex column"), _marker("label column")
    good, bad = "good" + _marker("label good", ""), "bad" + _marker("label bad", "")  # labels are stripped
    m = yaml.safe_load((model / "audit-model.yaml").read_text())
    m.update(name="credit" + _marker("model name"), labels=[bad, good], positive_label=good, label_column=label_col,
             text={"column": text_col}, id_column="id",
             protected_attributes={"sex" + _marker("attribute name"): {"column": sex_col},
                                   "age": {"column": "age", "bins": [25]}})

    def hostile(frame, seed):
        frame = frame.copy()
        frame["text"] = frame["text"] + " " + _marker(f"text {seed}")
        frame["id"] = frame["id"] + _marker(f"id {seed}")
        frame["sex"] = frame["sex"] + _marker(f"sex value {seed}")
        frame["label"] = frame["label"].map({"good": good, "bad": bad})
        return frame.rename(columns={"text": text_col, "sex": sex_col, "label": label_col})

    train_file = tmp_path / "train.csv"  # the reference of the drift checks: the manifest's training split
    hostile(pd.read_csv(m["data"]["source"]["path"], dtype=str), 0).to_csv(train_file, index=False)
    m["data"]["source"].update(path=str(train_file), sha256=sha256_file(train_file))
    (model / "audit-model.yaml").write_text(yaml.safe_dump(m))
    data, current = tmp_path / "eval.csv", tmp_path / "current.csv"
    hostile(make_frame(80, seed=4), 4).to_csv(data, index=False)
    hostile(make_frame(80, seed=5), 5).to_csv(current, index=False)
    out = tmp_path / "run"
    r = CliRunner().invoke(cli, ["run", str(model), "--policy", str(policy_file(HOSTILE_DRIFT_POLICY)), "--data",
                                 str(data), "--current", str(current), "--out", str(out), "--no-progress"],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return out


def test_every_html_file_of_a_run_folder_runs_no_payload(hostile_run_folder, tmp_path):
    pages = sorted(hostile_run_folder.glob("*.html"))
    assert {p.name for p in pages} >= {"report.html", "evidently-drift.html"}, pages
    driver = _driver(tmp_path)
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        for page in pages:
            driver.get(page.as_uri())
            WebDriverWait(driver, 20).until(lambda d: d.execute_script("return document.readyState") == "complete")
            time.sleep(1.0)  # let evidently's dashboard draw and any image error handler fire
            ran = driver.execute_script("return window.__pwned || []")
            assert ran == [], f"{page.name}: payloads ran: {ran}"
            if page.name.startswith("evidently"):
                # the dashboard drew from its data (the escaped JSON parsed), and shows the payload as text
                assert "label good" not in driver.title
                assert "onerror" in driver.find_element("tag name", "body").text, page.name
    finally:
        driver.quit()
