"""Drift family: PSI and KS against hand counts and scipy, evidently's numbers read back right, the false-alarm
rate over 20 seeds, a shifted sample flagged, SKIPPED without a current set, and end to end on the tiny model."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from scipy import stats as sps
from scipy.spatial import distance as spd
from sklearn.metrics import roc_auc_score

from audit import driftstats as ds
from audit.checks import all_checks
from audit.checks.drift import ATTACHMENT, NO_CURRENT, NO_REFERENCE, TEXT_ATTACHMENT
from audit.cli import cli
from audit.context import CheckContext, Scored
from audit.manifest import Manifest
from audit.scoring import Predictions

DRIFT = sorted(cid for cid, spec in all_checks().items() if spec.family == "drift")

# ---------------------------------------------------------------- PSI, KS, intervals against independent numbers


def test_psi_against_hand_counts():
    ref = np.arange(1, 11, dtype=float)  # quintile edges 2.8, 4.6, 6.4, 8.2: two values per bin
    cur = np.array([1, 1, 1, 1, 5, 9, 9, 9, 9, 9], dtype=float)
    edges = ds.psi_edges(ref, 5)
    np.testing.assert_allclose(edges, [2.8, 4.6, 6.4, 8.2])
    assert ds.bin_counts(ref, edges).tolist() == [2, 2, 2, 2, 2]
    assert ds.bin_counts(cur, edges).tolist() == [4, 0, 1, 0, 5]
    assert ds.bin_counts(np.array([2.8, 8.2]), edges).tolist() == [0, 1, 0, 0, 1]  # bins are [low, high)
    e = ds.PSI_EPS
    hand = (0.4 - 0.2) * math.log(0.4 / 0.2) + 2 * (e - 0.2) * math.log(e / 0.2) + (0.1 - 0.2) * math.log(0.1 / 0.2) \
        + (0.5 - 0.2) * math.log(0.5 / 0.2)
    assert ds.psi(ref, cur, bins=5) == pytest.approx(hand, rel=1e-12)
    assert ds.psi(ref, ref, bins=5) == 0.0
    assert ds.psi_null_mean(10, 700, 200) == pytest.approx(9 * (1 / 700 + 1 / 200))


def test_psi_null_mean_is_what_two_samples_of_one_population_give():
    rng = np.random.default_rng(0)
    values = [ds.psi(rng.beta(5, 2, 700), rng.beta(5, 2, 200)) for _ in range(300)]
    assert np.mean(values) == pytest.approx(ds.psi_null_mean(10, 700, 200), rel=0.15)


def test_psi_interval_covers_zero_without_drift_and_the_truth_with_it():
    rng = np.random.default_rng(0)
    covered_zero = 0
    for seed in range(20):
        ref, cur = rng.beta(5, 2, 700), rng.beta(5, 2, 200)
        edges = ds.psi_edges(ref)
        low, high = ds.psi_interval(ds.bin_counts(ref, edges), ds.bin_counts(cur, edges), 300, seed, 0.95)
        covered_zero += low == 0.0 <= high
    assert covered_zero >= 18
    ref, cur = rng.beta(5, 2, 700), np.clip(rng.beta(5, 2, 200) - 0.05, 0, 1)
    edges = ds.psi_edges(ref)
    big = np.random.default_rng(1)
    truth = ds.psi_from_counts(ds.bin_counts(big.beta(5, 2, 10**6), edges),
                               ds.bin_counts(np.clip(big.beta(5, 2, 10**6) - 0.05, 0, 1), edges))
    low, high = ds.psi_interval(ds.bin_counts(ref, edges), ds.bin_counts(cur, edges), 300, 0, 0.95)
    assert low <= truth <= high


def test_ks_against_hand_and_scipy():
    d, p = ds.ks_two_sample(np.array([1.0, 2.0, 3.0]), np.array([2.0, 3.0, 4.0, 5.0]))
    assert d == pytest.approx(0.5)  # at x = 3: 3/3 of the first, 2/4 of the second
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=300), rng.normal(0.2, 1, size=200)
    ref = sps.ks_2samp(a, b)
    assert ds.ks_two_sample(a, b) == (pytest.approx(ref.statistic), pytest.approx(ref.pvalue))


def test_newcombe_interval_matches_the_paper():
    # Newcombe (1998), Stat Med 17:873, example (a): 56/70 vs 48/80, method 10: 0.0524 to 0.3339
    d, low, high = ds.newcombe_diff(48, 80, 56, 70, 0.95)
    assert (round(d, 4), round(low, 4), round(high, 4)) == (0.2, 0.0524, 0.3339)


def test_delong_auc_and_standard_error_against_pairwise_counts():
    rng = np.random.default_rng(2)
    y = rng.random(60) < 0.4
    s = np.round(rng.normal(size=60) + y, 1)  # rounded: ties count one half
    auc, se = ds.auc_delong(y, s)
    assert auc == pytest.approx(roc_auc_score(y, s))
    pos, neg = s[y], s[~y]
    psi_ = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    v10, v01 = psi_.mean(axis=1), psi_.mean(axis=0)
    assert se == pytest.approx(math.sqrt(v10.var(ddof=1) / len(pos) + v01.var(ddof=1) / len(neg)))


def test_text_threshold_is_the_random_classifiers_95th_percentile():
    """What evidently's small-sample text test estimates from 1,000 random scorings, simulated here in one go."""
    rng = np.random.default_rng(0)
    n_ref, n_cur = 150, 60  # the held-out half of 300 reference and 120 current texts
    ranks = np.argsort(np.argsort(rng.random((4000, n_ref + n_cur)), axis=1), axis=1) + 1.0
    auc = (ranks[:, n_ref:].sum(axis=1) - n_cur * (n_cur + 1) / 2) / (n_ref * n_cur)
    assert ds.text_auc_threshold(300, 120) == pytest.approx(np.quantile(auc, 0.95), abs=0.005)
    assert ds.text_auc_threshold(50_000, 50_000) == ds.TEXT_AUC_FLOOR


