"""Federated audit: `audit stats` in each silo, `audit merge` over the files, the same gate as `audit run`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from audit.cli import cli

POLICY = """\
policy: federated-test
version: "1"
inconclusive: inconclusive
min_group_size: 10
checks:
  performance.roc_auc: {min: 0.5, basis: point}
  performance.accuracy: {min: 0.5, severity: warn}
  performance.recall: {min: 0.1, severity: warn}
  fairness.selection_rate_ratio: {min: 0.0, attributes: [age, sex], basis: point}
  fairness.equalized_odds_difference: {max: 1.0, attributes: [age, sex], severity: warn}
  explainability.prohibited_terms: {max: 0.05, basis: ci_high, severity: warn}
  drift.prediction_psi: {max: 0.25, severity: warn}
budget: {bootstrap: 200, seed: 0}
"""


@pytest.fixture
def fixed_noise(monkeypatch):
    """The silo's noise seed, which `audit stats --epsilon` draws from the OS (secrets.randbits), fixed: a test of
    what a noised merge concludes then reads the same noise on every run, instead of failing on some draws (the
    noised age interval is undefined on some seeds, which makes its finding INCONCLUSIVE)."""
    import secrets

    monkeypatch.setattr(secrets, "randbits", lambda bits: 20261202)


def invoke(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def silos(tiny_model, credit_csv, tmp_path_factory):
    """The synthetic data cut into two silos, the stats of each and of the whole, and the policy."""
    folder = tmp_path_factory.mktemp("federated")
    df = pd.read_csv(credit_csv, dtype=str)
    a, b = folder / "silo_a.csv", folder / "silo_b.csv"
    df.iloc[::2].to_csv(a, index=False)
    df.iloc[1::2].to_csv(b, index=False)
    policy = folder / "policy.yaml"
    policy.write_text(POLICY)
    out = {}
    for name, data in (("a", a), ("b", b), ("whole", credit_csv)):
        out[name] = folder / f"{name}.stats.json"
        r = invoke("stats", tiny_model, "--data", data, "--out", out[name], "--replicates", 200, "--no-progress")
        assert r.exit_code == 0, r.output
    return {"folder": folder, "policy": policy, "data": credit_csv, **out}


def assert_outputs_match(folder: Path, result: dict) -> None:
    """The rendered files say what result.json says: junit.xml one test case per finding (in order), then one
    per part of a rule judged part by part, with the exit code; summary.md the exit code and each status count;
    report.html the verdict and every check."""
    import xml.etree.ElementTree as ET

    findings, code = result["findings"], result["verdict"]["exit_code"]
    suite = ET.parse(folder / "junit.xml").getroot().find("testsuite")
    want = [case for f in findings for case in [(f["family"], f["check_id"])]
            + [(f["check_id"], p["name"]) for p in f["parts"]]]
    assert [(c.get("classname"), c.get("name")) for c in suite.iter("testcase")] == want
    assert {p.get("name"): p.get("value") for p in suite.iter("property")}["exit_code"] == str(code)
    summary = (folder / "summary.md").read_text(encoding="utf-8")
    assert f"Exit code {code}." in summary
    for status, count in result["verdict"]["counts"].items():
        assert f"{count} {status}" in summary, status
    html = (folder / "report.html").read_text(encoding="utf-8")
    assert result["verdict"]["status"] in html
    for f in findings:
        assert f["check_id"] in html, f["check_id"]


def merge(silos, *files, out: str, extra=()):
    r = invoke("merge", *files, "--policy", silos["policy"], "--out", silos["folder"] / out, *extra)
    return r, (silos["folder"] / out / "result.json")


def test_merging_silos_equals_the_whole_and_the_gate_runs(silos):
    r, path = merge(silos, silos["a"], silos["b"], out="merged")
    assert r.exit_code == 0, r.output
    merged = json.loads(path.read_text())
    r2, path2 = merge(silos, silos["whole"], out="whole")
    whole = json.loads(path2.read_text())
    assert r2.exit_code == r.exit_code
    for cid, m in whole["measurements"].items():
        got = merged["measurements"][cid]
        for key in ("value", "ci_low", "ci_high"):
            if cid in ("performance.brier_score", "performance.ece"):
                # sums of scores: a row's score from a batch of other rows can differ in the 8th digit (padding)
                assert got[key] == pytest.approx(m[key], rel=1e-6), (cid, key)
            else:
                assert got[key] == m[key], (cid, key)
    assert merged["federated"]["noised"] is False and len(merged["federated"]["silos"]) == 2
    assert merged["data"]["eval"]["rows"] == 400
    statuses = {f["check_id"]: f["status"] for f in merged["findings"]}
    assert statuses["explainability.prohibited_terms"] == "INCONCLUSIVE"
    assert statuses["drift.prediction_psi"] == "SKIPPED"
    assert_outputs_match(path.parent, merged)


def test_stats_path_equals_audit_run_on_the_same_rows(silos, tiny_model, tmp_path):
    """The in-memory audit of the whole file and the merged silos' statistics: the same counts and rates, and
    the same intervals (both draw each row's bootstrap weights from (seed, row id)), exactly; the same AUC up to
    the binning bound. The in-memory audit is the one-partition case."""
    policy = tmp_path / "p.yaml"  # the same rules without the SHAP and drift ones (slow, and not from statistics)
    policy.write_text("\n".join(line for line in POLICY.splitlines()
                                if not line.strip().startswith(("explainability", "drift"))))
    r = invoke("run", tiny_model, "--policy", policy, "--data", silos["data"], "--out", tmp_path / "run",
               "--no-progress", "--all-checks")  # the merge measures every check statistics give; so must the run
    assert r.exit_code == 0, r.output
    run = json.loads((tmp_path / "run" / "result.json").read_text())["measurements"]
    _, path = merge(silos, silos["a"], silos["b"], out="merged2")
    fed = json.loads(path.read_text())["measurements"]
    for cid in ("performance.accuracy", "performance.recall", "performance.balanced_accuracy",
                "fairness.selection_rate_ratio", "fairness.equalized_odds_difference"):
        for key in ("value", "ci_low", "ci_high"):
            assert fed[cid][key] == pytest.approx(run[cid][key], abs=1e-12), (cid, key)
    assert fed["performance.brier_score"]["value"] == pytest.approx(run["performance.brier_score"]["value"], abs=1e-6)
    bound = fed["performance.roc_auc"]["details"]["binned"]["max_abs_error"]
    assert abs(fed["performance.roc_auc"]["value"] - run["performance.roc_auc"]["value"]) <= bound + 1e-9
    # a normal audit run has no statistics section, in result.json or the report
    assert "statistics" not in json.loads((tmp_path / "run" / "result.json").read_text())
    assert 'id="statistics"' not in (tmp_path / "run" / "report.html").read_text()
    assert "Judged from" not in (tmp_path / "run" / "summary.md").read_text()
    cm_run = run["performance.accuracy"]["details"]["confusion_matrix"]
    cm_fed = fed["performance.accuracy"]["details"]["confusion_matrix"]
    assert {k: cm_run[k] for k in ("tp", "fp", "tn", "fn")} == {k: cm_fed[k] for k in ("tp", "fp", "tn", "fn")}


def test_a_stats_file_holds_no_row_no_id_and_no_text(silos, credit_csv):
    raw = Path(silos["a"]).read_text()
    doc = json.loads(raw)
    assert set(doc) == {"format", "format_version", "tool", "created", "model", "settings", "privacy", "data",
                        "reveals", "stats"}
    df = pd.read_csv(credit_csv, dtype=str)
    for value in [*df["id"].head(20), "pays on time", "often late", "applicant"]:
        assert value not in raw
    assert doc["model"]["sha256"] and doc["settings"]["score_bins"] == 1000


def _silo_scores(tiny_model, path) -> np.ndarray:
    """The tiny model's scores of a silo's rows, computed here (the reference for the statistics' histograms)."""
    from audit.engines import LocalEngine
    from audit.model import open_bundle

    bundle = open_bundle(tiny_model).load()
    texts = pd.read_csv(path, dtype=str)["text"].tolist()
    return LocalEngine().score(bundle, texts, batch_size=64, embeddings=False, progress=False).score


def test_reference_statistics_give_score_drift(silos, tiny_model):
    r, path = merge(silos, silos["b"], out="drift", extra=("--reference", silos["a"]))
    m = json.loads(path.read_text())["measurements"]
    psi = m["drift.prediction_psi"]
    # a hand count: the raw scores of silo a (reference) and silo b, binned at the table's edges, and the PSI
    # formula sum (c - r) ln(c / r) over the shares floored at 1e-4
    ref = _silo_scores(tiny_model, silos["folder"] / "silo_a.csv")
    cur = _silo_scores(tiny_model, silos["folder"] / "silo_b.csv")
    edges = np.array([b["low"] for b in psi["details"]["bins"][1:]])
    rc = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=len(edges) + 1)
    cc = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=len(edges) + 1)
    assert [b["reference_count"] for b in psi["details"]["bins"]] == rc.tolist() and rc.sum() == 200
    assert [b["current_count"] for b in psi["details"]["bins"]] == cc.tolist() and cc.sum() == 200
    r_sh, c_sh = np.maximum(rc / 200, 1e-4), np.maximum(cc / 200, 1e-4)
    assert psi["value"] == pytest.approx(float(((c_sh - r_sh) * np.log(c_sh / r_sh)).sum()), abs=1e-12)
    assert psi["ci_low"] <= psi["value"] <= psi["ci_high"]
    ks = m["drift.prediction_ks"]
    assert ks["value"] <= ks["details"]["ks_upper_bound"]
    assert r.exit_code == 0, r.output


