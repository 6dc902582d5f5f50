"""One quantity, one number: every finding (and every part of it) reads the same in report.html, summary.md,
junit.xml, the model card (README.md) and result.json, for an audit run and for a prediction-log run."""

from __future__ import annotations

import html
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from audit.cli import cli
from audit.render.views import finding_observed, observed_text

POLICY = """\
policy: one-number
version: "1"
min_group_size: 30
checks:
  performance.roc_auc: {min: 0.6, basis: ci_low, note: "Ranks better than chance."}
  performance.accuracy: {min: 0.99, severity: warn}
  performance.ece: {max: 0.2, severity: warn}
  fairness.selection_rate_ratio: {min: 0.8, attributes: [age, sex], intersections: ["sex×age"]}
  fairness.equalized_odds_difference: {max: 0.05, severity: warn, attributes: [age, sex]}
  fairness.demographic_parity_difference: {max: 0.5, attributes: [sex, race]}
budget: {bootstrap: 200, seed: 0}
"""


def _plain_html(text: str) -> str:
    text = re.sub(r"<style.*?</style>|<svg.*?</svg>", " ", text, flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", text))).replace(" :", ":")


def _plain_md(text: str) -> str:
    text = re.sub(r"\\(.)", r"\1", text).replace("\u200b", "")
    return html.unescape(text)


def case_text(suite: ET.Element, classname: str, name: str) -> str:
    """A testcase's block in the suite's <system-out> ("name (classname)" then its indented lines)."""
    head = f"{name} ({classname})\n"
    blocks = [b for b in suite.find("system-out").text.split("\n\n") if b.startswith(head)]
    assert len(blocks) == 1, (classname, name)
    return blocks[0]


def assert_one_number(out: Path) -> dict:
    """Each finding's and part's number, as the shared formatter prints it, in every output of the run folder;
    and result.json's finding equals its measurement's part (and the fairness details) to the bit."""
    r = json.loads((out / "result.json").read_text())
    report = _plain_html((out / "report.html").read_text())
    summary = _plain_md((out / "summary.md").read_text())
    card = _plain_md((out / "README.md").read_text())
    suite = ET.parse(out / "junit.xml").getroot().find("testsuite")
    cases = {(c.get("classname"), c.get("name")): c for c in suite.findall("testcase")}
    conf = r["policy"]["confidence"]
    checked = 0
    for f in r["findings"]:
        m = r["measurements"][f["check_id"]]
        shown = finding_observed(f, conf)
        for where, text in (("report.html", report), ("summary.md", summary), ("README.md", card)):
            assert shown in text, (where, f["check_id"], shown)
        own = observed_text(f["value"], f["ci_low"], f["ci_high"], conf, f["unit"])
        out_text = case_text(suite, f["family"], f["check_id"])
        if f["value"] is not None:
            assert own in out_text, (f["check_id"], own, out_text)
        if m.get("parts"):
            by_name = {p["name"]: p for p in m["parts"]}
            if f["part"]:
                part = by_name[f["part"]]
                assert (f["value"], f["ci_low"], f["ci_high"]) == (part["value"], part["ci_low"], part["ci_high"])
            else:  # no part could be measured: the finding shows no number rather than another part's
                assert f["value"] is None and all(p["value"] is None for p in m["parts"])
            for p in f["parts"]:
                if p["name"] not in by_name:
                    continue  # "the rest of the rule": a problem the measurement names, not a part
                mp = by_name[p["name"]]
                assert (p["value"], p["ci_low"], p["ci_high"]) == (mp["value"], mp["ci_low"], mp["ci_high"])
                text = observed_text(p["value"], p["ci_low"], p["ci_high"], conf, f["unit"]) \
                    if p["value"] is not None else "not measured"
                assert f"{p['name']} ({p['kind']}) {p['status']} {text}" in report, (f["check_id"], p["name"])
                assert f"↳ {p['status']} | {p['name']} | {text}" in summary, (f["check_id"], p["name"])
                assert text in cases[(f["check_id"], p["name"])].get("message", "") + \
                    case_text(suite, f["check_id"], p["name"])
                checked += 1
            for a in (m.get("details") or {}).get("attributes") or []:  # the fairness section reads these
                if a["attribute"] in by_name:
                    mp = by_name[a["attribute"]]
                    assert (a["value"], a["ci_low"], a["ci_high"]) == (mp["value"], mp["ci_low"], mp["ci_high"])
        else:
            assert (f["value"], f["ci_low"], f["ci_high"]) == (m["value"], m["ci_low"], m["ci_high"])
        checked += 1
    assert checked >= len(r["findings"])
    return r


def test_every_number_reads_the_same_in_every_output_of_a_run(tiny_model, tmp_path):
    (tmp_path / "p.yaml").write_text(POLICY)
    res = CliRunner().invoke(cli, ["run", str(tiny_model), "--policy", str(tmp_path / "p.yaml"), "--out",
                                   str(tmp_path / "out"), "--no-progress"], catch_exceptions=False)
    assert res.exit_code == 3, res.output
    r = assert_one_number(tmp_path / "out")
    parted = [f for f in r["findings"] if f["parts"]]
    assert {f["check_id"] for f in parted} >= {"fairness.selection_rate_ratio",
                                                "fairness.demographic_parity_difference"}
    dp = next(f for f in r["findings"] if f["check_id"] == "fairness.demographic_parity_difference")
    race = next(p for p in dp["parts"] if p["name"] == "race")  # named by the rule, not mapped by the manifest
    assert race["status"] == "INCONCLUSIVE" and "does not map" in race["reason"]


@pytest.mark.parametrize("chunk_rows", [1500])
def test_every_number_reads_the_same_in_a_prediction_log_run(tiny_model, tmp_path, chunk_rows):
    import pandas as pd

    rng = np.random.default_rng(1)
    n = 3000
    y = rng.random(n) < 0.6
    sex = rng.choice(["male", "female"], n)
    score = np.clip(0.35 * y + 0.65 * rng.random(n) - 0.1 * (sex == "female"), 0, 1)
    pd.DataFrame({"row_id": [f"r{i}" for i in range(n)], "score": score, "label": np.where(y, "good", "bad"),
                  "age": rng.integers(18, 80, n), "sex": sex, "text": "not read"}).to_csv(tmp_path / "log.csv",
                                                                                         index=False)
    policy = "\n".join(line for line in POLICY.splitlines() if "equalized_odds" not in line
                       and "demographic_parity" not in line) + "\n"
    (tmp_path / "p.yaml").write_text(policy.replace(', intersections: ["sex×age"]', ""))
    res = CliRunner().invoke(cli, ["run", str(tiny_model), "--policy", str(tmp_path / "p.yaml"), "--predictions",
                                   str(tmp_path / "log.csv"), "--out", str(tmp_path / "out"), "--no-progress"],
                             catch_exceptions=False)
    assert res.exit_code == 1, res.output
    assert_one_number(tmp_path / "out")