def test_embedding_auc_interval_holds_its_level_on_one_distribution():
    """40 seeds of two samples of one distribution: the 95% interval excludes 0.5 about 5% of the time. (The
    pooled out-of-fold AUC of 5-fold cross-validation, with the same DeLong interval, excluded it 16% of the time.)"""
    misses, aucs = 0, []
    for seed in range(40):
        rng = np.random.default_rng(seed)
        res = ds.domain_classifier_auc(rng.normal(size=(300, 8)), rng.normal(size=(200, 8)), seed=seed)
        aucs.append(res["auc"])
        misses += abs(res["auc"] - 0.5) > 1.96 * res["se"]
    assert misses / 40 <= 0.125 and abs(np.mean(aucs) - 0.5) < 0.02
    rng = np.random.default_rng(0)
    shifted = ds.domain_classifier_auc(rng.normal(size=(300, 8)), rng.normal(0.5, 1, size=(200, 8)), seed=0)
    assert shifted["auc"] - 1.96 * shifted["se"] > 0.75


# ---------------------------------------------------------------- evidently's numbers read back right


def _evidently_columns(n_ref, n_cur, seed=0):
    rng = np.random.default_rng(seed)
    data = {}
    for side, n in (("ref", n_ref), ("cur", n_cur)):
        data[side] = pd.DataFrame({
            "num": rng.normal(0.1 if side == "cur" else 0.0, 1, n).round(3).astype(str),
            "cat": rng.choice(list("abcde"), n, p=[.4, .25, .15, .12, .08]),
            "bin": rng.choice(["yes", "no"], n, p=[.3, .7]),
        })
    kinds, ref, cur, tests = {}, {}, {}, {}
    for c in data["ref"].columns:
        kinds[c], ref[c], cur[c] = ds.column_kind(data["ref"][c], data["cur"][c])
        tests[c] = ds.choose_test(kinds[c], n_ref, n_cur, pd.concat([ref[c], cur[c]]).nunique())
    return kinds, pd.DataFrame(ref), pd.DataFrame(cur), tests