def test_noised_stats_are_marked_and_release_no_replicates(silos, tiny_model, tmp_path, fixed_noise):
    noised = tmp_path / "noised.stats.json"
    r = invoke("stats", tiny_model, "--data", silos["data"], "--out", noised, "--epsilon", 1, "--replicates", 200,
               "--no-progress")
    assert r.exit_code == 0, r.output
    doc = json.loads(noised.read_text())
    # 1 score histogram + 4 calibration sums + 2 attributes (age, sex) + 1 intersection (the one pair, age × sex)
    assert doc["privacy"]["epsilon"] == 1 and doc["privacy"]["l1_sensitivity"] == 5 + 2 + 1
    assert doc["privacy"]["scale"] == pytest.approx(8.0)
    assert doc["privacy"]["tables"] == {"attributes": ["age", "sex"], "intersections": ["age × sex"]}
    assert doc["stats"]["intersections"] == [["age", "sex"]] and "age × sex" in doc["reveals"]
    assert doc["data"]["rows"] is None and '"replicates":{' not in noised.read_text()
    assert doc["settings"]["score_bins"] == 20
    r = invoke("merge", noised, "--policy", silos["policy"], "--out", tmp_path / "out")
    assert r.exit_code == 0, r.output  # the blocking rules pass on the noised counts; what lacks evidence warns
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    status = {f["check_id"]: f["status"] for f in result["findings"]}
    assert status["performance.roc_auc"] == status["fairness.selection_rate_ratio"] == "PASS"
    assert status["explainability.prohibited_terms"] == "INCONCLUSIVE"  # it needs texts, which no stats file holds
    assert result["federated"]["noised"] is True
    f = {x["check_id"]: x for x in result["findings"]}
    assert "differential-privacy noise" in f["performance.accuracy"]["message"]
    assert "noise" in result["measurements"]["performance.accuracy"]["details"]
    assert any("differential-privacy" in w for w in result["warnings"])


