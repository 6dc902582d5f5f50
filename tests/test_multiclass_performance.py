"""The multi-class performance checks (audit/checks/classwise.py) against scikit-learn (issue 21).

Every value is compared with scikit-learn's function on the same rows; every interval with the percentile
interval of scikit-learn's value on each bootstrap replicate (the replicate's weights as `sample_weight`), so the
replicates are right, not only the point. Calibration has no scikit-learn function: it is compared with a hand
count over the bins.
"""

from __future__ import annotations

import json
import re
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from audit.checks import all_checks
from audit.checks import classwise as cw
from audit.classes import Classes
from audit.context import CheckContext

R = 40
CONF = 0.9


def _data(n: int, k: int, seed: int, absent: int | None = None):
    """Rows of k classes whose probabilities carry some signal; `absent`: a class no row truly holds."""
    rng = np.random.default_rng(seed)
    share = rng.dirichlet(np.full(k, 3.0))
    if absent is not None:
        share[absent] = 0.0
        share /= share.sum()
    y = rng.choice(k, size=n, p=share)
    logits = rng.normal(0, 1, (n, k)) + 1.2 * np.eye(k)[y]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, probs


def _ctx(y, probs, labels=None, replicates: int = R, seed: int = 0, favourable=(0,)) -> CheckContext:
    k = probs.shape[1]
    c = Classes(list(labels or [f"class{i}" for i in range(k)]), np.asarray(y), probs, tuple(favourable))
    return CheckContext(y_true=np.isin(y, favourable).astype(int), score=c.favourable_score(probs),
                        replicates=replicates, seed=seed, confidence=CONF, classes=c)


def _interval(values) -> tuple[float, float]:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    a = (1 - CONF) / 2
    lo, hi = np.quantile(v, [a, 1 - a])
    return float(lo), float(hi)


