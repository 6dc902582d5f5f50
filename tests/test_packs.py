"""Policy packs (fraud, hiring, eu-ai-act): each validates, cites only what its checks test, states what it does
not cover, and runs on the tiny fixture model; the checks the packs added (recall at a fixed FPR, PR-AUC of one
label, cost-weighted error) agree with scikit-learn or a hand count, replicates included; `audit policy list`."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from sklearn.metrics import average_precision_score, roc_curve

from audit.checks import all_checks
from audit.cites import clause_key
from audit.cli import cli
from audit.context import CheckContext
from audit.policy import bundled_policies, load_policy
from tests.conftest import make_frame

PACKS = ("fraud", "hiring", "eu-ai-act")


def ctx_of(y, s, threshold=0.5, replicates=40) -> CheckContext:
    return CheckContext(y_true=np.asarray(y), score=np.asarray(s, float), threshold=threshold, replicates=replicates,
                        seed=3, positive_label="legit", negative_label="fraud")


@pytest.fixture(scope="module")
def toy():
    rng = np.random.default_rng(7)
    n = 300
    y = (rng.random(n) < 0.7).astype(int)  # 1 = legit (positive), 0 = fraud
    s = np.clip(0.35 * y + rng.normal(0.35, 0.2, n), 0, 1)
    s = np.round(s, 2)  # ties, as a binned score would have
    return y, s


def sk_tpr_at_fpr(y, s, fpr, w=None):
    f, t, _ = roc_curve(y, s, sample_weight=w, drop_intermediate=False)
    return t[f <= fpr + 1e-12].max()


@pytest.mark.parametrize("label", ["positive", "negative"])
@pytest.mark.parametrize("fpr", [0.01, 0.05, 0.2])
def test_recall_at_fpr_is_scikit_learns_roc_curve(toy, label, fpr):
    """The point value and two bootstrap replicates against roc_curve (drop_intermediate=False: sklearn's dropped
    points can hold the best TPR under the cap), with the replicate's Poisson weights as sample_weight."""
    from audit.checks.performance import recall_at_fpr, tpr_at_fpr

    y, s = toy
    yy, ss = (y, s) if label == "positive" else (1 - y, 1 - s)
    ctx = ctx_of(y, s)
    m = recall_at_fpr(ctx, fpr=fpr, label=label)
    assert m.value == pytest.approx(sk_tpr_at_fpr(yy, ss, fpr), abs=1e-12)
    values, _ = tpr_at_fpr(ctx.weights, yy, ss, fpr)
    for k in (1, 17):
        assert values[k] == pytest.approx(sk_tpr_at_fpr(yy, ss, fpr, ctx.weights[k]), abs=1e-12)
    assert m.ci_low <= m.value <= m.ci_high
    assert (m.ci_low, m.ci_high) == pytest.approx(tuple(np.quantile(values[1:], [0.025, 0.975])))
    d = m.details
    flagged = ss >= d["threshold"]
    assert d["rows_flagged"] == flagged.sum() and d["false_positive_rate"] <= fpr
    assert flagged[yy == 1].mean() == pytest.approx(m.value)  # a hand count at the chosen threshold
    assert d["label"] == ("legit" if label == "positive" else "fraud")


def test_recall_at_fpr_without_one_label_is_inconclusive():
    from audit.checks.performance import recall_at_fpr

    m = recall_at_fpr(ctx_of([1, 1, 1, 1], [0.9, 0.8, 0.7, 0.6]), fpr=0.1, label="negative")
    assert m.value is None and "rows of both 'fraud' and 'legit' are needed" in m.inconclusive


@pytest.mark.parametrize("label", ["positive", "negative"])
def test_class_pr_auc_is_average_precision_score(toy, label):
    from audit.checks.performance import class_pr_auc, pr_auc

    y, s = toy
    yy, ss = (y, s) if label == "positive" else (1 - y, 1 - s)
    ctx = ctx_of(y, s)
    m = class_pr_auc(ctx, label=label)
    assert m.value == pytest.approx(average_precision_score(yy, ss), abs=1e-12)
    W = ctx.weights
    from audit import stats

    reps = stats.average_precision(W, yy, ss)
    assert reps[5] == pytest.approx(average_precision_score(yy, ss, sample_weight=W[5]), abs=1e-12)
    assert m.details["base_rate"] == pytest.approx(yy.mean())
    if label == "positive":
        assert m.value == pytest.approx(pr_auc(ctx).value)