def test_refuses_another_model_other_settings_and_non_stats_files(silos, tiny_model, tmp_path):
    other = tmp_path / "other.stats.json"
    doc = json.loads(Path(silos["a"]).read_text())
    doc["model"]["sha256"] = "f" * 64
    other.write_text(json.dumps(doc))
    r = invoke("merge", silos["b"], other, "--policy", silos["policy"], "--out", tmp_path / "x")
    assert r.exit_code == 2
    assert "refused to merge" in r.output and "model (weights hash)" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "x").exists()

    coarse = tmp_path / "coarse.stats.json"
    assert invoke("stats", tiny_model, "--data", silos["data"], "--out", coarse, "--score-bins", 500,
                  "--replicates", 10, "--no-progress").exit_code == 0
    r = invoke("merge", silos["a"], coarse, "--policy", silos["policy"], "--out", tmp_path / "y")
    assert r.exit_code == 2 and "other settings" in r.output and "score_bins 500 vs 1000" in r.output
    assert not (tmp_path / "y").exists()

    junk = tmp_path / "junk.json"
    junk.write_text("{}")
    r = invoke("merge", junk, "--policy", silos["policy"], "--out", tmp_path / "z")
    assert r.exit_code == 2 and "not an audit stats file" in r.output
    r = invoke("merge", tmp_path / "missing.json", "--policy", silos["policy"])
    assert r.exit_code == 2 and "stats file not found" in r.output


