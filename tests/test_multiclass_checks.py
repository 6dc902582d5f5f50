"""Checks that re-score or explain the model, on models of more than two classes (issue 21).

Stubbed contexts (a scorer we control, three classes approve / refer / decline, approve favourable) check each
number against a hand count; the tiny three-class BERT (conftest.tiny_multiclass_model) checks the whole run and
the SHAP values against shap's own explainer of the chosen output. Binary numbers: the family tests and the gold
tests (test_registry_equivalence, test_render_gold) hold them; here a few binary cases of the new code paths.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from audit.checks import all_checks
from audit.classes import Classes
from audit.context import CheckContext, Scored

LABELS = ["approve", "refer", "decline"]
APPROVE, REFER, DECLINE = [1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]


def run(check_id: str, ctx: CheckContext, **params):
    spec = all_checks()[check_id]
    return spec.fn(ctx, **{**spec.params, **params})


class Stub(CheckContext):
    """Three classes; `table` maps a text to its (approve, refer, decline) probabilities."""

    table: dict
    calls: list

    def score_probs(self, texts, desc=""):
        self.calls.append(list(texts))
        return np.array([self.table[t] for t in texts], dtype=float)


def stub_ctx(table: dict, texts: list[str], y: list[int] | None = None, favourable=(0,), **kw) -> Stub:
    probs = np.array([table[t] for t in texts], dtype=float)
    y_ = np.array(y if y is not None else [0] * len(texts))
    classes = Classes(list(LABELS), y_, probs, tuple(favourable))
    ctx = Stub(y_true=np.isin(y_, favourable).astype(int), score=classes.favourable_score(probs), texts=list(texts),
               replicates=kw.pop("replicates", 50), min_group_size=kw.pop("min_group_size", 1),
               positive_label="approve", negative_label="not approve", classes=classes,
               bundle=kw.pop("bundle", SimpleNamespace(model=object())), **kw)
    ctx.table, ctx.calls = table, []
    return ctx


# ---------------------------------------------------------------- counterfactual swaps

CF = {
    "she pays on time": [0.7, 0.2, 0.1],  # approve
    "he pays on time": [0.2, 0.7, 0.1],  # refer
    "she is late": [0.2, 0.5, 0.3],  # refer
    "he is late": [0.1, 0.3, 0.6],  # decline
    "the applicant pays": [0.4, 0.35, 0.25],  # approve; nothing to swap
}


def test_counterfactual_flip_is_a_change_of_the_favourable_decision():
    texts = list(CF)
    ctx = stub_ctx(CF, texts)
    m = run("fairness.counterfactual_flip_rate", ctx, swaps="gender", min_group_size=1)
    assert ctx.calls == [["he pays on time", "she pays on time", "he is late", "she is late"]]
    # rows 0 and 1 cross approve <-> refer (favourable <-> not); rows 2 and 3 move refer <-> decline: not a flip
    assert m.value == pytest.approx(2 / 4)
    entry = m.details["lists"][0]
    assert entry["flips"] == 2 and entry["flips_to_favourable"] == 1 and entry["flips_to_unfavourable"] == 1
    assert m.details["favourable"] == ["approve"]
    ex = {e["before"]: (e["decision_before"], e["decision_after"]) for e in entry["examples"]}
    assert ex["she pays on time"] == ("approve", "refer") and ex["he is late"] == ("decline", "refer")
    # the score is P(approve): |0.7-0.2|, |0.2-0.7|, |0.2-0.1|, |0.1-0.2|
    c = run("fairness.counterfactual_score_change", ctx, swaps="gender", min_group_size=1)
    assert c.value == pytest.approx((0.5 + 0.5 + 0.1 + 0.1) / 4)
    assert all_checks()["fairness.counterfactual_flip_rate"].classes == "favourable"


def test_counterfactual_with_a_set_of_favourable_classes():
    texts = list(CF)
    ctx = stub_ctx(CF, texts, favourable=(0, 1))  # approve or refer
    m = run("fairness.counterfactual_flip_rate", ctx, swaps="gender", min_group_size=1)
    # favourable: approve/refer; rows 2 (refer -> decline) and 3 (decline -> refer) flip, rows 0 and 1 do not
    assert m.value == pytest.approx(2 / 4)
    flipped = {e["before"] for e in m.details["lists"][0]["examples"] if e["flipped"]}
    assert flipped == {"she is late", "he is late"}
    # P(approve or refer): 0.9 -> 0.9, 0.9 -> 0.9, 0.7 -> 0.4, 0.4 -> 0.7
    c = run("fairness.counterfactual_score_change", ctx, swaps="gender", min_group_size=1)
    assert c.value == pytest.approx((0 + 0 + 0.3 + 0.3) / 4)


# ---------------------------------------------------------------- robustness

ROB = {
    "she pays on time": [0.7, 0.2, 0.1], "SHE PAYS ON TIME": [0.6, 0.3, 0.1],  # approve -> approve
    "he pays on time": [0.2, 0.7, 0.1], "HE PAYS ON TIME": [0.2, 0.3, 0.5],  # refer -> decline
    "she is late": [0.2, 0.5, 0.3], "SHE IS LATE": [0.5, 0.3, 0.2],  # refer -> approve
    "he is late": [0.1, 0.3, 0.6], "HE IS LATE": [0.1, 0.3, 0.6],  # decline -> decline
}


def test_robustness_flip_is_any_change_of_the_decided_class():
    texts = ["she pays on time", "he pays on time", "she is late", "he is late"]
    ctx = stub_ctx(ROB, texts)
    m = run("robustness.flip_rate", ctx, perturbations=["uppercase"], min_group_size=1)
    assert ctx.calls == [[t.upper() for t in texts]]
    # refer -> decline and refer -> approve are flips; approve -> approve and decline -> decline are not
    assert m.value == pytest.approx(2 / 4)
    e = m.details["perturbations"][0]
    assert e["flips"] == 2 and e["flips_to_favourable"] == 1 and e["flips_to_unfavourable"] == 0
    assert {(x["decision_before"], x["decision_after"]) for x in e["examples"] if x["flipped"]} == {
        ("refer", "decline"), ("refer", "approve")}
    s = run("robustness.score_change", ctx, perturbations=["uppercase"], min_group_size=1)
    assert s.value == pytest.approx((0.1 + 0.0 + 0.3 + 0.0) / 4)  # |change of P(approve)|
    assert all_checks()["robustness.flip_rate"].classes == "any"
    assert all_checks()["robustness.score_change"].classes == "favourable"


def test_robustness_binary_flip_is_the_threshold_crossing():
    """A binary model: the decided class is the decision at the threshold (the numbers of every release)."""

    class Binary(CheckContext):
        def score_texts(self, texts, desc=""):
            return np.array([0.55 if t.isupper() else 0.45 for t in texts]) if self.up else np.full(len(texts), 0.49)

    texts = ["pays on time", "often late", "pays"]
    ctx = Binary(y_true=np.ones(3, dtype=int), score=np.array([0.45, 0.6, 0.45]), texts=texts, replicates=20,
                 min_group_size=1, positive_label="good", negative_label="bad", bundle=SimpleNamespace(model=object()),
                 threshold=0.5)
    ctx.up = True
    m = run("robustness.flip_rate", ctx, perturbations=["uppercase"])
    # 0.45 -> 0.55 crosses (twice), 0.6 -> 0.55 does not
    assert m.value == pytest.approx(2 / 3)
    assert m.details["perturbations"][0]["flips_to_favourable"] == 2
    assert "flip" not in m.details and "favourable" not in m.details  # binary details as before


# ---------------------------------------------------------------- drift of the decisions


def _scored(name: str, probs: list[list[float]], y: list[int] | None = None) -> Scored:
    from audit.scoring import Predictions

    p = np.asarray(probs, dtype=float)
    n = len(p)
    return Scored(name, pd.DataFrame({"text": [f"t{i}" for i in range(n)]}), [f"t{i}" for i in range(n)],
                  None if y is None else np.asarray(y), Predictions(p, 0, np.ones(n), 0, 1.0))


def _drift_ctx(ref_classes: list[int], cur_classes: list[int], cur_y: list[int] | None = None, **kw) -> Stub:
    eye = np.eye(3) * 0.6 + 0.4 / 3  # a row decides its class with p 0.733
    ref = _scored("train", eye[ref_classes].tolist())
    cur = _scored("current", eye[cur_classes].tolist(), cur_y)
    texts = ["a", "b"]
    ctx = stub_ctx({"a": APPROVE, "b": REFER}, texts, replicates=200, **kw)
    ctx.datasets = {"train": ref, "current": cur}
    return ctx


def _psi(r: np.ndarray, c: np.ndarray) -> float:
    r, c = np.maximum(r / r.sum(), 1e-4), np.maximum(c / c.sum(), 1e-4)
    return float(sum((b - a) * np.log(b / a) for a, b in zip(r, c)))


def test_predicted_class_shift_equals_a_hand_count():
    from scipy.stats import chi2_contingency

    ref = [0] * 50 + [1] * 30 + [2] * 20
    cur = [0] * 30 + [1] * 30 + [2] * 40
    ctx = _drift_ctx(ref, cur)
    m = run("drift.predicted_class_shift", ctx)
    # shares (0.5, 0.3, 0.2) -> (0.3, 0.3, 0.4): (0.3-0.5) ln(0.3/0.5) + 0 + (0.4-0.2) ln(0.4/0.2)
    hand = -0.2 * np.log(0.6) + 0.2 * np.log(2.0)
    assert m.value == pytest.approx(hand, abs=1e-12)
    assert m.value == pytest.approx(_psi(np.array([50, 30, 20.]), np.array([30, 30, 40.])))
    table = {r["class"]: (r["reference_count"], r["current_count"]) for r in m.details["classes"]}
    assert table == {"approve": (50, 30), "refer": (30, 30), "decline": (20, 40)}
    assert m.details["chi2_p_value"] == pytest.approx(
        chi2_contingency(np.array([[50, 30, 20], [30, 30, 40]]), correction=False)[1])
    assert m.ci_low is not None and m.ci_low <= m.value <= m.ci_high
    assert all_checks()["drift.predicted_class_shift"].classes == "any"
    # a class the current set never decides: its share floored at 1e-4
    m0 = run("drift.predicted_class_shift", _drift_ctx(ref, [0] * 60 + [1] * 40))
    assert m0.value == pytest.approx(_psi(np.array([50, 30, 20.]), np.array([60, 40, 0.])))


def test_predicted_class_shift_of_a_binary_model_is_the_decision_rate_shift():
    from audit.scoring import Predictions

    # scores of 10 reference rows (6 at or above 0.5) and 10 current rows (3 at or above)
    s_ref = np.array([0.9, 0.8, 0.7, 0.6, 0.55, 0.5, 0.4, 0.3, 0.2, 0.1])
    s_cur = np.array([0.9, 0.6, 0.5, 0.49, 0.4, 0.3, 0.3, 0.2, 0.1, 0.0])

    def scored(name, s):
        probs = np.column_stack([1 - s, s])  # labels (bad, good), good positive
        return Scored(name, pd.DataFrame({"x": range(10)}), [str(i) for i in range(10)], None,
                      Predictions(probs, 1, np.ones(10), 0, 1.0))

    ctx = CheckContext(y_true=np.ones(2, dtype=int), score=np.array([0.6, 0.4]), texts=["a", "b"], replicates=50,
                       positive_label="good", negative_label="bad", threshold=0.5,
                       manifest=SimpleNamespace(labels=["bad", "good"], label_column="label"))
    ctx.datasets = {"train": scored("train", s_ref), "current": scored("current", s_cur)}
    m = run("drift.predicted_class_shift", ctx)
    assert m.value == pytest.approx(_psi(np.array([4, 6.]), np.array([7, 3.])))
    assert {r["class"]: r["reference_count"] for r in m.details["classes"]} == {"bad": 4, "good": 6}
    rate = run("drift.favourable_rate_change", ctx)
    assert rate.value == pytest.approx(0.3 - 0.6)  # the same shift, read as a difference of rates


def test_favourable_rate_change_and_current_auc_read_the_favourable_outcome():
    from sklearn.metrics import roc_auc_score

    ref = [0] * 50 + [1] * 30 + [2] * 20
    cur = [0] * 30 + [1] * 30 + [2] * 40
    cur_y = [0] * 25 + [1] * 5 + [1] * 20 + [0] * 10 + [2] * 40  # true classes of the current rows
    ctx = _drift_ctx(ref, cur, cur_y)
    m = run("drift.favourable_rate_change", ctx)
    assert m.value == pytest.approx(0.30 - 0.50)
    assert m.details["reference_rate"] == 0.5 and m.details["current_rate"] == pytest.approx(0.3)
    auc = run("drift.current_roc_auc", ctx)
    eye = np.eye(3) * 0.6 + 0.4 / 3
    score = eye[cur][:, 0]  # P(approve)
    assert auc.value == pytest.approx(roc_auc_score(np.isin(cur_y, [0]).astype(int), score))
    acc = {r["metric"]: r["current"] for r in auc.details["metrics"]}["accuracy"]
    decided_fav, true_fav = np.isin(cur, [0]), np.isin(cur_y, [0])
    assert acc == pytest.approx(float(np.mean(decided_fav == true_fav)))
    assert acc == pytest.approx((25 + 20 + 40) / 100)  # both favourable, or both not (refer, decline alike)


# ---------------------------------------------------------------- label issues


def test_label_issues_read_every_class():
    from cleanlab.filter import find_label_issues

    rng = np.random.default_rng(3)
    n = 90
    y = rng.integers(0, 3, n)
    probs = rng.dirichlet([1, 1, 1], n) * 0.4
    probs[np.arange(n), y] += 0.6  # mostly right
    flip = [3, 17, 40, 66]  # labels the model contradicts strongly
    for i in flip:
        probs[i] = [0.02, 0.03, 0.95] if y[i] != 2 else [0.95, 0.03, 0.02]
    texts = [f"row {i}" for i in range(n)]
    table = {t: p for t, p in zip(texts, probs)}
    ctx = stub_ctx(table, texts, y=y.tolist())
    m = run("quality.label_issue_share", ctx, method="confident_learning")
    ref = find_label_issues(y, probs, filter_by="confident_learning", n_jobs=1)
    assert m.value == pytest.approx(ref.mean())
    assert set(flip) <= set(np.flatnonzero(ref))  # the contradicted labels are among cleanlab's issues
    assert m.details["label_issues"] == int(ref.sum())
    assert {r["row"] for r in m.details["listed"]} <= set(np.flatnonzero(ref))
    labelled = {r["row"]: r["label"] for r in m.details["listed"]}
    assert all(labelled[i] == LABELS[y[i]] for i in labelled)
    c = run("quality.label_issue_share", ctx, method="cleanlab")
    assert c.value == pytest.approx(find_label_issues(y, probs, n_jobs=1).mean())
    assert all_checks()["quality.label_issue_share"].classes == "any"


def test_conflicting_labels_count_any_two_classes():
    texts = ["same text", "same text", "other", "other", "alone"]
    table = {t: APPROVE for t in texts}
    ctx = stub_ctx(table, texts, y=[1, 2, 0, 0, 2])  # refer and decline on one text: a conflict
    m = run("quality.conflicting_labels_share", ctx, near="exact")
    assert m.value == pytest.approx(2 / 5)
    assert m.details["listed"][0]["labels"] == {"decline": 1, "refer": 1}


# ---------------------------------------------------------------- explanations: which output


def test_log_odds_of_every_output_against_a_hand_count():
    from audit.checks.explainability import _log_odds, _log_odds_all

    p = np.array([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]])
    got = _log_odds_all(p, (0,))
    assert got[0, 0] == pytest.approx(np.log(0.5 / 0.5)) and got[0, 2] == pytest.approx(np.log(0.2 / 0.8))
    assert got[1, 1] == pytest.approx(np.log(0.1 / 0.9)) and got[1, 3] == pytest.approx(np.log(0.1 / 0.9))
    assert _log_odds_all(p, (0, 1))[0, 3] == pytest.approx(np.log(0.8 / 0.2))
    b = np.array([[0.3, 0.7], [0.9, 0.1]])  # a binary model: the positive column is today's log-odds exactly
    assert np.array_equal(_log_odds_all(b, (1,))[:, 1], _log_odds(b, 1))


def test_explain_choices_resolve_per_model():
    from audit.checks.explainability import resolve_output

    binary = CheckContext(y_true=np.array([1, 0]), score=np.array([0.8, 0.2]), texts=["a", "b"],
                          positive_label="good", negative_label="bad",
                          manifest=SimpleNamespace(labels=["bad", "good"]))
    for what in ("auto", "favourable", "good"):
        assert resolve_output(binary, what).default  # the numbers of every earlier release
    assert resolve_output(binary, "predicted").columns(binary, [0, 1]) == [1, 0]
    assert resolve_output(binary, "bad").columns(binary, [0, 1]) == [0, 0]
    mc = stub_ctx({"a": [0.2, 0.5, 0.3], "b": [0.1, 0.2, 0.7]}, ["a", "b"])
    auto = resolve_output(mc, "auto")
    assert auto.kind == "predicted" and auto.columns(mc, [0, 1]) == [1, 2]
    assert resolve_output(mc, "favourable").columns(mc, [1]) == [3]  # the last column: P(favourable) log-odds
    assert resolve_output(mc, "decline").columns(mc, [0, 1]) == [2, 2]
    with pytest.raises(ValueError, match="'accept' is not a label of the model"):
        resolve_output(mc, "accept")


def test_explain_parameter_is_shared_and_checked_at_policy_load(policy_file):
    from audit.errors import PolicyError
    from audit.policy import load_policy

    p = load_policy(policy_file("policy: x\nversion: '1'\nchecks:\n  explainability.stability: "
                                "{min: 0, explain: decline}\n  explainability.additivity_error: {max: 0.01}\n"))
    from audit.from_stats import check_params

    params = check_params(p, all_checks())
    assert params["explainability.additivity_error"]["explain"] == "decline"  # one explanation for the family
    with pytest.raises(PolicyError, match="explain"):
        load_policy(policy_file("policy: x\nversion: '1'\nchecks:\n  explainability.stability: "
                                "{min: 0, explain: ''}\n", "bad.yaml"))


# ---------------------------------------------------------------- the tiny three-class model, end to end

MC_POLICY = """\
policy: multiclass
version: "1"
checks:
  explainability.additivity_error: {max: 0.001, BUDGET}
  explainability.stability: {min: -1, severity: warn, BUDGET}
  explainability.prohibited_terms: {max: 0.9, terms: [late], BUDGET}
  explainability.adverse_action_specific_reasons: {min: 0, rows: 4, max_evals: 30, severity: warn}
  robustness.flip_rate: {max: 0.9, perturbations: [uppercase, punctuation], rows: 40, severity: warn}
  robustness.score_change: {max: 0.9, perturbations: [uppercase, punctuation], rows: 40, severity: warn}
  fairness.counterfactual_flip_rate: {max: 0.9, swaps: gender, severity: warn}
  quality.label_issue_share: {max: 0.9, severity: warn}
