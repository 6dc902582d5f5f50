"""Robustness family: each perturbation on hand-built texts, flip rates and score changes against hand counts with a
scorer we control, the bootstrap over the changed rows, parts judged one by one, policy validation, the report."""

from __future__ import annotations

import json
import random
import re
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from audit.checks import all_checks
from audit.checks import robustness as rb
from audit.context import CheckContext


def run(check_id: str, ctx: CheckContext, **params):
    spec = all_checks()[check_id]
    return spec.fn(ctx, **{**spec.params, **params})


# ---------------------------------------------------------------- the perturbations themselves


def rng() -> random.Random:
    return random.Random(0)


def test_case_punctuation_whitespace_currency_and_words_are_exact():
    t = "Credit of 1169 DM for 6 months. Savings: $1,000; age 67!"
    assert rb.PERTURBATIONS["uppercase"].fn(t, rng()) == "CREDIT OF 1169 DM FOR 6 MONTHS. SAVINGS: $1,000; AGE 67!"
    assert rb.PERTURBATIONS["lowercase"].fn(t, rng()) == "credit of 1169 dm for 6 months. savings: $1,000; age 67!"
    assert rb.punctuation(t, rng()) == "Credit of 1169 DM for 6 months Savings $1,000 age 67"  # "1,000" kept
    assert rb.whitespace("pays late, 2 500 DM.", rng()) == "pays  late  ,  2 500  DM  ."
    assert rb.currency(t, rng()) == "Credit of DM 1169 for 6 months. Savings: 1,000 $; age 67!"
    assert rb.currency("EUR 20 and 30€", rng()) == "20 EUR and €30"  # one pass: never moved back
    assert rb.numbers_to_words(t, rng()) == ("Credit of one thousand one hundred sixty-nine DM for six months. "
                                             "Savings: $one thousand; age sixty-seven!")
    assert rb.numbers_to_words("3.5 and 2 500", rng()) == "3.5 and two thousand five hundred"  # decimals kept
    assert [rb.in_words(n) for n in (0, 13, 40, 99, 100, 101, 1000, 2_000_017, 10**9)] == [
        "zero", "thirteen", "forty", "ninety-nine", "one hundred", "one hundred one", "one thousand",
        "two million seventeen", "one billion"]


def test_number_format_changes_the_grouping_and_nothing_else():
    for src in ("1169", "1,169", "1 169"):
        for seed in range(6):
            out = rb.number_format(f"Credit of {src} DM for 12 months", random.Random(seed))
            amount = out[len("Credit of "):-len(" DM for 12 months")]
            assert amount in {"1169", "1,169", "1 169"} - {src}, (src, out)
    assert rb.number_format("age 67, 999 DM, 3.1415", rng()) == "age 67, 999 DM, 3.1415"  # below 1000, decimals


def test_typos_are_seeded_one_edit_per_word_first_letter_kept():
    text = "applicant pays promptly every month and owns property outright"
    a = rb.typos(text, random.Random("0:typos:1"), rate=1.0)
    assert a == rb.typos(text, random.Random("0:typos:1"), rate=1.0)  # seeded
    words_in, words_out = text.split(), a.split()
    assert len(words_in) == len(words_out) and a != text
    for w, v in zip(words_in, words_out):
        if len(w) < 4:
            assert v == w
            continue
        assert v[0] == w[0] and v != w
        # one swap of neighbours, or one letter dropped, doubled or replaced
        swapped = sorted(v) == sorted(w) and sum(x != y for x, y in zip(v, w)) == 2
        assert swapped or abs(len(v) - len(w)) == 1 or sum(x != y for x, y in zip(v, w)) == 1, (w, v)
    assert rb.typos(text, random.Random(1), rate=1e-9) == text


def test_template_sentences_split_outside_fields_only():
    t = "Checking: {{ a }}. Savings: {{ b }}!\nCredit of {{ c }} DM. History: {{ d }}; x {{ e }}."
    assert rb.template_sentences(t) == (["Checking: {{ a }}.", "Savings: {{ b }}!", "Credit of {{ c }} DM.",
                                         "History: {{ d }}; x {{ e }}."], "")
    assert rb.template_sentences("One {{ a }}. {% if b %}x{% endif %}")[0] == []
    assert "one sentence" in rb.template_sentences("Only {{ a }} here.")[1]


