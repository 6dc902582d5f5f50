"""Thresholds only in the policy (issue 17): every number that decides a status or an INCONCLUSIVE is a policy key
with today's value as its default. Each key is changed here and the status (or the test chosen, or the count
judged) changes with it, against numbers computed independently (numpy, scipy, hand counts); the value used is
in the measurement's details; a bad value is one line naming file:line and the key."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from audit import driftstats as ds
from audit import pii
from audit import stats as st
from audit.checks import all_checks
from audit.context import CheckContext, Scored
from audit.errors import PolicyError
from audit.judge import judge
from audit.manifest import Manifest
from audit.policy import Statistics, load_policy
from audit.result import Status
from audit.scoring import Predictions

HEAD = "policy: p\nversion: '1'\n"


def _policy(policy_file, text: str, name: str = "p.yaml"):
    return load_policy(policy_file(HEAD + text, name))


def _status(policy, measurements, cid):
    return next(f.status for f in judge(policy, all_checks(), measurements) if f.check_id == cid)


# ---------------------------------------------------------------- the defaults are today's numbers


def test_defaults_are_the_numbers_the_code_used():
    specs = all_checks()
    assert Statistics().min_finite_share == st.FINITE_SHARE == 0.9
    for cid in ("drift.share_drifted_columns", "drift.text_descriptors", "drift.text_content_auc"):
        p = specs[cid].params
        assert (p["small_n"], p["min_expected"], p["max_levels"], p["text_auc_floor"]) == (1000, 5.0, 5, 0.55), cid
    assert specs["drift.embedding_auc"].params["min_rows"] == 10
    for cid in ("privacy.pii_rate", "privacy.pii_in_training_text"):
        assert specs[cid].params["min_digits"] == pii.MIN_DIGITS == 7, cid


BAD = [
    ("statistics: {min_finite_share: 0}\nchecks:\n  performance.roc_auc: {min: 0.5}\n",
     "3: statistics.min_finite_share: must be > 0, got 0"),
    ("statistics:\n  min_finite_share: 1.5\nchecks:\n  performance.roc_auc: {min: 0.5}\n",
     "4: statistics.min_finite_share: must be <= 1, got 1.5"),
    ("statistics: {min_finite_share: most}\nchecks:\n  performance.roc_auc: {min: 0.5}\n",
     "3: statistics.min_finite_share: expected a number, got 'most'"),
    ("statistics:\n  min_finite: 0.8\nchecks:\n  performance.roc_auc: {min: 0.5}\n",
     "4: statistics.min_finite: unknown key 'min_finite' (did you mean 'min_finite_share'?)"),
    ("checks:\n  drift.share_drifted_columns: {max: 0.3, small_n: 10.5}\n",
     "4: checks.drift.share_drifted_columns: small_n must be a whole number >= 0, got 10.5"),
    ("checks:\n  drift.share_drifted_columns: {max: 0.3, small_n: many}\n",
     "4: checks.drift.share_drifted_columns.small_n: expected a number, got 'many'"),
    ("checks:\n  drift.text_content_auc: {max: 0.7, text_auc_floor: 0.4}\n",
     "4: checks.drift.text_content_auc: text_auc_floor must be between 0.5 and 1, got 0.4"),
    ("checks:\n  drift.share_drifted_columns: {max: 0.3, min_expected: -1}\n",
     "4: checks.drift.share_drifted_columns: min_expected must be >= 0, got -1"),
    ("checks:\n  drift.text_descriptors: {max: 0.3, max_levels: -2}\n",
     "4: checks.drift.text_descriptors: max_levels must be a whole number >= 0, got -2"),
    ("checks:\n  drift.embedding_auc: {max: 0.7, min_rows: 1}\n",
     "4: checks.drift.embedding_auc: min_rows must be a whole number >= 2, got 1"),
    ("checks:\n  privacy.pii_rate: {max: 0, min_digits: 5}\n",
     "4: checks.privacy.pii_rate: min_digits must be a whole number from 7 (no pattern finds fewer digits) to 19 "
     "(the longest card number), got 5"),
]


@pytest.mark.parametrize("text,expected", BAD, ids=[e.split(": ", 1)[1][:40] for _, e in BAD])
def test_a_bad_value_is_named_at_its_line(policy_file, text, expected):
    path = policy_file(HEAD + text, "bad.yaml")
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    assert str(info.value) == f"{path}:{expected}"


# ---------------------------------------------------------------- statistics.min_finite_share (run-wide)


def test_the_finite_share_rule_decides_whether_a_percentile_interval_exists():
    reps = np.r_[np.arange(85, dtype=float), np.full(15, np.nan)]  # 85% finite
    assert st.percentile_interval(reps, 0.9) == (None, None)  # the default needs 90%
    with st.finite_rule(0.8):
        low, high = st.percentile_interval(reps, 0.9)
        assert st.min_finite_share() == 0.8
    assert (low, high) == pytest.approx(tuple(np.quantile(np.arange(85.0), [0.05, 0.95])))
    assert st.min_finite_share() == 0.9  # the block ends, the default is back
    with st.finite_rule(0.86):
        assert st.percentile_interval(reps, 0.9) == (None, None)


def test_the_finite_share_rule_holds_for_the_largest_gap_interval_too():
    rng = np.random.default_rng(0)
    point = np.array([0.1, 0.0, -0.1])
    reps = point + rng.normal(0, 0.05, size=(200, 3))
    reps[:30, 1] = np.nan  # 85% of the replicates finite on every contrast
    assert st.max_contrast_interval(point, reps, 0.95) == (None, None)
    with st.finite_rule(0.8):
        low, high = st.max_contrast_interval(point, reps, 0.95)
    assert low is not None and low <= 0.1 <= high


def _few_positives_ctx(replicates: int = 400) -> CheckContext:
    """300 rows with 2 positives: a Poisson resample draws no positive e^-2 = 13.5% of the time, where recall
    is undefined, so about 86% of the replicates are finite, between the two shares the tests set."""
    y = np.zeros(300, dtype=int)
    y[[3, 150]] = 1
    score = np.linspace(0.01, 0.99, 300)
    score[[3, 150]] = 0.9  # both positives are found: recall 1
    return CheckContext(y_true=y, score=score, replicates=replicates, seed=0)


def test_min_finite_share_turns_an_inconclusive_interval_into_a_judgement(policy_file):
    from audit.runner import measure

    rule = "checks:\n  performance.recall: {min: 0.5, basis: ci_low}\nbudget: {bootstrap: 400}\n"
    default = _policy(policy_file, rule, "default.yaml")
    lowered = _policy(policy_file, "statistics: {min_finite_share: 0.8}\n" + rule, "lowered.yaml")
    ctx = _few_positives_ctx()
    W = ctx.weights
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = (W @ (ctx.y_true * (ctx.score >= 0.5))) / (W @ ctx.y_true)  # by hand, per replicate
    share = float(np.isfinite(recall[1:]).mean())
    assert 0.8 < share < 0.9  # the case the rule decides

    m0 = measure(default, ctx)
    assert m0["performance.recall"].value == 1.0 and m0["performance.recall"].ci_low is None
    assert _status(default, m0, "performance.recall") == Status.INCONCLUSIVE
    assert "statistics" not in m0["performance.recall"].details  # no block in the policy: as before

    m1 = measure(lowered, _few_positives_ctx())
    finite = recall[1:][np.isfinite(recall[1:])]
    assert (m1["performance.recall"].ci_low, m1["performance.recall"].ci_high) == pytest.approx(
        tuple(np.quantile(finite, [0.025, 0.975])))
    assert _status(lowered, m1, "performance.recall") == Status.PASS
    assert m1["performance.recall"].details["statistics"] == {"min_finite_share": 0.8}
    assert st.min_finite_share() == st.FINITE_SHARE  # the run's rule does not outlive the run


def test_min_finite_share_holds_for_a_run_from_statistics(policy_file):
    from audit.from_stats import measure_stats
    from audit.mergeable import AuditStats, Grid

    ctx = _few_positives_ctx()
    manifest = Manifest(name="m", labels=["bad", "good"], positive_label="good", label_column="label",
                        text={"column": "text"}, protected_attributes={"sex": {"column": "sex"}})
    stats = AuditStats.empty(Grid(replicates=400, seed=0), {"sex": ["a", "b"]})
    stats.update([f"r{i}" for i in range(300)], ctx.score, ctx.y_true, {"sex": np.array(["a", "b"] * 150)})
    rule = "checks:\n  performance.recall: {min: 0.5, basis: ci_low}\nbudget: {bootstrap: 400}\n"
    default = _policy(policy_file, rule, "default.yaml")
    lowered = _policy(policy_file, "statistics: {min_finite_share: 0.5}\n" + rule, "lowered.yaml")
    m0 = measure_stats(default, stats, manifest)["performance.recall"]
    m1 = measure_stats(lowered, stats, manifest)["performance.recall"]
    assert m0.value == m1.value == 1.0
    assert m0.ci_low is None and _status(default, {"performance.recall": m0}, "performance.recall") == Status.INCONCLUSIVE
    assert m1.ci_low is not None and _status(lowered, {"performance.recall": m1}, "performance.recall") == Status.PASS
    assert m1.details["statistics"] == {"min_finite_share": 0.5} and "statistics" not in m0.details


# ---------------------------------------------------------------- column drift: small_n, min_expected, max_levels,
# text_auc_floor


def test_small_n_chooses_between_p_value_and_distance_tests():
    assert ds.choose_test("numeric", 500, 300, 0).method == "ks"
    assert ds.choose_test("numeric", 500, 300, 0, small_n=299).method == "wasserstein"
    assert ds.choose_test("numeric", 500, 300, 0, small_n=300).method == "ks"  # "at most small_n rows"
    assert ds.choose_test("categorical", 5000, 4000, 2).method == "jensenshannon"
    assert ds.choose_test("categorical", 5000, 4000, 2, small_n=4000).method == "z"


def test_min_expected_is_the_chi_squares_pooling_rule():
    ref = pd.Series(["a"] * 50 + ["b"] * 40 + ["c"] * 8 + ["d"] * 6)
    cur = pd.Series(["a"] * 30 + ["b"] * 20 + ["c"] * 9 + ["d"] * 1)
    labels, table = ds.pooled_table(ref, cur)  # expected in the smaller sample: c 6.6, d 2.6 -> only d < 5
    assert labels == ["a", "b", "c", "d"] and table.tolist() == [[50, 40, 8, 6], [30, 20, 9, 1]]
    labels, table = ds.pooled_table(ref, cur, min_expected=7)  # c and d pooled by hand
    assert labels == ["a", "b", ds.RARE] and table.tolist() == [[50, 40, 14], [30, 20, 10]]
    want = sps.chi2_contingency(np.array([[50, 40, 14], [30, 20, 10]]), correction=False)[1]
    assert ds.chi2_two_sample(ref, cur, min_expected=7) == pytest.approx(want)
    assert ds.chi2_two_sample(ref, cur) == pytest.approx(
        sps.chi2_contingency(np.array([[50, 40, 8, 6], [30, 20, 9, 1]]), correction=False)[1])
    test = ds.choose_test("categorical", 104, 60, 4, min_expected=7)
    assert test.method == ds.CHI2_NAME and test.min_expected == 7
    ds.import_evidently()
    score, _ = ds.column_test(ref, cur, "categorical", test)  # evidently runs the test under its own name
    assert test.stattest != ds.CHI2_NAME and score == pytest.approx(want)


def test_max_levels_and_text_auc_floor():
    ref, cur = pd.Series([str(v) for v in range(6)] * 5), pd.Series([str(v) for v in range(6)] * 4)
    assert ds.column_kind(ref, cur)[0] == "numeric"  # 6 distinct values > 5
    assert ds.column_kind(ref, cur, max_levels=6)[0] == "categorical"
    assert ds.text_auc_threshold(50_000, 50_000) == 0.55
    assert ds.text_auc_threshold(50_000, 50_000, floor=0.6) == 0.6
    assert ds.choose_test("text", 50_000, 50_000, 0, text_auc_floor=0.62).threshold == 0.62


MANIFEST = Manifest(name="m", labels=["bad", "good"], positive_label="good", label_column="label",
                    text={"template": "Credit of {{ credit_amount }} DM for {{ purpose }}."},
                    protected_attributes={"sex": {"column": "sex"}, "age": {"column": "age", "bins": [25]}})


def _scored(name: str, n: int, seed: int, shift: float = 0.0) -> Scored:
    rng = np.random.default_rng(seed)
    purpose = rng.choice(["car", "education", "business", "furniture", "radio"], n,
                         p=[.3, .1, .1 + shift, .2, .3 - shift])
    amount = rng.lognormal(7.8 + shift, 0.7, n).round().astype(int)
    age, sex = rng.integers(19, 75, n), rng.choice(["male", "female"], n)
    frame = pd.DataFrame({"credit_amount": amount.astype(str), "purpose": purpose, "age": age.astype(str),
                          "sex": sex, "label": rng.choice(["good", "bad"], n, p=[.7, .3])})
    texts = [f"Credit of {a} DM for {p}." for a, p in zip(amount, purpose)]
    s = np.clip(rng.beta(5, 2, n) - shift, 0, 1)
    preds = Predictions(probs=np.c_[1 - s, s], positive_index=1, lengths=np.full(n, 8), truncated=0, seconds=1.0,
                        embeddings=(rng.normal(size=(n, 8)) + shift).astype(np.float32))
    return Scored(name, frame, texts, (frame["label"] == "good").to_numpy().astype(int), preds, f"{name}.csv")


def _drift_ctx(shift: float, n_train: int = 500, n_current: int = 300) -> CheckContext:
    sets = {"train": _scored("train", n_train, 1), "current": _scored("current", n_current, 2, shift)}
    ev = _scored("eval", 100, 3)
    return CheckContext(y_true=ev.y, score=ev.predictions.score, manifest=MANIFEST, frame=ev.frame, texts=ev.texts,
                        replicates=50, positive_label="good", negative_label="bad",
                        loader=lambda name: sets.get(name), predictions=ev.predictions)


def _measure(cid: str, ctx: CheckContext, **rule):
    spec = all_checks()[cid]
    return spec.fn(ctx, **{**spec.params, **rule})


def test_small_n_changes_the_share_of_drifted_columns_and_the_status(policy_file):
    """500 training rows against 300 current ones: p-value tests by default (KS, chi-square, z); with
    `small_n: 200` the same columns get distance tests, which flag the amount as well (0.11 sd >= 0.1)."""
    cid = "drift.share_drifted_columns"
    ctx = _drift_ctx(0.1)
    p_values, distances = _measure(cid, ctx), _measure(cid, ctx, small_n=200)
    for m, methods in ((p_values, {"ks", "z", ds.CHI2_NAME}), (distances, {"wasserstein", "jensenshannon"})):
        counted = [r for r in m.details["columns"] if r["counted"]]
        assert {r["method"] for r in counted} == methods
        assert m.value == sum(r["drifted"] for r in counted) / len(counted)  # the share, counted by hand
    ref, cur = ctx.dataset("train").frame, ctx.dataset("current").frame
    amount = next(r for r in distances.details["columns"] if r["column"] == "credit_amount")
    a, b = ref["credit_amount"].astype(float), cur["credit_amount"].astype(float)
    assert amount["score"] == pytest.approx(sps.wasserstein_distance(a, b) / np.std(a), rel=1e-9)  # sd, ddof 0
    assert amount["drifted"] and not next(r for r in p_values.details["columns"]
                                          if r["column"] == "credit_amount")["drifted"]
    assert p_values.value == 0.25 and distances.value == 0.5
    assert p_values.details["small_n"] == 1000 and distances.details["small_n"] == 200
    assert "at most 200" not in p_values.details["regime"] and "over 200 rows" in distances.details["regime"]
    rule = f"checks:\n  {cid}: {{max: 0.3, severity: block}}\n"
    lowered = f"checks:\n  {cid}: {{max: 0.3, severity: block, small_n: 200}}\n"
    assert _status(_policy(policy_file, rule, "a.yaml"), {cid: p_values}, cid) == Status.PASS
    assert _status(_policy(policy_file, lowered, "b.yaml"), {cid: distances}, cid) == Status.FAIL


def test_max_levels_and_min_expected_reach_the_check_and_its_details():
    cid = "drift.share_drifted_columns"
    ctx = _drift_ctx(0.1)
    m = _measure(cid, ctx, max_levels=100, min_expected=50)
    rows = {r["column"]: r for r in m.details["columns"]}
    assert rows["age"]["kind"] == "categorical" and rows["age"]["method"] == ds.CHI2_NAME  # 56 ages <= 100
    ref, cur = ctx.dataset("train").frame["purpose"], ctx.dataset("current").frame["purpose"]
    _, table = ds.pooled_table(ref, cur, 50)
    assert rows["purpose"]["score"] == pytest.approx(sps.chi2_contingency(table, correction=False)[1])
    assert (m.details["max_levels"], m.details["min_expected"], m.details["text_auc_floor"]) == (100, 50, 0.55)


# ---------------------------------------------------------------- drift.embedding_auc: min_rows


def test_min_rows_of_the_embedding_classifier(policy_file):
    cid = "drift.embedding_auc"
    ctx = _drift_ctx(0.0, n_train=40, n_current=30)
    fitted, refused = _measure(cid, ctx), _measure(cid, ctx, min_rows=31)
    assert fitted.value is not None and fitted.inconclusive is None and fitted.details["min_rows"] == 10
    assert refused.value is None and refused.details["min_rows"] == 31
    assert refused.inconclusive == ("too few rows to fit and test a classifier (40 reference, 30 current; 31 of "
                                    "each are needed, the rule's `min_rows`)")
    pol = _policy(policy_file, f"checks:\n  {cid}: {{max: 0.99, basis: point, min_rows: 31}}\n")
    assert _status(pol, {cid: refused}, cid) == Status.INCONCLUSIVE
    assert _status(pol, {cid: fitted}, cid) == Status.PASS


# ---------------------------------------------------------------- PII: min_digits


TEXTS = ["call me at 555 1234 please", "phone: 555-1234", "tel 555 123 4567", "order 1234567 shipped",
         "card 4111 1111 1111 1111", "no number here", "mail jo@example.com", "pays on time", "age 41", "rent 900"]


def test_min_digits_decides_which_numbers_are_phone_numbers():
    kinds = [[f.kind for f in row] for row in pii.find_all(TEXTS)]
    assert kinds == [["phone"], ["phone"], ["phone"], [], ["card"], [], ["email"], [], [], []]  # by hand
    assert [[f.kind for f in row] for row in pii.find_all(TEXTS, min_digits=8)] == [
        [], [], ["phone"], [], ["card"], [], ["email"], [], [], []]  # the two 7-digit numbers are not phones
    assert pii.redact(TEXTS[0]) == "call me at [PHONE] please"  # redaction keeps the default
    # rows with a run of 7 (8) or more digits, separators allowed: rows 0-4 (rows 2 and 4)
    assert pii.scan(TEXTS).could_hold["card"] == 5 and pii.scan(TEXTS, min_digits=8).could_hold["card"] == 2


def test_min_digits_changes_the_pii_rate_and_the_status(policy_file):
    cid = "privacy.pii_rate"
    ctx = CheckContext(y_true=np.zeros(len(TEXTS), dtype=int), score=np.full(len(TEXTS), 0.5), texts=list(TEXTS),
                       replicates=50, seed=0)
    default, raised = _measure(cid, ctx), _measure(cid, ctx, min_digits=8)
    assert default.value == pytest.approx(5 / 10) and raised.value == pytest.approx(3 / 10)  # rows, by hand
    assert default.details["min_digits"] == 7 and raised.details["min_digits"] == 8
    phone = next(t for t in raised.details["by_type"] if t["type"] == "phone")
    assert "8 or more digits" in phone["could_hold_means"]
    rule = f"checks:\n  {cid}: {{max: 0.4, basis: point}}\n"
    raised_rule = f"checks:\n  {cid}: {{max: 0.4, basis: point, min_digits: 8}}\n"
    assert _status(_policy(policy_file, rule, "a.yaml"), {cid: default}, cid) == Status.FAIL
    assert _status(_policy(policy_file, raised_rule, "b.yaml"), {cid: raised}, cid) == Status.PASS


# ---------------------------------------------------------------- the old constants are defaults only


MOVED = {"FINITE_SHARE", "SMALL_N", "MIN_EXPECTED", "MAX_LEVELS", "TEXT_AUC_FLOOR", "MIN_CLASSIFIER_ROWS",
         "MIN_DIGITS"}


def _default_only(node, parents) -> bool:
    """A use of a moved constant that is not a decision: a parameter's default (a function signature, a
    registry entry's `params`, a module-level table of defaults), an equality test against it (is this value the
    default?), or a bound that a `_validate*` function or a message states."""
    import ast

    while node in parents:
        child, node = node, parents[node]
        if isinstance(node, ast.arguments) and child in node.defaults + node.kw_defaults:
            return True
        if isinstance(node, ast.keyword) and node.arg in ("params", "default"):
            return True
        if isinstance(node, ast.Compare) and all(isinstance(op, (ast.Eq, ast.NotEq)) for op in node.ops):
            return True
        if isinstance(node, ast.JoinedStr):
            return True
        if isinstance(node, ast.FunctionDef):
            return node.name.startswith("_validate")
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(parents.get(node), (ast.Module, ast.ClassDef)):
            return True  # a module-level table of defaults, a dataclass field's default
    return False


def test_the_thresholds_that_became_policy_keys_are_read_only_as_defaults():
    """Every number of this brief is a policy key now: the module constants that held it are read only as the
    default of that key (or to ask whether a value is the default), never in a decision of their own. Only the
    constants in MOVED are looked at: no pattern tells which other number in the code decides a status."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "audit"
    found = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        for node in ast.walk(tree):
            name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None
            if name in MOVED and not isinstance(getattr(node, "ctx", None), ast.Store) \
                    and not _default_only(node, parents):
                found.append(f"{path.relative_to(root.parent)}:{node.lineno}: {name}")
    assert found == []


def test_the_default_only_rule_finds_a_decision():
    import ast

    tree = ast.parse("def f(n):\n    return n <= SMALL_N\n\ndef g(n, small_n=SMALL_N):\n    return n <= small_n\n")
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    uses = sorted((n for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id == "SMALL_N"), key=lambda n: n.lineno)
    assert [_default_only(n, parents) for n in uses] == [False, True]
