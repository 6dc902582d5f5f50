"""Fairness family: numbers against hand counts and fairlearn, intervals, no silent passes, counterfactual swaps.

Every number is checked against an independent reference: a hand count on a 20-row table, or fairlearn's own
functions on the raw rows (the checks run MetricFrame on weighted confusion cells and the bootstrap through
matrix products; these tests run neither shortcut).
"""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from audit.checks import all_checks, fairness
from audit.context import CheckContext
from audit.manifest import Manifest, ProtectedAttribute, TextRecipe
from audit.result import Measurement
from audit.swaps import build, load, load_all

GROUP_CHECKS = ["fairness.selection_rate_ratio", "fairness.demographic_parity_difference",
                "fairness.equalized_odds_difference", "fairness.equal_opportunity_difference",
                "fairness.predictive_parity_difference", "fairness.auc_gap"]


def manifest(**attrs) -> Manifest:
    return Manifest(name="t", labels=["bad", "good"], positive_label="good", label_column="label",
                    text=TextRecipe(column="text"), protected_attributes=attrs)


def run(check_id: str, ctx: CheckContext, **params) -> Measurement:
    spec = all_checks()[check_id]
    return spec.fn(ctx, **{**spec.params, **params})


# ---------------------------------------------------------------- a table small enough to count by hand

# group A: 6 good (5 approved), 4 bad (1 approved); group B: 4 good (2 approved), 6 bad (1 approved)
HAND = pd.DataFrame({
    "grp": ["A"] * 10 + ["B"] * 10,
    "y": [1, 1, 1, 1, 1, 1, 0, 0, 0, 0] + [1, 1, 1, 1, 0, 0, 0, 0, 0, 0],
    "score": [0.9, 0.8, 0.7, 0.6, 0.55, 0.3, 0.65, 0.2, 0.1, 0.4]
             + [0.9, 0.7, 0.45, 0.2, 0.6, 0.3, 0.2, 0.1, 0.05, 0.4],
})


def hand_ctx(replicates: int = 200, seed: int = 0, min_group_size: int = 3) -> CheckContext:
    return CheckContext(y_true=HAND["y"].to_numpy(), score=HAND["score"].to_numpy(), replicates=replicates,
                        seed=seed, min_group_size=min_group_size, positive_label="good", negative_label="bad",
                        frame=HAND.astype(str), manifest=manifest(grp=ProtectedAttribute(column="grp")))


def test_group_table_equals_hand_counts():
    m = run("fairness.selection_rate_ratio", hand_ctx())
    a, b = m.details["attributes"][0]["groups"]
    assert (a["group"], a["count"], a["positives"], a["negatives"], a["predicted_positive"]) == ("A", 10, 6, 4, 6)
    assert (b["group"], b["count"], b["positives"], b["negatives"], b["predicted_positive"]) == ("B", 10, 4, 6, 3)
    expected = {"A": dict(selection_rate=6 / 10, tpr=5 / 6, fpr=1 / 4, fnr=1 / 6, precision=5 / 6, accuracy=8 / 10,
                          roc_auc=20 / 24),  # positives above negatives: 4+4+4+3+3+2 of 6x4 pairs
                "B": dict(selection_rate=3 / 10, tpr=2 / 4, fpr=1 / 6, fnr=2 / 4, precision=2 / 3, accuracy=7 / 10,
                          roc_auc=19.5 / 24)}  # 6+6+5+2.5 (0.2 ties one negative) of 4x6 pairs
    for row in (a, b):
        for rate, value in expected[row["group"]].items():
            assert row[rate] == pytest.approx(value, abs=1e-12), (row["group"], rate)
            lo, hi = row[rate + "_ci"]
            assert lo <= value <= hi


@pytest.mark.parametrize("check_id,expected", [
    ("fairness.selection_rate_ratio", 0.3 / 0.6),
    ("fairness.demographic_parity_difference", 0.6 - 0.3),
    ("fairness.equalized_odds_difference", max(5 / 6 - 2 / 4, 1 / 4 - 1 / 6)),
    ("fairness.equal_opportunity_difference", 5 / 6 - 2 / 4),
    ("fairness.predictive_parity_difference", 5 / 6 - 2 / 3),
    ("fairness.auc_gap", 20 / 24 - 19.5 / 24),
])
def test_disparities_equal_hand_counts(check_id, expected):
    m = run(check_id, hand_ctx())
    assert m.value == pytest.approx(expected, abs=1e-12)
    assert m.inconclusive is None and m.error is None
    json.dumps(m.to_dict(), allow_nan=False)


def test_worst_group_and_reference_are_named():
    m = run("fairness.selection_rate_ratio", hand_ctx())
    attr = m.details["attributes"][0]
    assert attr["reference_group"] == "A" and attr["worst_group"] == "B"
    assert m.details["worst"] == {"attribute": "grp", "group": "B", "versus": "A", "rate": "selection_rate"}
    b = attr["groups"][1]
    assert b["ratio_to_reference"] == pytest.approx(0.5)
    assert any("four-fifths" in c and "not a legal test" in c for c in m.details["caveats"])
    eo = run("fairness.equalized_odds_difference", hand_ctx()).details["attributes"][0]
    assert eo["worst_rate"] == "tpr" and eo["rates"]["tpr"]["highest_group"] == "A"
    assert eo["rates"]["fpr"]["difference"] == pytest.approx(1 / 4 - 1 / 6)


def test_reference_options():
    ctx = hand_ctx()
    named = run("fairness.selection_rate_ratio", ctx, reference="B")
    assert named.value == pytest.approx(0.6 / 0.3)  # A against B
    assert named.details["attributes"][0]["reference_group"] == "B"
    largest = run("fairness.selection_rate_ratio", ctx, reference="largest")  # a tie in size: the first group
    assert largest.details["attributes"][0]["reference_group"] == "A" and largest.value == pytest.approx(0.5)
    other = run("fairness.selection_rate_ratio", ctx, reference="Z")
    assert other.details["attributes"][0]["reference_choice"].startswith("most_favoured ('Z' is not a group")


# ---------------------------------------------------------------- against fairlearn on random rows


