"""Explainability: SHAP values against a direct shap call and exact Shapley values of a toy function, word
merging, additivity, rank stability, PII in snippets, and the prohibited-term rule end to end on the tiny model."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from click.testing import CliRunner

from audit.checks import explainability as X
from audit.context import CheckContext

# A toy model: the sum of the weights of the words present (a word counts only when all of its pieces are
# unmasked). Its exact Shapley value per word is the word's weight; "zebra" is two pieces (zeb ##ra) and
# "pays" two (pay ##s), which share their word's weight between them.
WEIGHTS = {"zebra": 1.0, "pays": 0.5, "late": -2.0, "time": 0.25, "on": 0.0, "often": 0.75}
TEXTS = ["zebra pays on time", "often late zebra", "late on time, often"]


@pytest.fixture(scope="module")
def toy_tokenizer(tmp_path_factory):
    from transformers import BertTokenizerFast

    folder = tmp_path_factory.mktemp("toy-tok")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "zeb", "##ra", "pay", "##s", "on", "time", "late",
             "often", ","]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    return BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True)


def toy_predict(texts):
    return np.array([sum(w for word, w in WEIGHTS.items() if re.search(rf"(?<!\w){word}(?!\w)", t))
                     for t in texts], dtype=float)


def test_shap_values_equal_a_direct_call_and_the_exact_word_weights(toy_tokenizer):
    import shap

    got = X.shap_explain(toy_predict, toy_tokenizer, TEXTS, max_evals=500)
    direct = shap.Explainer(toy_predict, shap.maskers.Text(toy_tokenizer))(TEXTS, max_evals=500, silent=True)
    specials = frozenset(toy_tokenizer.all_special_tokens)
    for i, (pieces, values, base) in enumerate(got):
        assert pieces == list(direct.data[i])
        np.testing.assert_allclose(values, direct.values[i], atol=1e-12)
        assert base == pytest.approx(float(direct.base_values[i]), abs=1e-12)
        assert base + values.sum() == pytest.approx(toy_predict([TEXTS[i]])[0], abs=1e-9)
        words = {u.key: u.value for u in X.merge_pieces(pieces, values, specials) if u.kind == "word"}
        assert set(words) == {w for w in WEIGHTS if re.search(rf"\b{w}\b", TEXTS[i])}
        for w, v in words.items():
            assert v == pytest.approx(WEIGHTS[w], abs=1e-9), w


def test_sub_word_pieces_merge_into_words():
    pieces = ["", "Checking ", "account", ": ", "116", "9 ", "D", "M", ". ", "un", "##known", "/ ", "[SEP]", ""]
    values = np.arange(len(pieces), dtype=float)
    units = X.merge_pieces(pieces, values, frozenset({"[SEP]", "[CLS]"}))
    assert [(u.text, u.kind) for u in units] == [
        ("Checking ", "word"), ("account", "word"), (": ", "punct"), ("1169 ", "word"), ("DM", "word"),
        (". ", "punct"), ("unknown", "word"), ("/ ", "punct")]
    assert [u.value for u in units] == [1, 2, 3, 4 + 5, 6 + 7, 8, 9 + 10, 11]
    assert [u.key for u in units if u.kind == "word"] == ["checking", "account", "1169", "dm", "unknown"]
    # shap's fallback for slow tokenizers puts the space before a piece instead of after it
    fallback = X.merge_pieces(["", "the", " app", "le", " pie", ""], [0, 1, 2, 3, 4, 0])
    assert [(u.key, u.value) for u in fallback] == [("the", 1), ("apple", 5), ("pie", 4)]


def test_global_importance_counts_absent_words_as_zero():
    u = X.Unit
    rows = [[u("no ", -1.0, "word"), u("savings ", 2.0, "word"), u(". ", 1.0, "punct")],
            [u("savings ", -0.5, "word"), u("Savings", 1.5, "word")]]
    ranked = X.global_importance(rows)
    total = 1 + 2 + 1 + 0.5 + 1.5
    assert [(w.word, w.mean_abs, w.mean_signed, w.occurrences, w.rows) for w in ranked] == [
        ("savings", (2 + 0.5 + 1.5) / 2, (2 - 0.5 + 1.5) / 2, 3, 2), ("no", 0.5, -0.5, 1, 1)]
    assert ranked[0].share == pytest.approx(4 / total) and ranked[1].share == pytest.approx(1 / total)


def test_additivity_error_is_base_plus_sum_minus_output():
    err = X.additivity_errors([0.5, -1.0, 2.0], [1.0, 0.25, -2.0], [1.5, -0.7, 0.25])
    np.testing.assert_allclose(err, [0.0, 0.05, 0.25], atol=1e-15)


def _stats(d):
    return [X.WordStat(w, v, v, 1, 1, 0.0) for w, v in sorted(d.items(), key=lambda kv: -kv[1])]


def test_rank_stability_on_constructed_rankings():
    a = _stats({"x": 3.0, "y": 2.0, "z": 1.0})
    rho, words = X.rank_stability(a, _stats({"x": 30.0, "y": 20.0, "z": 10.0}), 3)
    assert rho == pytest.approx(1.0) and words == ["x", "y", "z"]
    assert X.rank_stability(a, _stats({"x": 1.0, "y": 2.0, "z": 3.0}), 3)[0] == pytest.approx(-1.0)
    # union of the two top-3 lists, a word missing from a side counts 0 there:
    # a = (w 0, x 3, y 2, z 1), b = (w 3, x 1, y 2, z 0); ranks differ by (3, 2, 0, 1): 1 - 6*14 / (4*15) = -0.4
    rho, words = X.rank_stability(a, _stats({"w": 3.0, "y": 2.0, "x": 1.0}), 3)
    assert words == ["w", "x", "y", "z"] and rho == pytest.approx(-0.4)
    assert X.rank_stability(a[:1], a[:1], 3)[0] is None  # too few words for a correlation


def _ctx_with(explained: X.Explained, n: int, **params) -> CheckContext:
    """A context whose family cache already holds a constructed explanation (no model needed)."""
    ctx = CheckContext(y_true=np.array([1, 0] * (n // 2)), score=np.linspace(0.1, 0.9, n),
                       texts=[f"text {i}" for i in range(n)], replicates=50, seed=0)
    key = (params.get("rows", 40), params.get("max_evals", 100), params.get("examples", 1), 0)
    ctx.extra["_explainability"] = {key: explained}
    return ctx


def _explained(rows_units: list[list[X.Unit]], off: float = 0.0, base: float = 0.0) -> X.Explained:
    """Outputs that the values add up to, except row 1, which is `off` away."""
    rows = {}
    outputs = [base + sum(u.value for u in units) + (off if i == 1 else 0.0) for i, units in enumerate(rows_units)]
    for i, (units, out) in enumerate(zip(rows_units, outputs)):
        values = np.array([u.value for u in units])
        rows[i] = X.Row(i, "".join(u.text for u in units), base, values, [u.text for u in units], out, units)
    return X.Explained(rows, list(rows), {"highest-scored": [], "false positive": [], "false negative": []},
                       100, 0.0, 0, 0.0)


def _units(**words):
    return [X.Unit(w + " ", v, "word") for w, v in words.items()]


def test_checks_on_a_constructed_explanation():
    a, b = _units(female=0.6, job=0.3, late=-0.1), _units(male=0.2, job=0.2, late=-1.0)
    ctx = _ctx_with(_explained([a, a, b, b] * 3), 12)  # each half of the sample (0::2, 1::2) holds 3 a and 3 b
    params = {**X.BUDGET, **X.TERM_PARAMS, "terms": ["Female", "male"]}
    share = X.prohibited_terms(ctx, **params)
    assert share.value == pytest.approx((0.6 + 0.2) / (1.0 + 1.4)) and share.error is None
    assert share.ci_low <= share.value <= share.ci_high
    assert [r["word"] for r in share.details["found"]] == ["female", "male"]
    top = X.prohibited_terms_in_top_k(ctx, **{**params, "top_k": 2, "min_stability": 0.5})
    assert top.value == 1 and [r["word"] for r in top.details["in_top_k"]] == ["female"]
    assert top.inconclusive is None and top.details["stability"] == pytest.approx(1.0)
    stab = X.stability(ctx, **{**X.BUDGET, "top_k": 20})
    assert stab.value == pytest.approx(1.0) and stab.details["halves"] == [6, 6]
    add = X.additivity_error(ctx, **X.BUDGET)
    assert add.value == pytest.approx(0.0, abs=1e-12) and add.error is None
    assert X.prohibited_terms(ctx, **X.BUDGET, **X.TERM_PARAMS).skipped  # no terms: nothing to judge


def test_unstable_ranking_is_inconclusive_and_a_broken_explanation_is_an_error():
    rows = [_units(female=1.0, job=0.1, car=0.5), _units(female=0.1, job=1.0, car=0.2)] * 5
    rows[1] = _units(female=0.1, job=1.0, car=0.2, rent=0.9)
    ctx = _ctx_with(_explained(rows), 10)  # the halves (0::2 holds the first kind, 1::2 the second) disagree
    params = {**X.BUDGET, **X.TERM_PARAMS, "terms": ["female"], "top_k": 3, "min_stability": 0.9}
    m = X.prohibited_terms_in_top_k(ctx, **params)
    assert m.inconclusive and "unstable" in m.inconclusive and m.value == 1
    broken = _ctx_with(_explained(rows, off=0.5), 10)  # row 1's values do not add up to its output
    for fn, extra in ((X.additivity_error, {}), (X.stability, {"top_k": 3}), (X.prohibited_terms_in_top_k, params)):
        got = fn(broken, **{**X.BUDGET, **extra})
        assert got.error and "do not add up" in got.error, fn.__name__
    assert X.additivity_error(broken, **X.BUDGET).value == pytest.approx(0.5)


def test_personal_data_in_a_snippet_is_redacted_with_its_value():
    units = [X.Unit(t, v, "word" if t.strip().isalnum() else "punct") for t, v in
             [("mail ", 0.1), ("me ", 0.0), ("at ", 0.0), ("jo", 0.2), ("@", 0.3), ("example", 0.4), (".", 0.0),
              ("com ", 0.1), ("today", -0.5)]]
    out, redacted = X._redact_units("".join(u.text for u in units), units)
    assert redacted
    assert [t for t, _, _ in out] == ["mail ", "me ", "at ", "[EMAIL] ", "today"]
    assert out[3][1] == pytest.approx(1.0)


def test_term_lists_are_shared_with_the_fairness_swaps():
    terms, multi = X.load_terms(["Foreign Worker", "Zebra"], ["gender", "marital_status"])
    assert {"he", "she", "male", "female", "married", "single", "zebra"} <= set(terms)
    assert multi == ["foreign worker"]
    with pytest.raises(ValueError, match="unknown swap list"):
        X.load_terms([], ["no_such_list"])


EXPLAIN_POLICY = """\
policy: explain-test
version: "1"
checks:
  explainability.prohibited_terms_in_top_k: {max: 0, terms: [late], top_k: 5, min_stability: -1, BUDGET}
  explainability.prohibited_terms: {max: 0.05, terms: [female], BUDGET}
  explainability.additivity_error: {max: 0.0001, BUDGET}
  explainability.stability: {min: -1, severity: warn, BUDGET}