def test_stats_needs_every_protected_column(silos, tiny_model, tmp_path):
    df = pd.read_csv(silos["data"], dtype=str).drop(columns=["sex"])
    bad = tmp_path / "nosex.csv"
    df.to_csv(bad, index=False)
    r = invoke("stats", tiny_model, "--data", bad, "--out", tmp_path / "s.json", "--no-progress")
    assert r.exit_code == 2 and "'sex'" in r.output and str(bad) in r.output
    assert not (tmp_path / "s.json").exists()
    assert np.isfinite(1.0)


CROSSED_POLICY = """\
policy: federated-intersections
version: "1"
inconclusive: inconclusive
min_group_size: 10
checks:
  fairness.selection_rate_ratio: {min: 0.0, attributes: [sex], intersections: ["sex×age"], basis: point}
  fairness.equalized_odds_difference: {max: 1.0, attributes: [sex], intersections: [[age, sex]], severity: warn}
  fairness.demographic_parity_difference: {max: 1.0, intersections: ["sex×age×age_dup"], severity: warn}
budget: {bootstrap: 200, seed: 0}
"""


def test_an_intersection_rule_from_merged_silos_equals_audit_run(silos, tiny_model, tmp_path):
    """`audit stats` carries every pair of attributes (here age × sex); a rule over sex × age or age × sex is
    judged from the merged silos with the in-memory audit's value, interval and group counts."""
    policy = tmp_path / "p.yaml"
    policy.write_text(CROSSED_POLICY.replace('  fairness.demographic_parity_difference: {max: 1.0, intersections: '
                                             '["sex×age×age_dup"], severity: warn}\n', ""))
    r = invoke("run", tiny_model, "--policy", policy, "--data", silos["data"], "--out", tmp_path / "run",
               "--no-progress", "--all-checks")  # the merge measures every check statistics give; so must the run
    assert r.exit_code == 0, r.output
    run = json.loads((tmp_path / "run" / "result.json").read_text())["measurements"]
    r = invoke("merge", silos["a"], silos["b"], "--policy", policy, "--out", tmp_path / "merged")
    assert r.exit_code == 0, r.output
    result = json.loads((tmp_path / "merged" / "result.json").read_text())
    assert result["federated"]["intersections"] == ["age × sex"]
    fed = result["measurements"]
    df = pd.read_csv(silos["data"], dtype=str)
    age = np.where(df["age"].astype(float) < 25, "<25", ">=25")
    hand = pd.Series(1, index=pd.MultiIndex.from_arrays([df["sex"], age])).groupby(level=[0, 1]).sum()
    for cid, name in (("fairness.selection_rate_ratio", "sex × age"),
                      ("fairness.equalized_odds_difference", "age × sex")):
        assert fed[cid]["value"] is not None
        for key in ("value", "ci_low", "ci_high"):
            assert fed[cid][key] == pytest.approx(run[cid][key], abs=1e-12), (cid, key)
        got = next(e for e in fed[cid]["details"]["attributes"] if e["attribute"] == name)
        want = next(e for e in run[cid]["details"]["attributes"] if e["attribute"] == name)
        assert [(g["group"], g["count"]) for g in got["groups"]] == [(g["group"], g["count"]) for g in want["groups"]]
        for g in got["groups"]:
            parts = g["group"].split(" × ")
            sex, a = parts if name == "sex × age" else parts[::-1]
            assert g["count"] == hand.get((sex, a), 0), g["group"]


