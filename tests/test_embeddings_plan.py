"""The scoring passes keep the model's embeddings only when a check of the run reads them (CheckSpec.embeddings,
audit.runner.needs_embeddings): without them the last layer is computed for [CLS] alone, and no number that a
check of both runs reports moves by more than float noise."""

import inspect
import json
import re

import numpy as np
import pandas as pd

from audit.checks import all_checks
from audit.policy import load_policy
from audit.runner import needs_embeddings, planned
from tests.test_run import audit_run

READERS = {"drift.embedding_auc", "fairness.proxy_auc"}  # by hand: the checks whose code reads embeddings


def test_every_check_that_reads_embeddings_declares_it():
    specs = all_checks()
    reads = {cid for cid, spec in specs.items()
             if re.search(r'\.embeddings\b|"embeddings"', inspect.getsource(spec.fn))}
    assert reads == READERS
    assert {cid for cid, spec in specs.items() if spec.embeddings} == READERS


def _policy(tmp_path, name, checks: str):
    p = tmp_path / f"{name}.yaml"
    p.write_text(f'policy: {name}\nversion: "1"\nchecks:\n{checks}budget: {{bootstrap: 50, seed: 0}}\n')
    return load_policy(p)


def test_which_runs_need_embeddings(tmp_path):
    perf = _policy(tmp_path, "perf", "  performance.roc_auc: {min: 0.5}\n")
    assert not needs_embeddings(perf) and not needs_embeddings(perf, everything=True)
    drift = _policy(tmp_path, "drift", "  drift.embedding_auc: {max: 0.7}\n")
    assert needs_embeddings(drift)
    fair = _policy(tmp_path, "fair", "  fairness.selection_rate_ratio: {min: 0.8}\n")
    # --all-checks adds the family's cheap checks; proxy_auc has a cost no rule pays for, so it does not run
    assert "fairness.proxy_auc" not in planned(fair, everything=True)
    assert not needs_embeddings(fair, everything=True)
    proxy = _policy(tmp_path, "proxy", "  fairness.proxy_auc: {max: 0.9}\n")
    assert needs_embeddings(proxy)
    shifted = _policy(tmp_path, "shifted", "  drift.prediction_psi: {max: 0.25}\n")
    assert not needs_embeddings(shifted) and needs_embeddings(shifted, everything=True)  # embedding_auc: no cost


POLICY = """\
policy: {name}
version: "1"
min_group_size: 10
checks:
  performance.roc_auc: {{min: 0.5, basis: point}}
  performance.brier_score: {{max: 0.5}}
  fairness.selection_rate_ratio: {{min: 0.5}}
  privacy.membership_inference_auc: {{max: 0.9, basis: point}}
{extra}budget: {{bootstrap: 50, seed: 0}}
"""


def test_a_run_without_embedding_readers_gives_the_same_numbers(tiny_model, tmp_path):
    runs = {}
    for name, extra in (("plain", ""), ("proxy", "  fairness.proxy_auc: {max: 1.0, severity: warn}\n")):
        pol = tmp_path / f"{name}.yaml"
        pol.write_text(POLICY.format(name=name, extra=extra))
        result = audit_run(tiny_model, pol, tmp_path / name)
        assert result.exit_code in (0, 1, 3), result.output
        runs[name] = (json.loads((tmp_path / name / "result.json").read_text()),
                      pd.read_csv(tmp_path / name / "predictions.csv"))
    (plain, p_pred), (proxy, q_pred) = runs["plain"], runs["proxy"]
    assert np.abs(p_pred["score"].to_numpy() - q_pred["score"].to_numpy()).max() <= 1e-6
    assert (p_pred["predicted_label"] == q_pred["predicted_label"]).all()
    assert "fairness.proxy_auc" in proxy["measurements"] and "fairness.proxy_auc" not in plain["measurements"]
    assert plain["scoring"]["embeddings"] is False and proxy["scoring"]["embeddings"] is True
    emb = proxy["measurements"]["fairness.proxy_auc"]["details"]
    assert "the run has no embeddings" not in json.dumps(emb)  # the run that rules it has them
    for cid, m in plain["measurements"].items():
        other = proxy["measurements"][cid]
        assert (m["n"], m["inconclusive"], m["error"]) == (other["n"], other["inconclusive"], other["error"]), cid
        for key in ("value", "ci_low", "ci_high"):
            assert (m[key] is None) == (other[key] is None), (cid, key)
            if m[key] is not None:
                assert abs(m[key] - other[key]) <= 1e-6, (cid, key)
    status = {f["check_id"]: f["status"] for f in proxy["findings"]}
    assert {f["check_id"]: f["status"] for f in plain["findings"]} == {
        cid: s for cid, s in status.items() if cid != "fairness.proxy_auc"}


# the run policy and two re-scoring checks, which runner.MODEL_FIRST runs before the others
ORDER_POLICY = POLICY.format(name="order", extra="  fairness.counterfactual_flip_rate: {max: 0.5, swaps: gender, "
                                                 "severity: warn}\n  robustness.flip_rate: {max: 0.5, severity: warn}\n")


def test_the_model_heavy_checks_first_change_no_number(tiny_model, tmp_path, monkeypatch):
    """runner.MODEL_FIRST only moves when the re-scoring checks run: the same policy run in the registry's order
    gives the same result.json measurements, detail for detail, in the same order."""
    import audit.runner as runner

    pol = tmp_path / "order.yaml"
    pol.write_text(ORDER_POLICY)
    got = {}
    for name, first in (("first", runner.MODEL_FIRST), ("registry", frozenset())):
        monkeypatch.setattr(runner, "MODEL_FIRST", first)
        result = audit_run(tiny_model, pol, tmp_path / name)
        assert result.exit_code in (0, 1, 3), result.output
        doc = json.loads((tmp_path / name / "result.json").read_text())
        got[name] = doc["measurements"], list(doc["run"]["timings"]["checks_s"])
    (a, a_order), (b, b_order) = got["first"], got["registry"]
    assert list(a) == list(b) and a_order == b_order
    assert "fairness.counterfactual_flip_rate" in a and "robustness.flip_rate" in a
    for cid in a:
        assert a[cid] == b[cid], cid  # values, intervals, n, reasons and every detail