# ---------------------------------------------------------------- measurements with a scorer we control


def lower_scorer(t: str) -> float:
    """0.7 (favourable) when the text has a small letter, else 0.3; 0.01 less per full stop."""
    return 0.3 + 0.4 * bool(re.search("[a-z]", t)) - 0.01 * t.count(".")


class Fake(CheckContext):
    calls: list

    def score_texts(self, texts, desc=""):
        self.calls.append(list(texts))
        return np.array([lower_scorer(t) for t in texts])


def fake_ctx(texts, replicates=100, k=1, **kw) -> Fake:
    ctx = Fake(y_true=np.ones(len(texts), dtype=int), score=np.array([lower_scorer(t) for t in texts]),
               texts=list(texts), replicates=replicates, min_group_size=k, positive_label="good",
               negative_label="bad", bundle=kw.pop("bundle", SimpleNamespace(model=object())), **kw)
    ctx.calls = []
    return ctx


TEXTS = ["Pays on time. Loan 1200 DM", "LATE PAYER", "pays on time", "Savings 12 DM"]


def test_flip_rate_and_score_change_equal_hand_counts():
    ctx = fake_ctx(TEXTS)
    names = ["uppercase", "lowercase", "punctuation", "numbers_to_words"]
    m = run("robustness.flip_rate", ctx, perturbations=names)
    by = {e["perturbation"]: e for e in m.details["perturbations"]}
    # uppercase changes rows 0, 2, 3 (row 1 is in capitals already); each loses its small letters: 3 flips of 3
    assert by["uppercase"]["rows_changed"] == 3 and by["uppercase"]["flips"] == 3
    assert by["uppercase"]["flip_rate"] == 1.0 and by["uppercase"]["flips_to_unfavourable"] == 3
    # lowercase changes rows 0, 1, 3; only row 1 gains a small letter: 1 flip of 3
    assert by["lowercase"]["rows_changed"] == 3 and by["lowercase"]["flip_rate"] == pytest.approx(1 / 3)
    assert by["lowercase"]["flips_to_favourable"] == 1
    assert by["lowercase"]["mean_abs_score_change"] == pytest.approx(0.4 / 3)
    # punctuation removes the one full stop of row 0: +0.01, no flip
    assert (by["punctuation"]["rows_changed"], by["punctuation"]["flips"]) == (1, 0)
    assert by["punctuation"]["mean_abs_score_change"] == pytest.approx(0.01)
    # numbers in words: rows 0 and 3 change, the score does not
    assert by["numbers_to_words"]["rows_changed"] == 2 and by["numbers_to_words"]["mean_abs_score_change"] == 0
    assert m.value == 1.0 and m.details["worst"] == "uppercase" and m.n == 4  # every row changed by some
    assert [(p.name, p.n, p.kind) for p in m.parts] == [("uppercase", 3, "perturbation"), ("lowercase", 3, "perturbation"),
                                                        ("punctuation", 1, "perturbation"), ("numbers_to_words", 2, "perturbation")]
    # one batched call, changed texts only (3 + 3 + 1 + 2)
    assert len(ctx.calls) == 1 and len(ctx.calls[0]) == 9
    s = run("robustness.score_change", ctx, perturbations=names)
    assert s.value == pytest.approx(0.4) and len(ctx.calls) == 1  # the second check reads the same scores
    ex = by["uppercase"]["examples"][0]
    assert ex["flipped"] and ex["before"] == "Pays on time. Loan 1200 DM" and ex["after"] == "PAYS ON TIME. LOAN 1200 DM"
    assert (ex["decision_before"], ex["decision_after"]) == ("good", "bad")
    json.dumps(m.to_dict(), allow_nan=False)