def random_ctx(n: int = 3000, seed: int = 3, replicates: int = 100, **kw) -> CheckContext:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"race": rng.choice(["a", "b", "c"], n, p=[0.5, 0.3, 0.2]),
                          "age": rng.integers(18, 80, n).astype(str),
                          "text": "x", "label": "good"})
    y = (rng.random(n) < 0.6).astype(int)
    score = np.clip(0.35 * y + 0.65 * rng.random(n) - 0.08 * (frame["race"] == "c").to_numpy(), 0, 1).round(3)
    attrs = dict(race=ProtectedAttribute(column="race"), age=ProtectedAttribute(column="age", bins=[30, 60]))
    return CheckContext(y_true=y, score=score, replicates=replicates, seed=0, min_group_size=kw.pop("k", 30),
                        frame=frame, manifest=manifest(**attrs), **kw)


def groups_of(ctx: CheckContext, name: str) -> pd.Series:
    from audit.data import group_series

    return group_series(ctx.frame, name, ctx.manifest.protected_attributes[name], "x").astype(str).reset_index(drop=True)


@pytest.mark.parametrize("attribute", ["race", "age"])
def test_disparities_equal_fairlearn(attribute):
    from fairlearn import metrics as fm
    from sklearn.metrics import precision_score, roc_auc_score

    ctx = random_ctx()
    y, pred, sf = ctx.y_true, ctx.y_pred, groups_of(ctx, attribute)
    got = {cid: run(cid, ctx, attributes=[attribute]).value for cid in GROUP_CHECKS}
    assert got["fairness.demographic_parity_difference"] == pytest.approx(
        fm.demographic_parity_difference(y, pred, sensitive_features=sf), abs=1e-12)
    assert got["fairness.equalized_odds_difference"] == pytest.approx(
        fm.equalized_odds_difference(y, pred, sensitive_features=sf), abs=1e-12)
    assert got["fairness.equal_opportunity_difference"] == pytest.approx(
        fm.equal_opportunity_difference(y, pred, sensitive_features=sf), abs=1e-12)
    assert got["fairness.selection_rate_ratio"] == pytest.approx(
        fm.MetricFrame(metrics=fm.selection_rate, y_true=y, y_pred=pred, sensitive_features=sf).ratio(), abs=1e-12)
    assert got["fairness.selection_rate_ratio"] == pytest.approx(
        fm.demographic_parity_ratio(y, pred, sensitive_features=sf), abs=1e-12)
    assert got["fairness.predictive_parity_difference"] == pytest.approx(
        fm.MetricFrame(metrics=precision_score, y_true=y, y_pred=pred, sensitive_features=sf).difference(), abs=1e-12)
    assert got["fairness.auc_gap"] == pytest.approx(
        fm.MetricFrame(metrics=roc_auc_score, y_true=y, y_pred=ctx.score, sensitive_features=sf).difference(),
        abs=1e-12)


def test_group_table_equals_metricframe_on_rows():
    from fairlearn import metrics as fm
    from sklearn.metrics import accuracy_score, precision_score, roc_auc_score

    ctx = random_ctx()
    sf = groups_of(ctx, "race")
    mf = fm.MetricFrame(metrics={"count": fm.count, "selection_rate": fm.selection_rate,
                                 "tpr": fm.true_positive_rate, "fpr": fm.false_positive_rate,
                                 "fnr": fm.false_negative_rate, "precision": precision_score,
                                 "accuracy": accuracy_score},
                        y_true=ctx.y_true, y_pred=ctx.y_pred, sensitive_features=sf).by_group
    auc = fm.MetricFrame(metrics=roc_auc_score, y_true=ctx.y_true, y_pred=ctx.score, sensitive_features=sf).by_group
    rows = run("fairness.auc_gap", ctx, attributes=["race"]).details["attributes"][0]["groups"]
    for row in rows:
        assert row["count"] == mf.loc[row["group"], "count"]
        for rate in ("selection_rate", "tpr", "fpr", "fnr", "precision", "accuracy"):
            assert row[rate] == pytest.approx(mf.loc[row["group"], rate], abs=1e-12)
        assert row["roc_auc"] == pytest.approx(auc.loc[row["group"]], abs=1e-12)


def test_intersections_equal_fairlearn_with_two_sensitive_columns():
    from fairlearn import metrics as fm

    ctx = random_ctx(n=6000)
    sf = pd.DataFrame({"race": groups_of(ctx, "race"), "age": groups_of(ctx, "age")})
    for spec in (["race×age"], ["race * age"], [["race", "age"]]):
        m = run("fairness.demographic_parity_difference", ctx, attributes=["race"], intersections=spec,
                small_groups="exclude", min_group_size=1)
        inter = next(a for a in m.details["attributes"] if a["kind"] == "intersection")
        assert inter["attribute"] == "race × age" and len(inter["groups"]) == 9
        assert inter["value"] == pytest.approx(
            fm.demographic_parity_difference(ctx.y_true, ctx.y_pred, sensitive_features=sf), abs=1e-12)
        # the value is the worst attribute: the intersection's gap is at least its parts'
        assert m.value == pytest.approx(max(a["value"] for a in m.details["attributes"]))


# ---------------------------------------------------------------- intervals