def test_an_intersection_the_stats_do_not_carry_is_inconclusive_naming_it(silos, tmp_path):
    bare = tmp_path / "bare.stats.json"  # a stats file made without intersections
    doc = json.loads(Path(silos["a"]).read_text())
    doc["stats"]["intersections"] = []
    doc["stats"].pop("intersection_groups")
    bare.write_text(json.dumps(doc))
    policy = tmp_path / "p.yaml"
    policy.write_text(CROSSED_POLICY)
    r = invoke("merge", bare, "--policy", policy, "--out", tmp_path / "m")
    assert r.exit_code == 3, r.output
    m = json.loads((tmp_path / "m" / "result.json").read_text())["measurements"]
    def reasons(m: dict) -> str:  # what is not carried is its own part; the carried attributes are measured
        assert m["value"] is not None and m["inconclusive"] is None
        return "; ".join(p["inconclusive"] for p in m["parts"] if p["inconclusive"])

    assert "not in the statistics: the intersection 'sex × age'" in reasons(m["fairness.selection_rate_ratio"])
    assert "the intersection 'age × sex'" in reasons(m["fairness.equalized_odds_difference"])
    # an attribute the manifest does not map: the check itself names it, as in memory
    r = invoke("merge", silos["a"], "--policy", policy, "--out", tmp_path / "n")
    m = json.loads((tmp_path / "n" / "result.json").read_text())["measurements"]
    assert "'age_dup'" in reasons(m["fairness.demographic_parity_difference"])
    assert m["fairness.selection_rate_ratio"]["value"] is not None


def test_merge_refuses_files_with_other_intersections(silos, tmp_path):
    bare = tmp_path / "bare.stats.json"
    doc = json.loads(Path(silos["a"]).read_text())
    doc["stats"]["intersections"] = []
    doc["stats"].pop("intersection_groups")
    bare.write_text(json.dumps(doc))
    r = invoke("merge", silos["b"], bare, "--policy", silos["policy"], "--out", tmp_path / "x")
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert "refused to merge: it carries other intersections of attributes" in r.output
    assert f"only in {bare}: none; only in {silos['b']}: age × sex" in r.output
    assert not (tmp_path / "x").exists()


def test_the_report_says_how_a_merged_noised_run_was_judged(silos, tiny_model, tmp_path, fixed_noise):
    """A noised silo (ε = 2) merged with a clean one: result.json's statistics section and the report's section
    carry each silo's rows, sha256 and noise, the grid, and the approximations, with the actual figures."""
    import hashlib

    noised, clean = tmp_path / "a.noised.stats.json", tmp_path / "b.clean.stats.json"
    df = pd.read_csv(silos["data"], dtype=str)
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    df.iloc[::2].to_csv(a, index=False)
    df.iloc[1::2].to_csv(b, index=False)
    assert invoke("stats", tiny_model, "--data", a, "--out", noised, "--epsilon", 2, "--replicates", 50,
                  "--no-progress").exit_code == 0
    assert invoke("stats", tiny_model, "--data", b, "--out", clean, "--score-bins", 20, "--threshold-bins", 20,
                  "--replicates", 50, "--no-progress").exit_code == 0
    r = invoke("merge", noised, clean, "--policy", silos["policy"], "--out", tmp_path / "m")
    assert r.exit_code == 0, r.output
    result = json.loads((tmp_path / "m" / "result.json").read_text())
    st = result["statistics"]
    assert st["kind"] == "merge" and st["rows_exact"] is False
    assert st["grid"] == {"score_bins": 20, "threshold_bins": 20, "ece_bins": 10, "replicates": 50, "seed": 0}
    sa, sb = st["sources"]
    # L1 = 1 + 4 + 2 attributes + 1 intersection = 8, so the scale is 8 / 2 = 4
    assert (sa["noised"], sa["epsilon"], sa["noise_scale"], sa["l1_sensitivity"], sa["rows"]) == (True, 2, 4, 8, None)
    assert sa["sha256"] == hashlib.sha256(noised.read_bytes()).hexdigest()
    # the sum of 40 noised cells (Laplace scale 4: sd 4·√2 each, 36 summed) around the silo's 200 rows
    assert abs(sa["rows_estimate"] - 200) < 160
    assert (sb["noised"], sb["rows"], sb["sha256"]) == (False, 200, hashlib.sha256(clean.read_bytes()).hexdigest())
    assert sb["data_sha256"] == hashlib.sha256(b.read_bytes()).hexdigest()
    assert st["noise"]["per_count_sd"] == pytest.approx(4 * 2 ** 0.5)
    assert "performance.accuracy" in st["noised_measurements"] and st["needs_rows"] == ["explainability.prohibited_terms"]
    bound = result["measurements"]["performance.roc_auc"]["details"]["binned"]["max_abs_error"]
    assert st["roc_auc_binning"] == {"score_bins": 20, "max_abs_error": bound} and st["ks_bounds"] is None
    html = (tmp_path / "m" / "report.html").read_text()
    body = html[html.index('id="statistics"'):html.index('id="summary"')]  # after the verdict, sign-off, findings
    assert html.index('id="verdict"') < html.index('id="statistics"')
    for figure in ("Each of 2 data silos", f"about {st['rows']:,} rows", "a.noised.stats.json",
                   "Laplace noise, ε = 2, scale 4 (one row changes the file&#39;s numbers by at most 8 in total)",
                   f'<td class="num">about {round(sa["rows_estimate"]):,} (noised', '<td class="num">200</td>',
                   sa["sha256"], sb["sha256"], "none: exact counts", "1 of 2 sources added differential-privacy",
                   "standard deviation of 5.66 rows", "20 bins of width 0.05", "50 bootstrap replicates",
                   "(age × sex)", f"by at most {bound:.4g}.", "explainability.prohibited_terms"):
        assert figure in body, figure
    assert "Judged from the merged statistics of 2 silos" in (tmp_path / "m" / "summary.md").read_text()
    assert 'name="statistics_noise" value="laplace, epsilon 2"' in (tmp_path / "m" / "junit.xml").read_text()