def _each_replicate(ctx, fn):
    """scikit-learn's value with every bootstrap replicate's weights (rows 1.. of ctx.weights)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [fn(w) for w in ctx.weights[1:]]


def _sk(fn, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kw)


CASES = [(300, 3, 1), (400, 4, 2), (500, 5, 3)]


@pytest.mark.parametrize("n, k, seed", CASES)
def test_f1_checks_equal_scikit_learn_point_and_replicates(n, k, seed):
    y, p = _data(n, k, seed)
    ctx = _ctx(y, p)
    pred = p.argmax(axis=1)
    for cid, fn, avg in (("macro_f1", cw.macro_f1, "macro"), ("weighted_f1", cw.weighted_f1, "weighted")):
        m = fn(ctx)
        assert m.value == pytest.approx(skm.f1_score(y, pred, average=avg), abs=1e-12), cid
        want = _interval(_each_replicate(ctx, lambda w, a=avg: skm.f1_score(y, pred, average=a, sample_weight=w)))
        assert (m.ci_low, m.ci_high) == pytest.approx(want, abs=1e-12), cid
        assert m.inconclusive is None and m.incomplete is None
    m = cw.class_f1(ctx)
    prec, rec, f1, support = skm.precision_recall_fscore_support(y, pred, labels=list(range(k)), zero_division=np.nan)
    reps = np.array(_each_replicate(ctx, lambda w: skm.precision_recall_fscore_support(
        y, pred, labels=list(range(k)), sample_weight=w, zero_division=np.nan)[:3]))  # (R, 3, k)
    table = m.details["classes"]
    assert [row["label"] for row in table] == ctx.classes.labels
    for i, row in enumerate(table):
        assert row["support"] == support[i]
        for j, key in enumerate(("precision", "recall", "f1")):
            assert row[key] == pytest.approx((prec, rec, f1)[j][i], abs=1e-12), (i, key)
            assert tuple(row[f"{key}_ci"]) == pytest.approx(_interval(reps[:, j, i]), abs=1e-12), (i, key)
    # one part per class, each its F1 and interval; the value is the worst class's
    assert [pt.name for pt in m.parts] == ctx.classes.labels
    assert [pt.value for pt in m.parts] == pytest.approx(list(f1), abs=1e-12)
    assert m.value == pytest.approx(f1.min(), abs=1e-12)
    worst = int(np.argmin(f1))
    assert (m.ci_low, m.ci_high) == pytest.approx(_interval(reps[:, 2, worst]), abs=1e-12)
    one = cw.class_f1(ctx, label="class1")
    assert one.value == pytest.approx(f1[1], abs=1e-12) and not one.parts
    assert (one.ci_low, one.ci_high) == pytest.approx(_interval(reps[:, 2, 1]), abs=1e-12)
    # the confusion matrix of every class is in the details (rows true, columns decided)
    assert m.details["confusion_matrix"]["matrix"] == skm.confusion_matrix(y, pred, labels=list(range(k))).tolist()


@pytest.mark.parametrize("n, k, seed", CASES)
def test_one_vs_rest_auc_and_average_precision_equal_scikit_learn(n, k, seed):
    y, p = _data(n, k, seed)
    p = np.round(p, 2)  # tied scores
    p = p / p.sum(axis=1, keepdims=True)
    ctx = _ctx(y, p)
    auc = cw.macro_roc_auc(ctx)
    assert auc.value == pytest.approx(skm.roc_auc_score(y, p, multi_class="ovr", average="macro"), abs=1e-12)
    want = _interval(_each_replicate(ctx, lambda w: skm.roc_auc_score(y, p, multi_class="ovr", average="macro",
                                                                      sample_weight=w)))
    assert (auc.ci_low, auc.ci_high) == pytest.approx(want, abs=1e-12)
    ap = cw.macro_pr_auc(ctx)
    assert ap.value == pytest.approx(_sk(skm.average_precision_score, y, p, average="macro"), abs=1e-12)
    want = _interval(_each_replicate(ctx, lambda w: np.mean([skm.average_precision_score(
        y == c, p[:, c], sample_weight=w) for c in range(k)])))
    assert (ap.ci_low, ap.ci_high) == pytest.approx(want, abs=1e-12)
    for c in range(k):
        row_auc, row_ap = auc.details["classes"][c], ap.details["classes"][c]
        assert row_auc["roc_auc"] == pytest.approx(skm.roc_auc_score(y == c, p[:, c]), abs=1e-12)
        assert tuple(row_auc["roc_auc_ci"]) == pytest.approx(_interval(_each_replicate(
            ctx, lambda w, c=c: skm.roc_auc_score(y == c, p[:, c], sample_weight=w))), abs=1e-12)
        assert row_ap["average_precision"] == pytest.approx(skm.average_precision_score(y == c, p[:, c]), abs=1e-12)
        assert tuple(row_ap["average_precision_ci"]) == pytest.approx(_interval(_each_replicate(
            ctx, lambda w, c=c: skm.average_precision_score(y == c, p[:, c], sample_weight=w))), abs=1e-12)
        assert row_ap["base_rate"] == pytest.approx(np.mean(y == c))


@pytest.mark.parametrize("n, k, seed", CASES)
def test_top_k_accuracy_equals_scikit_learn(n, k, seed):
    y, p = _data(n, k, seed)
    ctx = _ctx(y, p)
    for top in (1, 2, k - 1):
        m = cw.top_k_accuracy(ctx, k=top)
        assert m.value == pytest.approx(skm.top_k_accuracy_score(y, p, k=top, labels=list(range(k))), abs=1e-12)
        want = _interval(_each_replicate(ctx, lambda w, t=top: skm.top_k_accuracy_score(
            y, p, k=t, labels=list(range(k)), sample_weight=w)))
        assert (m.ci_low, m.ci_high) == pytest.approx(want, abs=1e-12)
    m = cw.top_k_accuracy(ctx, k=k)
    assert m.value == _sk(skm.top_k_accuracy_score, y, p, k=k, labels=list(range(k))) == 1.0
    assert "covers all" in m.skipped


def _hand_ece(hit, score, bins, w=None):
    """Expected calibration error counted bin by bin: sum over bins of |sum of (hit - score)| / rows."""
    w = np.ones(len(hit)) if w is None else w
    total = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        inside = (score > lo) & (score <= hi) if b else (score >= 0) & (score <= hi)
        total += abs(float((w[inside] * (hit[inside] - score[inside])).sum()))
    return total / w.sum()


@pytest.mark.parametrize("n, k, seed", CASES)
def test_classwise_ece_equals_a_hand_count(n, k, seed):
    y, p = _data(n, k, seed)
    ctx = _ctx(y, p)
    m = cw.classwise_ece(ctx, bins=10)
    pred = p.argmax(axis=1)
    conf = p.max(axis=1)
    assert m.value == pytest.approx(_hand_ece((pred == y).astype(float), conf, 10), abs=1e-12)
    # the interval is the max-contrast one of performance.ece; it holds the point and lies in [0, 1]
    assert 0 <= m.ci_low <= m.value <= m.ci_high <= 1
    per = m.details["classes"]
    for c in range(k):
        assert per[c]["ece"] == pytest.approx(_hand_ece((y == c).astype(float), p[:, c], 10), abs=1e-12)
        assert per[c]["ece_ci"][0] <= per[c]["ece"] <= per[c]["ece_ci"][1]
    assert m.details["mean_class_ece"] == pytest.approx(np.mean([r["ece"] for r in per]), abs=1e-12)
    # a replicate's weights: the same hand count with sample weights
    w = ctx.weights[3]
    W = np.vstack([w, w])
    from audit import stats

    gaps = stats.ece_gaps(W, (pred == y).astype(float), conf, 10)
    assert np.abs(gaps[0]).sum() == pytest.approx(_hand_ece((pred == y).astype(float), conf, 10, w), abs=1e-12)
    # the reliability table of the top label
    counted = sum(b["count"] for b in m.details["bins"])
    assert counted == n


def test_a_class_absent_from_the_eval_rows_is_named_and_left_out():
    y, p = _data(400, 4, 7, absent=3)
    p[:, 3] = 0.01
    p[:5, 3] = 5.0  # the model decides the absent class for five rows
    p = p / p.sum(axis=1, keepdims=True)
    ctx = _ctx(y, p, labels=["approve", "refer", "decline", "escalate"])
    pred = p.argmax(axis=1)
    assert (pred == 3).sum() == 5 and (y == 3).sum() == 0
    m = cw.macro_f1(ctx)
    assert m.value == pytest.approx(_sk(skm.f1_score, y, pred, average="macro"), abs=1e-12)  # 'escalate' counts 0
    assert m.incomplete == "no eval rows of 'escalate' (decided 5 times, never rightly: it counts 0)"
    assert cw.weighted_f1(ctx).value == pytest.approx(_sk(skm.f1_score, y, pred, average="weighted"), abs=1e-12)
    per = cw.class_f1(ctx)
    part = {pt.name: pt for pt in per.parts}
    assert part["escalate"].inconclusive and "no eval rows" in part["escalate"].inconclusive
    assert part["escalate"].value == 0.0  # scikit-learn's F1: 2 tp / (2 tp + fp + fn) = 0
    assert all(part[x].inconclusive is None for x in ("approve", "refer", "decline"))
    row = per.details["classes"][3]
    assert row["support"] == 0 and row["decided"] == 5 and row["recall"] is None and row["precision"] == 0.0
    for fn, key, sk in ((cw.macro_roc_auc, "roc_auc", skm.roc_auc_score),
                        (cw.macro_pr_auc, "average_precision", skm.average_precision_score)):
        got = fn(ctx)
        want = np.mean([sk(y == c, p[:, c]) for c in range(3)])
        assert got.value == pytest.approx(want, abs=1e-12)
        assert got.details["classes"][3][key] is None
        assert [x["label"] for x in got.details["left_out"]] == ["escalate"]
        assert "escalate" in got.incomplete
        json.dumps(got.to_dict(), allow_nan=False)
    ece = cw.classwise_ece(ctx)
    assert ece.details["classes"][3]["support"] == 0 and ece.value is not None
    for fn in (cw.macro_f1, cw.class_f1, cw.top_k_accuracy, cw.classwise_ece):
        json.dumps(fn(ctx).to_dict(), allow_nan=False)


def test_rows_of_one_class_are_inconclusive_with_the_reason():
    y, p = _data(200, 3, 4)
    y = np.zeros_like(y)
    ctx = _ctx(y, p, labels=["approve", "refer", "decline"])
    for spec_fn in (cw.macro_f1, cw.weighted_f1, cw.class_f1, cw.macro_roc_auc, cw.macro_pr_auc,
                    cw.top_k_accuracy, cw.classwise_ece):
        m = spec_fn(ctx)
        assert m.inconclusive and "at least two classes" in m.inconclusive and "'approve'" in m.inconclusive, \
            (spec_fn.__name__, m.inconclusive)
        assert "approve 200, refer 0, decline 0" in m.inconclusive
        json.dumps(m.to_dict(), allow_nan=False)
    assert cw.macro_roc_auc(ctx).value is None


def test_binary_models_equal_scikit_learn_and_the_binary_checks():
    """As two classes: the threshold decides, and each number is scikit-learn's (the contexts of binary runs
    carry no `classes`, or two)."""
    from audit.checks import performance

    rng = np.random.default_rng(5)
    n = 300
    y = (rng.random(n) < 0.4).astype(int)
    score = np.clip(0.3 * y + 0.7 * rng.random(n), 0, 1)
    ctx = CheckContext(y_true=y, score=score, threshold=0.6, replicates=R, confidence=CONF,
                       positive_label="good", negative_label="bad")
    pred = (score >= 0.6).astype(int)
    m = cw.macro_f1(ctx)
    assert m.value == pytest.approx(skm.f1_score(y, pred, average="macro"), abs=1e-12)
    want = _interval(_each_replicate(ctx, lambda w: skm.f1_score(y, pred, average="macro", sample_weight=w)))
    assert (m.ci_low, m.ci_high) == pytest.approx(want, abs=1e-12)
    assert cw.weighted_f1(ctx).value == pytest.approx(skm.f1_score(y, pred, average="weighted"), abs=1e-12)
    good = cw.class_f1(ctx, label="good")
    assert good.value == pytest.approx(skm.f1_score(y, pred), abs=1e-12)
    assert good.value == pytest.approx(performance.f1(ctx).value, abs=1e-12)
    auc = cw.macro_roc_auc(ctx)
    assert auc.value == pytest.approx(skm.roc_auc_score(y, score), abs=1e-12)
    assert (auc.ci_low, auc.ci_high) == pytest.approx((performance.roc_auc(ctx).ci_low,
                                                       performance.roc_auc(ctx).ci_high), abs=1e-12)
    ap = cw.macro_pr_auc(ctx)
    assert ap.value == pytest.approx((skm.average_precision_score(y, score)
                                      + skm.average_precision_score(1 - y, 1 - score)) / 2, abs=1e-12)
    assert cw.top_k_accuracy(ctx, k=1).value == pytest.approx(skm.top_k_accuracy_score(y, score, k=1), abs=1e-12)
    assert cw.top_k_accuracy(ctx).skipped  # k=2 of two classes: every row a hit
    ece = cw.classwise_ece(ctx)
    good_row = [r for r in ece.details["classes"] if r["label"] == "good"][0]
    assert good_row["ece"] == pytest.approx(performance.ece(ctx).value, abs=1e-12)


def test_parameters_are_checked_at_policy_load():
    specs = all_checks()
    for cid, bad in (("performance.top_k_accuracy", {"k": 0}), ("performance.classwise_ece", {"bins": 1})):
        with pytest.raises(ValueError):
            specs[cid].validate({**specs[cid].params, **bad})
    for cid in ("performance.macro_f1", "performance.weighted_f1", "performance.class_f1", "performance.macro_roc_auc",
                "performance.macro_pr_auc", "performance.top_k_accuracy", "performance.classwise_ece"):
        assert specs[cid].classes == "any" and specs[cid].family == "performance"


def test_an_unknown_label_is_named():
    y, p = _data(100, 3, 1)
    m = cw.class_f1(_ctx(y, p), label="nope")
    assert m.value is None and "'nope' is not a label of the model" in m.error


def test_the_checks_are_vectorized_over_replicates():
    """1000 replicates of 2,000 rows and 5 classes: every check well under the time of a Python loop."""
    import time

    y, p = _data(2000, 5, 9)
    ctx = _ctx(y, p, replicates=1000)
    ctx.weights  # noqa: B018 (drawn once, as a run draws them)
    for fn in (cw.macro_f1, cw.class_f1, cw.macro_roc_auc, cw.top_k_accuracy, cw.classwise_ece):
        started = time.perf_counter()
        fn(ctx)
        assert time.perf_counter() - started < 10, fn.__name__


# ---------------------------------------------------------------- one `audit run` of the tiny 3-class model

RUN_POLICY = """\
policy: multiclass-performance
version: "1"
inconclusive: inconclusive
min_group_size: 10
checks:
  performance.macro_f1: {min: 0.0, severity: warn}
  performance.weighted_f1: {min: 0.0, severity: warn}
  performance.class_f1: {min: 0.0, severity: warn}
  performance.macro_roc_auc: {min: 0.0, severity: warn}
  performance.macro_pr_auc: {min: 0.0, severity: warn}
  performance.top_k_accuracy: {min: 0.0, k: 2, severity: warn}
  performance.classwise_ece: {max: 1.0, severity: warn}