@pytest.mark.parametrize("label, relative", [("negative", False), ("negative", True), ("positive", True)])
def test_cost_weighted_error_against_a_hand_count(label, relative):
    # 10 rows, threshold 0.5; legit = 1. Decisions: score >= 0.5 is legit (not flagged as fraud)
    y = np.array([1, 1, 1, 1, 1, 1, 0, 0, 0, 0])
    s = np.array([.9, .8, .7, .6, .4, .3, .6, .2, .1, .55])
    from audit.checks.performance import cost_weighted_error

    m = cost_weighted_error(ctx_of(y, s, replicates=30), miss_cost=10, false_alarm_cost=1, relative=relative,
                            label=label)
    if label == "negative":
        # fraud rows (y=0) not flagged (score >= 0.5): rows 7 and 10 -> 2 misses; legit rows flagged (score < 0.5):
        # rows 5, 6 -> 2 false alarms. Cost 10*2 + 1*2 = 22 over 10 rows; trivial: flag none 10*4 = 40, flag all 6
        cost, trivial = 22 / 10, min(40, 6) / 10
        assert (m.details["misses"], m.details["false_alarms"]) == (2, 2)
        assert m.details["trivial_rule"] == "flag every row"
    else:
        # detecting legit: misses = legit with score < 0.5 (2), false alarms = fraud with score >= 0.5 (2)
        cost, trivial = (10 * 2 + 1 * 2) / 10, min(10 * 6, 1 * 4) / 10
    assert m.value == pytest.approx(cost / trivial if relative else cost)
    assert m.details["cost_per_row"] == pytest.approx(cost) and m.details["trivial_cost_per_row"] == pytest.approx(trivial)
    assert m.ci_low is not None and m.ci_low <= m.ci_high


def test_new_checks_refuse_bad_parameters(policy_file):
    from audit.errors import PolicyError

    for rule, why in (("{min: 0.5, fpr: 1.5}", "fpr must be a number between 0 and 1"),
                      ("{min: 0.5, label: fraud}", "label must be 'positive' or 'negative'")):
        p = policy_file(f"policy: t\nversion: '1'\nchecks:\n  performance.recall_at_fpr: {rule}\n")
        with pytest.raises(PolicyError, match=why):
            load_policy(p)
    p = policy_file("policy: t\nversion: '1'\nchecks:\n  performance.cost_weighted_error: {max: 1, miss_cost: -1}\n")
    with pytest.raises(PolicyError, match="miss_cost must be a finite number >= 0"):
        load_policy(p)
    assert all(all_checks()[c].summary for c in ("performance.recall_at_fpr", "performance.class_pr_auc",
                                                 "performance.cost_weighted_error"))


# Which clause each check of these packs may serve (a prefix of the clause key), as tests/test_policy.py does for
# fin.yaml: a clause is cited only for what the check tests.
MAY_SERVE = {
    "performance": ["sr 11-7, validation: outcomes analysis", "eu ai act art. 15(1)", "eu ai act art. 15(3)"],
    "drift": ["sr 11-7, validation: ongoing monitoring"],
    "fairness": ["6 rcny §5-301(b)", "eu ai act art. 10(2)(f)", "eu ai act art. 10(2)(g)"],
    "fairness.selection_rate_ratio": ["6 rcny §5-301(b)", "29 cfr 1607.4(d)", "eu ai act art. 10(2)(f)",
                                      "eu ai act art. 10(2)(g)"],
    "explainability": ["eu ai act art. 13(1)"],
    "privacy.membership_inference_auc": ["eu ai act art. 15(5)"],
}
ALWAYS_PARTIAL = {"6 rcny §5-301(b)", "29 cfr 1607.4(d)", "eu ai act art. 10(2)(f)", "eu ai act art. 10(2)(g)",
                  "eu ai act art. 13(1)", "eu ai act art. 15(1)", "eu ai act art. 15(3)", "eu ai act art. 15(5)"}