def test_interval_is_the_bootstrap_over_the_changed_rows_only():
    # lowercase changes "ABC i" (gains a small letter: flips) and "Abc. i" (keeps one: no flip), not "abc. i"
    texts = [("ABC", "Abc.", "abc.")[i % 3] + f" {i}" for i in range(90)]
    ctx = fake_ctx(texts, replicates=200)
    m = run("robustness.flip_rate", ctx, perturbations=["lowercase", "punctuation"])
    changed = np.array([i % 3 != 2 for i in range(90)])
    flips = np.array([i % 3 == 0 for i in range(90)])[changed].astype(float)
    W = ctx.weights[1:, changed]
    reps = (W @ flips) / W.sum(axis=1)
    lo, hi = np.quantile(reps[np.isfinite(reps)], [0.025, 0.975])
    part = m.parts[0]
    assert part.n == 60 and part.value == pytest.approx(0.5) and lo < 0.5 < hi
    assert (part.ci_low, part.ci_high) == (pytest.approx(lo), pytest.approx(hi))
    # punctuation: the 60 rows with a full stop, none flips: its own interval, not a joint maximum
    assert (m.parts[1].n, m.parts[1].value, m.parts[1].ci_high) == (60, 0.0, 0.0)
    assert m.value == pytest.approx(0.5) and (m.ci_low, m.ci_high) == (part.ci_low, part.ci_high)
    s = run("robustness.score_change", ctx, perturbations=["lowercase", "punctuation"])
    assert s.parts[0].value == pytest.approx(0.4 * 30 / 60) and s.parts[1].value == pytest.approx(0.01)


def test_sample_of_rows_and_seeded_repeat():
    texts = [f"row {i} Pays." for i in range(50)]
    a = run("robustness.flip_rate", fake_ctx(texts), perturbations=["uppercase"], rows=20)
    b = run("robustness.flip_rate", fake_ctx(texts), perturbations=["uppercase"], rows=20)
    assert a.parts[0].n == 20 and a.details["rows_scanned"] == 20 and a.to_dict() == b.to_dict()


def test_same_tokens_are_not_rescored_and_do_not_move():
    def tokenizer(texts, truncation=True, max_length=32):
        return {"input_ids": [t.lower().split() for t in texts]}

    ctx = fake_ctx(TEXTS, bundle=SimpleNamespace(model=object(), tokenizer=tokenizer, manifest=None))
    m = run("robustness.flip_rate", ctx, perturbations=["uppercase", "punctuation"])
    up = m.details["perturbations"][0]
    assert up["rows_changed"] == 3 and up["rows_same_tokens"] == 3 and up["flips"] == 0
    assert ctx.calls == [["Pays on time Loan 1200 DM"]]  # only punctuation changed a token


def test_no_evidence_inconclusive_and_not_applicable():
    # the policy names field_order on free text: an INCONCLUSIVE part; a violation elsewhere still stands
    ctx = fake_ctx(TEXTS)
    m = run("robustness.flip_rate", ctx, perturbations=["uppercase", "field_order"])
    assert [p.name for p in m.parts] == ["uppercase", "field_order"]
    assert "not a template" in m.parts[1].inconclusive and m.parts[1].n == 0
    # by default, perturbations that found nothing are listed as not applicable, not judged
    d = run("robustness.flip_rate", fake_ctx(["no numbers here"])).details
    assert {x["perturbation"] for x in d["not_applicable"]} - {"typos"} == {
        "lowercase", "punctuation", "number_format", "currency", "numbers_to_words", "field_order"}
    assert {e["perturbation"] for e in d["perturbations"]} >= {"uppercase", "whitespace"}
    few = run("robustness.flip_rate", fake_ctx(TEXTS, k=5), perturbations=["uppercase"])
    assert few.parts[0].incomplete.startswith("the 'uppercase' perturbation changed only 3 eval texts")
    none = run("robustness.flip_rate", fake_ctx(["-"]), perturbations=[])
    assert none.value is None and none.inconclusive.startswith("no perturbation changed")
    no_model = CheckContext(y_true=np.ones(1, dtype=int), score=np.ones(1), texts=["x"])
    assert "no model loaded" in run("robustness.flip_rate", no_model).inconclusive


def test_field_order_rerenders_the_template_with_the_rows_values():
    frame = pd.DataFrame({"name": ["Ann", "Bob. Jr", "Cy"], "job": ["clerk", "baker", "none"]})
    manifest = SimpleNamespace(text=SimpleNamespace(template="Name: {{ name }}. Job: {{ job }}."), id_column=None)
    texts = [f"Name: {n}. Job: {j}." for n, j in zip(frame["name"], frame["job"])]

    class Starts(Fake):
        def score_texts(self, texts, desc=""):
            self.calls.append(list(texts))
            return np.array([0.8 if t.startswith("Name") else 0.2 for t in texts])

    ctx = Starts(y_true=np.ones(3, dtype=int), score=np.full(3, 0.8), texts=texts, replicates=20, frame=frame,
                 manifest=manifest, bundle=SimpleNamespace(model=object()), min_group_size=1)
    ctx.calls = []
    m = run("robustness.flip_rate", ctx, perturbations=["field_order"])
    assert ctx.calls == [["Job: clerk. Name: Ann.", "Job: baker. Name: Bob. Jr.", "Job: none. Name: Cy."]]
    assert m.value == 1.0 and m.parts[0].n == 3