def test_small_samples_get_two_sample_p_values_equal_to_scipy():
    kinds, ref, cur, tests = _evidently_columns(600, 400)
    assert {c: t.method for c, t in tests.items()} == {"num": "ks", "cat": ds.CHI2_NAME, "bin": "z"}
    res, page = ds.run_evidently(ref, cur, kinds, tests, html=True)
    assert res["num"].score == pytest.approx(sps.ks_2samp(ref["num"], cur["num"]).pvalue)
    table = pd.crosstab(np.r_[np.zeros(600), np.ones(400)], np.r_[ref["cat"], cur["cat"]])
    assert res["cat"].score == pytest.approx(sps.chi2_contingency(table, correction=False)[1])
    table = pd.crosstab(np.r_[np.zeros(600), np.ones(400)], np.r_[ref["bin"], cur["bin"]])
    assert res["bin"].score == pytest.approx(sps.chi2_contingency(table, correction=False)[1])  # z² = χ² on 2 x 2
    for c, r in res.items():
        assert r.drifted == (r.score < 0.05 if c != "num" else r.score <= 0.05)  # the flag from evidently's tests
        assert (r.score, r.drifted) == pytest.approx(ds.column_test(ref[c], cur[c], kinds[c], tests[c]))
    assert "<html" in page[:200].lower() and 'src="http' not in page  # self-contained: no script from a CDN


def test_large_samples_get_distances_equal_to_scipy():
    kinds, ref, cur, tests = _evidently_columns(1500, 1200)
    assert {c: t.method for c, t in tests.items()} == {"num": "wasserstein", "cat": "jensenshannon",
                                                      "bin": "jensenshannon"}
    res, _ = ds.run_evidently(ref, cur, kinds, tests)
    w = sps.wasserstein_distance(ref["num"], cur["num"]) / np.std(ref["num"])
    assert res["num"].score == pytest.approx(w)
    r_sh, c_sh = ref["cat"].value_counts(normalize=True), cur["cat"].value_counts(normalize=True)
    keys = sorted(set(r_sh.index) | set(c_sh.index))
    assert res["cat"].score == pytest.approx(spd.jensenshannon(r_sh.reindex(keys, fill_value=0),
                                                               c_sh.reindex(keys, fill_value=0)))
    assert res["num"].drifted == (w >= 0.1)


def test_rare_categories_are_pooled_for_the_chi_square():
    ref = pd.Series(["a"] * 50 + ["b"] * 40 + ["c"] * 2 + ["d"] * 1)
    cur = pd.Series(["a"] * 30 + ["b"] * 28 + ["e"] * 2)
    labels, table = ds.pooled_table(ref, cur)
    assert labels == ["a", "b", ds.RARE] and table.tolist() == [[50, 40, 3], [30, 28, 2]]
    assert ds.chi2_two_sample(ref, cur) == pytest.approx(sps.chi2_contingency(table, correction=False)[1])


# ---------------------------------------------------------------- the false-alarm rate


P5 = [.4, .25, .15, .12, .08]


def _same_distribution(seed, n_ref, n_cur):
    rng = np.random.default_rng(seed)
    gens = {
        "categorical, 5 values": lambda n: rng.choice(list("abcde"), n, p=P5),
        "categorical, 2 values": lambda n: rng.choice(["yes", "no"], n, p=[.3, .7]),
        "numeric": lambda n: rng.normal(40, 12, n).round().astype(int).astype(str),
        "numeric, 4 values": lambda n: rng.integers(1, 5, n).astype(str),
    }
    return {name: (pd.Series(g(n_ref)), pd.Series(g(n_cur))) for name, g in gens.items()}


def _alarms(n_ref, n_cur):
    """Share flagged per column type over 20 seeds of two samples of one distribution: ours, evidently's default."""
    from evidently.legacy.calculations.stattests.registry import _get_default_stattest
    from evidently.legacy.core import ColumnType

    ours, default = {}, {}
    for seed in range(20):
        for name, (a, b) in _same_distribution(seed, n_ref, n_cur).items():
            kind, r, c = ds.column_kind(a, b)
            test = ds.choose_test(kind, n_ref, n_cur, pd.concat([r, c]).nunique())
            ours.setdefault(name, []).append(ds.column_test(r, c, kind, test)[1])
            ctype = ColumnType.Numerical if kind == "numeric" else ColumnType.Categorical
            default.setdefault(name, []).append(_get_default_stattest(r, c, ctype)(r, c, ctype, None).drifted)
    return {k: np.mean(v) for k, v in ours.items()}, {k: np.mean(v) for k, v in default.items()}