budget: {bootstrap: 20, seed: 0}
""".replace("BUDGET", "rows: 6, max_evals: 30, examples: 1")


@pytest.fixture(scope="module")
def mc_run(tiny_multiclass_model, multiclass_csv, tmp_path_factory):
    from audit.runner import run_audit

    folder = tmp_path_factory.mktemp("mc-run")
    pol = folder / "p.yaml"
    pol.write_text(MC_POLICY)
    run_audit(tiny_multiclass_model, pol, out_dir=folder / "out", progress=False)
    result = json.loads((folder / "out" / "result.json").read_text())
    preds = pd.read_csv(folder / "out" / "predictions.csv", dtype={"row_id": str})
    return result, preds, folder / "out"


def test_every_check_runs_on_three_classes(mc_run):
    result, _, _ = mc_run
    ms = result["measurements"]
    for cid in ("explainability.additivity_error", "explainability.stability", "explainability.prohibited_terms",
                "explainability.adverse_action_specific_reasons", "robustness.flip_rate", "robustness.score_change",
                "fairness.counterfactual_flip_rate", "quality.label_issue_share"):
        why = (ms[cid].get("inconclusive") or "") + (ms[cid].get("error") or "")
        assert "not yet built" not in why and not ms[cid].get("error"), (cid, why)
    assert ms["explainability.additivity_error"]["value"] < 1e-3
    assert ms["robustness.flip_rate"]["details"]["flip"] == "any change of the decided (most probable) class"


def test_shap_values_are_those_of_each_rows_predicted_class(mc_run, tiny_multiclass_model):
    """The explained output, its additivity, and the values themselves against shap's own explainer of the
    predicted class's log-odds, computed here from the model (not through audit's explained function)."""
    import shap
    import torch

    from audit.model import open_bundle

    result, preds, _ = mc_run
    add = result["measurements"]["explainability.additivity_error"]["details"]
    assert add["explain"] == "predicted" and "predicted class" in add["output"]
    p = preds.set_index("row_id")[[f"p({c})" for c in LABELS]]
    b = open_bundle(tiny_multiclass_model).load()
    order = list(b.manifest.labels)
    frame = pd.read_csv(result["data"]["eval"]["path"], dtype=str)
    texts = dict(zip(frame["id"], frame["text"]))
    for e in add["examples"]:
        probs = p.loc[e["row_id"]].to_numpy(dtype=float)
        c = int(np.argmax(probs))
        assert e["explained"] == LABELS[c] == e["predicted"]
        assert e["output"] == pytest.approx(np.log(probs[c]) - np.log(1 - probs[c]), abs=1e-5)
        assert e["base_value"] + e["shap_sum"] == pytest.approx(e["output"], abs=1e-3)
        k = order.index(LABELS[c])

        def f(xs, k=k):
            enc = b.tokenizer([str(x) for x in xs], padding=True, truncation=True, max_length=32, return_tensors="pt")
            with torch.no_grad():
                q = torch.softmax(b.model(**enc).logits.double(), dim=-1).numpy()
            return np.log(q[:, k]) - np.log(q.sum(axis=1) - q[:, k])

        sv = shap.Explainer(f, shap.maskers.Text(b.tokenizer), algorithm="partition")(
            [texts[e["row_id"]]], max_evals=30, batch_size=64, silent=True)
        assert float(np.asarray(sv.base_values).reshape(-1)[0]) == pytest.approx(e["base_value"], abs=1e-4)
        assert float(sv.values[0].sum()) == pytest.approx(e["shap_sum"], abs=1e-4)
    sampled = result["measurements"]["explainability.stability"]["details"]
    assert sum(sampled["explained_classes"].values()) == sampled["sample_rows"]


def test_adverse_action_declines_are_unfavourable_decisions(mc_run):
    result, preds, _ = mc_run
    d = result["measurements"]["explainability.adverse_action_specific_reasons"]["details"]
    decided = preds["predicted_label"]
    assert d["declined"] == int((decided != "approve").sum())
    assert d["declined_as"] == {c: int((decided == c).sum()) for c in ("refer", "decline") if (decided == c).any()}
    by_id = preds.set_index("row_id")
    for n in d["notices"]:
        assert n["decided"] == by_id.loc[n["id"], "predicted_label"] != "approve"
        assert n["score"] == pytest.approx(by_id.loc[n["id"], "p(approve)"], abs=1e-6)
    assert d["max_additivity_error"] < 0.01


def test_report_says_which_output_was_explained(mc_run):
    _, _, out = mc_run
    html = (out / "report.html").read_text()
    assert "log-odds of the predicted class" in html
