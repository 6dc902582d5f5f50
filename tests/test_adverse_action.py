"""Adverse-action reasons: declined rows' SHAP values aggregated to the template's columns, mapped to statements,
and the three checks on them. SHAP is replaced here by word values we set, so every number is a hand count."""

from __future__ import annotations

import csv
import io
import json
import re
from types import SimpleNamespace

import numpy as np
import pytest

from audit import reasons as R
from audit.checks import adverse_action as AA
from audit.checks import all_checks
from audit.context import CheckContext
from audit.manifest import Manifest

PROTECTED = "explainability.adverse_action_protected_reasons"
SPECIFIC = "explainability.adverse_action_specific_reasons"
STABLE = "explainability.adverse_action_reason_stability"


def run(check_id, ctx, **params):
    spec = all_checks()[check_id]
    return spec.fn(ctx, **{**spec.params, **params})


@pytest.fixture(scope="module")
def demo():
    from audit.data import make_texts, read_table
    from audit.demo import german_credit
    from audit.manifest import load_recipe

    csv_path, recipe_path = german_credit()
    recipe = load_recipe(recipe_path)
    frame = read_table(csv_path).iloc[:30].reset_index(drop=True)
    m = Manifest(name="demo", labels=["bad", "good"], positive_label="good", label_column="creditability",
                 text=recipe.text, protected_attributes=recipe.protected_attributes)
    return frame, make_texts(frame, recipe.text, "demo"), m


def test_field_spans_cover_each_value_where_the_template_put_it(demo):
    frame, texts, m = demo
    cols = ["credit_amount", "personal_status_and_sex", "housing", "foreign_worker"]
    spans = R.field_spans(frame, m.text, cols)
    for i in range(len(frame)):
        for c in cols:
            s, e = spans[i][c]
            assert texts[i][s:e] == frame.loc[i, c], (i, c)


WORD_VALUES = {"female": -2.0, "critical": -1.0, "rent": -0.5}


def fake_shap(shift: dict[str, float] | None = None):
    """Pieces are the words of the text (with their trailing space); a word's SHAP value is WORD_VALUES' (after
    `shift` for the second seed); the base value makes each row add up to its log-odds."""

    def explain(ctx, rows, max_evals, seed):
        values_of = {**WORD_VALUES, **((shift or {}) if seed != ctx.seed else {})}
        out = []
        for i in rows:
            pieces = re.findall(r"\S+\s*", ctx.texts[i])
            values = np.array([values_of.get(p.strip().strip(".,;:").lower(), 0.0) for p in pieces])
            s = float(ctx.score[i])
            out.append((pieces, values, float(np.log(s) - np.log1p(-s) - values.sum())))
        return out

    return explain


def demo_ctx(demo, score=0.3) -> CheckContext:
    frame, texts, m = demo
    tok = SimpleNamespace(all_special_tokens=[])
    return CheckContext(y_true=np.zeros(len(texts), dtype=int), score=np.full(len(texts), score), texts=texts,
                        frame=frame, manifest=m, replicates=200, bundle=SimpleNamespace(model=object(), tokenizer=tok),
                        positive_label="good", negative_label="bad")


def hand(frame):
    f = frame["personal_status_and_sex"].str.startswith("female").to_numpy()
    c = frame["credit_history"].str.contains("critical").to_numpy()
    r = (frame["housing"] == "rent").to_numpy()
    return f, c, r