def test_examples_are_redacted_and_clipped():
    text = "Pays on time. Mail ann@example.com " + "x" * 700
    m = run("robustness.flip_rate", fake_ctx([text]), perturbations=["uppercase"])
    ex = m.details["perturbations"][0]["examples"][0]
    assert "@" not in ex["before"] and "[EMAIL]" in ex["before"] and len(ex["after"]) == rb.MAX_TEXT


# ---------------------------------------------------------------- policy, judge, report


def test_parameters_are_validated_at_policy_load(policy_file):
    from audit.errors import PolicyError
    from audit.policy import load_policy

    head = "policy: p\nversion: '1'\nchecks:\n  robustness.flip_rate:\n    max: 0.05\n"
    with pytest.raises(PolicyError, match=r"policy.yaml:4: checks.robustness.flip_rate: unknown perturbation "
                                          r"'typo' \(did you mean 'typos'\?\)"):
        load_policy(policy_file(head + "    perturbations: [typo]\n"))
    with pytest.raises(PolicyError, match="typo_rate must be a number above 0 and at most 1, got 0"):
        load_policy(policy_file(head + "    typo_rate: 0\n"))
    load_policy(policy_file(head + "    perturbations: [typos, field_order]\n    rows: 300\n"))


def test_judged_part_by_part_and_rendered_escaped(tmp_path):
    import datetime as dt

    from audit.judge import judge_one
    from audit.policy import load_policy
    from audit.render.html import render_html
    from audit.render.robustness_view import detail

    texts = ["<b>Pays</b> on time.", "LATE <i>x</i>", "pays on time"]
    m = run("robustness.flip_rate", fake_ctx(texts), perturbations=["uppercase", "punctuation"])
    p = tmp_path / "p.yaml"
    p.write_text("policy: p\nversion: '1'\nchecks:\n  robustness.flip_rate: {max: 0.5}\n")
    pol = load_policy(p)
    f = judge_one(all_checks()["robustness.flip_rate"], pol.checks["robustness.flip_rate"], m, pol, dt.date.today())
    assert f.status.value == "FAIL" and f.part == "uppercase"
    # one changed text leaves its interval undefined on too many replicates: that part cannot be judged, and
    # the violation of the other still stands
    assert [x["status"] for x in f.parts] == ["FAIL", "INCONCLUSIVE"]
    result = {"measurements": {"robustness.flip_rate": m.to_dict()}, "findings": [f.to_dict()],
              "policy": {"confidence": 0.95}, "verdict": {"status": "FAIL"}}
    view = detail(result)
    assert [r.name for r in view.rows] == ["uppercase", "punctuation"]
    assert view.rows[0].flip_rate.startswith("100.0%") and view.rows[0].changed == "3 of 3"
    html = render_html(result)
    assert "&lt;b&gt;Pays&lt;/b&gt; on time." in html and "<b>Pays</b>" not in html
    assert "&lt;B&gt;PAYS&lt;/B&gt; ON TIME." in html


def test_views_tolerate_partial_results():
    from audit.render.quality_view import detail as quality_detail
    from audit.render.robustness_view import detail as robustness_detail

    junk = {"measurements": {"robustness.flip_rate": {"details": {"perturbations": ["junk", {"examples": "x"}]}},
                             "quality.duplicate_share": {"details": "junk"}, "quality.label_issue_share": {}},
            "findings": ["junk"]}
    rv = robustness_detail(junk)
    assert [r.name for r in rv.rows] == ["—", "—"] and rv.rows[0].flip_rate == "—"
    qv = quality_detail(junk)
    assert [s.sentence for s in qv.sections] == ["", ""]
    assert robustness_detail({}) is None and quality_detail({"measurements": []}) is None


# ---------------------------------------------------------------- end to end through `audit run`