def test_false_alarm_rate_stays_near_the_level_where_evidentlys_default_does_not():
    ours, default = _alarms(1000, 1000)
    assert np.mean(list(ours.values())) <= 0.10 and max(ours.values()) <= 0.20  # 5% level: 1 in 20 expected
    assert default["categorical, 5 values"] >= 0.15  # evidently's goodness-of-fit chi-square false-alarms
    ours, default = _alarms(5000, 150)  # a large training set against a small current batch
    assert np.mean(list(ours.values())) <= 0.10 and max(ours.values()) <= 0.20
    assert default["numeric"] >= 0.15  # evidently's distance, chosen by the reference size alone
    ours, _ = _alarms(1500, 1500)  # both large: distances, which rarely fire by chance
    assert max(ours.values()) <= 0.05


# ---------------------------------------------------------------- the checks on synthetic data

MANIFEST = Manifest(
    name="m", labels=["bad", "good"], positive_label="good", label_column="label",
    text={"template": "Credit of {{ credit_amount }} DM for {{ purpose }}. Applicant: {{ sex }}, age {{ age }}."},
    protected_attributes={"sex": {"column": "sex"}, "age": {"column": "age", "bins": [25]}})


def _scored(name, n, seed, shift=0.0, labels=True):
    rng = np.random.default_rng(seed)
    purpose = rng.choice(["car", "education", "business", "furniture", "radio"], n,
                         p=[.3, .1, .1 + shift, .2, .3 - shift])
    amount = rng.lognormal(7.8 + shift, 0.7, n).round().astype(int)
    age, sex = rng.integers(19, 75, n), rng.choice(["male", "female"], n)
    frame = pd.DataFrame({"credit_amount": amount.astype(str), "purpose": purpose, "age": age.astype(str), "sex": sex,
                          "label": rng.choice(["good", "bad"], n, p=[.7, .3])})
    texts = [f"Credit of {a} DM for {p}. Applicant: {s}, age {g}." for a, p, s, g in zip(amount, purpose, sex, age)]
    s = np.clip(rng.beta(5, 2, n) - shift, 0, 1)
    emb = (rng.normal(size=(n, 16)) + shift).astype(np.float32)
    preds = Predictions(probs=np.c_[1 - s, s], positive_index=1, lengths=np.full(n, 20), truncated=0, seconds=1.0,
                        embeddings=emb)
    y = (frame["label"] == "good").to_numpy().astype(int) if labels else None
    if not labels:
        frame = frame.drop(columns="label")
    return Scored(name, frame, texts, y, preds, f"{name}.csv")


def _ctx(shift=0.0, current=True, train=True, labels=True, attachments=None):
    sets = {"train": _scored("train", 500, 1) if train else None,
            "current": _scored("current", 300, 2, shift, labels) if current else None}
    ev = _scored("eval", 200, 3)
    return CheckContext(y_true=ev.y, score=ev.predictions.score, manifest=MANIFEST, frame=ev.frame, texts=ev.texts,
                        replicates=200, positive_label="good", negative_label="bad",
                        loader=lambda name: sets.get(name), predictions=ev.predictions, attachments=attachments)


def _measure(ctx):
    specs = all_checks()
    return {cid: specs[cid].fn(ctx, **specs[cid].params) for cid in DRIFT}


@pytest.fixture(scope="module")
def shifted():
    ctx = _ctx(0.25, attachments={})
    return ctx, _measure(ctx)