def test_principal_reasons_are_the_columns_that_push_towards_the_decline(demo, monkeypatch):
    monkeypatch.setattr(AA, "_shap_declines", fake_shap())
    frame, texts, m = demo
    f, c, r = hand(frame)
    ctx = demo_ctx(demo)
    codes = {"credit_history": "Your credit history", "housing": "Your housing"}
    p = run(PROTECTED, ctx, reason_codes=codes, min_reasons=1)
    assert p.n == len(frame) and p.details["explained"] == p.details["declined"] == len(frame)
    assert p.value == pytest.approx(f.mean()) and p.details["count"] == f.sum()
    W = ctx.weights[1:]
    lo, hi = np.quantile((W @ f) / W.sum(axis=1), [0.025, 0.975])
    assert p.ci_low == pytest.approx(lo, abs=0.02) and p.ci_high == pytest.approx(hi, abs=0.02)
    for i, n in enumerate(p.details["notices"]):
        push = {"personal_status_and_sex": 2.0 * f[i], "credit_history": 1.0 * c[i], "housing": 0.5 * r[i]}
        total = sum(push.values())
        want = sorted((k for k, v in push.items() if v), key=lambda k: -push[k])
        assert [x["source"] for x in n["reasons"]] == want
        for x in n["reasons"]:
            assert x["share"] == pytest.approx(push[x["source"]] / total)
            assert x["protected"] == (x["source"] == "personal_status_and_sex")
            assert x["has_statement"] == (x["source"] in codes)
        if c[i] and not f[i]:
            assert n["notice"].startswith("Your application for credit was declined. The principal reasons: "
                                          "1. Your credit history.")
    s = run(SPECIFIC, ctx, reason_codes=codes, min_reasons=1)
    assert s.value == pytest.approx((c | r).mean())
    two = run(SPECIFIC, ctx, reason_codes=codes, min_reasons=2)
    assert two.value == pytest.approx((c & r).mean())
    assert "personal_status_and_sex" in s.details["without_statement"]
    json.dumps(p.to_dict(), allow_nan=False)


def test_second_seed_stability_is_a_hand_count(demo, monkeypatch):
    monkeypatch.setattr(AA, "_shap_declines", fake_shap(shift={"rent": -3.0}))
    frame, texts, m = demo
    f, c, r = hand(frame)
    assert (f & r).sum() == 4  # the first 30 demo rows: 4 women who rent
    m_ = run(STABLE, demo_ctx(demo))
    # the top reason moves from sex to housing where a row has both (and from credit history to housing where a
    # row has those two); elsewhere it stays
    moved = (f | c) & r
    assert m_.value == pytest.approx(1 - moved.mean()) and m_.value < 1
    assert len(m_.details["changed"]) == moved.sum()
    assert {(x["first"], x["second"]) for x in m_.details["changed"]} == {("personal_status_and_sex", "housing"),
                                                                        ("credit_history", "housing")}


def test_no_decline_and_no_model_are_inconclusive(demo, monkeypatch):
    monkeypatch.setattr(AA, "_shap_declines", fake_shap())
    m = run(PROTECTED, demo_ctx(demo, score=0.9))
    assert m.value is None and m.inconclusive == "no eval row was declined, so there is no adverse action to explain"
    ctx = demo_ctx(demo)
    ctx.bundle = None
    assert "no model loaded" in run(SPECIFIC, ctx).inconclusive


def test_explanations_that_do_not_add_up_are_an_error(demo, monkeypatch):
    def broken(ctx, rows, max_evals, seed):
        return [(p, v, b + 1.0) for p, v, b in fake_shap()(ctx, rows, max_evals, seed)]

    monkeypatch.setattr(AA, "_shap_declines", broken)
    m = run(PROTECTED, demo_ctx(demo))
    assert m.error.startswith("the explanations of the declines do not add up") and m.value is not None


