"""Models of more than two classes: training, the favourable outcome, the favourable view of a run, and the
class-level accuracy checks, each against scikit-learn or fairlearn."""

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner
from fairlearn.metrics import demographic_parity_ratio
from sklearn import metrics as skm

from audit import classes
from audit.cli import cli
from audit.errors import PolicyError
from tests.test_run import audit_run

MC_POLICY = """\
policy: multi-class test
version: "1"
favourable: [approve, refer]
checks:
  performance.accuracy: {min: 0.5}
  performance.balanced_accuracy: {min: 0.4}
  performance.roc_auc: {min: 0.6}
  fairness.selection_rate_ratio: {min: 0.1, attributes: [sex]}
  privacy.membership_inference_auc: {max: 0.99, severity: warn}
budget: {bootstrap: 200, seed: 0}
"""


@pytest.fixture(scope="module")
def mc_run(tiny_multiclass_model, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mc-run")
    pol = tmp / "p.yaml"
    pol.write_text(MC_POLICY)
    out = tmp / "out"
    result = audit_run(tiny_multiclass_model, pol, out)
    return result, out


def test_train_writes_every_class(tiny_multiclass_model):
    manifest = yaml.safe_load((tiny_multiclass_model / "audit-model.yaml").read_text())
    config = json.loads((tiny_multiclass_model / "config.json").read_text())
    assert manifest["labels"] == ["approve", "decline", "refer"]  # sorted: the model's output order
    assert manifest["positive_label"] == "approve"
    assert {int(k): v for k, v in config["id2label"].items()} == {0: "approve", 1: "decline", 2: "refer"}


def test_train_refuses_many_classes_without_the_favourable_one(tiny_base, tmp_path):
    from audit.errors import UsageError
    from audit.manifest import TextRecipe
    from audit.train import TrainConfig, train

    data = tmp_path / "d.csv"
    pd.DataFrame({"text": [f"row {i}" for i in range(30)], "label": ["a", "b", "c"] * 10}).to_csv(data, index=False)
    cfg = TrainConfig(text=TextRecipe(column="text"), label_column="label", base_model=str(tiny_base), epochs=1)
    with pytest.raises(UsageError, match="--positive-label"):
        train(data, tmp_path / "m", cfg, progress=False)
    assert not (tmp_path / "m").exists()


def test_multiclass_run_numbers_equal_sklearn_and_fairlearn(mc_run, multiclass_csv):
    result, out = mc_run
    assert result.exit_code in (0, 1, 3), result.output
    r = json.loads((out / "result.json").read_text())
    pred = pd.read_csv(out / "predictions.csv", dtype={"row_id": str})
    probs = pred[["p(approve)", "p(decline)", "p(refer)"]].to_numpy()
    labels = np.array(["approve", "decline", "refer"])
    assert (pred["predicted_label"].to_numpy() == labels[probs.argmax(axis=1)]).all()  # the most probable class
    np.testing.assert_allclose(pred["score"], probs[:, 0] + probs[:, 2], atol=1e-12)  # P(approve or refer)
    m = r["measurements"]
    assert m["performance.accuracy"]["value"] == pytest.approx(
        skm.accuracy_score(pred["true_label"], pred["predicted_label"]), abs=1e-12)
    assert m["performance.balanced_accuracy"]["value"] == pytest.approx(
        skm.balanced_accuracy_score(pred["true_label"], pred["predicted_label"]), abs=1e-12)
    fav_true = pred["true_label"].isin(["approve", "refer"])
    fav_pred = pred["predicted_label"].isin(["approve", "refer"])
    assert m["performance.roc_auc"]["value"] == pytest.approx(skm.roc_auc_score(fav_true, pred["score"]), abs=1e-12)
    rows = pd.read_csv(multiclass_csv, dtype=str).set_index("id").loc[pred["row_id"]]
    assert m["fairness.selection_rate_ratio"]["value"] == pytest.approx(
        demographic_parity_ratio(fav_true, fav_pred, sensitive_features=rows["sex"].to_numpy()), abs=1e-12)
    cm = m["performance.accuracy"]["details"]["confusion_matrix"]
    assert cm["labels"] == list(labels)
    assert cm["matrix"] == skm.confusion_matrix(pred["true_label"], pred["predicted_label"], labels=labels).tolist()
    ev = r["data"]["eval"]
    assert ev["favourable"] == ["approve", "refer"]
    assert ev["classes"] == pred["true_label"].value_counts().to_dict()
    assert ev["positives"] == int(fav_true.sum())
    assert any("3 classes" in w and "approve or refer" in w for w in r["warnings"])


def test_multiclass_interval_is_a_bootstrap_of_the_class_accuracy(mc_run):
    _, out = mc_run
    m = json.loads((out / "result.json").read_text())["measurements"]["performance.accuracy"]
    assert m["ci_low"] < m["value"] < m["ci_high"]
    assert m["ci_high"] - m["ci_low"] < 0.3  # 135 rows: an interval of a rate, not of nothing


def test_binary_only_check_is_inconclusive_with_the_reason(tiny_multiclass_model, tmp_path, monkeypatch):
    """A check that declares it reads binary models only is INCONCLUSIVE in a run of a model of more classes, with
    the reason, and the run exits 3: never a pass. (Every bundled check reads more classes today, so one is
    declared binary-only for the test, as a new check would be by default.)"""
    import dataclasses

    from audit import checks as registry

    binary_only = [cid for cid, spec in registry.all_checks().items() if spec.classes == "binary"]
    if not binary_only:
        cid = "performance.brier_score"
        monkeypatch.setitem(registry._REGISTRY, cid, dataclasses.replace(registry._REGISTRY[cid], classes="binary"))
        binary_only = [cid]
    assert registry.CheckSpec.__dataclass_fields__["classes"].default == "binary"  # a new check's default
    pol = tmp_path / "p.yaml"
    pol.write_text(f"policy: t\nversion: '1'\nchecks:\n  {binary_only[0]}: {{min: 0.0}}\n"
                   "  performance.accuracy: {min: 0.0}\nbudget: {bootstrap: 50}\n")
    result = audit_run(tiny_multiclass_model, pol, tmp_path / "out")
    assert result.exit_code == 3, result.output  # lacks evidence: never a pass
    m = json.loads((tmp_path / "out" / "result.json").read_text())["measurements"][binary_only[0]]
    assert m["value"] is None and "this model has 3 classes" in m["inconclusive"]


@pytest.mark.parametrize("favourable, message", [
    ("[approve, maybe]", "'maybe' is not a label of the model"),
    ("[approve, decline, refer]", "names every label"),
    ("[]", "at least one favourable label"),
])
def test_bad_favourable_is_refused_with_its_line(tiny_multiclass_model, tmp_path, favourable, message):
    pol = tmp_path / "p.yaml"
    pol.write_text(MC_POLICY.replace("favourable: [approve, refer]", f"favourable: {favourable}"))
    result = audit_run(tiny_multiclass_model, pol, tmp_path / "out")
    assert result.exit_code == 2, result.output
    assert message in result.output and f"{pol}:3" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_binary_model_favourable_must_be_its_positive_label(tiny_model, tmp_path):
    pol = tmp_path / "p.yaml"
    pol.write_text("policy: t\nversion: '1'\nfavourable: bad\nchecks:\n  performance.accuracy: {min: 0.5}\n")
    result = audit_run(tiny_model, pol, tmp_path / "out")
    assert result.exit_code == 2 and "positive_label 'good'" in result.output and f"{pol}:3" in result.output
    pol.write_text("policy: t\nversion: '1'\nfavourable: good\nchecks:\n  performance.accuracy: {min: 0.5}\n"
                   "budget: {bootstrap: 50}\n")
    assert audit_run(tiny_model, pol, tmp_path / "out2").exit_code == 0


def test_silo_statistics_say_what_they_read(tiny_multiclass_model, multiclass_csv, tmp_path):
    result = CliRunner().invoke(cli, ["stats", str(tiny_multiclass_model), "--data", str(multiclass_csv),
                                      "--out", str(tmp_path / "s.json"), "--no-progress"])
    assert result.exit_code == 2, result.output
    assert "binary classifiers" in result.output and "audit run" in result.output
    assert not (tmp_path / "s.json").exists()


# --- the pieces, against scikit-learn ---------------------------------------------------------------------------

def test_class_confusion_equals_sklearn_with_weights():
    rng = np.random.default_rng(3)
    y, pred = rng.integers(0, 4, 300), rng.integers(0, 4, 300)
    y[y == 3] = 2  # class 3 never true: a column without a row
    W = np.vstack([np.ones(300), rng.poisson(1.0, 300)])
    C = classes.class_confusion(W, y, pred, 4)
    for r in range(2):
        np.testing.assert_allclose(C[r], skm.confusion_matrix(y, pred, labels=range(4), sample_weight=W[r]))
        assert classes.accuracy(C)[r] == pytest.approx(skm.accuracy_score(y, pred, sample_weight=W[r]))
        present = np.flatnonzero(np.bincount(y, minlength=4) > 0)
        with pytest.warns(UserWarning):  # sklearn warns of the predicted class that is never true
            want = skm.balanced_accuracy_score(y, pred, sample_weight=W[r])
        assert classes.balanced_accuracy(C, present)[r] == pytest.approx(want)


def test_predict_is_the_threshold_for_two_classes_and_the_argmax_beyond():
    two = classes.Classes(["bad", "good"], None, np.array([[0.6, 0.4], [0.3, 0.7]]), (1,), threshold=0.35)
    assert two.pred.tolist() == [1, 1] and two.favourable_decision(two.probs).tolist() == [1, 1]
    three = classes.Classes(["a", "b", "c"], None, np.array([[0.2, 0.5, 0.3], [0.4, 0.1, 0.5]]), (0, 2))
    assert three.pred.tolist() == [1, 2]
    assert three.favourable_decision(three.probs).tolist() == [0, 1]
    np.testing.assert_allclose(three.favourable_score(three.probs), [0.5, 0.9])
    assert three.describe() == "a or c"


def test_favourable_classes_resolution():
    class M:
        labels, positive_label = ["a", "b", "c"], "b"

    class P:
        favourable, favourable_where = None, "p.yaml:3"

    assert classes.favourable_classes(P(), M()) == (1,)
    P.favourable = ["c", "a"]
    assert classes.favourable_classes(P(), M()) == (0, 2)
    P.favourable = ["z"]
    with pytest.raises(PolicyError, match=r"p.yaml:3: favourable: 'z'"):
        classes.favourable_classes(P(), M())


@pytest.mark.parametrize("check_id, rule, key, value", [
    ("explainability.additivity_error", "max: 0.1", "explain", "maybe"),
    ("performance.class_f1", "min: 0.1", "label", "Approve"),
    ("fairness.demographic_parity_difference", "max: 0.1", "outcome", "declined"),
])
def test_a_rule_naming_a_label_the_model_lacks_is_refused_before_anything_loads(tiny_multiclass_model, tmp_path,
                                                                                 check_id, rule, key, value):
    pol = tmp_path / "p.yaml"
    pol.write_text(MC_POLICY.replace("checks:\n", f"checks:\n  {check_id}:\n    {rule}\n    {key}: {value}\n"))
    result = audit_run(tiny_multiclass_model, pol, tmp_path / "out")
    assert result.exit_code == 2, result.output
    assert f"{pol}:7: checks.{check_id}.{key}: '{value}' is not a label" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()


def test_one_vs_rest_group_rates_of_a_class_equal_fairlearn(mc_run, multiclass_csv, tiny_multiclass_model, tmp_path):
    """`outcome: <label>` on a group rule: the rates of that one class against the rest, by group (fairlearn on
    "decided as decline" by sex), beside the favourable view of the same run."""
    pol = tmp_path / "p.yaml"
    pol.write_text(MC_POLICY.replace("checks:\n", "checks:\n  fairness.demographic_parity_difference:\n"
                                                  "    max: 1.0\n    attributes: [sex]\n    outcome: decline\n"))
    result = audit_run(tiny_multiclass_model, pol, tmp_path / "out")
    assert result.exit_code in (0, 1, 3), result.output
    r = json.loads((tmp_path / "out" / "result.json").read_text())
    pred = pd.read_csv(tmp_path / "out" / "predictions.csv", dtype={"row_id": str})
    rows = pd.read_csv(multiclass_csv, dtype=str).set_index("id").loc[pred["row_id"]]
    from fairlearn.metrics import demographic_parity_difference

    m = r["measurements"]["fairness.demographic_parity_difference"]
    assert m["details"]["outcome"]["label"] == "decline"
    assert m["value"] == pytest.approx(demographic_parity_difference(
        pred["true_label"] == "decline", pred["predicted_label"] == "decline",
        sensitive_features=rows["sex"].to_numpy()), abs=1e-12)
    fav = r["measurements"]["fairness.selection_rate_ratio"]  # the same run's favourable view is untouched
    assert fav["details"]["favourable"] == ["approve", "refer"] and "outcome" not in fav["details"]
    fav_pred = pred["predicted_label"].isin(["approve", "refer"])
    assert fav["value"] == pytest.approx(demographic_parity_ratio(
        pred["true_label"].isin(["approve", "refer"]), fav_pred, sensitive_features=rows["sex"].to_numpy()))


def test_pr_auc_of_the_unfavourable_outcome_reads_the_favourable_view(tiny_multiclass_model, tmp_path):
    pol = tmp_path / "p.yaml"
    pol.write_text(MC_POLICY.replace("checks:\n", "checks:\n  performance.class_pr_auc: {min: 0.0, label: negative}\n"))
    result = audit_run(tiny_multiclass_model, pol, tmp_path / "out")
    assert result.exit_code in (0, 1, 3), result.output
    m = json.loads((tmp_path / "out" / "result.json").read_text())["measurements"]["performance.class_pr_auc"]
    pred = pd.read_csv(tmp_path / "out" / "predictions.csv")
    unfavourable = ~pred["true_label"].isin(["approve", "refer"])
    assert m["value"] == pytest.approx(skm.average_precision_score(unfavourable, 1 - pred["score"]), abs=1e-12)
    assert m["details"]["label"] == "not approve or refer"