budget: {bootstrap: 50, seed: 0}
"""


def test_audit_run_on_the_three_class_model_equals_scikit_learn(tiny_multiclass_model, tmp_path):
    from click.testing import CliRunner

    from audit.cli import cli

    (tmp_path / "p.yaml").write_text(RUN_POLICY)
    out = tmp_path / "run"
    r = CliRunner().invoke(cli, ["run", str(tiny_multiclass_model), "--policy", str(tmp_path / "p.yaml"),
                                 "--out", str(out), "--no-progress"], catch_exceptions=False)
    assert r.exit_code in (0, 1, 3), r.output
    result = json.loads((out / "result.json").read_text())
    pred_rows = pd.read_csv(out / "predictions.csv", dtype={"row_id": str})
    labels = result["model"]["labels"]
    assert len(labels) == 3
    P = pred_rows[[f"p({label})" for label in labels]].to_numpy(float)
    y = pred_rows["true_label"].map(labels.index).to_numpy()
    d = pred_rows["predicted_label"].map(labels.index).to_numpy()
    assert (d == P.argmax(axis=1)).all()
    got = {cid: m for cid, m in result["measurements"].items()}
    assert got["performance.macro_f1"]["value"] == pytest.approx(skm.f1_score(y, d, average="macro"), abs=1e-9)
    assert got["performance.weighted_f1"]["value"] == pytest.approx(skm.f1_score(y, d, average="weighted"), abs=1e-9)
    f1 = skm.f1_score(y, d, average=None, labels=[0, 1, 2])
    assert [row["f1"] for row in got["performance.class_f1"]["details"]["classes"]] == pytest.approx(list(f1), abs=1e-9)
    assert got["performance.class_f1"]["value"] == pytest.approx(f1.min(), abs=1e-9)
    assert got["performance.macro_roc_auc"]["value"] == pytest.approx(
        skm.roc_auc_score(y, P, multi_class="ovr", average="macro"), abs=1e-9)
    assert got["performance.macro_pr_auc"]["value"] == pytest.approx(
        skm.average_precision_score(y, P, average="macro"), abs=1e-9)
    assert got["performance.top_k_accuracy"]["value"] == pytest.approx(
        skm.top_k_accuracy_score(y, P, k=2, labels=[0, 1, 2]), abs=1e-9)
    assert got["performance.classwise_ece"]["value"] == pytest.approx(
        _hand_ece((d == y).astype(float), P.max(axis=1), 10), abs=1e-9)
    for cid in ("performance.macro_f1", "performance.macro_roc_auc", "performance.top_k_accuracy"):
        m = got[cid]
        assert m["ci_low"] is not None and m["ci_low"] <= m["value"] <= m["ci_high"], cid
    # the run's intervals: scikit-learn on each of the run's bootstrap replicates (weights keyed by row id and seed)
    from audit.mergeable import replicate_weights, row_keys

    weights = replicate_weights(row_keys(pred_rows["row_id"].tolist(), 0), 50).T.astype(float)  # (50, n)
    level = result["policy"]["confidence"]

    def interval(values):
        v = np.asarray(values, dtype=float)
        return tuple(np.quantile(v[np.isfinite(v)], [(1 - level) / 2, (1 + level) / 2]))

    for cid, fn in (("performance.macro_f1", lambda w: skm.f1_score(y, d, average="macro", sample_weight=w)),
                    ("performance.macro_roc_auc", lambda w: skm.roc_auc_score(y, P, multi_class="ovr", sample_weight=w)),
                    ("performance.top_k_accuracy", lambda w: skm.top_k_accuracy_score(y, P, k=2, labels=[0, 1, 2],
                                                                                    sample_weight=w))):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            want = interval([fn(w) for w in weights])
        assert (got[cid]["ci_low"], got[cid]["ci_high"]) == pytest.approx(want, abs=1e-9), cid
    findings = {f["check_id"]: f for f in result["findings"]}
    assert {f["status"] for f in findings.values()} <= {"PASS", "INCONCLUSIVE"}
    assert len(findings["performance.class_f1"]["parts"]) == 3  # judged class by class
    html = (out / "report.html").read_text()
    assert 'id="chart-class-confusion"' in html and "Per-class performance" in html


# ---------------------------------------------------------------- the report


HOSTILE = '<script>alert("x")</script>'


def _result_of(ctx) -> dict:
    """A result dict holding the class-wise measurements of `ctx` (as result.json holds them)."""
    from audit.checks import performance

    ms = {"performance.accuracy": performance.accuracy(ctx)}
    for fn in (cw.macro_f1, cw.class_f1, cw.macro_roc_auc, cw.macro_pr_auc, cw.top_k_accuracy, cw.classwise_ece):
        m = fn(ctx)
        ms[m.check_id] = m
    return {"measurements": {cid: m.to_dict() for cid, m in ms.items()}, "findings": [],
            "policy": {"confidence": CONF}, "model": {"labels": ctx.classes.labels}}


def test_the_report_shows_every_class_as_a_heat_map_and_a_table_with_labels_escaped():
    from audit.render import render_html
    from audit.render.performance_view import performance_view

    y, p = _data(300, 4, 11)
    labels = ["approve", HOSTILE, "refer & review", "decline"]
    ctx = _ctx(y, p, labels=labels)
    result = _result_of(ctx)
    view = performance_view(result)
    assert view.confusion is None  # the 2x2 chart is a binary model's
    chart = view.class_matrix
    assert len(chart.cells) == 16
    pred = p.argmax(axis=1)
    want = skm.confusion_matrix(y, pred, labels=[0, 1, 2, 3])
    assert [c.count for c in chart.cells] == [f"{v:,}" for v in want.ravel()]
    assert [c.diagonal for c in chart.cells].count(True) == 4
    table = view.class_table
    assert [r.label for r in table.rows] == labels
    assert table.headers[:3] == ["Precision", "Recall", "F1"] and "ROC-AUC" in table.headers
    assert "Top-2 accuracy" in table.headers
    f1 = skm.f1_score(y, pred, average=None)
    assert [r.cells[2].value for r in table.rows] == [f"{v:.3f}" for v in f1]
    assert all(re.fullmatch(r"\d\.\d{3}–\d\.\d{3}", c.ci) for r in table.rows for c in r.cells)  # every number
    assert "90% bootstrap interval" in table.intro
    assert any(c.id == "top-label-calibration" for c in view.charts)
    html = render_html(result)
    assert HOSTILE not in html and "<script>alert" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html or "&lt;script&gt;alert(&quot;x&quot;)" in html
    assert "refer &amp; review" in html
    assert 'id="chart-class-confusion"' in html and "Per-class performance" in html
    assert html.count('<rect class="cell"') == 16


def test_a_long_label_is_shortened_on_the_axes_and_whole_in_the_tooltip():
    from audit.render import charts

    cm = {"labels": ["a" * 40, "b"], "matrix": [[3, 1], [0, 5]]}
    chart = charts.class_matrix_chart(cm)
    assert chart.col_heads[0].text.endswith("…") and len(chart.col_heads[0].text) < 40
    assert chart.full[0] == "a" * 40 and chart.cells[0].label.startswith("true " + "a" * 40)
    assert chart.cells[1].share == "25%"
    assert charts.class_matrix_chart({"labels": ["a", "b"], "matrix": [[1, 2]]}) is None
    assert charts.class_matrix_chart({"labels": ["a", "b"], "matrix": [[1, -2], [0, 1]]}) is None


def test_a_binary_report_keeps_its_two_by_two_chart():
    from audit.checks import performance
    from audit.render.performance_view import performance_view

    rng = np.random.default_rng(5)
    y = (rng.random(200) < 0.4).astype(int)
    score = np.clip(0.3 * y + 0.7 * rng.random(200), 0, 1)
    ctx = CheckContext(y_true=y, score=score, replicates=R, confidence=CONF, positive_label="good",
                       negative_label="bad")
    ms = {"performance.accuracy": performance.accuracy(ctx), "performance.class_f1": cw.class_f1(ctx)}
    view = performance_view({"measurements": {k: m.to_dict() for k, m in ms.items()}, "findings": []})
    assert view.confusion is not None and view.class_matrix is None
    assert [r.label for r in view.class_table.rows] == ["bad", "good"]


def test_the_shared_one_vs_rest_sort_never_crosses_contexts():
    y1, p1 = _data(200, 3, 21)
    y2, p2 = _data(200, 3, 22)
    a, b = _ctx(y1, p1), _ctx(y2, p2)
    first = cw.macro_roc_auc(a).value
    assert cw.macro_pr_auc(b).value == pytest.approx(skm.average_precision_score(y2, p2, average="macro"), abs=1e-12)
    assert cw.macro_pr_auc(a).value == pytest.approx(skm.average_precision_score(y1, p1, average="macro"), abs=1e-12)
    assert cw.macro_roc_auc(a).value == first == pytest.approx(skm.roc_auc_score(y1, p1, multi_class="ovr"), abs=1e-12)


@pytest.mark.parametrize("share, decimals", [(0.05, None), (0.5, 2), (0.9, 1)])
def test_one_vs_rest_sums_equal_scikit_learn_row_by_row(share, decimals):
    """The sparse segment sums behind the one-vs-rest numbers, on rare and common hits and heavy ties: every
    replicate row of the weights against scikit-learn with that row as sample_weight."""
    from audit import stats

    rng = np.random.default_rng(31)
    n = 400
    hit = rng.random(n) < share
    score = np.clip(0.2 * hit + rng.random(n) * 0.8, 0, 1)
    if decimals is not None:
        score = np.round(score, decimals)
    W = stats.poisson_weights(n, 12, 4)
    auc, ap = cw.auc_and_ap(W, hit, score)
    for r in range(len(W)):
        assert auc[r] == pytest.approx(skm.roc_auc_score(hit, score, sample_weight=W[r]), abs=1e-12), r
        assert ap[r] == pytest.approx(_sk(skm.average_precision_score, hit, score, sample_weight=W[r]), abs=1e-12), r