budget: {bootstrap: 50, seed: 0}
""".replace("BUDGET", "rows: 10, max_evals: 40, examples: 1")


def test_prohibited_term_rule_end_to_end(tiny_model, tmp_path):
    from audit.cli import cli

    pol = tmp_path / "p.yaml"
    pol.write_text(EXPLAIN_POLICY)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["run", str(tiny_model), "--policy", str(pol), "--out", str(out),
                                      "--no-progress"], catch_exceptions=False)
    assert result.exit_code == 1, result.output
    r = json.loads((out / "result.json").read_text())
    status = {f["check_id"]: f["status"] for f in r["findings"]}
    assert status == {"explainability.prohibited_terms_in_top_k": "FAIL", "explainability.prohibited_terms": "PASS",
                      "explainability.additivity_error": "PASS", "explainability.stability": "PASS"}
    m = r["measurements"]
    top = m["explainability.prohibited_terms_in_top_k"]
    assert top["value"] == 1 and [t["word"] for t in top["details"]["in_top_k"]] == ["late"]
    assert m["explainability.prohibited_terms"]["value"] == 0.0
    add = m["explainability.additivity_error"]
    assert add["value"] < 1e-4 and add["details"]["rows_explained"] >= 10
    assert add["details"]["model_evaluations"] <= 40 * add["details"]["rows_explained"]
    assert 3 <= len(add["details"]["examples"]) <= 5
    html = (out / "report.html").read_text()
    assert 'id="chart-explain-top-words"' in html and "Example texts, word by word" in html
    assert re.search(r'<span class="sr-only"> \([+−]\d\.\d\d\)</span>', html)
    assert "late ⚑" in html  # the prohibited term is flagged in the chart


def test_report_partial_escapes_text_and_annotates_words_for_screen_readers():
    from audit.render.html import render_html

    example = {"row_id": "7", "kind": "highest-scored", "why": "chosen <i>", "score": 0.9, "predicted": "good",
               "true": "bad", "base_value": 0.1, "shap_sum": 1.0, "output": 1.1,
               "units": [["<script>alert(1)</script> ", 0.5, "word"], ["late", -0.2, "word"], [". ", 0.3, "punct"]]}
    result = {"model": {"positive_label": "good", "negative_label": "bad"}, "findings": [], "measurements": {
        "explainability.additivity_error": {"value": 0.0, "details": {
            "sample_rows": 10, "max_evals": 40, "model_evaluations": 400, "seconds": 1.0,
            "reviewer_rows": {"highest-scored": 1}, "examples": [example]}},
        "explainability.stability": {"value": 0.9, "details": {"top_k": 20, "importance": [
            {"rank": 1, "word": "<b>x</b>", "mean_abs": 0.5, "mean_signed": -0.4, "rows": 3, "share": 0.2},
            {"rank": 2, "word": "late", "mean_abs": 0.2, "mean_signed": -0.2, "rows": 2, "share": 0.1}]}},
        "explainability.prohibited_terms_in_top_k": {"value": 1.0, "details": {"top_k": 20, "terms": ["late"]}}}}
    html = render_html(result)
    section = html[html.index('id="family-explainability"'):]
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in section
    assert "<b>x" not in html and "&lt;b&gt;x&lt;/b&gt;" in section
    assert '<span class="sr-only"> (+0.50)</span>' in section and '<span class="sr-only"> (−0.20)</span>' in section
    assert 'title="−0.200 log-odds, towards &#39;bad&#39;"' in section
    assert "late ⚑" in section and "prohibited" in section  # flagged in chart and table
    assert "Why this row:</strong> chosen &lt;i&gt;" in section
    assert "border-bottom:2px dashed" in section and "border-bottom:2px solid" in section  # sign not by colour alone


@pytest.mark.parametrize("rule,message", [
    ("{max: 0, term_lists: [gendr]}", "unknown swap list 'gendr'"),
    ("{max: 0, rows: 1}", "rows must be at least 2, got 1"),
    ("{max: 0, top_k: 2.5}", "top_k must be a whole number, got 2.5"),
    ("{max: 0, min_stability: 2}", "min_stability must be between -1 and 1, got 2"),
    ("{max: 0, terms: ['']}", "terms must be non-empty words, got ''"),
])
def test_bad_explainability_rule_is_named_at_policy_load(policy_file, rule, message):
    from audit.errors import PolicyError
    from audit.policy import load_policy

    path = policy_file(f"policy: p\nversion: '1'\nchecks:\n  explainability.prohibited_terms_in_top_k: {rule}\n")
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    assert str(info.value).startswith(f"{path}:4: checks.explainability.prohibited_terms_in_top_k: {message}")


def test_checks_sharing_shap_share_one_budget(tiny_model, tmp_path):
    """A budget given on one explainability rule applies to the unruled checks that share the SHAP step."""
    import json

    from click.testing import CliRunner

    from audit.cli import cli

    pol = tmp_path / "p.yaml"
    pol.write_text("policy: p\nversion: '1'\nchecks:\n"
                   "  explainability.additivity_error: {max: 0.01, rows: 6, max_evals: 40}\n"
                   "budget: {bootstrap: 50}\n")
    r = CliRunner().invoke(cli, ["run", str(tiny_model), "--policy", str(pol), "--out", str(tmp_path / "o"),
                                 "--no-progress"], catch_exceptions=False)
    assert r.exit_code in (0, 1, 3), r.output
    ms = json.loads((tmp_path / "o" / "result.json").read_text())["measurements"]
    for cid in ("explainability.additivity_error", "explainability.stability"):
        assert ms[cid]["details"]["sample_rows"] == 6 and ms[cid]["details"]["max_evals"] == 40, cid


def _tiny_predict(tiny_model, precision="fp32"):
    from audit.model import open_bundle
    from audit.scoring import score_texts, with_precision

    b = open_bundle(tiny_model).load()
    model = with_precision(b.model, precision)

    def predict(texts):
        p = score_texts(model, b.tokenizer, list(texts), max_length=32, positive_index=1,
                        batch_size=min(max(len(texts), 1), 64), progress=False)
        return X._log_odds(p.probs, 1)

    return b, predict


def test_lockstep_batching_equals_shaps_own_path_on_a_model(tiny_model, credit_csv):
    """Texts explained side by side (their masked texts scored in shared, length-sorted batches) get the values
    shap's one-text-at-a-time path gives, up to batch-composition float noise (< 1e-6); more texts than slots, so
    slots take new texts as they finish; and the model is called far fewer times."""
    import pandas as pd

    b, predict = _tiny_predict(tiny_model)
    texts = pd.read_csv(credit_csv)["text"].tolist()[:7]
    calls = {"n": 0}

    def counted(t):
        calls["n"] += 1
        return predict(t)

    np.random.seed(0)
    one = X.shap_explain(counted, b.tokenizer, texts, max_evals=60, lockstep=1)
    sequential_calls, calls["n"] = calls["n"], 0
    np.random.seed(0)
    many = X.shap_explain(counted, b.tokenizer, texts, max_evals=60, lockstep=3)
    assert calls["n"] < sequential_calls / 2
    for (p1, v1, b1), (p2, v2, b2) in zip(one, many):
        assert p1 == p2
        np.testing.assert_allclose(v2, v1, rtol=0, atol=1e-6)
        assert b2 == pytest.approx(b1, abs=1e-6)
    again = X.shap_explain(counted, b.tokenizer, texts, max_evals=60, lockstep=3)
    for (_, v2, _), (_, v3, _) in zip(many, again):
        np.testing.assert_array_equal(v2, v3)  # deterministic: same batches, same order


def test_lockstep_passes_a_model_failure_up_and_leaves_no_thread_waiting(toy_tokenizer):
    import threading

    before = threading.active_count()
    calls = {"n": 0}

    def flaky(texts):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("model fell over")
        return toy_predict(texts)

    with pytest.raises(RuntimeError, match="model fell over"):
        X.shap_explain(flaky, toy_tokenizer, TEXTS * 3, max_evals=100, lockstep=4)
    import time

    for _ in range(50):
        if threading.active_count() <= before:
            break
        time.sleep(0.05)
    assert threading.active_count() <= before


def test_bf16_scoring_stays_close_to_fp32(tiny_model, credit_csv):
    import pandas as pd

    from audit.model import open_bundle
    from audit.scoring import precision_check, score_texts, with_precision

    b = open_bundle(tiny_model).load()
    texts = pd.read_csv(credit_csv)["text"].tolist()
    low = score_texts(with_precision(b.model, "bf16"), b.tokenizer, texts, max_length=32, positive_index=1,
                      progress=False).score
    got = precision_check(b.model, b.tokenizer, texts, low, max_length=32, positive_index=1, sample=64)
    assert got["rows"] == 64
    assert 0 < got["max_abs_score_diff"] < 0.02  # bf16 is not fp32, and not far from it
    assert with_precision(b.model, "fp32") is b.model
    with pytest.raises(ValueError, match="unknown precision"):
        with_precision(b.model, "fp8")
