"""Mergeable statistics: partitions merge to the whole exactly, and the numbers equal independent references
(scikit-learn, fairlearn, scipy, hand counts) and the in-memory checks on the same rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from audit import mergeable as mg
from audit.checks import all_checks
from audit.checks.fairness import fairness_context
from audit.checks.performance import performance_from_stats as performance
from audit.context import CheckContext
from audit.from_stats import measure_stats
from audit.manifest import Manifest, ProtectedAttribute, TextRecipe
from audit.noise import add_noise
from audit.replicates import Replicates

R = 200
GRID = mg.Grid(score_bins=1000, threshold_bins=100, ece_bins=10, replicates=R, seed=7)


def manifest() -> Manifest:
    return Manifest(name="t", labels=["bad", "good"], positive_label="good", label_column="label",
                    text=TextRecipe(column="text"),
                    protected_attributes={"race": ProtectedAttribute(column="race"),
                                          "age": ProtectedAttribute(column="age", bins=[30, 60])})


def rows(n: int = 3000, seed: int = 3, decimals: int | None = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    race = rng.choice(["a", "b", "c"], n, p=[0.5, 0.3, 0.2])
    age = rng.integers(18, 80, n).astype(float)
    age[rng.random(n) < 0.02] = np.nan  # some rows have no age
    y = (rng.random(n) < 0.6).astype(int)
    score = np.clip(0.35 * y + 0.65 * rng.random(n) - 0.08 * (race == "c"), 0, 1)
    if decimals is not None:
        score = score.round(decimals)
    return pd.DataFrame({"id": [f"row-{i}" for i in range(n)], "race": race, "age": age, "y": y, "score": score,
                         "text": "x", "label": np.where(y == 1, "good", "bad")})


def groups(df: pd.DataFrame) -> dict[str, np.ndarray]:
    from audit.data import group_series

    m = manifest()
    return {name: group_series(df, name, a, "rows").to_numpy(dtype=object)
            for name, a in m.protected_attributes.items()}


def stats_of(df: pd.DataFrame, grid: mg.Grid = GRID) -> mg.AuditStats:
    s = mg.AuditStats.empty(grid, {n: a.group_names() for n, a in manifest().protected_attributes.items()})
    s.update(df["id"].tolist(), df["score"].to_numpy(), df["y"].to_numpy(), groups(df))
    return s


def in_memory_ctx(df: pd.DataFrame, grid: mg.Grid = GRID) -> CheckContext:
    """The in-memory checks' context on the same rows, with the same row-id bootstrap weights."""
    ctx = CheckContext(y_true=df["y"].to_numpy(), score=df["score"].to_numpy(), replicates=grid.replicates,
                       seed=grid.seed, min_group_size=30, positive_label="good", negative_label="bad",
                       frame=df.astype({"age": object}), manifest=manifest())
    W = mg.replicate_weights(mg.row_keys(df["id"].tolist(), grid.seed), grid.replicates).T.astype(float)
    ctx.__dict__["weights"] = np.vstack([np.ones(len(df)), W])
    return ctx


def assert_same_stats(a: mg.AuditStats, b: mg.AuditStats) -> None:
    assert a.rows == b.rows
    np.testing.assert_array_equal(a.scores.counts.point, b.scores.counts.point)
    np.testing.assert_array_equal(a.scores.counts.reps, b.scores.counts.reps)
    np.testing.assert_allclose(a.calibration.sums.point, b.calibration.sums.point, rtol=1e-12)
    np.testing.assert_allclose(a.calibration.sums.reps, b.calibration.sums.reps, rtol=1e-12)
    for name in a.attributes:
        ga, gb = a.groups[name], b.groups[name].aligned(a.groups[name].groups)
        assert ga.groups == gb.groups and ga.missing == gb.missing
        np.testing.assert_array_equal(ga.counts.point, gb.counts.point)
        np.testing.assert_array_equal(ga.counts.reps, gb.counts.reps)