def test_stats_carries_the_intersections_asked_on_the_command_line(silos, tiny_model, tmp_path):
    """--intersections none: no intersection table, and the noise's L1 is 5 + 2 attributes; a bad item is
    exit 2 naming it; the default (every pair) carries age × sex."""
    bare, default = tmp_path / "none.stats.json", tmp_path / "pairs.stats.json"
    assert invoke("stats", tiny_model, "--data", silos["data"], "--out", bare, "--intersections", "none",
                  "--epsilon", 1, "--no-progress").exit_code == 0
    doc = json.loads(bare.read_text())
    assert doc["stats"]["intersections"] == [] and doc["privacy"]["l1_sensitivity"] == 7
    assert invoke("stats", tiny_model, "--data", silos["data"], "--out", default, "--replicates", 10,
                  "--no-progress").exit_code == 0
    assert json.loads(default.read_text())["stats"]["intersections"] == [["age", "sex"]]
    r = invoke("stats", tiny_model, "--data", silos["data"], "--out", tmp_path / "x.json", "--intersections",
               "age×age", "--no-progress")
    assert r.exit_code == 2 and "--intersections: an intersection needs two or more different attributes" in r.output
    assert not (tmp_path / "x.json").exists()


# ---------------------------------------------------------------- checks whose statistics the silo collects

SILO_POLICY = """\
policy: silo-forms
version: "1"
inconclusive: inconclusive
min_group_size: 10
checks:
  performance.accuracy: {min: 0.5, severity: warn}
  fairness.counterfactual_flip_rate: {max: 0.5, swaps: gender, severity: warn}
  explainability.prohibited_terms: {max: 0.9, terms: [he, she, male, female], rows: 10, max_evals: 40, severity: warn}
  explainability.prohibited_terms_in_top_k: {max: 5, terms: [he, she], severity: warn}
  explainability.stability: {min: -1, severity: warn}
  explainability.additivity_error: {max: 1, severity: warn}
  privacy.pii_rate: {max: 0.5, severity: warn}
  privacy.pii_in_training_text: {max: 0.5, severity: warn}
  privacy.membership_inference_auc: {max: 0.99, basis: point, severity: warn}
budget: {bootstrap: 100, seed: 0}
"""
SILO_CHECKS = ("fairness.counterfactual_flip_rate", "explainability.prohibited_terms",
               "explainability.prohibited_terms_in_top_k", "explainability.stability",
               "explainability.additivity_error", "privacy.pii_rate", "privacy.pii_in_training_text",
               "privacy.membership_inference_auc")


