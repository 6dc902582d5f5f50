"""The report in a real browser: headless Chromium loads it from disk, makes no network request, logs no
console error, and shows planted script payloads as text without running them. Skips with the reason where
Chromium, ChromeDriver or selenium is missing (.ci/run installs them where apt-get works)."""

import json
import shutil

import pytest
import yaml
from click.testing import CliRunner

from audit.cli import cli
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
    assert r.exit_code in (0, 1, 3), r.output
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