# ---------------------------------------------------------------- the bootstrap weights


def test_replicate_weights_depend_only_on_seed_and_row_id():
    ids = [f"r{i}" for i in range(500)]
    W = mg.replicate_weights(mg.row_keys(ids, 3), 64)
    perm = np.random.default_rng(0).permutation(500)
    W2 = mg.replicate_weights(mg.row_keys([ids[i] for i in perm], 3), 64)
    np.testing.assert_array_equal(W[perm], W2)
    assert not np.array_equal(W, mg.replicate_weights(mg.row_keys(ids, 4), 64))
    big = mg.replicate_weights(mg.row_keys([f"x{i}" for i in range(5000)], 0), 200)
    assert abs(big.mean() - 1) < 0.01 and abs(big.var() - 1) < 0.02  # Poisson(1): mean = variance = 1
    freq = np.bincount(big.ravel().astype(int)) / big.size
    assert abs(freq[0] - np.exp(-1)) < 0.003 and abs(freq[2] - np.exp(-1) / 2) < 0.003


# ---------------------------------------------------------------- merging partitions equals the whole


def test_partitions_merge_to_the_whole_exactly():
    df = rows()
    whole = stats_of(df)
    part = np.random.default_rng(1).integers(0, 3, len(df))
    pieces = [stats_of(df[part == p]) for p in range(3)]
    merged = pieces[2].merge(pieces[0]).merge(pieces[1])  # any order
    assert_same_stats(whole, merged)
    # and through a stats file's encoding
    again = mg.AuditStats.from_dict(merged.to_dict())
    assert_same_stats(whole, again)


def test_a_raw_attribute_seen_in_a_different_order_aligns_by_name():
    df = rows(600)
    a = stats_of(df[df["race"] != "a"])
    b = stats_of(df[df["race"] == "a"])
    assert a.groups["race"].groups[0] != b.groups["race"].groups[0]
    assert_same_stats(stats_of(df), a.merge(b))


def test_token_importance_merges_to_the_whole():
    rng = np.random.default_rng(0)
    words = [str(w) for w in rng.choice(list("abcdefgh"), 400)]
    values = rng.normal(size=400)
    whole = mg.TokenImportance()
    whole.update(words, values)
    a, b = mg.TokenImportance(), mg.TokenImportance()
    a.update(words[:150], values[:150])
    b.update(words[150:], values[150:])
    merged = a.merge(b)
    assert merged.counts == whole.counts
    assert merged.sums == pytest.approx(whole.sums) and merged.total == pytest.approx(whole.total)
    hand = pd.DataFrame({"w": words, "v": np.abs(values)}).groupby("w")["v"].sum()
    assert dict(merged.top(3)) == pytest.approx(hand.sort_values(ascending=False).head(3).to_dict())
    assert merged.share({"a", "b"}) == pytest.approx(hand[["a", "b"]].sum() / hand.sum())


# ---------------------------------------------------------------- against independent references


def test_performance_counts_equal_scikit_learn():
    from sklearn.metrics import (
        accuracy_score,
        balanced_accuracy_score,
        brier_score_loss,
        f1_score,
        precision_score,
        recall_score,
        roc_auc_score,
    )

    df = rows(decimals=None)  # raw scores: AUC is binned, within its bound
    s = stats_of(df)
    out = performance(s, Replicates(s, [], 0), 0.5, 0.95, "good", "bad")
    y, sc = df["y"].to_numpy(), df["score"].to_numpy()
    p = (sc >= 0.5).astype(int)
    assert out["performance.accuracy"].value == pytest.approx(accuracy_score(y, p), abs=1e-15)
    assert out["performance.balanced_accuracy"].value == pytest.approx(balanced_accuracy_score(y, p), abs=1e-15)
    assert out["performance.precision"].value == pytest.approx(precision_score(y, p), abs=1e-15)
    assert out["performance.recall"].value == pytest.approx(recall_score(y, p), abs=1e-15)
    assert out["performance.f1"].value == pytest.approx(f1_score(y, p), abs=1e-15)
    assert out["performance.brier_score"].value == pytest.approx(brier_score_loss(y, sc), rel=1e-12)
    bound = out["performance.roc_auc"].details["binned"]["max_abs_error"]
    assert 0 < bound < 0.002
    assert abs(out["performance.roc_auc"].value - roc_auc_score(y, sc)) <= bound
    assert out["performance.accuracy"].details["confusion_matrix"]["tp"] == int(((p == 1) & (y == 1)).sum())