@pytest.mark.parametrize("pack", PACKS)
def test_pack_validates_cites_only_what_it_tests_and_says_what_it_does_not(pack):
    p = load_policy(pack)
    assert p.source == str(bundled_policies()[pack])
    wrong = []
    for cid, rule in p.checks.items():
        allowed = MAY_SERVE.get(cid, MAY_SERVE.get(cid.split(".")[0], []))
        assert rule.refs and rule.note, f"{pack}: {cid} names no clause or no note"
        for c in rule.cites:
            if not any(c.key.startswith(a) for a in allowed):
                wrong.append(f"{cid} cites {c.clause}")
            elif c.key in ALWAYS_PARTIAL and not c.partial:
                wrong.append(f"{cid} cites {c.clause} in full")
    assert wrong == []
    served = {c.key for rule in p.checks.values() for c in rule.cites}
    reasons = {n.key: n.reason for n in p.not_covered_items}
    assert [c.clause for c in p.scope_cites if c.key not in served and c.key not in reasons] == []
    assert p.scope_cites and p.not_covered_items


def test_packs_name_what_the_issue_asks_for():
    fraud, hiring, eu = (load_policy(p) for p in PACKS)
    assert {"performance.recall_at_fpr", "performance.class_pr_auc", "performance.cost_weighted_error",
            "drift.favourable_rate_change"} <= set(fraud.checks)
    assert all(fraud.checks[c].params["label"] == "negative" for c in
               ("performance.recall_at_fpr", "performance.class_pr_auc", "performance.cost_weighted_error"))
    ratio = hiring.checks["fairness.selection_rate_ratio"]
    assert ratio.params["attributes"] == ["sex", "race_ethnicity"] and ratio.params["intersections"] == [
        "sex×race_ethnicity"] and ratio.params["reference"] == "most_favoured"
    # the 2% rule is stated honestly: not applied by share, so listed as not covered with its reason
    assert "2%" in next(n.text for n in hiring.not_covered_items if n.key == clause_key("6 RCNY § 5-301(d)"))
    cited = {c.key for rule in eu.checks.values() for c in rule.cites}
    for art in ("10(2)(f)", "13(1)", "15(1)", "15(5)"):
        assert clause_key(f"EU AI Act Art. {art}") in cited
    assert {n.key for n in eu.not_covered_items} >= {clause_key("EU AI Act Art. 12"), clause_key("EU AI Act Art. 15(4)")}


def test_policy_list_shows_every_bundled_pack():
    r = CliRunner().invoke(cli, ["policy", "list"], catch_exceptions=False)
    assert r.exit_code == 0
    heads = [line for line in r.output.splitlines() if line and not line.startswith(" ")]
    import yaml

    from audit.resources import policies_dir

    fin_rules = len(yaml.safe_load((policies_dir() / "fin.yaml").read_text())["checks"])  # grows as rules land
    assert heads == ["eu-ai-act: eu-ai-act-high-risk-evidence 1.0, 8 rules",
                     f"fin: consumer-credit-release 1.0, {fin_rules} rules",
                     "fraud: fraud-detection-release 1.0, 6 rules", "hiring: nyc-ll144-bias-audit 1.0, 2 rules"]
    assert "  clauses: 6 RCNY § 5-301(b); 29 CFR 1607.4(D)" in r.output.splitlines()
    doc = json.loads(CliRunner().invoke(cli, ["policy", "list", "--format", "json"]).output)
    assert [d["name"] for d in doc] == sorted(bundled_policies())
    hiring = next(d for d in doc if d["name"] == "hiring")
    assert hiring["not_covered"] == ["6 RCNY § 5-301(c)", "6 RCNY § 5-301(d)", "6 RCNY § 5-302", "6 RCNY § 5-303"]
    md = CliRunner().invoke(cli, ["policy", "list", "--format", "md"]).output.splitlines()
    assert md[0].startswith("| Pack |") and len(md) == 2 + len(doc)


