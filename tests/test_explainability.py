"""Explainability: SHAP values against a direct shap call and exact Shapley values of a toy function, word
merging, additivity, rank stability, PII in snippets, and the prohibited-term rule end to end on the tiny model."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from click.testing import CliRunner

from audit.checks import all_checks
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
    ctx.shared.explanations[key] = explained
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
    assert top.inconclusive is None and top.incomplete is None and top.details["stability"] == pytest.approx(1.0)
    stab = X.stability(ctx, **{**X.BUDGET, "top_k": 20})
    assert stab.value == pytest.approx(1.0) and stab.details["halves"] == [6, 6]
    add = X.additivity_error(ctx, **X.BUDGET)
    assert add.value == pytest.approx(0.0, abs=1e-12) and add.error is None
    assert X.prohibited_terms(ctx, **X.BUDGET, **X.TERM_PARAMS).skipped  # no terms: nothing to judge


def _judge(m, rule_yaml: str, tmp_path):
    """The finding of a measurement under a policy written here: policy -> judge."""
    import datetime as dt

    from audit.judge import judge_one
    from audit.policy import load_policy

    p = tmp_path / "p.yaml"
    p.write_text(f"policy: t\nversion: '1'\nchecks:\n  {m.check_id}: {rule_yaml}\n")
    policy = load_policy(p)
    return judge_one(all_checks()[m.check_id], policy.checks[m.check_id], m, policy, dt.date(2026, 1, 1))


def _unstable_rows() -> list[list[X.Unit]]:
    """Ten rows whose halves (0::2 and 1::2) rank the words differently, with "female" in both top 3s."""
    rows = [_units(female=1.0, job=0.1, car=0.5), _units(female=0.1, job=1.0, car=0.2)] * 5
    rows[1] = _units(female=0.1, job=1.0, car=0.2, rent=0.9)
    return rows


def test_an_unstable_ranking_leaves_a_violation_standing_and_a_pass_inconclusive(tmp_path):
    ctx = _ctx_with(_explained(_unstable_rows()), 10)
    params = {**X.BUDGET, **X.TERM_PARAMS, "terms": ["female"], "top_k": 3, "min_stability": 0.9}
    m = X.prohibited_terms_in_top_k(ctx, **params)
    assert m.incomplete and "unstable" in m.incomplete and m.inconclusive is None and m.value == 1
    assert [r["word"] for r in m.details["in_top_k"]] == ["female"]  # the whole sample ranks it in its top 3
    f = _judge(m, "{max: 0, terms: [female], top_k: 3, min_stability: 0.9}", tmp_path)
    assert f.status.value == "FAIL" and f.n == 10 and f.evidence == "sampled rows explained"
    # a count within the rule is not a pass on an unstable ranking: other rows could bring the term in
    f = _judge(m, "{max: 1, terms: [female], top_k: 3, min_stability: 0.9}", tmp_path)
    assert f.status.value == "INCONCLUSIVE" and "the word ranking is unstable (Spearman" in f.reason
    assert _judge(X.prohibited_terms_in_top_k(ctx, **{**params, "min_stability": -1}),
                  "{max: 1, terms: [female], top_k: 3}", tmp_path).status.value == "PASS"


def test_four_terms_in_each_halfs_top_k_fail_however_unstable_the_rest(tmp_path):
    # the case of issue 16: each half has four identity terms in its own top 20, the other words shuffle
    rng = np.random.default_rng(0)
    filler = [f"w{i}" for i in range(30)]
    rows = []
    for _ in range(20):
        words = {t: 2.0 + rng.random() for t in ("he", "she", "male", "female")}
        words.update({w: float(rng.random()) for w in rng.choice(filler, 12, replace=False)})
        rows.append(_units(**words))
    ctx = _ctx_with(_explained(rows), 20, rows=20)
    m = X.prohibited_terms_in_top_k(ctx, **{**X.BUDGET, **X.TERM_PARAMS, "rows": 20, "terms": ["he", "she", "male",
                                                                                             "female"],
                                            "top_k": 20, "min_stability": 0.99})
    assert len(m.details["in_top_k_half_a"]) == len(m.details["in_top_k_half_b"]) == 4
    assert m.value == 4 and m.details["stability"] < 0.99 and m.incomplete
    f = _judge(m, "{max: 0, terms: [he, she, male, female], top_k: 20, min_stability: 0.99, rows: 20}", tmp_path)
    assert f.status.value == "FAIL" and f.observed == 4


def test_explanations_that_do_not_add_up_are_an_error_unless_they_show_a_violation(tmp_path):
    params = {**X.BUDGET, **X.TERM_PARAMS, "terms": ["female"], "top_k": 3, "min_stability": 0.9}
    broken = _ctx_with(_explained(_unstable_rows(), off=0.5), 10)  # row 1's values do not add up to its output
    for fn, extra in ((X.additivity_error, {}), (X.stability, {"top_k": 3}), (X.prohibited_terms_in_top_k, params)):
        got = fn(broken, **{**X.BUDGET, **extra})
        assert got.error and "do not add up" in got.error, fn.__name__
    add = X.additivity_error(broken, **X.BUDGET)
    assert add.value == pytest.approx(0.5) and add.n == 10
    # the additivity rule itself: over its max, a violation; within it (but over the tolerance), an error
    f = _judge(add, "{max: 0.01}", tmp_path)
    assert f.status.value == "FAIL" and "do not add up" in f.reason and "do not add up" in f.message
    assert _judge(add, "{max: 1.0}", tmp_path).status.value == "ERROR"
    # a prohibited term counted in the top k stays a violation; a count within the rule is an error
    top = X.prohibited_terms_in_top_k(broken, **params)
    assert top.value == 1
    f = _judge(top, "{max: 0, terms: [female], top_k: 3, min_stability: 0.9}", tmp_path)
    assert f.status.value == "FAIL" and "do not add up" in f.reason
    f = _judge(top, "{max: 1, terms: [female], top_k: 3, min_stability: 0.9}", tmp_path)
    assert f.status.value == "ERROR" and "do not add up" in f.reason
    # a check that raised (no value) is ERROR whatever the rule
    from audit.result import Measurement

    raised = Measurement("explainability.additivity_error", None, error="RuntimeError: boom")
    assert _judge(raised, "{max: 0.01}", tmp_path).status.value == "ERROR"


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
                                 "--no-progress", "--all-checks"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
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


def test_lockstep_scores_each_masked_text_once(tiny_model, credit_csv):
    """A masked text asked again (the same text twice, fully masked texts, masks leaving the same words) goes to
    the model once per call; shap's own path asks for it every time."""
    import pandas as pd

    b, predict = _tiny_predict(tiny_model)
    texts = pd.read_csv(credit_csv)["text"].tolist()[:6]
    texts = texts + texts[:2]  # two texts twice: every masked text of theirs repeats
    asked: list[str] = []

    def recording(t):
        asked.extend(t)
        return predict(t)

    many = X.shap_explain(recording, b.tokenizer, texts, max_evals=60, lockstep=4)
    assert len(asked) == len(set(asked))  # no masked text was scored twice
    shaps_own: list[str] = []
    X.shap_explain(lambda t: (shaps_own.extend(t), predict(t))[1], b.tokenizer, texts, max_evals=60, lockstep=1)
    assert set(asked) == set(shaps_own) and len(shaps_own) > len(asked)  # the same texts, the repeats skipped
    for (_, v1, _), (_, v2, _) in zip(many[:2], many[6:]):
        np.testing.assert_array_equal(v1, v2)  # a repeated text gets its first explanation's outputs


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