@pytest.fixture(scope="module")
def gendered(tiny_model, credit_csv, tmp_path_factory):
    """The synthetic rows with gendered words and some e-mail addresses (new ids and texts, so no row is a
    training row), cut into two silos; `audit stats --policy` of each and of the whole."""
    folder = tmp_path_factory.mktemp("silo-forms")
    df = pd.read_csv(credit_csv, dtype=str)
    df["id"] = "g-" + df["id"]
    extra = [" he" if i % 3 == 0 else " she" if i % 3 == 1 else " his" for i in range(len(df))]
    df["text"] = [t + e + (" mail jo@example.com" if i % 7 == 0 else "") for i, (t, e) in enumerate(zip(df["text"], extra))]
    whole, a, b = folder / "whole.csv", folder / "a.csv", folder / "b.csv"
    df.to_csv(whole, index=False)
    df.iloc[::2].to_csv(a, index=False)
    df.iloc[1::2].to_csv(b, index=False)
    policy = folder / "silo.yaml"
    policy.write_text(SILO_POLICY)
    out = {"folder": folder, "policy": policy, "whole_csv": whole, "a_csv": a, "b_csv": b}
    for name, data in (("whole", whole), ("a", a), ("b", b)):
        out[name] = folder / f"{name}.stats.json"
        r = invoke("stats", tiny_model, "--data", data, "--out", out[name], "--replicates", 100, "--policy", policy,
                   "--no-progress")
        assert r.exit_code == 0, r.output
    return out


def merged_of(g, *files, out: str):
    r = invoke("merge", *files, "--policy", g["policy"], "--out", g["folder"] / out)
    assert r.exit_code in (0, 1, 3), r.output
    return json.loads((g["folder"] / out / "result.json").read_text())


def test_audit_stats_collects_what_the_ruled_checks_declare(gendered):
    doc = json.loads(Path(gendered["whole"]).read_text())
    assert sorted(doc["data"]["checks"]) == sorted(SILO_CHECKS)
    kinds = sorted(v["kind"] for v in doc["stats"]["silo"].values())
    assert kinds == ["counterfactual", "membership", "membership-members", "pii", "pii", "shap"]
    raw = Path(gendered["whole"]).read_text()
    for value in ("jo@example.com", "g-app-0001", "pays on time"):  # counts only: no text, no id, no find
        assert value not in raw


def test_silo_forms_of_one_silo_equal_audit_run_on_its_rows(gendered, tiny_model):
    """One silo holding every row: the PII, counterfactual and SHAP checks from its statistics are the
    in-memory checks' numbers (value, interval, parts); the loss-histogram attack is binned, with its bound."""
    g = gendered
    r = invoke("run", tiny_model, "--policy", g["policy"], "--data", g["whole_csv"], "--out", g["folder"] / "run",
               "--no-progress")
    assert r.exit_code in (0, 1, 3), r.output
    run = json.loads((g["folder"] / "run" / "result.json").read_text())["measurements"]
    fed = merged_of(g, g["whole"], out="one")["measurements"]
    for cid in ("privacy.pii_rate", "privacy.pii_in_training_text", "fairness.counterfactual_flip_rate",
                "explainability.prohibited_terms", "explainability.prohibited_terms_in_top_k",
                "explainability.stability", "explainability.additivity_error"):
        assert fed[cid]["inconclusive"] == run[cid]["inconclusive"], cid
        assert fed[cid]["n"] == run[cid]["n"], cid
        for key in ("value", "ci_low", "ci_high"):
            assert fed[cid][key] == pytest.approx(run[cid][key], abs=1e-9), (cid, key)
    assert run["privacy.pii_rate"]["value"] == pytest.approx(58 / 400)  # rows 0, 7, 14, ...: a hand count
    assert fed["privacy.pii_rate"]["details"]["rows_with_pii"] == 58
    assert [p["value"] for p in fed["fairness.counterfactual_flip_rate"]["parts"]] == pytest.approx(
        [p["value"] for p in run["fairness.counterfactual_flip_rate"]["parts"]], abs=1e-12)
    cf_run = run["fairness.counterfactual_flip_rate"]["details"]["lists"][0]
    cf_fed = fed["fairness.counterfactual_flip_rate"]["details"]["lists"][0]
    for key in ("rows_changed", "flips", "flips_to_favourable", "flips_to_unfavourable", "terms_swapped"):
        assert cf_fed[key] == cf_run[key], key
    assert cf_fed["examples"] == [] and cf_run["rows_changed"] == 400
    for cid in ("explainability.prohibited_terms_in_top_k", "explainability.stability"):
        assert fed[cid]["details"].get("top_k_words") == run[cid]["details"].get("top_k_words"), cid
    mia = fed["privacy.membership_inference_auc"]
    assert mia["value"] is not None and mia["inconclusive"] is None
    bound = mia["details"]["binned"]["max_abs_error"]
    assert 0 < bound < 0.5 and mia["details"]["binned"]["subsampled"] is False
    # the interval is widened by the binning bound (the tiny model's losses crowd into few bins: a wide bound)
    assert mia["ci_low"] <= max(0.0, mia["value"] - bound) + 1e-9 and mia["ci_high"] >= min(1.0, mia["value"] + bound) - 1e-9