# ---------------------------------------------------------------- each pack run on the tiny fixture model


def run(args, tmp_path):
    out = tmp_path / "out"
    r = CliRunner().invoke(cli, ["run", *map(str, args), "--out", str(out), "--no-progress"], catch_exceptions=False)
    doc = json.loads((out / "result.json").read_text()) if (out / "result.json").exists() else None
    return r, doc, out


def statuses(doc) -> dict[str, str]:
    return {f["check_id"]: f["status"] for f in doc["findings"]}


def test_fraud_pack_runs(tiny_model, tmp_path):
    """Fraud is the tiny credit model's negative label ('bad'); a current set gives the drift rules a value."""
    current = tmp_path / "current.csv"
    make_frame(120, seed=21).to_csv(current, index=False)
    r, doc, out = run([tiny_model, "--policy", "fraud", "--current", current], tmp_path)
    assert r.exit_code == EXPECTED["fraud"][0], r.output
    assert statuses(doc) == EXPECTED["fraud"][1]
    pred = pd.read_csv(out / "predictions.csv")
    y = (pred["true_label"] == "bad").astype(int).to_numpy()
    s = 1 - pred["score"].to_numpy()
    m = doc["measurements"]
    assert m["performance.recall_at_fpr"]["value"] == pytest.approx(sk_tpr_at_fpr(y, s, 0.01), abs=1e-9)
    assert m["performance.class_pr_auc"]["value"] == pytest.approx(average_precision_score(y, s), abs=1e-9)
    assert m["performance.recall_at_fpr"]["details"]["label"] == "bad"


def test_hiring_pack_runs(tiny_model, tmp_path):
    """Sex and race/ethnicity with their intersection; race_ethnicity is named on the command line (--protected).
    Each category's selection rate and impact ratio equal a hand count from predictions.csv."""
    df = make_frame(240, seed=31)
    rng = np.random.default_rng(31)
    df["race"] = rng.choice(["Asian", "Black", "Hispanic or Latino", "White"], size=len(df), p=[.25, .25, .2, .3])
    data = tmp_path / "applicants.csv"
    df.to_csv(data, index=False)
    r, doc, out = run([tiny_model, "--policy", "hiring", "--data", data, "--protected", "race_ethnicity=race"],
                      tmp_path)
    assert r.exit_code == EXPECTED["hiring"][0], r.output
    assert statuses(doc) == EXPECTED["hiring"][1]
    parts = doc["measurements"]["fairness.selection_rate_ratio"]["details"]["attributes"]
    assert [p["attribute"] for p in parts] == ["sex", "race_ethnicity", "sex × race_ethnicity"]
    race = next(p for p in parts if p["attribute"] == "race_ethnicity")
    assert {g["group"]: g["count"] for g in race["groups"]} == df["race"].value_counts().to_dict()  # hand count
    pred = pd.read_csv(out / "predictions.csv")
    chosen = pred["score"] >= 0.5
    rates = chosen.groupby(df["race"].to_numpy()).mean()
    for g in race["groups"]:
        assert g["selection_rate"] == pytest.approx(rates[g["group"]])
        assert g["ratio_to_reference"] == pytest.approx(rates[g["group"]] / rates.max())