def test_scores_on_the_grid_give_the_exact_auc_and_average_precision():
    from sklearn.metrics import average_precision_score, roc_auc_score

    df = rows(decimals=3)
    s = stats_of(df)
    out = performance(s, Replicates(s, [], 0), 0.5, 0.95, "good", "bad")
    y, sc = df["y"].to_numpy(), df["score"].to_numpy()
    assert out["performance.roc_auc"].value == pytest.approx(roc_auc_score(y, sc), abs=1e-12)
    assert out["performance.pr_auc"].value == pytest.approx(average_precision_score(y, sc), abs=1e-12)


def test_group_rates_equal_fairlearn_metricframe():
    from fairlearn.metrics import MetricFrame, false_positive_rate, selection_rate, true_positive_rate
    from sklearn.metrics import accuracy_score, precision_score

    df = rows()
    s = stats_of(df)
    ctx = fairness_context(s, Replicates(s, [], 0), manifest(), 0.5, 0.95, 30)
    p = (df["score"] >= 0.5).astype(int)
    for name in ("race", "age"):
        table = ctx.shared.group_tables[name]
        sf = pd.Series(groups(df)[name]).astype(str)
        keep = (groups(df)[name] != None) & pd.notna(groups(df)[name])  # noqa: E711
        mf = MetricFrame(metrics={"sel": selection_rate, "tpr": true_positive_rate, "fpr": false_positive_rate,
                                  "acc": accuracy_score, "prec": precision_score},
                         y_true=df["y"][keep], y_pred=p[keep], sensitive_features=sf[keep]).by_group
        for g, row in mf.iterrows():
            i = table.grouping.groups.index(g)
            assert table.point["selection_rate"][i] == pytest.approx(row["sel"], abs=1e-15)
            assert table.point["tpr"][i] == pytest.approx(row["tpr"], abs=1e-15)
            assert table.point["fpr"][i] == pytest.approx(row["fpr"], abs=1e-15)
            assert table.point["accuracy"][i] == pytest.approx(row["acc"], abs=1e-15)
            assert table.point["precision"][i] == pytest.approx(row["prec"], abs=1e-15)
        assert table.grouping.missing == int((~keep).sum())


@pytest.mark.parametrize("check_id", ["performance.accuracy", "performance.balanced_accuracy",
                                      "performance.recall", "performance.precision", "performance.f1",
                                      "performance.roc_auc", "performance.brier_score", "performance.ece",
                                      "fairness.selection_rate_ratio", "fairness.demographic_parity_difference",
                                      "fairness.equalized_odds_difference", "fairness.predictive_parity_difference",
                                      "fairness.auc_gap"])
def test_stats_path_equals_the_in_memory_check_on_the_same_rows(check_id):
    """Same rows, same row-id bootstrap weights: the same value and the same interval (scores on the grid, so
    AUC is exact too)."""
    from audit.policy import Policy

    df = rows(decimals=2)
    spec = all_checks()[check_id]
    expected = spec.fn(in_memory_ctx(df), **spec.params)
    policy = Policy.model_validate({"policy": "t", "version": "1", "checks": {check_id: {"max": 1}},
                                    "budget": {"bootstrap": R, "seed": GRID.seed}})
    got = measure_stats(policy, stats_of(df), manifest())[check_id]
    assert got.value == pytest.approx(expected.value, abs=1e-12)
    assert got.ci_low == pytest.approx(expected.ci_low, abs=1e-12)
    assert got.ci_high == pytest.approx(expected.ci_high, abs=1e-12)
    assert got.inconclusive == expected.inconclusive
    same_parts(got, expected)