# ---------------------------------------------------------------- the mergeable token importance (issue #10)

TERMS = {"he", "she", "female"}


def _random_rows(seed: int, n: int = 40) -> list[list[X.Unit]]:
    """Rows of words (repeated within a row, in upper and lower case, prohibited words interleaved) and
    punctuation, values over five orders of magnitude; some rows are empty."""
    rng = np.random.default_rng(seed)
    vocab = ["he", "She", "she", "job", "late", "female", "car", "pays", "time", "1169"]
    rows = []
    for _ in range(n):
        rows.append([X.Unit(f"{rng.choice(vocab)} ", float(rng.normal() * 10.0 ** rng.integers(-4, 1)), "word")
                     if rng.random() < 0.8 else X.Unit(", ", float(rng.normal() * 0.1), "punct")
                     for _ in range(int(rng.integers(0, 12)))])
    return rows


def _hand(rows: list[list[X.Unit]]):
    """Numpy over the per-row values: per word (mean |SHAP| per row, mean signed, occurrences, rows, share of
    the total |SHAP| of every unit), the words in ranking order, and the share on TERMS."""
    flat = [(r, u.text.strip().lower(), u.value, u.kind == "word") for r, us in enumerate(rows) for u in us]
    row = np.array([f[0] for f in flat])
    value = np.array([f[2] for f in flat])
    word = np.array([f[3] for f in flat])
    words = sorted({f[1] for f in flat if f[3]})
    col = np.array([words.index(f[1]) if f[3] else -1 for f in flat])
    A, S, C = (np.zeros((len(rows), len(words))) for _ in range(3))
    np.add.at(A, (row[word], col[word]), np.abs(value[word]))
    np.add.at(S, (row[word], col[word]), value[word])
    np.add.at(C, (row[word], col[word]), 1)
    total = np.abs(value).sum()
    table = {w: (A[:, j].mean(), S[:, j].mean(), int(C[:, j].sum()), int((C[:, j] > 0).sum()), A[:, j].sum() / total)
             for j, w in enumerate(words)}
    order = sorted(words, key=lambda w: (-table[w][0], w))
    share = A[:, [words.index(w) for w in sorted(TERMS)]].sum() / total
    return table, order, share