def test_eu_ai_act_pack_runs(tiny_model, tmp_path):
    """The pack as shipped but for a smaller SHAP sample and fewer bootstrap replicates (the suite's time budget: the
    shipped budget explains 40 rows with 100 model calls each); every rule, threshold and citation is the pack's."""
    src = bundled_policies()["eu-ai-act"].read_text(encoding="utf-8")
    small = src.replace("  bootstrap: 1000\n", "  bootstrap: 200\n")
    for rule in ("explainability.additivity_error", "explainability.stability"):
        small = small.replace(f"  {rule}:\n", f"  {rule}:\n    rows: 12\n    max_evals: 40\n    examples: 0\n")
    assert small.count("max_evals: 40") == 2 and "bootstrap: 200" in small
    pol = tmp_path / "eu-ai-act.yaml"
    pol.write_text(small, encoding="utf-8")
    r, doc, _ = run([tiny_model, "--policy", pol], tmp_path)
    assert r.exit_code == EXPECTED["eu-ai-act"][0], r.output
    assert statuses(doc) == EXPECTED["eu-ai-act"][1]
    clauses = {c["clause"] for f in doc["findings"] for c in f.get("clauses", [])}
    assert "EU AI Act Art. 13(1)" in clauses and "EU AI Act Art. 12" not in clauses


# Seeded and deterministic. The tiny model reads 12 distinct texts, so its scores tie in large blocks: no threshold
# flags fraud while flagging at most 1% of legitimate rows (recall 0 at 1% FPR: FAIL, the interval shows why), and
# the intersection groups of random race labels differ by chance far beyond four-fifths (FAIL, as a real gate must).
EXPECTED: dict[str, tuple[int, dict[str, str]]] = {
    "fraud": (1, {"performance.recall_at_fpr": "FAIL", "performance.class_pr_auc": "PASS",
                  "performance.cost_weighted_error": "WARN", "performance.roc_auc": "PASS",
                  "drift.favourable_rate_change": "PASS", "drift.prediction_psi": "PASS"}),
    "hiring": (1, {"fairness.selection_rate_ratio": "FAIL", "fairness.demographic_parity_difference": "WARN"}),
    # the age group '<25' is under min_group_size, and the held-out texts all occur in training (12 distinct texts):
    # those findings lack evidence, and say so, instead of passing
    "eu-ai-act": (3, {"performance.roc_auc": "PASS", "performance.balanced_accuracy": "PASS", "performance.ece": "PASS",
                      "fairness.selection_rate_ratio": "INCONCLUSIVE", "fairness.equalized_odds_difference": "INCONCLUSIVE",
                      "explainability.additivity_error": "PASS", "explainability.stability": "PASS",
                      "privacy.membership_inference_auc": "INCONCLUSIVE"}),
}


@pytest.mark.parametrize("check_id, params", [
    ("performance.recall_at_fpr", {"fpr": 0.05, "label": "negative"}),
    ("performance.recall_at_fpr", {"fpr": 0.2, "label": "positive"}),
    ("performance.class_pr_auc", {"label": "negative"}),
    ("performance.class_pr_auc", {"label": "positive"}),
    ("performance.cost_weighted_error", {"miss_cost": 10, "false_alarm_cost": 1, "relative": True,
                                         "label": "negative"}),
    ("performance.cost_weighted_error", {"miss_cost": 2, "false_alarm_cost": 3, "relative": False,
                                         "label": "positive"})])
def test_new_checks_from_statistics_equal_the_in_memory_check(check_id, params):
    """Scores on the statistics' grid, the same row-id bootstrap weights: the statistics form (what `audit run
    --predictions` and `audit merge` measure) gives the in-memory value and interval."""
    from audit.from_stats import measure_stats
    from audit.policy import Policy
    from tests.test_mergeable import GRID, R, in_memory_ctx, manifest, rows, stats_of

    df = rows(decimals=2)
    spec = all_checks()[check_id]
    expected = spec.fn(in_memory_ctx(df), **{**spec.params, **params})
    policy = Policy.model_validate({"policy": "t", "version": "1", "checks": {check_id: {"max": 100, **params}},
                                    "budget": {"bootstrap": R, "seed": GRID.seed}})
    got = measure_stats(policy, stats_of(df), manifest())[check_id]
    assert expected.value is not None
    assert got.value == pytest.approx(expected.value, abs=1e-12)
    assert got.ci_low == pytest.approx(expected.ci_low, abs=1e-12)
    assert got.ci_high == pytest.approx(expected.ci_high, abs=1e-12)
    assert got.details["label"] == expected.details["label"]
