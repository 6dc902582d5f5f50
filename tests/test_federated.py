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


def merge(silos, *files, out: str, extra=()):
    r = invoke("merge", *files, "--policy", silos["policy"], "--out", silos["folder"] / out, *extra)
    return r, (silos["folder"] / out / "result.json")


def test_merging_silos_equals_the_whole_and_the_gate_runs(silos):
    r, path = merge(silos, silos["a"], silos["b"], out="merged")
    assert r.exit_code in (0, 3), r.output
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
    for name in ("report.html", "junit.xml", "summary.md"):
        assert (path.parent / name).is_file()


def test_stats_path_equals_audit_run_on_the_same_rows(silos, tiny_model, tmp_path):
    """The in-memory audit of the whole file and the merged silos' statistics: the same counts and rates, and
    the same intervals (both draw each row's bootstrap weights from (seed, row id)), exactly; the same AUC up to
    the binning bound. The in-memory audit is the one-partition case."""
    policy = tmp_path / "p.yaml"  # the same rules without the SHAP and drift ones (slow, and not from statistics)
    policy.write_text("\n".join(line for line in POLICY.splitlines()
                                if not line.strip().startswith(("explainability", "drift"))))
    r = invoke("run", tiny_model, "--policy", policy, "--data", silos["data"], "--out", tmp_path / "run",
               "--no-progress", "--all-checks")  # the merge measures every check statistics give; so must the run
    assert r.exit_code in (0, 3), r.output
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


def test_reference_statistics_give_score_drift(silos):
    r, path = merge(silos, silos["b"], out="drift", extra=("--reference", silos["a"]))
    assert r.exit_code in (0, 3), r.output
    m = json.loads(path.read_text())["measurements"]
    assert m["drift.prediction_psi"]["value"] is not None and m["drift.prediction_psi"]["value"] >= 0
    ks = m["drift.prediction_ks"]
    assert ks["value"] <= ks["details"]["ks_upper_bound"]


def test_noised_stats_are_marked_and_release_no_replicates(silos, tiny_model, tmp_path):
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
    assert r.exit_code in (0, 1, 3), r.output
    result = json.loads((tmp_path / "out" / "result.json").read_text())
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
    assert r.exit_code in (0, 3), r.output
    run = json.loads((tmp_path / "run" / "result.json").read_text())["measurements"]
    r = invoke("merge", silos["a"], silos["b"], "--policy", policy, "--out", tmp_path / "merged")
    assert r.exit_code in (0, 3), r.output
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


def test_the_report_says_how_a_merged_noised_run_was_judged(silos, tiny_model, tmp_path):
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
    assert r.exit_code in (0, 1, 3), r.output
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