def same_parts(got, expected) -> None:
    """The statistics path gives the in-memory check's parts: names, kinds, values, intervals, reasons."""
    assert [(p.name, p.kind, p.inconclusive, p.incomplete) for p in got.parts] == \
        [(p.name, p.kind, p.inconclusive, p.incomplete) for p in expected.parts]
    for a, b in zip(got.parts, expected.parts):
        assert (a.value, a.ci_low, a.ci_high) == pytest.approx((b.value, b.ci_low, b.ci_high), abs=1e-12)
        assert a.n == b.n


def test_merged_partitions_give_the_whole_intervals():
    from audit.policy import Policy

    df = rows()
    part = np.random.default_rng(5).integers(0, 4, len(df))
    merged = stats_of(df[part == 0])
    for p in (1, 2, 3):
        merged = merged.merge(stats_of(df[part == p]))
    policy = Policy.model_validate({"policy": "t", "version": "1", "checks": {
        "performance.roc_auc": {"min": 0.5}, "fairness.selection_rate_ratio": {"min": 0.8}},
        "budget": {"bootstrap": R, "seed": GRID.seed}})
    a = measure_stats(policy, stats_of(df), manifest())
    b = measure_stats(policy, merged, manifest())
    for cid in a:
        got, want = (b[cid].value, b[cid].ci_low, b[cid].ci_high), (a[cid].value, a[cid].ci_low, a[cid].ci_high)
        if cid in ("performance.brier_score", "performance.ece"):  # float sums: equal up to rounding
            assert got == pytest.approx(want, rel=1e-12), cid
        else:  # counts: exactly
            assert got == want, cid


def test_score_drift_ks_bounds_scipy_and_psi_is_close():
    from scipy.stats import ks_2samp

    from audit.driftstats import psi

    rng = np.random.default_rng(0)
    ref, cur = rng.beta(2, 5, 4000), rng.beta(2.4, 5, 3000)
    h_ref, h_cur = mg.ScoreLabelHistogram(1000, 0), mg.ScoreLabelHistogram(1000, 0)
    h_ref.update(ref, np.zeros(len(ref), dtype=int))
    h_cur.update(cur[:1000], np.ones(1000, dtype=int))
    part = mg.ScoreLabelHistogram(1000, 0)
    part.update(cur[1000:], np.zeros(2000, dtype=int))
    d = mg.ScoreDrift.of(h_ref, h_cur.merge(part))
    low, high = d.ks()
    exact = ks_2samp(ref, cur).statistic
    assert low <= exact + 1e-12 <= high + 2e-12
    assert high - low < 0.01
    assert d.psi() == pytest.approx(psi(ref, cur), abs=0.01)
    assert d.ks_p_value(low) == pytest.approx(ks_2samp(ref, cur, method="asymp").pvalue, rel=0.2, abs=1e-4)


# ---------------------------------------------------------------- differential-privacy noise


def test_noise_drops_replicates_states_its_scale_and_widens_intervals():
    from audit.policy import Policy

    df = rows(20000)
    grid = mg.Grid(score_bins=20, threshold_bins=20, replicates=R, seed=0)  # coarse bins: less noise summed
    clean, noisy = stats_of(df, grid), stats_of(df, grid)
    rec = add_noise(noisy, 1.0, np.random.default_rng(0))
    assert rec["l1_sensitivity"] == 5 + 2 and rec["scale"] == pytest.approx(7.0)
    assert noisy.scores.counts.reps is None and all(g.counts.reps is None for g in noisy.groups.values())
    assert not np.array_equal(noisy.scores.counts.point, clean.scores.counts.point)
    d = mg.AuditStats.from_dict(noisy.to_dict())
    assert d.scores.counts.reps is None and np.isnan(d.rows)
    policy = Policy.model_validate({"policy": "t", "version": "1", "checks": {
        "performance.accuracy": {"min": 0.5}, "fairness.demographic_parity_difference": {"max": 0.5}},
        "budget": {"bootstrap": R, "seed": 0}})
    a = measure_stats(policy, clean, manifest())
    b = measure_stats(policy, d, manifest(), noise_scales=[rec["scale"]])
    for cid in a:
        assert "noise" in b[cid].details and "noise" not in a[cid].details
        assert b[cid].value == pytest.approx(a[cid].value, abs=0.03), cid
    wa = a["performance.accuracy"].ci_high - a["performance.accuracy"].ci_low
    wb = b["performance.accuracy"].ci_high - b["performance.accuracy"].ci_low
    assert wb > wa * 0.9  # drawn from the noised counts plus the noise: not narrower than the clean interval