def test_intervals_are_seeded_and_vectorized_bootstrap_matches_a_loop():
    ctx = random_ctx(n=800, replicates=40, k=10)
    m = run("fairness.selection_rate_ratio", ctx, attributes=["race"])
    again = run("fairness.selection_rate_ratio", random_ctx(n=800, replicates=40, k=10), attributes=["race"])
    assert json.dumps(m.to_dict()) == json.dumps(again.to_dict())
    other = run("fairness.selection_rate_ratio", random_ctx(n=800, replicates=40, k=10, seed=1), attributes=["race"])
    assert (other.ci_low, other.ci_high) != (m.ci_low, m.ci_high)
    # the same statistic, one replicate at a time: repeat each row by its Poisson weight and recompute the group
    # rates; the interval is the max-contrast interval of the log rates over every ordered pair of groups
    from audit.stats import max_contrast_interval

    sf = groups_of(ctx, "race").to_numpy()
    counts = pd.Series(sf).value_counts().reindex(["a", "b", "c"]).to_numpy()
    point = np.log(pd.Series(ctx.y_pred).groupby(sf).mean().reindex(["a", "b", "c"]).to_numpy())
    loop = []
    for w in ctx.weights[1:]:
        reps = np.repeat(np.arange(len(sf)), w.astype(int))
        rates = pd.Series(ctx.y_pred[reps]).groupby(sf[reps]).mean().reindex(["a", "b", "c"])
        loop.append(np.log(np.maximum(rates.to_numpy(), 0.5 / counts)))
    loop = np.array(loop)
    i, j = np.array([0, 0, 1, 1, 2, 2]), np.array([1, 2, 0, 2, 0, 1])
    lo, hi = max_contrast_interval(point[i] - point[j], loop[:, i] - loop[:, j], ctx.confidence, n=800, low=0.0)
    assert (m.ci_low, m.ci_high) == pytest.approx((np.exp(-hi), np.exp(-lo)), abs=1e-12)
    assert m.ci_low <= m.value <= m.ci_high
    eo = run("fairness.equalized_odds_difference", ctx, attributes=["race"])
    tprs, fprs = [], []
    for w in ctx.weights[1:]:
        reps = np.repeat(np.arange(len(sf)), w.astype(int))
        df = pd.DataFrame({"y": ctx.y_true[reps], "p": ctx.y_pred[reps], "g": sf[reps]})
        tprs.append(df[df.y == 1].groupby("g").p.mean().reindex(["a", "b", "c"]).to_numpy())
        fprs.append(df[df.y == 0].groupby("g").p.mean().reindex(["a", "b", "c"]).to_numpy())
    df = pd.DataFrame({"y": ctx.y_true, "p": ctx.y_pred, "g": sf})
    tpr0 = df[df.y == 1].groupby("g").p.mean().to_numpy()
    fpr0 = df[df.y == 0].groupby("g").p.mean().to_numpy()
    tprs, fprs = np.array(tprs), np.array(fprs)
    c0 = np.r_[tpr0[i] - tpr0[j], fpr0[i] - fpr0[j]]
    cr = np.hstack([tprs[:, i] - tprs[:, j], fprs[:, i] - fprs[:, j]])
    expected = max_contrast_interval(c0, cr, ctx.confidence, n=800, low=0.0)
    assert (eo.ci_low, eo.ci_high) == pytest.approx(expected, abs=1e-12)
    assert eo.ci_low <= eo.value <= eo.ci_high
    part = eo.parts[0]
    assert (part.value, part.ci_low, part.ci_high) == (eo.value, eo.ci_low, eo.ci_high)


def test_weighted_auc_equals_stats_roc_auc_with_ties():
    from audit import stats

    rng = np.random.default_rng(0)
    y = (rng.random(400) < 0.4).astype(int)
    s = rng.integers(0, 20, 400) / 20  # many ties
    W = stats.poisson_weights(400, 30, 1)
    idx = np.flatnonzero(rng.random(400) < 0.6)
    np.testing.assert_allclose(fairness._weighted_auc(W, idx, y, s), stats.roc_auc(W[:, idx], y[idx], s[idx]),
                               atol=1e-12)


def test_no_replicates_means_no_interval_and_no_crash():
    m = run("fairness.selection_rate_ratio", hand_ctx(replicates=0))
    assert m.value == pytest.approx(0.5) and (m.ci_low, m.ci_high) == (None, None)
    assert m.inconclusive is None  # the judge decides: a ci basis without an interval is INCONCLUSIVE there


# ---------------------------------------------------------------- no silent passes


def test_small_groups_make_only_their_part_incomplete_and_are_listed():
    ctx = random_ctx(n=600)  # age >=60 has about 190 rows; race c about 120; race c x age <30 about 25
    for cid in GROUP_CHECKS:
        m = run(cid, ctx, attributes=["race"], intersections=["race×age"])
        assert m.inconclusive is None
        race, inter = m.parts
        assert (race.name, race.kind, inter.name, inter.kind) == ("race", "attribute", "race × age", "intersection")
        assert race.incomplete is None and race.inconclusive is None and race.value is not None
        assert inter.incomplete.startswith("groups too small to judge: '") and "'c × <30' (" in inter.incomplete
        assert inter.value is not None  # the groups large enough are still measured and shown
        small = m.details["small_groups"]
        assert small and all(s["attribute"] == "race × age" for s in small)
        listed = {s["group"] for s in small}
        rows = {r["group"]: r for r in next(a for a in m.details["attributes"] if a["kind"] == "intersection")["groups"]}
        assert listed == {g for g, r in rows.items() if not r["judged"]}
        assert all(rows[g]["count"] < 30 or "needs at least 30" in rows[g]["too_small"] for g in listed)
        assert race.n == sum(r["count"] for r in m.details["attributes"][0]["groups"])
        assert inter.n == sum(r["count"] for r in rows.values() if r["judged"])
        for part, entry in zip(m.parts, m.details["attributes"]):  # one quantity, one number
            assert (entry["value"], entry["ci_low"], entry["ci_high"]) == (part.value, part.ci_low, part.ci_high)
            assert part.ci_low <= part.value <= part.ci_high
        worst = (min if cid == "fairness.selection_rate_ratio" else max)(m.parts, key=lambda p: p.value)
        assert (m.value, m.ci_low, m.ci_high) == (worst.value, worst.ci_low, worst.ci_high)
        assert m.details["worst"]["attribute"] == worst.name


def test_exclude_mode_judges_the_large_groups_and_still_lists_the_small():
    ctx = random_ctx(n=600)
    m = run("fairness.demographic_parity_difference", ctx, attributes=["race"], intersections=["race×age"],
            small_groups="exclude")
    assert m.inconclusive is None and m.details["small_groups"]
    assert all(p.incomplete is None and p.inconclusive is None for p in m.parts)


def test_too_few_of_one_label_is_named_per_rate():
    df = pd.DataFrame({"g": ["a"] * 50 + ["b"] * 50})
    y = np.r_[np.ones(45), np.zeros(5), np.ones(25), np.zeros(25)].astype(int)  # a: only 5 bad rows
    score = np.where(y == 1, 0.7, 0.3)
    ctx = CheckContext(y_true=y, score=score, min_group_size=10, replicates=50, frame=df,
                       manifest=manifest(g=ProtectedAttribute(column="g")), positive_label="good", negative_label="bad")
    eo = run("fairness.equalized_odds_difference", ctx)
    assert eo.parts[0].inconclusive == ("fewer than two groups of g are large enough to compare (1 of 2); too small: "
                                        "'a' (5 true 'bad' rows, the false-positive rate needs at least 10)")
    assert eo.value is None and eo.inconclusive is None  # the judge reads the part
    for cid in ("fairness.equal_opportunity_difference", "fairness.demographic_parity_difference"):
        part = run(cid, ctx).parts[0]
        assert part.inconclusive is None and part.incomplete is None