def _merged_parts(rows: list[list[X.Unit]], part: np.ndarray, rng: np.random.Generator):
    """The token importance of each partition (rows in a shuffled order within it), merged in a shuffled order
    and read back through a stats file's JSON."""
    from audit.mergeable import TokenImportance

    k = int(part.max()) + 1
    pieces = [X.token_importance([rows[i] for i in rng.permutation(np.flatnonzero(part == p))]) for p in range(k)]
    order = rng.permutation(k)
    merged = pieces[order[0]]
    for p in order[1:]:
        merged = merged.merge(pieces[p])
    return TokenImportance.from_dict(json.loads(json.dumps(merged.to_dict())))


def _pre_mergeable_global_importance(rows):
    """The loop `global_importance` ran before it read a TokenImportance (issue #10), kept verbatim as the
    reference that the ranking did not move by a bit (ties included)."""
    n = len(rows)
    abs_sum, signed, occ, in_rows, total = {}, {}, {}, {}, 0.0
    for units in rows:
        seen = set()
        for u in units:
            total += abs(u.value)
            if u.kind != "word":
                continue
            k = u.key
            abs_sum[k] = abs_sum.get(k, 0.0) + abs(u.value)
            signed[k] = signed.get(k, 0.0) + u.value
            occ[k] = occ.get(k, 0) + 1
            if k not in seen:
                in_rows[k] = in_rows.get(k, 0) + 1
                seen.add(k)
    if not n:
        return []
    out = [X.WordStat(k, abs_sum[k] / n, signed[k] / n, occ[k], in_rows[k], abs_sum[k] / total if total > 0 else 0.0)
           for k in abs_sum]
    out.sort(key=lambda w: (-w.mean_abs, w.word))
    return out


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("split", ["random", "lockstep groups"])
def test_token_importance_of_any_split_of_the_rows_merges_to_the_whole(seed, split):
    rows = _random_rows(seed, 50)
    rng = np.random.default_rng(100 + seed)
    part = (rng.integers(0, int(rng.integers(2, 8)), len(rows)) if split == "random"
            else np.arange(len(rows)) // X.LOCKSTEP)
    whole = X.token_importance(rows)
    merged = _merged_parts(rows, part, rng)
    assert merged.rows == whole.rows == 50
    assert merged.counts == whole.counts and merged.in_rows == whole.in_rows  # counts: exactly
    assert set(merged.sums) == set(merged.signed) == set(whole.sums)
    for w in whole.sums:
        assert merged.sums[w] == pytest.approx(whole.sums[w], rel=1e-12, abs=1e-12)
        assert merged.signed[w] == pytest.approx(whole.signed[w], rel=1e-12, abs=1e-12)
    assert merged.total == pytest.approx(whole.total, rel=1e-12)
    assert merged.share(TERMS) == pytest.approx(whole.share(TERMS), rel=1e-12)
    a, b = X.ranking(merged), X.ranking(whole)
    assert [w.word for w in a] == [w.word for w in b]
    for x, y in zip(a, b):
        assert (x.occurrences, x.rows) == (y.occurrences, y.rows)
        assert (x.mean_abs, x.mean_signed, x.share) == pytest.approx((y.mean_abs, y.mean_signed, y.share), abs=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_global_importance_from_merged_partitions_equals_a_hand_computation(seed):
    rows = _random_rows(seed, 60)
    table, order, _ = _hand(rows)
    assert len(order) == 9  # 'She' and 'she' are one word
    merged = _merged_parts(rows, np.random.default_rng(seed).integers(0, 3, len(rows)), np.random.default_rng(seed))
    for ranked in (X.global_importance(rows), X.ranking(merged)):
        assert [w.word for w in ranked] == order
        for w in ranked:
            mean_abs, mean_signed, occurrences, in_rows, share = table[w.word]
            assert (w.occurrences, w.rows) == (occurrences, in_rows)
            assert (w.mean_abs, w.mean_signed, w.share) == pytest.approx((mean_abs, mean_signed, share), abs=1e-12)
    top = merged.top(3, by="row")
    assert [w for w, _ in top] == order[:3]
    assert [v for _, v in top] == pytest.approx([table[w][0] for w in order[:3]], abs=1e-12)
    # the in-memory ranking (one partition, rows in order) is the one computed before, to the bit
    assert X.global_importance(rows) == _pre_mergeable_global_importance(rows)
    assert X.global_importance([]) == [] == X.ranking(X.token_importance([]))


def test_prohibited_share_and_stability_from_merged_partitions_equal_a_hand_count():
    rows = _random_rows(11, 40)
    ctx = _ctx_with(_explained(rows), 40)
    table, order, share = _hand(rows)
    merged = _merged_parts(rows, np.random.default_rng(1).integers(0, 4, len(rows)), np.random.default_rng(2))
    assert merged.share(TERMS) == pytest.approx(share, rel=1e-12) and 0.1 < share < 0.9
    params = {**X.BUDGET, **X.TERM_PARAMS, "terms": ["He", "she", "FEMALE"], "top_k": 3}
    m = X.prohibited_terms(ctx, **params)
    assert m.value == pytest.approx(share, rel=1e-12) and m.ci_low < m.value < m.ci_high and m.n == 40
    assert [(r["rank"], r["word"]) for r in m.details["found"]] == [
        (order.index(w) + 1, w) for w in order if w in TERMS]
    top = X.prohibited_terms_in_top_k(ctx, **{**params, "min_stability": -1})
    assert top.value == len(TERMS & set(order[:3])) and top.details["top_k_words"] == order[:3]
    # the stability of the ranking: the two halves, each merged from two partitions
    halves = [rows[0::2], rows[1::2]]
    ranked = [X.ranking(_merged_parts(h, np.arange(len(h)) % 2, np.random.default_rng(3))) for h in halves]
    stab = X.stability(ctx, **{**X.BUDGET, "top_k": 5})
    assert stab.value == pytest.approx(X.rank_stability(*ranked, 5)[0], abs=1e-12)
    assert stab.details["top_half_a"] == [w.word for w in ranked[0][:5]]
    assert [r["mean_abs"] for r in stab.details["importance"]] == [round(table[w][0], 6) for w in order]


def test_token_importance_reads_a_dict_written_without_rows():
    from audit.mergeable import TokenImportance

    old = {"sums": {"a": 1.5, "b": 0.5}, "counts": {"a": 2, "b": 1}, "total": 2.5}
    t = TokenImportance.from_dict(old)
    assert t.to_dict() == old and t.rows is None and t.signed is None
    assert t.top(1) == [("a", 1.5)] and t.top(2, by="mean") == [("a", 0.75), ("b", 0.5)]
    assert t.share({"a"}) == 0.6
    with pytest.raises(ValueError, match="written without rows"):
        X.ranking(t)
    new = TokenImportance()
    new.update(["a", None, "c", "a"], [-1.0, 0.5, 2.0, 0.25])
    assert (new.rows, new.counts, new.in_rows, new.signed, new.total) == (1, {"a": 2, "c": 1}, {"a": 1, "c": 1},
                                                                         {"a": -0.75, "c": 2.0}, 3.75)
    both = t.merge(new)
    assert both.sums == {"a": 2.75, "b": 0.5, "c": 2.0} and both.counts == {"a": 4, "b": 1, "c": 1}
    assert both.total == 6.25 and both.rows is None and both.in_rows is None  # not recorded on one side
    assert TokenImportance.from_dict(json.loads(json.dumps(new.to_dict()))) == new
    with pytest.raises(ValueError, match="2 words came with 3 SHAP values"):
        new.update(["a", "b"], [1.0, 2.0, 3.0])