def test_free_text_reasons_are_words_and_term_lists_mark_them_protected():
    texts = ["she is often late", "he is late with payments"]
    values = {"she": -1.0, "late": -2.0, "payments": -0.1}

    def fake(ctx, rows, max_evals, seed):
        out = []
        for i in rows:
            pieces = re.findall(r"\S+\s*", texts[i])
            v = np.array([values.get(p.strip(), 0.0) for p in pieces])
            out.append((pieces, v, float(np.log(0.3 / 0.7) - v.sum())))
        return out

    ctx = CheckContext(y_true=np.zeros(2, dtype=int), score=np.full(2, 0.3), texts=texts, replicates=0,
                       bundle=SimpleNamespace(model=object(), tokenizer=SimpleNamespace(all_special_tokens=[])))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(AA, "_shap_declines", fake)
        m = run(PROTECTED, ctx)
    a, b = m.details["notices"]
    assert [x["source"] for x in a["reasons"]] == ["late", "she"] and a["reasons"][1]["protected"]
    assert [x["source"] for x in b["reasons"]] == ["late"]  # "payments" carries 0.1 / 2.1 = 4.8%, under 5%
    assert m.value == 0.5 and m.details["sources"] == "words"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(AA, "_shap_declines", fake)
        b = run(PROTECTED, ctx, min_share=0.04).details["notices"][1]
    assert [x["source"] for x in b["reasons"]] == ["late", "payments"]
    assert b["reasons"][1]["share"] == pytest.approx(0.1 / 2.1)


def test_csv_for_the_servicing_system_neutralizes_formulas():
    notices = [{"row": 3, "id": "=HYPERLINK(1)", "score": 0.2, "reasons": [
        {"source": "credit_history", "statement": "+Your credit history", "share": 0.6, "protected": False,
         "has_statement": True}]}, {"row": 4, "id": "a-4", "score": 0.1, "reasons": []}]
    rows = list(csv.reader(io.StringIO(R.notices_csv(notices))))
    assert rows[0] == list(R.CSV_FIELDS)
    assert rows[1] == ["3", "'=HYPERLINK(1)", "0.2", "declined", "1", "credit_history", "'+Your credit history",
                       "0.6", "False", "True"]
    assert rows[2][:4] == ["4", "a-4", "0.1", "declined"] and rows[2][4:] == [""] * 6


def test_declines_first_within_the_budget():
    y_pred = np.array([0, 1, 0, 0, 1, 0])
    assert R.declined_rows(y_pred, 10, 0) == [0, 2, 3, 5]
    got = R.declined_rows(y_pred, 2, 0)
    assert len(got) == 2 and set(got) <= {0, 2, 3, 5} and got == R.declined_rows(y_pred, 2, 0)


@pytest.mark.parametrize("rule, message", [
    ("{max: 0, top_k: 0}", "top_k must be a whole number from 1 to 10, got 0"),
    ("{max: 0, min_reasons: 5}", "min_reasons must be a whole number from 0 to 4, got 5"),
    ("{max: 0, reason_codes: {credit_history: ''}}", "reason_codes must map a column"),
    ("{max: 0, min_share: 1.5}", "min_share must be a number from 0 to below 1, got 1.5"),
])
def test_parameters_are_validated_when_the_policy_loads(policy_file, rule, message):
    from audit.errors import PolicyError
    from audit.policy import load_policy

    with pytest.raises(PolicyError, match=re.escape(message)):
        load_policy(policy_file(f"policy: t\nversion: '1'\nchecks:\n  {PROTECTED}: {rule}\n"))


@pytest.mark.slow  # the tiny model's training and shap's first import: minutes on a shared machine
def test_real_shap_on_the_tiny_model_adds_up_and_notices_each_decline(tiny_model, credit_csv):
    """The shared SHAP machinery (audit.checks.explainability.shap_explain) on a real model: every explained
    decline gets a notice, the explanations add up, and a second run reads the cache."""
    import pandas as pd

    from audit.model import open_bundle
    from audit.scoring import score_texts

    bundle = open_bundle(tiny_model).load()
    m = bundle.manifest
    frame = pd.read_csv(credit_csv, dtype=str).iloc[:40].reset_index(drop=True)
    texts = frame["text"].tolist()
    preds = score_texts(bundle.model, bundle.tokenizer, texts, max_length=m.max_length,
                        positive_index=m.labels.index(m.positive_label), progress=False)
    threshold = float(np.quantile(preds.score, 0.5))  # half the rows are declined
    ctx = CheckContext(y_true=np.zeros(len(texts), dtype=int), score=preds.score, threshold=threshold, texts=texts,
                       frame=frame, manifest=m, bundle=bundle, predictions=preds, replicates=20)
    got = run(SPECIFIC, ctx, rows=4, max_evals=20, min_reasons=1)
    assert got.error is None and got.n == 4 and got.details["max_additivity_error"] < 0.01
    assert [n["row"] for n in got.details["notices"]] == sorted(n["row"] for n in got.details["notices"])
    assert all(ctx.score[n["row"]] < threshold for n in got.details["notices"])
    assert all(r["source"] in set(" ".join(texts).split()) for n in got.details["notices"] for r in n["reasons"])
    assert len(ctx.shared.declines) == 1
    run(PROTECTED, ctx, rows=4, max_evals=20)
    assert len(ctx.shared.declines) == 1  # the same explanation