def test_empty_group_attribute_not_mapped_and_no_attributes():
    df = pd.DataFrame({"sex": ["m"] * 60})  # the map defines f, but no row has it
    ctx = CheckContext(y_true=np.r_[np.ones(30), np.zeros(30)].astype(int), score=np.linspace(0, 1, 60),
                       replicates=20, frame=df, manifest=manifest(sex=ProtectedAttribute(column="sex",
                                                                                         map={"m": "male", "f": "female"})))
    for cid in GROUP_CHECKS:
        m = run(cid, ctx)
        assert m.value is None and "'female' (no rows in the eval set)" in m.parts[0].inconclusive
        json.dumps(m.to_dict(), allow_nan=False)
    m = run("fairness.selection_rate_ratio", ctx, attributes=["sex", "religion"])
    assert [p.name for p in m.parts] == ["sex", "religion"]
    assert "the policy names 'religion', which the model's manifest does not map" in m.parts[1].inconclusive
    assert m.inconclusive is None and m.details["not_measured"][0]["attribute"] == "religion"
    bare = CheckContext(y_true=ctx.y_true, score=ctx.score, frame=df, manifest=manifest())
    assert "maps no protected attributes" in run("fairness.auc_gap", bare).inconclusive


def test_missing_values_are_left_out_and_counted():
    ctx = random_ctx(n=400, k=5)
    ctx.frame.loc[:9, "race"] = None
    m = run("fairness.demographic_parity_difference", ctx, attributes=["race"])
    attr = m.details["attributes"][0]
    assert attr["missing_rows"] == 10 and sum(g["count"] for g in attr["groups"]) == 390
    assert any("10 eval rows have no value for race" in c for c in m.details["caveats"])


def test_manifest_note_is_a_caveat():
    ctx = hand_ctx()
    ctx.manifest.protected_attributes["grp"].note = "The coding of this column is unreliable."
    m = run("fairness.demographic_parity_difference", ctx)
    assert "grp: The coding of this column is unreliable." in m.details["caveats"]


# ---------------------------------------------------------------- swaps


@pytest.mark.parametrize("text,expected", [
    ("he paid", "she paid"),
    ("He paid. HE PAID. he paid", "She paid. SHE PAID. she paid"),
    ("she and he", "he and she"),  # one pass: never swapped back
    ("the helpful theme", "the helpful theme"),  # whole words only
    ("he's late (he) he-man", "she's late (she) she-woman"),  # a hyphen ends a word
    ("his loan and her loan", "her loan and his loan"),
    ("give it to him, not her", "give it to her, not his"),  # "her" is read as the possessive
    ("Mr Smith, Mrs Smith, Ms Smith", "Ms Smith, Mr Smith, Mr Smith"),
    ("male : single", "female : single"),
    ("Female applicant, his WIFE", "Male applicant, her HUSBAND"),
    ("", ""),
])
def test_gender_swaps_keep_case_and_word_boundaries(text, expected):
    assert load("gender").swap(text)[0] == expected


def test_bundled_lists_load_and_every_pair_swaps_back():
    for name in ("gender", "national_origin", "age", "marital_status"):
        sl = load(name)
        assert sl.name == name and sl.source == "bundled" and len(sl.mapping) >= 10
        for term, repl in sl.mapping.items():
            assert sl.swap(term)[0] == repl
            assert sl.swap(term.upper())[0] == repl.upper()


