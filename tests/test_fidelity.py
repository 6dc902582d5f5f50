"""Fidelity of explanations computed in bf16: a seeded sample explained in fp32 too, the comparison stated in
result.json and the report, and a rule (explainability.precision_agreement) that is SKIPPED, never passed, when
the explanations ran in fp32. Native bf16 is faked (this machine may not have it): the arithmetic under
bf16 autocast is the same, emulated."""

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from audit import precision
from audit.cli import cli

NATIVE = precision.Detection(True, ("amx_bf16",), True, "AVX512", "native bf16 matrix units (faked for a test)")

POLICY = """\
policy: fidelity
version: "1"
checks:
  performance.roc_auc: {min: 0.5}
  explainability.additivity_error: {max: 0.05, rows: 10, max_evals: 30, examples: 1}
  explainability.precision_agreement: {min: 0.5}
budget: {bootstrap: 50, seed: 3}
"""

@pytest.fixture(autouse=True)
def _bf16_explanations_allowed(monkeypatch):
    """These tests exercise the bf16 explanation path, which `auto` takes only with AUTO_EXPLAIN_BF16 on (off by
    default until agreement is shown: audit/precision.py); a test about the default sets it back itself."""
    from audit import precision as _precision

    monkeypatch.setattr(_precision, "AUTO_EXPLAIN_BF16", True)



def test_compare_by_hand():
    from scipy.stats import spearmanr

    from audit.shapstep import compare

    pieces = [["[CLS]", "pays ", "on ", "time", "[SEP]"], ["[CLS]", "often ", "late", "[SEP]"]]
    low = [(pieces[0], np.array([0.0, 0.5, 0.1, 0.3, 0.0])), (pieces[1], np.array([0.0, -0.4, -0.2, 0.0]))]
    full = [(pieces[0], np.array([0.0, 0.45, 0.12, 0.3, 0.0])), (pieces[1], np.array([0.0, -0.4, -0.25, 0.0]))]
    got = compare(low, full, specials=frozenset({"[CLS]", "[SEP]"}), top_k=20, top_words=2)
    assert got["max_abs_diff"] == pytest.approx(0.05)
    # mean |SHAP| per row (2 rows), words in order: late, often, on, pays, time
    a = np.array([0.2, 0.4, 0.1, 0.5, 0.3]) / 2
    b = np.array([0.25, 0.4, 0.12, 0.45, 0.3]) / 2
    assert got["spearman"] == pytest.approx(spearmanr(a, b).statistic)
    assert got["top_words_low"] == ["pays", "often"] and got["top_words_fp32"] == ["pays", "often"]
    assert got["top_words_agree"] is True and got["rows"] == 2 and got["words_compared"] == 5
    swapped = [(pieces[0], np.array([0.0, 0.1, 0.1, 0.6, 0.0])), low[1]]
    assert compare(low, swapped, top_words=1)["top_words_agree"] is False  # 'time' leads in one, 'pays' the other
    with pytest.raises(ValueError, match="token pieces"):
        compare(low, [(["[CLS]", "pays"], np.zeros(2)), full[1]])


def test_fidelity_rows_are_seeded_and_drawn_from_the_sample():
    from audit.shapstep import fidelity_rows

    sample = [17, 3, 99, 42, 8, 5, 61, 70, 11, 23, 4]
    a, b = fidelity_rows(sample, seed=0), fidelity_rows(sample, seed=0)
    assert a == b and len(a) == 8 and set(a) <= set(sample)
    assert a == [s for s in sample if s in set(a)]  # the sample's order
    assert fidelity_rows(sample, seed=1) != a
    assert fidelity_rows(sample[:3], seed=0) == sample[:3] and fidelity_rows([], 0) == []


def _run(model, policy, out, *extra):
    r = CliRunner().invoke(cli, ["run", str(model), "--policy", str(policy), "--out", str(out), "--no-progress",
                                 *extra], catch_exceptions=False)
    assert r.exit_code in (0, 1, 3), r.output
    return json.loads((out / "result.json").read_text())