AA_POLICY = f"policy: t\nversion: '1'\nchecks:\n  {PROTECTED}: {{max: 0}}\n"


@pytest.mark.parametrize("case", ["no rule", "over the policy", "foreign file", "no folder"])
def test_adverse_action_file_is_refused_before_anything_loads(case, tmp_path, policy_file):
    from click.testing import CliRunner

    from audit.cli import cli

    policy = policy_file(AA_POLICY)
    out = tmp_path / "notices.csv"
    if case == "no rule":
        policy = policy_file("policy: t\nversion: '1'\nchecks:\n  performance.roc_auc: {min: 0.5}\n", "p2.yaml")
        want = f"the policy {policy} rules no adverse-action check"
    elif case == "over the policy":
        out = policy
        want = f"will not write over the input {policy}"
    elif case == "foreign file":
        out.write_text("name,balance\nann,3\n")
        want = "will not replace a file that is not a notices CSV audit wrote"
    else:
        out = tmp_path / "nope" / "notices.csv"
        want = f"the folder {tmp_path / 'nope'} does not exist"
    r = CliRunner().invoke(cli, ["run", str(tmp_path / "no-model"), "--policy", str(policy),
                                 "--adverse-action", str(out)])
    assert r.exit_code == 2, r.output
    assert want in r.output and "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1
    if case == "foreign file":
        assert out.read_text() == "name,balance\nann,3\n"  # untouched


def test_notices_csv_written_atomically_and_replaceable(tmp_path):
    out = tmp_path / "n.csv"
    notices = [{"row": 1, "id": "a", "score": 0.1, "reasons": []}]
    R.write_notices_csv(out, notices)
    assert R.check_notices_out(out, [], None) == out  # its own earlier file may be replaced
    R.write_notices_csv(out, notices * 2)
    assert len(out.read_text().splitlines()) == 3 and not list(tmp_path.glob(".n.csv.tmp-*"))


def test_report_shows_a_sample_of_notices_escaped(demo, monkeypatch):
    from pathlib import Path

    from audit.render import render_html
    from audit.render.outputs import json_safe

    monkeypatch.setattr(AA, "_shap_declines", fake_shap())
    frame, texts, m = demo
    f, c, r = hand(frame)
    hostile = "<script>alert(1)</script>"
    p = run(PROTECTED, demo_ctx(demo), reason_codes={"housing": hostile})
    result = json.loads((Path(__file__).parent / "fixtures" / "result_sample.json").read_text())
    result["measurements"] = json_safe({p.check_id: p.to_dict()})
    html = render_html(result)
    assert "Adverse-action notices (a sample)" in html
    assert f"Adverse-action reasons: {len(frame)} of the {len(frame)} declined eval rows were explained" in html
    assert hostile not in html
    assert ("Your application for credit was declined. The principal reasons: 1. Personal status and sex. 2. "
            "&lt;script&gt;alert(1)&lt;/script&gt;.") in html
    first = p.details["notices"][p.details["shown"][0]]
    assert f[p.details["shown"][0]] and first["reasons"][0]["protected"]  # declines with a protected reason first
    assert html.count("⚑ a principal reason is protected") == min(5, f.sum())
    assert "Personal status and sex: " in html and "no statement in the policy&#39;s reason codes" in html