def test_two_silos_add_their_counts_and_count_the_training_rows_once(gendered):
    """Merged halves give the whole file's PII and counterfactual numbers exactly (row-id bootstrap weights);
    the training rows that both silos read count once."""
    g = gendered
    two = merged_of(g, g["a"], g["b"], out="two")["measurements"]
    whole = merged_of(g, g["whole"], out="whole")["measurements"]
    for cid in ("privacy.pii_rate", "privacy.pii_in_training_text", "fairness.counterfactual_flip_rate",
                "fairness.counterfactual_score_change"):
        # a re-scored text's score depends in its last digits on the batch it was padded in (each silo batches
        # its own rows): score changes of 1e-5 agree to 1e-8, counts exactly
        tol = 1e-8 if cid.endswith("score_change") else 1e-12
        for key in ("value", "ci_low", "ci_high", "n"):
            assert two[cid][key] == pytest.approx(whole[cid][key], abs=tol), (cid, key)
    assert two["privacy.pii_in_training_text"]["n"] == whole["privacy.pii_in_training_text"]["n"] > 0
    a, w = two["privacy.membership_inference_auc"]["details"], whole["privacy.membership_inference_auc"]["details"]
    assert a["members_available"] == w["members_available"]  # once, not twice
    assert a["non_members_available"] == w["non_members_available"]
    assert two["privacy.membership_inference_auc"]["value"] == pytest.approx(
        whole["privacy.membership_inference_auc"]["value"], abs=1e-12)
    # SHAP: each silo explained its own sample; the merge reads the union of the samples
    assert two["explainability.prohibited_terms"]["n"] == 20 and whole["explainability.prohibited_terms"]["n"] == 10


def test_a_noised_and_a_clean_silo_of_one_audit_merge(gendered, tiny_model, fixed_noise):
    """The noised silo's coarse default grid (20 bins) and the clean silo's fine one (1000 and 100) merge: the
    clean counts are coarsened exactly (the same numbers as the clean silo computed on 20 bins), added to the
    noised ones, and the intervals are drawn from the noised counts. SHAP statistics are not released under
    noise, so their checks are INCONCLUSIVE saying why; the noise's L1 counts every silo statistic."""
    g = gendered
    noised, clean20 = g["folder"] / "b.noised.stats.json", g["folder"] / "a.20.stats.json"
    r = invoke("stats", tiny_model, "--data", g["b_csv"], "--out", noised, "--replicates", 100, "--epsilon", 5,
               "--policy", g["policy"], "--no-progress")
    assert r.exit_code == 0, r.output
    doc = json.loads(noised.read_text())
    # 5 + 2 attributes + 1 intersection; PII eval and train 3 + 2 x 7 types each; 6 per swap list; loss histograms 5
    assert doc["privacy"]["l1_sensitivity"] == 8 + 2 * 17 + 6 + 5
    assert "shap" not in {v["kind"] for v in doc["stats"]["silo"].values()}
    assert invoke("stats", tiny_model, "--data", g["a_csv"], "--out", clean20, "--replicates", 100, "--score-bins",
                  20, "--threshold-bins", 20, "--policy", g["policy"], "--no-progress").exit_code == 0
    mixed = merged_of(g, g["a"], noised, out="mixed")
    same = merged_of(g, clean20, noised, out="mixed20")
    assert mixed["federated"]["settings"]["score_bins"] == 20 and mixed["statistics"]["grid"]["threshold_bins"] == 20
    assert any("was coarsened to the coarsest" in w for w in mixed["warnings"])
    for cid in ("performance.accuracy", "privacy.pii_rate", "fairness.counterfactual_flip_rate"):
        for key in ("value", "ci_low", "ci_high"):
            assert mixed["measurements"][cid][key] == pytest.approx(same["measurements"][cid][key], abs=1e-12)
        assert "noise" in mixed["measurements"][cid]["details"], cid
    m = mixed["measurements"]
    assert m["privacy.pii_rate"]["ci_low"] < m["privacy.pii_rate"]["ci_high"]
    assert "carried by some of the merged statistics only" in m["explainability.prohibited_terms"]["inconclusive"]