def test_bf16_explanations_state_their_fidelity(tiny_model, tmp_path, monkeypatch):
    from audit.checks.explainability import _log_odds
    from audit.model import open_bundle
    from audit.scoring import score_texts, with_precision

    monkeypatch.setattr(precision, "detected", lambda: NATIVE)
    pol = tmp_path / "p.yaml"
    pol.write_text(POLICY)
    r = _run(tiny_model, pol, tmp_path / "bf16")
    plan = r["scoring"]["precision_plan"]
    assert r["scoring"]["precision"] == "fp32" and plan["requested"] == "auto"
    assert plan["stages"]["scoring"]["precision"] == "fp32"
    stage = plan["stages"]["explanations"]
    assert stage["precision"] == "bf16" and "faked" in stage["why"]
    m = r["measurements"]["explainability.precision_agreement"]
    d = m["details"]
    assert m["n"] == d["rows"] == 8 and d["precision"] == "bf16" and len(d["row_ids"]) == 8
    assert -1 <= m["value"] <= 1 and m["value"] > 0.5
    assert 0 < d["max_abs_diff"] < 0.1  # bf16 rounding moved the values, a little
    assert isinstance(d["top_words_agree"], bool) and len(d["top_words_low"]) == 5
    assert stage["fidelity"][0]["spearman"] == m["value"]  # stated in the plan as well, on every bf16 run
    finding = next(f for f in r["findings"] if f["check_id"] == "explainability.precision_agreement")
    assert finding["status"] in ("PASS", "FAIL")

    # additivity against the function that was explained (bf16), the gap to the fp32 model apart: recompute both
    b = open_bundle(tiny_model).load()
    frame = pd.read_csv(tmp_path / "bf16" / "predictions.csv")
    ex = r["measurements"]["explainability.additivity_error"]["details"]["examples"]
    ids = [e["row_id"] for e in ex]
    texts = _eval_texts(tiny_model, ids)
    low = _log_odds(score_texts(with_precision(b.model, "bf16"), b.tokenizer, texts, max_length=32, positive_index=1,
                                progress=False).probs, 1)
    full = _log_odds(score_texts(b.model, b.tokenizer, texts, max_length=32, positive_index=1,
                                 progress=False).probs, 1)
    for e, lo in zip(ex, low):
        assert abs(e["output"] - lo) < 5e-3  # the explained function's output (bf16; batch rounding aside)
        assert abs(e["base_value"] + e["shap_sum"] - e["output"]) < 0.05
    gap = d["model_gap"]
    assert gap["rows"] >= len(ex) and gap["max"] >= float(np.max(np.abs(low - full))) - 5e-3
    s = frame.set_index("row_id")["score"]  # the run's fp32 scores are the fp32 model's
    assert np.allclose([s[i] for i in ids], 1 / (1 + np.exp(-full)), atol=1e-6)
    html = (tmp_path / "bf16" / "report.html").read_text()
    assert "ran in bf16" in html and "were explained in fp32 too" in html


def _eval_texts(model_dir, ids):
    """The eval texts of the given row ids, read independently of the run (the manifest's recipe is the column)."""
    from audit.model import open_bundle
    from audit.runner import load_eval_set

    ev = load_eval_set(open_bundle(model_dir), None, None, 3)
    where = {rid: t for rid, t in zip(ev.row_ids, ev.texts)}
    return [where[i] for i in ids]


def test_fp32_explanations_skip_the_agreement_rule_with_the_reason(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setattr(precision, "detected", lambda: NATIVE)  # even where bf16 is native, fp32 means fp32
    pol = tmp_path / "p.yaml"
    pol.write_text(POLICY)
    r = _run(tiny_model, pol, tmp_path / "fp32", "--precision", "fp32")
    stage = r["scoring"]["precision_plan"]["stages"]["explanations"]
    assert stage["precision"] == "fp32" and "fidelity" not in stage
    m = r["measurements"]["explainability.precision_agreement"]
    assert m["value"] is None and "ran in fp32" in m["skipped"] and "--precision fp32" in m["skipped"]
    finding = next(f for f in r["findings"] if f["check_id"] == "explainability.precision_agreement")
    assert finding["status"] == "SKIPPED"
    html = (tmp_path / "fp32" / "report.html").read_text()
    assert "does not apply: the explanations ran in fp32" in html
    assert "were explained in fp32 too" not in html  # no fidelity note without a bf16 explanation


def test_opt_in_bf16_scoring_compares_its_explanations_with_the_fp32_model(tiny_model, tmp_path):
    """--precision bf16: scoring and explanations in bf16; the fidelity sample and the gap are against the fp32
    model underneath (not the bf16 wrapper the run scored with), on any CPU."""
    from audit.checks.explainability import _log_odds
    from audit.model import open_bundle
    from audit.scoring import score_texts

    pol = tmp_path / "p.yaml"
    pol.write_text(POLICY)
    r = _run(tiny_model, pol, tmp_path / "bf16", "--precision", "bf16")
    plan = r["scoring"]["precision_plan"]
    assert r["scoring"]["precision"] == "bf16" and plan["stages"]["explanations"]["precision"] == "bf16"
    d = r["measurements"]["explainability.precision_agreement"]["details"]
    assert d["rows"] == 8 and d["max_abs_diff"] > 0 and d["fp32_additivity_error"] < 1e-4
    ex = r["measurements"]["explainability.additivity_error"]["details"]["examples"]
    b = open_bundle(tiny_model).load()
    full = _log_odds(score_texts(b.model, b.tokenizer, _eval_texts(tiny_model, [e["row_id"] for e in ex]),
                                 max_length=32, positive_index=1, progress=False).probs, 1)
    gaps = [abs(e["output"] - f) for e, f in zip(ex, full)]  # the explained (bf16) output against fp32
    assert max(gaps) > 0 and d["model_gap"]["max"] >= max(gaps) - 1e-5  # outputs are stored to 6 digits