def test_clearly_shifted_sample_is_flagged(shifted):
    ctx, m = shifted
    assert m["drift.share_drifted_columns"].value >= 0.5  # amount and purpose moved; age and sex did not
    drifted = m["drift.share_drifted_columns"].details["drifted"]
    assert {"credit_amount", "purpose"} <= set(drifted) and "sex" not in drifted
    assert m["drift.prediction_psi"].value > 0.25 and m["drift.prediction_psi"].ci_low > 0.1
    assert m["drift.prediction_ks"].value > 0.3 and m["drift.prediction_ks"].details["p_value"] < 1e-6
    assert m["drift.favourable_rate_change"].ci_high < 0
    assert m["drift.embedding_auc"].ci_low > 0.7  # every dimension moved by 0.25 sd
    cur = ctx.dataset("current")  # scikit-learn on the current set's labels and scores
    assert m["drift.current_roc_auc"].value == pytest.approx(roc_auc_score(cur.y, cur.predictions.score), abs=1e-12)
    for meas in m.values():
        json.dumps(meas.to_dict(), allow_nan=False)  # serializable as it stands


def test_same_distribution_is_not_flagged():
    m = _measure(_ctx(0.0))
    assert m["drift.share_drifted_columns"].value == 0.0
    assert m["drift.prediction_psi"].value < 0.1
    assert m["drift.embedding_auc"].value < 0.65
    lo, hi = m["drift.favourable_rate_change"].ci_low, m["drift.favourable_rate_change"].ci_high
    assert lo < 0 < hi


def test_every_drift_check_is_skipped_without_a_current_set():
    for cid, meas in _measure(_ctx(current=False)).items():
        assert meas.skipped == NO_CURRENT and meas.value is None, cid
    for cid, meas in _measure(_ctx(train=False)).items():
        assert meas.skipped == (NO_REFERENCE if cid != "drift.current_roc_auc" else None), cid


def test_model_outputs_can_be_compared_with_the_eval_set_instead():
    from audit.checks.drift import embedding_auc, prediction_psi

    ctx = _ctx(0.0)
    m = prediction_psi(ctx, reference="eval")
    assert m.details["reference"]["name"] == "eval set" and m.details["reference"]["rows"] == 200
    assert "did not fit" in m.details["reference_is"]
    assert embedding_auc(ctx, reference="eval").details["n_reference"] == 200
    with pytest.raises(ValueError, match="reference must be 'train' or 'eval'"):
        prediction_psi(ctx, reference="test")


def test_current_without_labels_skips_only_its_performance():
    m = _measure(_ctx(0.0, labels=False))
    assert "no label column 'label'" in m["drift.current_roc_auc"].skipped
    assert m["drift.share_drifted_columns"].skipped is None


def test_evidently_html_is_an_attachment_only_when_the_run_writes_attachments(shifted, tmp_path):
    from audit.render.outputs import write_run

    ctx, m = shifted
    assert m["drift.share_drifted_columns"].details["attachments"] == [ATTACHMENT]  # the text in the same report
    page = ctx.attachments[ATTACHMENT]
    assert "<html" in page[:200].lower() and "model text" in page
    plain = _measure(_ctx(0.25))["drift.share_drifted_columns"].details
    assert "attachments" not in plain and any("not kept" in n for n in plain["notes"])
    result = _result(m)
    out = write_run(tmp_path / "run", result, None, extra=ctx.attachments)
    assert (out / ATTACHMENT).read_text() == page
    assert f'href="{ATTACHMENT}"' in (out / "report.html").read_text()


def test_evidently_report_is_labelled_as_context_not_judged(shifted, tmp_path):
    """evidently's page covers more columns than the share counts and summarizes them at its own default share:
    the page and its link say it is context whose numbers differ from the judged finding."""
    from audit.render.outputs import write_run

    ctx, m = shifted
    share = m["drift.share_drifted_columns"].details
    descriptors = m["drift.text_descriptors"].details["descriptors"]
    n_columns = len(share["columns"]) + len(descriptors)  # every column evidently was given, the text included
    n_counted = sum(1 for r in share["columns"] if r["counted"] and r["drifted"] is not None)
    assert share["attachment_columns"] == {ATTACHMENT: n_columns} and n_counted < n_columns
    page = ctx.attachments[ATTACHMENT]
    body = page.index("<body>") + len("<body>")
    assert page[body:].startswith('<div id="audit-not-judged" role="note"')
    banner = page[body:page.index("</div>", body)]
    assert "Context, not judged by the audit." in banner
    assert f"over {n_columns} columns" in banner and f"counts only the {n_counted} template-input" in banner
    assert "default share of 0.5" in banner
    assert page.index("<title>Context, not judged") < page.index("<body>")
    out = write_run(tmp_path / "run", _result(m), None, extra=ctx.attachments)
    html = (out / "report.html").read_text()
    assert (f'<a href="{ATTACHMENT}">{ATTACHMENT} (evidently&#39;s own report, {n_columns} columns; not judged)</a>'
            in html)
    assert f"over the {n_counted} template-input and protected-attribute columns" in html