E2E_POLICY = """\
policy: robustness-quality-e2e
version: "1"
min_group_size: 10
checks:
  robustness.flip_rate: {max: 0.5, perturbations: [typos, uppercase], typo_rate: 0.3, examples: 2}
  robustness.score_change: {max: 1.0, severity: warn}
  quality.duplicate_share: {max: 1.0, severity: warn}
  quality.train_overlap_share: {max: 1.0, severity: warn}
  quality.conflicting_labels_share: {max: 1.0, severity: warn}
  quality.short_text_share: {max: 0.0}
  quality.label_issue_share: {max: 1.0, severity: warn}
budget: {bootstrap: 100, seed: 0}
"""


def test_audit_run_with_robustness_and_quality_rules(tiny_model, credit_csv, tmp_path, policy_file):
    from cleanlab.filter import find_label_issues
    from click.testing import CliRunner
    from transformers import pipeline

    from audit.cli import cli
    from audit.manifest import load_manifest

    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["run", str(tiny_model), "--policy", str(policy_file(E2E_POLICY)),
                                      "--out", str(out), "--no-progress"], catch_exceptions=False)
    r = json.loads((out / "result.json").read_text())
    ms = r["measurements"]
    split = load_manifest(tiny_model / "audit-model.yaml").data.split
    df = pd.read_csv(credit_csv, dtype=str)
    ev, train = df.iloc[split.eval_index].reset_index(drop=True), df.iloc[split.train_index]
    texts = ev["text"].tolist()
    # quality, against pandas counts on the eval split and the training split
    assert ms["quality.duplicate_share"]["value"] == pytest.approx(ev["text"].duplicated().mean())
    both = ev.groupby("text")["label"].transform("nunique") > 1
    assert ms["quality.conflicting_labels_share"]["value"] == pytest.approx(both.mean())
    shared = ev["text"].isin(set(train["text"]))
    overlap = ms["quality.train_overlap_share"]
    assert overlap["value"] == pytest.approx(shared.mean()) and overlap["details"]["training_rows"] == len(train)
    assert overlap["details"]["without_shared"]["rows"] == int((~shared).sum())
    assert ms["quality.short_text_share"]["value"] == 0.0
    # label issues, against cleanlab on the scores the run wrote to predictions.csv
    p = pd.read_csv(out / "predictions.csv", dtype={"row_id": str})
    score = p["score"].to_numpy() if "score" in p else p[[c for c in p.columns if "good" in c][0]].to_numpy()
    y = (ev["label"] == "good").astype(int).to_numpy()
    assert ms["quality.label_issue_share"]["details"]["label_issues"] == int(
        find_label_issues(y, np.column_stack([1 - score, score]), n_jobs=1).sum())
    # robustness: the tiny tokenizer lowercases, so capitals reach the model as the same tokens
    parts = {e["perturbation"]: e for e in ms["robustness.flip_rate"]["details"]["perturbations"]}
    up = parts["uppercase"]
    assert up["rows_changed"] == len(texts) == up["rows_same_tokens"] and up["flips"] == 0
    # typos, against a plain transformers pipeline on the same seeded typos
    pipe = pipeline("text-classification", model=str(tiny_model), top_k=None, device="cpu")

    def good(batch):
        return np.array([next(d["score"] for d in row if d["label"] == "good") for row in pipe(batch, batch_size=32)])

    typo = [rb.typos(t, random.Random(f"0:typos:{i}"), 0.3) for i, t in enumerate(texts)]
    changed = np.array([a != b for a, b in zip(typo, texts)])
    old, new = good(texts), good([t for t, c in zip(typo, changed) if c])
    flips = ((old[changed] >= 0.5) != (new >= 0.5)).mean()
    assert parts["typos"]["rows_changed"] == int(changed.sum()) > 0
    assert parts["typos"]["flip_rate"] == pytest.approx(flips, abs=1e-9)
    assert parts["typos"]["mean_abs_score_change"] == pytest.approx(np.abs(new - old[changed]).mean(), abs=1e-5)
    f = {x["check_id"]: x for x in r["findings"]}
    assert f["quality.short_text_share"]["status"] == "PASS"
    assert result.exit_code == (1 if f["robustness.flip_rate"]["status"] == "FAIL" else 0), result.output
    html = (out / "report.html").read_text()
    assert "Robustness evidence" in html and "Quality evidence" in html and "Likely label errors" in html