def test_a_noised_partition_merges_without_replicates_and_intervals_are_drawn():
    from audit.policy import Policy

    df = rows(4000)
    grid = mg.Grid(score_bins=20, threshold_bins=20, replicates=R, seed=0)
    clean, noisy = stats_of(df.iloc[:2000], grid), stats_of(df.iloc[2000:], grid)
    rec = add_noise(noisy, 1.0, np.random.default_rng(1))
    merged = clean.merge(noisy)
    assert merged.scores.counts.reps is None and merged.groups["race"].counts.reps is None
    np.testing.assert_allclose(merged.scores.counts.point, clean.scores.counts.point + noisy.scores.counts.point)
    policy = Policy.model_validate({"policy": "t", "version": "1", "checks": {"performance.recall": {"min": 0.5}},
                                    "budget": {"bootstrap": R, "seed": 0}})
    m = measure_stats(policy, merged, manifest(), noise_scales=[rec["scale"]])["performance.recall"]
    assert m.ci_low < m.value < m.ci_high and m.details["noise"]["scales"] == [rec["scale"]]


# ---------------------------------------------------------------- intersections of attributes

CROSSED = [["race", "age"]]


def crossed_stats_of(df: pd.DataFrame, grid: mg.Grid = GRID, intersections=CROSSED) -> mg.AuditStats:
    known = {n: a.group_names() for n, a in manifest().protected_attributes.items()}
    s = mg.AuditStats.empty(grid, known, intersections)
    s.update(df["id"].tolist(), df["score"].to_numpy(), df["y"].to_numpy(), groups(df))
    return s


def test_the_intersection_separator_is_the_fairness_checks():
    from audit.checks import fairness

    assert mg.SEP == fairness.SEP


def test_intersection_counts_equal_a_pandas_groupby():
    df = rows()
    s = crossed_stats_of(df)
    t = s.crossed["race × age"]
    g = groups(df)
    hand = pd.DataFrame({"race": g["race"], "age": g["age"], "y": df["y"], "sel": (df["score"] >= 0.5).astype(int)})
    missing = hand[["race", "age"]].isna().any(axis=1)
    by = hand[~missing].groupby(["race", "age"]).agg(rows=("y", "size"), pos=("y", "sum"), sel=("sel", "sum"))
    assert t.missing == int(missing.sum()) > 0
    assert len(by) == 9 and sorted(t.groups) == sorted(f"{r} × {a}" for r, a in by.index)
    for (race, age), row in by.iterrows():
        cells = t.counts.point[t.groups.index(f"{race} × {age}")]
        assert cells.sum() == row["rows"] and cells[1].sum() == row["pos"]
        assert cells[:, 50:].sum() == row["sel"]  # score bins at or above the threshold 0.5
    # the known groups' combinations are listed first, in product order, also those with no rows
    ages = [str(x) for x in manifest().protected_attributes["age"].group_names()]
    assert mg.AuditStats.empty(GRID, {"race": [], "age": ages}, CROSSED).crossed["race × age"].groups == []
    both = mg.AuditStats.empty(GRID, {"race": ["a", "b"], "age": ages}, CROSSED).crossed["race × age"].groups
    assert both == [f"{r} × {a}" for r in ("a", "b") for a in ages]


