"""`audit run --predictions LOG`: chunked, bounded, and the same numbers as one pass over all rows."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from audit.cli import cli
from tests.test_federated import assert_outputs_match

POLICY = """\
policy: streaming-test
version: "1"
inconclusive: inconclusive
min_group_size: 30
checks:
  performance.roc_auc: {min: 0.6, basis: ci_low}
  performance.accuracy: {min: 0.6, severity: warn}
  performance.ece: {max: 0.2, severity: warn}
  fairness.selection_rate_ratio: {min: 0.8, attributes: [age, sex]}
  fairness.counterfactual_flip_rate: {max: 0.02, severity: warn}
  privacy.membership_inference_auc: {max: 0.6, basis: ci_high, severity: warn}
  privacy.dp_epsilon: {max: 8, severity: warn}
budget: {bootstrap: 200, seed: 0}
"""
N = 50_000


def make_log(n: int = N, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.65
    sex = rng.choice(["male", "female"], n)
    score = np.clip(0.3 * y + 0.7 * rng.random(n) - 0.05 * (sex == "female"), 0, 1)
    return pd.DataFrame({"row_id": [f"r{i}" for i in range(n)], "score": score,
                         "label": np.where(y, "good", "bad"), "age": rng.integers(18, 80, n), "sex": sex,
                         "text": "not read"})


@pytest.fixture(scope="module")
def log(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stream")
    df = make_log()
    path = folder / "log.parquet"
    df.to_parquet(path, index=False)
    (folder / "policy.yaml").write_text(POLICY)
    return {"df": df, "path": path, "policy": folder / "policy.yaml", "folder": folder}


def test_chunked_equals_one_pass_and_scikit_learn(log, tiny_model, monkeypatch):
    from sklearn.metrics import accuracy_score, roc_auc_score

    from audit import mergeable
    from audit.streaming import run_predictions

    sizes: list[int] = []
    update = mergeable.AuditStats.update

    def spy(self, row_ids, score, y, groups):
        sizes.append(len(score))
        return update(self, row_ids, score, y, groups)

    monkeypatch.setattr(mergeable.AuditStats, "update", spy)
    chunked = run_predictions(tiny_model, log["policy"], log["path"], out_dir=log["folder"] / "chunked",
                              chunk_rows=8192, report_root=log["folder"])
    assert max(sizes) == 8192 and len(sizes) == -(-N // 8192)  # never more than one chunk in memory
    sizes.clear()
    whole = run_predictions(tiny_model, log["policy"], log["path"], out_dir=log["folder"] / "whole",
                            chunk_rows=10 * N, report_root=log["folder"])
    assert sizes == [N]
    a, b = chunked.result["measurements"], whole.result["measurements"]
    for cid in a:
        for key in ("value", "ci_low", "ci_high"):
            if cid == "performance.ece":
                assert a[cid][key] == pytest.approx(b[cid][key], rel=1e-12)
            else:
                assert a[cid][key] == b[cid][key], (cid, key)
    df = log["df"]
    y, s = (df["label"] == "good").to_numpy(), df["score"].to_numpy()
    assert a["performance.accuracy"]["value"] == pytest.approx(accuracy_score(y, s >= 0.5), abs=1e-15)
    bound = a["performance.roc_auc"]["details"]["binned"]["max_abs_error"]
    assert abs(a["performance.roc_auc"]["value"] - roc_auc_score(y, s)) <= bound
    assert chunked.exit_code == whole.exit_code
    f = {x["check_id"]: x["status"] for x in chunked.result["findings"]}
    assert f["fairness.counterfactual_flip_rate"] == "INCONCLUSIVE"
    assert f["privacy.membership_inference_auc"] == "INCONCLUSIVE"
    # a check that reads only the manifest runs as in memory: this model was trained without DP
    assert "without differential privacy" in a["privacy.dp_epsilon"]["inconclusive"]
    assert chunked.result["streaming"]["rows"] == N and chunked.result["data"]["eval"]["rows"] == N


def test_cli_writes_the_same_outputs_as_audit_run(log, tiny_model, tmp_path):
    csv = tmp_path / "log.csv"
    log["df"].head(5000).to_csv(csv, index=False)
    r = CliRunner().invoke(cli, ["run", str(tiny_model), "--policy", str(log["policy"]), "--predictions", str(csv),
                                 "--out", str(tmp_path / "out")], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["verdict"]["exit_code"] == r.exit_code
    assert_outputs_match(tmp_path / "out", result)
    import hashlib

    evidence = json.loads((tmp_path / "out" / "evidence.json").read_text())
    for name in ("result.json", "report.html", "junit.xml", "summary.md"):  # each file sealed with its sha256
        assert evidence["files"][name] == hashlib.sha256((tmp_path / "out" / name).read_bytes()).hexdigest(), name
    sample = json.loads(open("tests/fixtures/result_sample.json").read())
    assert set(sample) - set(result) <= {"baseline"}


@pytest.mark.parametrize("change, words", [
    (lambda d: d.drop(columns=["score"]), ["no column 'score'", "log.parquet"]),
    (lambda d: d.drop(columns=["label"]), ["no column 'label'", "true label"]),
    (lambda d: d.assign(score=d["score"] * 2), ["[0, 1]", "row "]),
    (lambda d: d.assign(label=d["label"].where(d.index != 7, "maybe")), ["row 7", "'maybe'"]),
])
def test_bad_logs_exit_2_naming_the_column_and_file(log, tiny_model, tmp_path, change, words):
    bad = tmp_path / "log.parquet"
    change(log["df"].head(100)).to_parquet(bad, index=False)
    r = CliRunner().invoke(cli, ["run", str(tiny_model), "--policy", str(log["policy"]), "--predictions", str(bad),
                                 "--out", str(tmp_path / "out")], catch_exceptions=False)
    assert r.exit_code == 2, r.output
    assert r.output.startswith("error: ") and "Traceback" not in r.output
    for w in words:
        assert w in r.output
    assert not (tmp_path / "out").exists()


def test_reference_stats_give_score_drift_and_another_models_are_refused(log, tiny_model, credit_csv, tmp_path):
    ref = tmp_path / "ref.stats.json"
    r = CliRunner().invoke(cli, ["stats", str(tiny_model), "--data", str(credit_csv), "--out", str(ref),
                                 "--replicates", "0", "--no-progress"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    policy = tmp_path / "p.yaml"
    policy.write_text(POLICY.replace("budget:", "  drift.prediction_psi: {max: 0.25, severity: warn}\n"
                                               "  drift.prediction_ks: {max: 0.5, severity: warn}\nbudget:"))
    small = tmp_path / "small.parquet"
    log["df"].head(3000).to_parquet(small, index=False)
    args = ["run", str(tiny_model), "--policy", str(policy), "--predictions", str(small)]
    r = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "a")], catch_exceptions=False)
    m = json.loads((tmp_path / "a" / "result.json").read_text())["measurements"]
    assert m["drift.prediction_psi"]["skipped"]
    r = CliRunner().invoke(cli, [*args, "--reference-stats", str(ref), "--out", str(tmp_path / "b")],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "b" / "result.json").read_text())["measurements"]
    # a hand count: the reference rows scored here and the log's scores, binned at the PSI table's edges; the
    # PSI formula over the shares floored at 1e-4; scipy's KS statistic within the histogram's bounds
    from scipy.stats import ks_2samp

    from audit.engines import LocalEngine
    from audit.model import open_bundle

    bundle = open_bundle(tiny_model).load()
    ref_score = LocalEngine().score(bundle, pd.read_csv(credit_csv, dtype=str)["text"].tolist(), batch_size=64,
                                    embeddings=False, progress=False).score
    cur_score = log["df"].head(3000)["score"].to_numpy(dtype=float)
    psi = m["drift.prediction_psi"]
    edges = np.array([b["low"] for b in psi["details"]["bins"][1:]])
    rc = np.bincount(np.searchsorted(edges, ref_score, side="right"), minlength=len(edges) + 1)
    cc = np.bincount(np.searchsorted(edges, cur_score, side="right"), minlength=len(edges) + 1)
    assert [b["reference_count"] for b in psi["details"]["bins"]] == rc.tolist() and rc.sum() == 400
    assert [b["current_count"] for b in psi["details"]["bins"]] == cc.tolist() and cc.sum() == 3000
    r_sh, c_sh = np.maximum(rc / rc.sum(), 1e-4), np.maximum(cc / cc.sum(), 1e-4)
    assert psi["value"] == pytest.approx(float(((c_sh - r_sh) * np.log(c_sh / r_sh)).sum()), abs=1e-12)
    ks = m["drift.prediction_ks"]
    d = ks_2samp(ref_score, cur_score).statistic
    assert ks["value"] - 1e-12 <= d <= ks["details"]["ks_upper_bound"] + 1e-12
    doc = json.loads(ref.read_text())
    doc["model"]["sha256"] = "0" * 64
    ref.write_text(json.dumps(doc))
    r = CliRunner().invoke(cli, [*args, "--reference-stats", str(ref), "--out", str(tmp_path / "c")],
                           catch_exceptions=False)
    assert r.exit_code == 2 and "another model" in r.output and not (tmp_path / "c").exists()


def test_a_log_carries_exactly_the_intersections_the_policy_asks(log, tiny_model, tmp_path):
    from audit.streaming import run_predictions

    policy = tmp_path / "p.yaml"
    policy.write_text(POLICY.replace("fairness.selection_rate_ratio: {min: 0.8, attributes: [age, sex]}",
                                     'fairness.selection_rate_ratio: {min: 0.8, attributes: [sex], '
                                     'intersections: ["age×sex"]}\n'
                                     '  fairness.demographic_parity_difference: {max: 0.5, intersections: '
                                     '[[sex, age]], severity: warn}'))
    df = log["df"].head(6000)
    small = tmp_path / "small.parquet"
    df.to_parquet(small, index=False)
    out = run_predictions(tiny_model, policy, small, out_dir=tmp_path / "out", chunk_rows=2500,
                          report_root=tmp_path)
    r = out.result
    assert r["streaming"]["intersections"] == ["age × sex"]  # sex × age is the same table, renamed
    age = np.where(df["age"] < 25, "<25", ">=25")
    sel = (df["score"] >= 0.5).to_numpy()
    hand = pd.DataFrame({"age": age, "sex": df["sex"], "sel": sel}).groupby(["age", "sex"]).agg(
        rows=("sel", "size"), sel=("sel", "sum"))
    for cid, name in (("fairness.selection_rate_ratio", "age × sex"),
                      ("fairness.demographic_parity_difference", "sex × age")):
        m = r["measurements"][cid]
        assert m["value"] is not None, m
        entry = next(e for e in m["details"]["attributes"] if e["attribute"] == name)
        assert len(entry["groups"]) == 4
        for g in entry["groups"]:
            a, s = g["group"].split(" × ")
            if name == "sex × age":
                a, s = s, a
            assert g["count"] == hand.loc[(a, s), "rows"] and g["predicted_positive"] == hand.loc[(a, s), "sel"]


def test_the_report_says_how_a_streaming_run_was_judged(log, tiny_model, tmp_path):
    import hashlib

    from audit.streaming import run_predictions

    df = log["df"].head(5000)
    path = tmp_path / "decisions.parquet"
    df.to_parquet(path, index=False)
    out = run_predictions(tiny_model, log["policy"], path, out_dir=tmp_path / "out", chunk_rows=2000,
                          report_root=tmp_path)
    st = out.result["statistics"]
    positives = int((df["label"] == "good").sum())
    assert (st["kind"], st["rows"], st["positives"], st["negatives"]) == ("predictions-log", 5000, positives,
                                                                            5000 - positives)
    (src,) = st["sources"]
    assert src["name"] == "decisions.parquet" and src["rows"] == 5000 and src["noised"] is False
    assert src["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert st["chunk_rows"] == 2000 and st["noise"] is None and st["noised_measurements"] == []
    assert st["grid"]["replicates"] == 200 and st["grid"]["score_bins"] == 1000
    assert st["intersections"] == [] and st["attributes"] == ["age", "sex"]
    assert {"fairness.counterfactual_flip_rate", "privacy.membership_inference_auc"} <= set(st["needs_rows"])
    bound = out.result["measurements"]["performance.roc_auc"]["details"]["binned"]["max_abs_error"]
    assert 0 < bound < 0.002 and st["roc_auc_binning"]["max_abs_error"] == bound
    html = (tmp_path / "out" / "report.html").read_text()
    body = html[html.index('id="statistics"'):html.index('id="summary"')]  # after the verdict, sign-off, findings
    for figure in ("a prediction log", "2,000 rows at a time", f"5,000 rows ({positives:,} with the favourable "
                   "label &#39;good&#39;", "decisions.parquet", src["sha256"], '<td class="num">5,000</td>',
                   "none: exact counts", "No noise was added", "1,000 bins of width 0.001",
                   "200 bootstrap replicates", f"by at most {bound:.4g}.", "multiples of 0.01",
                   "fairness.counterfactual_flip_rate", "<td>score</td>", "<td>row_id</td>"):
        assert figure in body, figure
    assert "Judged from a prediction log of 5,000 rows" in (tmp_path / "out" / "summary.md").read_text()
    assert 'name="statistics_rows" value="5000"' in (tmp_path / "out" / "junit.xml").read_text()