def test_user_list_from_a_file_and_bad_specs(tmp_path):
    f = tmp_path / "jobs.yaml"
    f.write_text("name: jobs\npairs:\n  - [nurse, engineer]\n  - [stay at home, full time]\n")
    sl = load_all([str(f), "age"])[0]
    assert sl.name == "jobs" and sl.source == str(f)
    assert sl.swap("A Nurse works STAY AT HOME") == ("A Engineer works FULL TIME", ["nurse", "stay at home"])
    with pytest.raises(ValueError, match="unknown swap list 'gendr'"):
        load_all("gendr")
    with pytest.raises(ValueError, match="not found"):
        load_all(str(tmp_path / "nope.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("pairs:\n  - [he]\n")
    with pytest.raises(ValueError, match=re.escape("pairs[0] must be two non-empty words")):
        load_all(str(bad))
    with pytest.raises(ValueError, match="swaps must be"):
        load_all(3)
    with pytest.raises(ValueError, match="twice"):
        load_all(["gender", "gender"])
    assert build("x", [["a", "b"], ["b", "c"]], "t").mapping == {"a": "b", "b": "a", "c": "b"}


# ---------------------------------------------------------------- counterfactual, with a scorer we control


class FakeScorer(CheckContext):
    """Scores a text 0.3 higher when it says "she": the model reads gender."""

    calls: list

    def score_texts(self, texts, desc=""):
        self.calls.append(list(texts))
        return np.array([min(1.0, 0.45 + 0.3 * ("she" in t.lower().split())) for t in texts])


def fake_ctx(texts: list[str], replicates: int = 100, k: int = 2) -> FakeScorer:
    score = np.array([min(1.0, 0.45 + 0.3 * ("she" in t.lower().split())) for t in texts])
    ctx = FakeScorer(y_true=np.ones(len(texts), dtype=int), score=score, texts=texts, replicates=replicates,
                     min_group_size=k, bundle=SimpleNamespace(model=object()), positive_label="good",
                     negative_label="bad")
    ctx.calls = []
    return ctx


def test_flip_rate_counts_only_changed_rows_and_rescores_only_them():
    texts = ["he pays on time", "she pays on time", "pays on time", "his job is stable", "no terms here"]
    ctx = fake_ctx(texts)
    m = run("fairness.counterfactual_flip_rate", ctx)
    # changed: rows 0 (he->she: 0.45 -> 0.75, flips), 1 (she->he: 0.75 -> 0.45, flips), 3 (his->her: no change)
    assert ctx.calls == [["she pays on time", "he pays on time", "her job is stable"]]  # one batch, changed only
    assert m.value == pytest.approx(2 / 3) and m.n == 3
    lst = m.details["lists"][0]
    assert (lst["rows_changed"], lst["rows_total"], lst["flips"]) == (3, 5, 2)
    assert (lst["flips_to_favourable"], lst["flips_to_unfavourable"]) == (1, 1)
    assert lst["mean_abs_score_change"] == pytest.approx(0.2) and lst["mean_score_change"] == pytest.approx(0.0)
    ex = lst["examples"]
    assert [e["row"] for e in ex] == [0, 1, 3] and ex[0]["before"] == "he pays on time"
    assert ex[0]["after"] == "she pays on time" and ex[0]["flipped"] and ex[0]["decision_after"] == "good"
    assert lst["terms_swapped"] == {"he": 1, "his": 1, "she": 1}
    s = run("fairness.counterfactual_score_change", ctx)
    assert s.value == pytest.approx(0.2)
    assert len(ctx.calls) == 1  # the second check reads the same re-scored texts
    json.dumps(m.to_dict(), allow_nan=False)


def test_flip_rate_interval_is_the_bootstrap_over_changed_rows():
    rng = np.random.default_rng(0)
    texts = [rng.choice(["he is", "she is", "it is"]) + f" {i}" for i in range(300)]
    ctx = fake_ctx(texts, replicates=200)
    m = run("fairness.counterfactual_flip_rate", ctx)
    changed = np.array([not t.startswith("it") for t in texts])
    W = ctx.weights[1:, changed]
    reps = W.sum(axis=1) / W.sum(axis=1)  # every changed row flips here
    assert m.value == 1.0 and (m.ci_low, m.ci_high) == (1.0, 1.0) and len(reps) == 200
    s = run("fairness.counterfactual_score_change", ctx)
    assert s.value == pytest.approx(0.3) and s.ci_low == pytest.approx(0.3) and s.n == changed.sum()


def test_counterfactual_without_evidence_is_inconclusive():
    m = run("fairness.counterfactual_flip_rate", fake_ctx(["no identity words", "none here"]))
    assert m.value is None and [p.inconclusive for p in m.parts] == ["no eval text contains a term of the 'gender' list"]
    assert m.parts[0].n == 0 and m.parts[0].kind == "swap list"
    m = run("fairness.counterfactual_flip_rate", fake_ctx(["he is"] * 12 + ["it is"] * 3, k=30))
    # 12 changed texts are too few for a pass, but a flip they show would stand: incomplete, not unjudgeable
    assert m.parts[0].inconclusive is None and m.parts[0].incomplete == \
        "only 12 eval texts contain a term of the 'gender' list (at least 30 needed for a pass)"
    m = run("fairness.counterfactual_flip_rate", fake_ctx(["he is", "she is"]), swaps=["gender", "age"])
    assert [(p.name, p.n, p.inconclusive) for p in m.parts] == [
        ("gender", 2, None), ("age", 0, "no eval text contains a term of the 'age' list")]
    no_model = CheckContext(y_true=np.ones(2, dtype=int), score=np.ones(2), texts=["he", "she"])
    assert "no model loaded" in run("fairness.counterfactual_flip_rate", no_model).inconclusive


def _cf_judge(m: Measurement, rule_yaml: str, tmp_path):
    """The finding of a counterfactual measurement under a policy written here (policy -> judge)."""
    import datetime as dt

    from audit.judge import judge_one
    from audit.policy import load_policy

    p = tmp_path / "p.yaml"
    p.write_text(f"policy: t\nversion: '1'\nchecks:\n  {m.check_id}: {rule_yaml}\n")
    policy = load_policy(p)
    return judge_one(all_checks()[m.check_id], policy.checks[m.check_id], m, policy, dt.date(2026, 1, 1))


def cf_mixed_texts() -> list[str]:
    # gender: 40 texts, every one flips (he 0.45 -> she 0.75 and back); age: 3 texts ("young"/"elderly"), none
    # of which flips (no "she" in them)
    return [("he" if i % 2 else "she") + f" pays {i}" for i in range(40)] + ["young applicant", "an elderly one",
                                                                             "young again", "nothing here"]


def test_counterfactual_each_swap_list_is_its_own_part():
    ctx = fake_ctx(cf_mixed_texts(), replicates=200, k=1)
    m = run("fairness.counterfactual_flip_rate", ctx, swaps=["gender", "age"])
    g, a = m.parts
    # hand counts: gender changes rows 0..39, all 40 flip; age changes 3 rows, none flips
    assert (g.name, g.kind, g.n, g.value, g.ci_low, g.ci_high) == ("gender", "swap list", 40, 1.0, 1.0, 1.0)
    assert (a.name, a.n, a.value, a.ci_low, a.ci_high) == ("age", 3, 0.0, 0.0, 0.0)
    # the value is the worst list's own, and n counts the rows any list changed
    assert (m.value, m.ci_low, m.ci_high, m.n) == (1.0, 1.0, 1.0, 43)
    assert m.details["worst_list"] == "gender" and m.inconclusive is None
    assert [e["rows_changed"] for e in m.details["lists"]] == [40, 3]
    assert all_checks()[m.check_id].evidence == "texts with a term to swap"


class GenderAgeScorer(FakeScorer):
    """Scores a text 0.3 higher when it says "she" or "elderly": the model reads gender and age."""

    @staticmethod
    def read(t: str) -> float:
        return 0.45 + 0.3 * bool({"she", "elderly"} & set(t.lower().split()))

    def score_texts(self, texts, desc=""):
        self.calls.append(list(texts))
        return np.array([self.read(t) for t in texts])


def test_counterfactual_interval_is_the_lists_own_not_a_joint_maximum():
    rng = np.random.default_rng(1)
    # gender rows: "he" flips, "his" does not; age rows: "young" flips (-> elderly), "younger" does not
    texts = [f"{rng.choice(['he', 'his'])} x" for _ in range(150)] + [f"{rng.choice(['young', 'younger'])} y"
                                                                       for _ in range(150)]
    score = np.array([GenderAgeScorer.read(t) for t in texts])
    ctx = GenderAgeScorer(y_true=np.ones(len(texts), dtype=int), score=score, texts=texts, replicates=400,
                          min_group_size=2, bundle=SimpleNamespace(model=object()), positive_label="good",
                          negative_label="bad")
    ctx.calls = []
    m = run("fairness.counterfactual_flip_rate", ctx, swaps=["gender", "age"])
    g, a = m.parts
    reps = {}
    for part, rows, word in ((g, np.arange(150), "he"), (a, np.arange(150, 300), "young")):
        flips = np.array([texts[i].split()[0] == word for i in rows], dtype=float)
        W = ctx.weights[1:, rows]
        reps[part.name] = (W @ flips) / W.sum(axis=1)  # the list's own bootstrap, by hand
        lo, hi = np.quantile(reps[part.name], [0.025, 0.975])
        assert part.n == 150 and part.value == pytest.approx(flips.mean())
        assert part.ci_low == pytest.approx(lo, abs=0.005) and part.ci_high == pytest.approx(hi, abs=0.005)
    worst = max((g, a), key=lambda p: p.value)
    assert (m.value, m.ci_low, m.ci_high) == (worst.value, worst.ci_low, worst.ci_high)
    joint = np.maximum(reps["gender"], reps["age"])  # what a maximum taken on each replicate would report
    assert m.ci_low < np.quantile(joint, 0.025) - 0.005


def test_counterfactual_min_evidence_end_to_end(tmp_path):
    ctx = fake_ctx(cf_mixed_texts(), replicates=100, k=1)
    m = run("fairness.counterfactual_flip_rate", ctx, swaps=["gender", "age"])
    # the gender list violates; the age list (3 texts) is below min_evidence: the violation stands
    f = _cf_judge(m, "{max: 0.1, min_evidence: 10, swaps: [gender, age]}", tmp_path)
    assert f.status.value == "FAIL" and f.part == "gender" and f.n == 40
    assert f.evidence == "texts with a term to swap"
    assert [(p["name"], p["status"], p["n"]) for p in f.parts] == [("gender", "FAIL", 40), ("age", "INCONCLUSIVE", 3)]
    assert f.parts[1]["reason"] == ("only 3 texts with a term to swap, the policy asks for at least 10 before a "
                                    "pass counts")
    # a list that passes on 3 texts is not a pass: with no violation, the rule is INCONCLUSIVE
    age_only = run("fairness.counterfactual_flip_rate", ctx, swaps=["age"])
    f = _cf_judge(age_only, "{max: 0.1, min_evidence: 10, swaps: [age]}", tmp_path)
    assert f.status.value == "INCONCLUSIVE" and f.n == 3
    assert f.reason == "only 3 texts with a term to swap, the policy asks for at least 10 before a pass counts"
    assert _cf_judge(age_only, "{max: 0.1, min_evidence: 3, swaps: [age]}", tmp_path).status.value == "PASS"
    # without min_evidence the same 3 texts pass: the rule's own choice
    assert _cf_judge(age_only, "{max: 0.1, swaps: [age]}", tmp_path).status.value == "PASS"


# ---------------------------------------------------------------- every registered check: a contract


def tiny_eval(tiny_model, credit_csv) -> tuple[pd.DataFrame, list[str]]:
    frame = pd.read_csv(credit_csv, dtype=str).iloc[:160].reset_index(drop=True)
    pronoun = np.array(["he", "she", "", "his"])[np.arange(len(frame)) % 4]
    frame["text"] = [f"{p} {t}".strip() for p, t in zip(pronoun, frame["text"])]
    return frame, frame["text"].tolist()


def tiny_ctx(bundle, frame, texts, seed: int = 0) -> CheckContext:
    from audit.scoring import score_texts

    m = bundle.manifest
    pos = m.labels.index(m.positive_label)
    preds = score_texts(bundle.model, bundle.tokenizer, texts, max_length=m.max_length, positive_index=pos,
                        progress=False)
    y = (frame[m.label_column] == m.positive_label).astype(int).to_numpy()
    return CheckContext(y_true=y, score=preds.score, replicates=50, seed=seed, min_group_size=10,
                        positive_label=m.positive_label, negative_label=m.negative_label, frame=frame, texts=texts,
                        manifest=m, bundle=bundle)


@pytest.fixture(scope="module")
def tiny_bundle(tiny_model):
    from audit.model import open_bundle

    return open_bundle(tiny_model).load()


FAST_FAMILIES = {"performance", "fairness"}  # other families' checks (SHAP, ...) take minutes here: -m slow


@pytest.mark.parametrize("check_id", [
    pytest.param(cid, marks=() if spec.family in FAST_FAMILIES else pytest.mark.slow)
    for cid, spec in sorted(all_checks().items())])
def test_contract_every_check(check_id, tiny_bundle, tiny_model, credit_csv):
    """Every registered check documents itself, returns a JSON-serializable Measurement under its own id, and
    gives the same result for the same seed."""
    spec = all_checks()[check_id]
    assert spec.summary and spec.meaning and spec.title
    frame, texts = tiny_eval(tiny_model, credit_csv)
    a = spec.fn(tiny_ctx(tiny_bundle, frame, texts), **spec.params)
    b = spec.fn(tiny_ctx(tiny_bundle, frame, texts), **spec.params)
    assert isinstance(a, Measurement) and a.check_id == check_id and a.error is None
    assert json.dumps(a.to_dict(), allow_nan=False, sort_keys=True) == json.dumps(b.to_dict(), allow_nan=False,
                                                                                 sort_keys=True)
    assert a.value is not None or a.inconclusive or a.skipped


# ---------------------------------------------------------------- end to end through `audit run`


E2E_POLICY = """\
policy: fairness-e2e
version: "1"
min_group_size: 30
decision_threshold: THRESHOLD
checks:
  fairness.selection_rate_ratio: {min: 0.0, attributes: [sex], refs: ["EEOC four-fifths rule (screen)"]}
  fairness.equalized_odds_difference: {max: 1.0, severity: warn, attributes: [sex], intersections: ["sex×age"]}
  fairness.counterfactual_flip_rate: {max: 1.0, swaps: gender, examples: 3}
  fairness.demographic_parity_difference: {max: 0.0, attributes: [sex], intersections: ["sex×age"]}
budget: {bootstrap: 100, seed: 0}
"""


def good_scores(pipe, texts: list[str]) -> np.ndarray:
    return np.array([next(d["score"] for d in row if d["label"] == "good") for row in pipe(texts, batch_size=32)])


def test_audit_run_with_fairness_checks(tiny_model, credit_csv, tmp_path, policy_file):
    from click.testing import CliRunner
    from fairlearn.metrics import MetricFrame, selection_rate
    from transformers import pipeline

    from audit.cli import cli

    frame = pd.read_csv(credit_csv, dtype=str)
    pronoun = np.array(["he", "she", ""])[np.arange(len(frame)) % 3]
    frame["text"] = [f"{p} {t}".strip() for p, t in zip(pronoun, frame["text"])]
    data = tmp_path / "eval.csv"
    frame.to_csv(data, index=False)
    # The tiny model's scores sit close together; a threshold in the widest gap near their median splits the
    # decisions, so rates differ between groups and a swap can flip a decision.
    pipe = pipeline("text-classification", model=str(tiny_model), top_k=None, device="cpu")
    old = good_scores(pipe, frame["text"].tolist())
    levels = np.unique(old)
    middle = levels[(levels >= np.quantile(old, 0.3)) & (levels <= np.quantile(old, 0.7))]
    gaps = np.diff(middle)
    threshold = float((middle[np.argmax(gaps)] + middle[np.argmax(gaps) + 1]) / 2) if len(middle) > 1 else 0.5
    policy = policy_file(E2E_POLICY.replace("THRESHOLD", repr(threshold)))
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["run", str(tiny_model), "--policy", str(policy), "--data", str(data),
                                      "--out", str(out), "--no-progress", "--all-checks"], catch_exceptions=False)
    # sex breaks the demographic-parity rule (any gap above 0); the intersection's small cells leave its own
    # part incomplete, and that does not turn the violation into INCONCLUSIVE: the gate fails, exit code 1
    assert result.exit_code == 1, result.output
    r = json.loads((out / "result.json").read_text())
    f = {x["check_id"]: x for x in r["findings"]}
    dp = f["fairness.demographic_parity_difference"]
    assert dp["status"] == "FAIL" and dp["part"] == "sex" and r["verdict"]["status"] == "FAIL"
    assert {p["name"]: p["status"] for p in dp["parts"]}["sex"] == "FAIL"
    assert f["fairness.selection_rate_ratio"]["status"] == "PASS"
    assert f["fairness.counterfactual_flip_rate"]["status"] == "PASS"
    eo = f["fairness.equalized_odds_difference"]
    assert eo["status"] == "INCONCLUSIVE" and "sex × age" in eo["reason"] and "'male × <25'" in eo["reason"]
    assert set(r["measurements"]) >= set(GROUP_CHECKS) | {"fairness.counterfactual_score_change"}

    # the ratio, against fairlearn on the decisions written to predictions.csv
    p = pd.read_csv(out / "predictions.csv", dtype={"row_id": str}).set_index("row_id")
    pred = (p.loc[frame["id"], "predicted_label"] == "good").astype(int).to_numpy()
    assert 0 < pred.mean() < 1
    mf = MetricFrame(metrics=selection_rate, y_true=pred, y_pred=pred, sensitive_features=frame["sex"])
    assert r["measurements"]["fairness.selection_rate_ratio"]["value"] == pytest.approx(mf.ratio(), abs=1e-12)

    # the flip rate, against a plain transformers pipeline on texts swapped here by hand
    changed = np.flatnonzero(pronoun != "")
    texts = frame["text"].to_numpy()[changed]
    swapped = [("she" if t.startswith("he ") else "he") + t[t.index(" "):] for t in texts]
    new = good_scores(pipe, swapped)
    flips = ((old[changed] >= threshold) != (new >= threshold)).mean()
    cf = r["measurements"]["fairness.counterfactual_flip_rate"]
    assert cf["details"]["lists"][0]["rows_changed"] == len(changed) == 267
    assert cf["value"] == pytest.approx(flips, abs=1e-9)
    assert cf["details"]["lists"][0]["mean_abs_score_change"] == pytest.approx(np.abs(new - old[changed]).mean(),
                                                                              abs=1e-5)
    assert len(cf["details"]["lists"][0]["examples"]) == 3

    html = (out / "report.html").read_text()
    assert "Fairness evidence" in html and "not a legal test" in html
    assert "Groups too small to judge" in html and "male × &lt;25" in html
    assert 'id="chart-ratio-sex"' in html and "Counterfactual term swaps" in html


# ---------------------------------------------------------------- the report


def test_report_section_sentences_charts_and_escaping():
    from pathlib import Path

    from audit.render import render_html
    from audit.render.outputs import json_safe

    hostile = '<script>alert(1)</script>'
    frame = HAND.astype(str).replace({"grp": {"B": hostile}})
    ctx = CheckContext(y_true=HAND["y"].to_numpy(), score=HAND["score"].to_numpy(), replicates=200, min_group_size=3,
                       positive_label="good", negative_label="bad", frame=frame,
                       manifest=manifest(grp=ProtectedAttribute(column="grp", note="Coding caveat <b>here</b>.")))
    result = json.loads((Path(__file__).parent / "fixtures" / "result_sample.json").read_text())
    m = run("fairness.selection_rate_ratio", ctx)
    eo = run("fairness.equalized_odds_difference", ctx)
    result["measurements"] = json_safe({m.check_id: m.to_dict(), eo.check_id: eo.to_dict()})
    base = {"family": "fairness", "severity": "block", "basis": "point", "confidence": 0.95, "refs": [],
            "meaning": "", "reason": "", "waiver": None, "unit": ""}
    result["findings"] = [
        {**base, "check_id": m.check_id, "title": "Selection-rate ratio (adverse impact)", "status": "FAIL",
         "min": 0.8, "max": None, "value": m.value, "ci_low": m.ci_low, "ci_high": m.ci_high, "observed": m.value,
         "message": "x"},
        {**base, "check_id": eo.check_id, "title": "Equalized-odds difference", "status": "WARN", "severity": "warn",
         "min": None, "max": 0.1, "value": eo.value, "ci_low": eo.ci_low, "ci_high": eo.ci_high,
         "observed": eo.value, "message": "y"}]
    html = render_html(result)
    lo, hi = m.details["attributes"][0]["ci_low"], m.details["attributes"][0]["ci_high"]
    assert (f"Group “&lt;script&gt;alert(1)&lt;/script&gt;” (grp) received the favourable decision (good) 0.500 times "
            f"as often as group “A” (95% CI {lo:.3f}–{hi:.3f}); the policy requires at least 0.800.") in html
    assert "By grp, the equalized-odds difference was 0.333" in html and "the policy allows at most 0.100" in html
    assert hostile not in html and "<b>here</b>" not in html and "Coding caveat &lt;b&gt;here&lt;/b&gt;." in html
    assert 'id="chart-ratio-grp"' in html and 'id="chart-tpr-grp"' in html and 'id="chart-fpr-grp"' in html
    assert html.index("four-fifths rule") < html.index("Coding caveat")


def test_report_tolerates_partial_fairness_details():
    from audit.render.fairness_view import fairness_view

    v = fairness_view({"measurements": {"fairness.selection_rate_ratio": {"details": {"attributes": [
        {"attribute": "sex", "groups": [{"group": "f", "count": 3}, {}]}, "junk"]}},
        "fairness.counterfactual_flip_rate": {"details": {"lists": [{"list": "gender"}]}}}, "findings": ["junk"]})
    assert [a.name for a in v.attributes] == ["sex"] and v.swaps[0].name == "gender"
    assert any("four-fifths" in c for c in v.caveats)


# ---------------------------------------------------------------- parts, through the judge


def judged(check_id: str, m: Measurement, **rule):
    import datetime as dt

    from audit.judge import judge_one
    from audit.policy import Policy

    policy = Policy(policy="p", version="1", checks={check_id: rule})
    return judge_one(all_checks()[check_id], policy.checks[check_id], m, policy, dt.date(2026, 1, 1))


def parts_ctx(n: int = 1200, small: int = 13, seed: int = 0) -> CheckContext:
    """sex: the model finds 90% of good men and 70% of good women; foreign_worker: only `small` rows say yes;
    race: group c is selected about half as often as a; sex × race: some cells small."""
    rng = np.random.default_rng(seed)
    sex = rng.choice(["m", "f"], n)
    race = rng.choice(["a", "b", "c"], n, p=[0.48, 0.48, 0.04])
    fw = np.array(["yes"] * small + ["no"] * (n - small))
    y = (rng.random(n) < 0.5).astype(int)
    tpr = np.where(sex == "m", 0.9, 0.7) * np.where(race == "c", 0.5, 1.0)
    decide = np.where(y == 1, rng.random(n) < tpr, rng.random(n) < 0.15)
    frame = pd.DataFrame({"sex": sex, "race": race, "fw": fw})
    attrs = dict(sex=ProtectedAttribute(column="sex"), race=ProtectedAttribute(column="race"),
                 foreign_worker=ProtectedAttribute(column="fw"))
    return CheckContext(y_true=y, score=np.where(decide, 0.8, 0.2), replicates=200, seed=0, min_group_size=30,
                        frame=frame, manifest=manifest(**attrs), positive_label="good", negative_label="bad")


def test_a_violating_attribute_beside_a_small_group_attribute_fails():
    ctx = parts_ctx()
    m = run("fairness.equalized_odds_difference", ctx, attributes=["sex", "foreign_worker"])
    sex, fw = m.parts
    assert sex.value > 0.1 and sex.inconclusive is None and sex.incomplete is None
    assert fw.inconclusive.startswith("fewer than two groups of foreign_worker are large enough")
    f = judged("fairness.equalized_odds_difference", m, max=0.10)
    assert f.status.value == "FAIL" and f.part == "sex" and f.value == sex.value
    assert (f.ci_low, f.ci_high) == (sex.ci_low, sex.ci_high)
    assert [p["status"] for p in f.parts] == ["FAIL", "INCONCLUSIVE"]
    # the same check with a loose limit: sex passes, foreign_worker cannot be judged, so INCONCLUSIVE
    assert judged("fairness.equalized_odds_difference", m, max=0.9).status.value == "INCONCLUSIVE"


def test_a_violating_attribute_beside_an_intersection_with_small_cells_fails():
    ctx = parts_ctx()
    m = run("fairness.selection_rate_ratio", ctx, attributes=["race"], intersections=["race×sex"])
    race, inter = m.parts
    assert race.value < 0.8 and race.incomplete is None
    assert inter.incomplete and inter.incomplete.startswith("groups too small to judge: ")
    f = judged("fairness.selection_rate_ratio", m, min=0.8)
    assert f.status.value == "FAIL"
    # an incomplete part that violates stands on its own: judged alone, the intersection fails too
    alone = run("fairness.selection_rate_ratio", ctx, attributes=[], intersections=["race×sex"])
    assert alone.parts[-1].incomplete and alone.parts[-1].value < 0.8
    # a pass of an incomplete part is INCONCLUSIVE; with small_groups: exclude it is a pass
    assert judged("fairness.selection_rate_ratio", m, min=0.1).status.value == "INCONCLUSIVE"
    ex = run("fairness.selection_rate_ratio", ctx, attributes=["race"], intersections=["race×sex"],
             small_groups="exclude")
    assert ex.parts[1].incomplete is None and ex.details["small_groups"]
    assert judged("fairness.selection_rate_ratio", ex, min=0.1).status.value == "PASS"


def test_an_unmapped_attribute_does_not_hide_a_violation():
    ctx = parts_ctx()
    m = run("fairness.equalized_odds_difference", ctx, attributes=["sex", "religion"])
    assert m.inconclusive is None and m.parts[1].name == "religion" and "does not map" in m.parts[1].inconclusive
    assert judged("fairness.equalized_odds_difference", m, max=0.10).status.value == "FAIL"


def test_interval_contains_its_estimate_and_details_equal_the_parts():
    ctx = parts_ctx(seed=3)
    for cid in GROUP_CHECKS:
        m = run(cid, ctx, attributes=["sex", "race", "foreign_worker"], intersections=["race×sex"])
        for part, entry in zip(m.parts, m.details["attributes"]):
            assert entry["attribute"] == part.name
            assert (entry["value"], entry["ci_low"], entry["ci_high"]) == (part.value, part.ci_low, part.ci_high)
            if part.value is not None and part.ci_low is not None:
                assert part.ci_low <= part.value <= part.ci_high, (cid, part)
                if cid != "fairness.selection_rate_ratio":
                    assert part.ci_low >= 0.0


def test_report_headline_shows_the_part_the_finding_shows():
    from audit.render.fairness_view import fairness_view

    ctx = parts_ctx()
    m = run("fairness.equalized_odds_difference", ctx, attributes=["race", "sex"])
    f = judged("fairness.equalized_odds_difference", m, max=0.10)
    sex = next(p for p in m.parts if p.name == "sex")
    f.part, f.value, f.ci_low, f.ci_high = "sex", sex.value, sex.ci_low, sex.ci_high  # as if sex decided
    v = fairness_view({"measurements": {m.check_id: m.to_dict()}, "findings": [f.to_dict()],
                       "policy": {"confidence": 0.95}})
    head = v.sentences[0]
    assert head.startswith(f"{f.status.value}: By sex, the equalized-odds difference was {sex.value:.3f} "
                           f"(95% CI {sex.ci_low:.3f}–{sex.ci_high:.3f})"), head
    race = next(a for a in v.attributes if a.name == "race")
    rp = m.parts[0]
    assert f"By race, the equalized-odds difference was {rp.value:.3f} (95% CI {rp.ci_low:.3f}–{rp.ci_high:.3f})" \
        in race.sentences[0]