def test_many_texts_go_to_a_sampled_text_report(monkeypatch):
    monkeypatch.setattr(ds, "TEXT_ROWS", 200)  # 500 reference and 300 current texts
    ctx = _ctx(0.25, attachments={})
    m = all_checks()["drift.share_drifted_columns"].fn(ctx)
    assert m.details["attachments"] == [ATTACHMENT, TEXT_ATTACHMENT]
    assert m.details["attachment_columns"][TEXT_ATTACHMENT] == 1
    assert "text-content test alone" in ctx.attachments[TEXT_ATTACHMENT]
    assert any("sample of at most 200 texts" in n for n in m.details["notes"])
    text = all_checks()["drift.text_content_auc"].fn(ctx).details["text"]
    assert (text["n_reference"], text["n_current"]) == (200, 200) and text["drifted"] is not None


def _result(m):
    from audit.checks import get
    from audit.judge import judge
    from audit.policy import Policy

    policy = Policy(policy="p", version="1", checks={cid: {"max": 0.3, "severity": "warn"} for cid in
                                                     ("drift.share_drifted_columns", "drift.prediction_psi")})
    specs = {cid: get(cid) for cid in policy.checks}
    findings = judge(policy, specs, m)
    return {"verdict": {"status": "PASS", "exit_code": 0}, "policy": {"confidence": 0.95},
            "measurements": {k: v.to_dict() for k, v in m.items()}, "findings": [f.to_dict() for f in findings]}


def test_report_view_has_the_drift_table_and_histograms(shifted):
    from audit.render.drift_view import drift_view

    _, m = shifted
    view = drift_view(_result(m))
    columns = {r.column: r for r in view.columns}
    assert columns["credit_amount"].drifted == "drifted" and columns["credit_amount"].test.startswith("two-sample")
    assert columns["purpose"].test.startswith("chi-square") and columns["sex"].drifted == "no"
    titles = [c.title for c in view.charts]
    assert titles[0].startswith("the model's score") and "credit_amount" in titles and "purpose" in titles
    assert len(view.charts[0].rows) == 10  # the PSI's ten reference-quantile bins
    assert view.performance and view.embedding and view.prediction and view.descriptors


# ---------------------------------------------------------------- end to end on the tiny model

DRIFT_POLICY = """\
policy: drift
version: "1"
checks:
  performance.roc_auc: {min: 0.5}
  drift.share_drifted_columns: {max: 0.3, severity: warn}
  drift.prediction_psi: {max: 0.25, severity: warn}
  drift.embedding_auc: {max: 0.65, severity: warn}
  drift.text_descriptors: {max: 0.25, severity: warn}
budget: {bootstrap: 200, seed: 0}
"""