def test_intersection_partitions_merge_to_the_whole_exactly():
    df = rows()
    whole = crossed_stats_of(df)
    part = np.random.default_rng(2).integers(0, 3, len(df))
    merged = crossed_stats_of(df[part == 1]).merge(crossed_stats_of(df[part == 0])).merge(
        crossed_stats_of(df[part == 2]))
    merged = mg.AuditStats.from_dict(merged.to_dict())  # through a stats file's encoding
    a, b = whole.crossed["race × age"], merged.crossed["race × age"]
    b = b.aligned(a.groups)
    assert a.groups == b.groups and a.missing == b.missing
    np.testing.assert_array_equal(a.counts.point, b.counts.point)
    np.testing.assert_array_equal(a.counts.reps, b.counts.reps)
    with pytest.raises(ValueError, match=r"different intersections of attributes \(race × age vs none\)"):
        whole.merge(stats_of(df))


@pytest.mark.parametrize("check_id", ["fairness.selection_rate_ratio", "fairness.demographic_parity_difference",
                                      "fairness.equalized_odds_difference", "fairness.equal_opportunity_difference",
                                      "fairness.predictive_parity_difference", "fairness.auc_gap"])
@pytest.mark.parametrize("asked", ["race×age", "age × race"])
def test_intersection_rule_from_stats_equals_the_in_memory_check(check_id, asked):
    """A rule over `race × age` (and the same parts in the other order, from the one table carried) judged from
    the statistics of one partition and of four merged partitions: the in-memory check's value and interval to
    1e-12, the same groups, in the same order, with the same counts and rates."""
    from audit.policy import Policy

    df = rows(decimals=2)
    spec = all_checks()[check_id]
    params = {"attributes": ["race"], "intersections": [asked]}
    expected = spec.fn(in_memory_ctx(df), **{**spec.params, **params})
    policy = Policy.model_validate({"policy": "t", "version": "1", "checks": {check_id: {"max": 1, **params}},
                                    "budget": {"bootstrap": R, "seed": GRID.seed}})
    part = np.random.default_rng(4).integers(0, 4, len(df))
    merged = crossed_stats_of(df[part == 0])
    for p in (1, 2, 3):
        merged = merged.merge(crossed_stats_of(df[part == p]))
    name = "race × age" if asked == "race×age" else "age × race"
    want = next(e for e in expected.details["attributes"] if e["attribute"] == name)
    assert want["kind"] == "intersection" and len(want["groups"]) == 9
    for stats in (crossed_stats_of(df), merged):
        got = measure_stats(policy, stats, manifest())[check_id]
        assert got.value == pytest.approx(expected.value, abs=1e-12)
        assert got.ci_low == pytest.approx(expected.ci_low, abs=1e-12)
        assert got.ci_high == pytest.approx(expected.ci_high, abs=1e-12)
        assert got.inconclusive == expected.inconclusive
        same_parts(got, expected)
        entry = next(e for e in got.details["attributes"] if e["attribute"] == name)
        assert entry["missing_rows"] == want["missing_rows"] > 0 and entry["columns"] == want["columns"]
        assert entry["value"] == pytest.approx(want["value"], abs=1e-12)
        assert [g["group"] for g in entry["groups"]] == [g["group"] for g in want["groups"]]
        for g, w in zip(entry["groups"], want["groups"]):
            assert {k: g[k] for k in ("count", "positives", "negatives", "predicted_positive", "judged")} == \
                   {k: w[k] for k in ("count", "positives", "negatives", "predicted_positive", "judged")}
            for r in ("selection_rate", "tpr", "fpr", "precision", "roc_auc"):
                assert g[r] == pytest.approx(w[r], abs=1e-12, nan_ok=True), (g["group"], r)
                assert g[r + "_ci"] == pytest.approx(w[r + "_ci"], abs=1e-12), (g["group"], r)