def test_run_with_a_shifted_current_file_warns(tiny_model, tmp_path, policy_file):
    from tests.conftest import make_frame

    current = make_frame(300, seed=8)
    current["text"] = current["text"] + " and has missed payments often late"
    current["age"] = (current["age"].astype(int) - 15).clip(lower=18).astype(str)
    path = tmp_path / "current.csv"
    current.to_csv(path, index=False)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["run", str(tiny_model), "--policy", str(policy_file(DRIFT_POLICY)), "--out",
                                      str(out), "--no-progress", "--current", str(path), "--all-checks"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output  # drift rules warn; they do not block
    r = json.loads((out / "result.json").read_text())
    status = {f["check_id"]: f["status"] for f in r["findings"]}
    assert status["drift.share_drifted_columns"] == "WARN"  # age (protected) moved; sex did not
    assert status["drift.text_descriptors"] == "WARN"  # longer texts
    share = r["measurements"]["drift.share_drifted_columns"]
    assert share["details"]["drifted"] == ["age"] and share["value"] == 0.5
    assert share["details"]["reference"]["rows"] == 280 and share["details"]["current"]["rows"] == 300
    from audit.engines import LocalEngine
    from audit.model import open_bundle

    bundle = open_bundle(tiny_model).load()  # the current rows scored here, the AUC from scikit-learn
    score = LocalEngine().score(bundle, current["text"].tolist(), batch_size=64, embeddings=False, progress=False).score
    want = roc_auc_score((current["label"] == "good").astype(int), score)
    assert r["measurements"]["drift.current_roc_auc"]["value"] == pytest.approx(want, abs=1e-9)
    html = (out / "report.html").read_text()
    assert 'id="drift-columns"' in html and 'id="chart-drift-score"' in html and "two-sample Kolmogorov" in html
    assert {"role": "data (current)"}.items() <= next(i for i in r["inputs"] if i["role"] == "data (current)").items()


def test_run_without_current_skips_drift(tiny_model, tmp_path, policy_file):
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["run", str(tiny_model), "--policy", str(policy_file(DRIFT_POLICY)), "--out",
                                      str(out), "--no-progress"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    r = json.loads((out / "result.json").read_text())
    drift = [f for f in r["findings"] if f["family"] == "drift"]
    assert len(drift) == 4 and all(f["status"] == "SKIPPED" and f["reason"] == NO_CURRENT for f in drift)
    assert "--current FILE" in (out / "report.html").read_text()


# ---------------------------------------------------------------- the demo's current set


def test_demo_cohort_is_seeded_and_shifted():
    from audit.data import read_table
    from audit.demo import AMOUNT_FACTOR, german_credit, shifted_cohort

    csv, _ = german_credit()
    held_out = list(range(0, 1000, 3))
    a, about = shifted_cohort(csv, held_out, seed=0)
    b, _ = shifted_cohort(csv, held_out, seed=0)
    pd.testing.assert_frame_equal(a, b)
    base = read_table(csv).iloc[held_out]
    assert len(a) == 200 and "held-out" in about and "50%" in about and "6 months" in about
    cars = lambda f: f["purpose"].isin(["car (new)", "business"]).mean()  # noqa: E731
    assert cars(a) > cars(base) + 0.1
    assert pd.to_numeric(a["credit_amount"]).median() > pd.to_numeric(base["credit_amount"]).median() * 1.2
    assert (a["duration_in_month"].astype(int) >= 4 + 6).all() and AMOUNT_FACTOR > 1


def test_evidently_page_embeds_hostile_values_as_escaped_json():
    """A `</script>` in a category or a column name cannot end evidently's data block (issue #22); the data
    parses back to evidently's own (checked without a browser: tests/test_browser.py opens the page)."""
    import json
    import re

    payload = "</script><script>window.__pwned=1</script><!--\u2028"
    kinds, ref, cur, tests = _evidently_columns(300, 200)
    ref["cat"], cur["cat"] = ref["cat"] + payload, cur["cat"] + payload
    ref, cur = ref.rename(columns={"cat": "cat" + payload}), cur.rename(columns={"cat": "cat" + payload})
    kinds["cat" + payload], tests["cat" + payload] = kinds.pop("cat"), tests.pop("cat")
    _, page = ds.run_evidently(ref, cur, kinds, tests, html=True)
    assert "window.__pwned" in page and "</script><script>window.__pwned" not in page and "<!--\u2028" not in page
    block = re.search(r"<script>\n    var (metric_\w+) = (.*);\n    var additional_graphs_\1 = (.*);\n</script>", page)
    assert block and payload in json.dumps(json.loads(block.group(2)), ensure_ascii=False)
    assert ds.script_json('{"a": "<&>\u2028"}') == '{"a": "\\u003c\\u0026\\u003e\\u2028"}'
    assert json.loads(ds.script_json(json.dumps({"a": "</script>&\\<"}))) == {"a": "</script>&\\<"}