def test_an_intersection_the_statistics_do_not_carry_stays_inconclusive_naming_it():
    from audit.policy import Policy

    df = rows(1000)
    policy = Policy.model_validate({"policy": "t", "version": "1", "checks": {
        "fairness.demographic_parity_difference": {"max": 1, "intersections": ["race×age"]}},
        "budget": {"bootstrap": 20, "seed": GRID.seed}})
    m = measure_stats(policy, stats_of(df), manifest())["fairness.demographic_parity_difference"]
    # the carried attributes are measured; the intersection is a part of its own that cannot be judged
    assert m.value is not None and m.inconclusive is None
    part = next(p for p in m.parts if p.name == "race × age")
    assert part.kind == "intersection" and "the intersection 'race × age'" in part.inconclusive
    assert "the intersections none" in part.inconclusive
    import datetime as dt

    from audit.checks import all_checks
    from audit.judge import judge_one

    cid = "fairness.demographic_parity_difference"
    f = judge_one(all_checks()[cid], policy.checks[cid], m, policy, dt.date(2026, 1, 1))
    assert f.status.value == "INCONCLUSIVE" and "race × age: not in the statistics" in f.reason


def test_noise_sensitivity_counts_every_intersection_table():
    from audit.noise import noise_sensitivity

    df = rows(2000)
    grid = mg.Grid(score_bins=20, threshold_bins=20, replicates=R, seed=0)
    s = crossed_stats_of(df, grid)
    assert noise_sensitivity(s) == 5 + 2 + 1
    clean = s.crossed["race × age"].counts.point.copy()
    rec = add_noise(s, 2.0, np.random.default_rng(0))
    assert rec["l1_sensitivity"] == 8 and rec["scale"] == pytest.approx(8 / 2.0)
    assert "1 per intersection of attributes (1)" in rec["accounting"]
    t = s.crossed["race × age"]
    assert t.counts.reps is None and not np.array_equal(t.counts.point, clean)
    noise = t.counts.point - clean  # Laplace(0, 4): mean |x| = 4
    assert abs(np.abs(noise).mean() - 4.0) < 0.5


# ---------------------------------------------------------------- grids, silo statistics, loss histograms


def test_a_fine_grid_coarsened_equals_the_coarse_grid_computed_directly():
    """How a clean silo joins a noised one (audit.stats_files.merge_files): every count, replicate counts too,
    is the coarse grid's exactly."""
    df = rows(3000)
    fine = stats_of(df, mg.Grid(score_bins=1000, threshold_bins=100, replicates=R, seed=0))
    direct = stats_of(df, mg.Grid(score_bins=20, threshold_bins=20, replicates=R, seed=0))
    got = fine.coarsened(20, 20)
    assert got.grid == direct.grid
    assert_same_stats(got, direct)
    with pytest.raises(ValueError, match="cannot be coarsened"):
        fine.coarsened(30, 20)


def _silo(kind: str, point, reps=None, shared=None, l1=2.0) -> mg.SiloStat:
    c = mg.Counts((len(point),), 0 if reps is None else len(reps), np.asarray(point, float),
                  None if reps is None else np.asarray(reps, float))
    return mg.SiloStat(kind, {"p": 1}, {"t": c}, {"m": 1.0}, {"terms": {"he": 2.0}}, {}, shared, l1)


def test_silo_statistics_add_count_shared_rows_once_and_round_trip():
    a = _silo("pii", [10, 2], [[9, 1], [11, 3]])
    b = _silo("pii", [5, 1], [[4, 0], [6, 2]])
    b.maxima["m"], b.tallies["terms"] = 3.0, {"he": 1.0, "she": 4.0}
    ab = a.merge(b)
    np.testing.assert_array_equal(ab.tables["t"].point, [15, 3])
    np.testing.assert_array_equal(ab.tables["t"].reps, [[13, 1], [17, 5]])
    assert ab.maxima == {"m": 3.0} and ab.tallies["terms"] == {"he": 3.0, "she": 4.0}
    # the model's training rows, read in every silo: the same numbers, counted once
    s1, s2 = _silo("pii", [7, 1], shared="train:abc"), _silo("pii", [7, 1], shared="train:abc")
    np.testing.assert_array_equal(s1.merge(s2).tables["t"].point, [7, 1])
    with pytest.raises(ValueError, match="different shared rows"):
        s1.merge(_silo("pii", [7, 1], shared="train:xyz"))
    back = mg.SiloStat.from_dict(ab.to_dict())
    assert back.key == ab.key and back.maxima == ab.maxima and back.tallies == ab.tallies
    np.testing.assert_array_equal(back.tables["t"].reps, ab.tables["t"].reps)


def test_a_silo_statistic_carried_by_one_side_only_is_dropped_and_inconclusive_naming_why():
    from audit.policy import Policy

    df = rows(600)
    one, two = stats_of(df.iloc[:300]), stats_of(df.iloc[300:])
    one.silo = {}
    st = _silo("pii", [300, 3])
    st.params = {"dataset": "eval", "types": ["email"]}
    one.silo[st.key] = st
    merged = mg.AuditStats.from_dict(one.merge(two).to_dict())
    assert not merged.silo and list(merged.silo_dropped.values()) == ["carried by some of the merged statistics only"]
    policy = Policy.model_validate({"policy": "t", "version": "1", "checks": {
        "privacy.pii_rate": {"max": 0, "types": ["email"]}}, "budget": {"bootstrap": R, "seed": 0}})
    got = measure_stats(policy, merged, manifest())["privacy.pii_rate"]
    assert got.value is None and "carried by some of the merged statistics only" in got.inconclusive


def test_noise_sensitivity_adds_each_silo_statistic():
    from audit.noise import noise_sensitivity

    s = stats_of(rows(200))
    assert noise_sensitivity(s) == 5 + 2
    st = _silo("counterfactual", [10, 1, 0.5], l1=6.0)
    s.silo[st.key] = st
    assert noise_sensitivity(s) == 5 + 2 + 6
    rec = add_noise(s, 2.0, np.random.default_rng(0))
    assert rec["l1_sensitivity"] == 13 and rec["scale"] == pytest.approx(6.5)
    assert "6 for the counterfactual statistics" in rec["accounting"]
    assert s.silo[st.key].tables["t"].reps is None and s.silo[st.key].maxima == {}


def test_the_loss_histogram_attack_is_within_its_bound_of_the_exact_attack():
    """The membership attack from per-side loss histograms: the binned AUC within the reported bound of
    scikit-learn's AUC on the raw losses, the TPR at 1% FPR between its lower (edge thresholds) and upper bound
    around the exact in-memory attack's."""
    from sklearn.metrics import roc_auc_score

    from audit.checks.privacy import LOSS_EDGES, _attack_curves, _attack_from_histograms, _loss_bins

    rng = np.random.default_rng(5)
    mem = rng.exponential(0.25, 700)  # members: lower losses
    non = rng.exponential(0.4, 500)
    H = np.zeros((2, len(LOSS_EDGES)))
    np.add.at(H[0], _loss_bins(mem), 1)
    np.add.at(H[1], _loss_bins(non), 1)
    got = _attack_from_histograms(H[:1], H[1:])
    member = np.r_[np.ones(len(mem)), np.zeros(len(non))]
    score = -np.r_[mem, non]
    exact = roc_auc_score(member, score)
    bound = 0.5 * (H[0] * H[1]).sum() / (len(mem) * len(non))
    assert abs(got["auc"][0] - exact) <= bound + 1e-12
    assert bound < 0.01  # the grid is fine enough to say something
    curves = _attack_curves(np.ones((1, len(score))), member, score)
    assert got["tpr@0.01"][0] <= curves["tpr@0.01"][0] + 1e-12 <= got["tpr@0.01 upper"][0] + 2e-12
    assert got["advantage"][0] <= curves["advantage"][0] + 1e-12
