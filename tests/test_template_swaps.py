"""Counterfactuals that change the applicant, not a word: on templated text the protected column's value is
swapped and the text rendered again from the row. Numbers against hand counts on the bundled demo rows, with a
scorer whose reading of the text we know."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from audit.checks import all_checks
from audit.context import CheckContext
from audit.manifest import Manifest, TextRecipe

FLIP = "fairness.counterfactual_flip_rate"
CHANGE = "fairness.counterfactual_score_change"


def run(check_id, ctx, **params):
    spec = all_checks()[check_id]
    return spec.fn(ctx, **{**spec.params, **params})


class SingleScorer(CheckContext):
    """Approves (0.75) a text that says "single", declines (0.45) the others: the model reads marital status."""

    calls: list

    @staticmethod
    def read(t: str) -> float:
        return 0.45 + 0.3 * ("single" in t)

    def score_texts(self, texts, desc=""):
        self.calls.append(list(texts))
        return np.array([self.read(t) for t in texts])


@pytest.fixture(scope="module")
def demo():
    from audit.data import read_table
    from audit.demo import german_credit
    from audit.manifest import load_recipe

    csv, recipe_path = german_credit()
    recipe = load_recipe(recipe_path)
    frame = read_table(csv).iloc[:150].reset_index(drop=True)
    return frame, recipe


def demo_ctx(demo, template=None, replicates=200, k=5) -> SingleScorer:
    from audit.data import make_texts

    frame, recipe = demo
    text = TextRecipe(template=template) if template else recipe.text
    m = Manifest(name="demo", labels=["bad", "good"], positive_label="good", label_column="creditability",
                 text=text, protected_attributes=recipe.protected_attributes)
    texts = make_texts(frame, text, "demo")
    ctx = SingleScorer(y_true=np.ones(len(texts), dtype=int), score=np.array([SingleScorer.read(t) for t in texts]),
                       texts=texts, frame=frame, manifest=m, replicates=replicates, min_group_size=k,
                       bundle=SimpleNamespace(model=object()), positive_label="good", negative_label="bad")
    ctx.calls = []
    return ctx


def test_sex_swap_rerenders_the_whole_phrase_and_matches_a_hand_count(demo):
    frame, recipe = demo
    ctx = demo_ctx(demo)
    m = run(FLIP, ctx, attributes=["sex"])
    status = frame["personal_status_and_sex"]
    single, female = (status == "male : single").to_numpy(), status.str.startswith("female").to_numpy()
    male = ~female
    # a male row is swapped to the one female value (single rows flip: they lose "single"); a female row to each
    # of the three male values, one of which ("male : single") flips it: it counts 1/3
    per_row = np.where(female, 1 / 3, single.astype(float))
    [p] = m.parts
    assert (p.name, p.kind, p.n) == ("sex", "attribute", len(frame))
    assert p.value == pytest.approx(per_row.mean())
    W = ctx.weights[1:]
    reps = (W @ per_row) / W.sum(axis=1)
    lo, hi = np.quantile(reps, [0.025, 0.975])
    assert p.ci_low == pytest.approx(lo, abs=0.01) and p.ci_high == pytest.approx(hi, abs=0.01)
    e = m.details["swapped_attributes"][0]
    assert e["texts"] == male.sum() + 3 * female.sum() == len(ctx.calls[0])
    assert e["flips"] == single.sum() + female.sum()
    pairs = {(x["from"], x["to"]): x for x in e["pairs"]}
    assert pairs["male", "female"]["rows"] == male.sum()
    assert pairs["male", "female"]["flip_rate"] == pytest.approx(single.sum() / male.sum())
    assert pairs["female", "male"]["flip_rate"] == pytest.approx(1 / 3)
    assert pairs["female", "male"]["texts"] == 3 * female.sum()
    # the text is rendered again from the row: only the phrase of the swapped column changes
    ex = e["examples"][0]
    i = ex["row"]
    old, new = ex["swap"].split(" → ")
    assert ctx.texts[i].replace(f"Applicant: {old},", f"Applicant: {new},") == ex["after"] != ex["before"]
    assert m.details["mode"] == "template" and m.details["worst_attribute"] == "sex"
    s = run(CHANGE, ctx, attributes=["sex"])
    assert s.value == pytest.approx(0.3 * per_row.mean()) and len(ctx.calls) == 1  # one re-scoring for both
    json.dumps(m.to_dict(), allow_nan=False)


def test_binned_and_paired_attributes(demo):
    frame, recipe = demo
    ctx = demo_ctx(demo)
    m = run(FLIP, ctx, attributes=["age", "foreign_worker"], pairs={"foreign_worker": [["yes", "no"]]})
    age, fw = m.details["swapped_attributes"]
    ages = pd.to_numeric(frame["age_in_years"]).to_numpy()
    young, old = np.sort(ages[ages < 25]), np.sort(ages[ages >= 25])
    reps = {"under 25": young[(len(young) - 1) // 2], "25 and over": old[(len(old) - 1) // 2]}
    values = {x["from"]: x["values"] for x in age["pairs"]}
    assert all(v.endswith(f"→ {reps['25 and over']:g}") for v in values["under 25"])
    assert all(v.endswith(f"→ {reps['under 25']:g}") for v in values["25 and over"])
    assert age["texts"] == len(frame) and age["flips"] == 0 and m.parts[0].value == 0.0
    assert fw["texts"] == len(frame)  # every row is "yes" or "no": swapped both ways
    assert {(x["from"], x["to"]) for x in fw["pairs"]} <= {("yes", "no"), ("no", "yes")}


def test_nothing_to_swap_is_inconclusive_never_a_pass(demo, policy_file):
    import datetime as dt

    from audit.judge import judge_one
    from audit.policy import load_policy

    no_sex = "Credit of {{ credit_amount }} DM, age {{ age_in_years }}, foreign worker: {{ foreign_worker }}."
    ctx = demo_ctx(demo, template=no_sex)
    m = run(FLIP, ctx, attributes=["sex"])
    assert m.value is None and m.parts[0].inconclusive == (
        "the text template does not use the column 'personal_status_and_sex' of sex, so swapping its value "
        "changes no text")
    policy = load_policy(policy_file(f"policy: t\nversion: '1'\nchecks:\n  {FLIP}: {{max: 0.02}}\n"))
    f = judge_one(all_checks()[FLIP], policy.checks[FLIP], m, policy, dt.date(2026, 1, 1))
    assert f.status.value == "INCONCLUSIVE"
    m = run(FLIP, demo_ctx(demo), attributes=["foreign_worker"], pairs={"foreign_worker": [["maybe", "never"]]})
    assert m.parts[0].inconclusive == "no eval row has a value of the policy's pairs for foreign_worker"
    # the rule may still ask for the word lists on templated text
    w = run(FLIP, demo_ctx(demo), mode="words", swaps=["marital_status"])
    assert w.details["mode"] == "words" and w.parts[0].kind == "swap list"
    lst = w.details["lists"][0]
    assert lst["share_changed"] == pytest.approx(lst["rows_changed"] / lst["rows_total"])


def test_free_text_reports_the_share_with_a_term():
    texts = ["he pays", "she pays", "pays", "a christian applicant", "none"]
    ctx = SingleScorer(y_true=np.ones(5, dtype=int), score=np.full(5, 0.45), texts=texts, replicates=50,
                       min_group_size=1, bundle=SimpleNamespace(model=object()))
    ctx.calls = []
    m = run(FLIP, ctx, swaps=["gender", "religion", "race"])
    shares = [(x["list"], x["rows_changed"], x["share_changed"]) for x in m.details["lists"]]
    assert shares == [("gender", 2, 0.4), ("religion", 1, 0.2), ("race", 0, 0.0)]
    assert m.parts[2].inconclusive == "no eval text contains a term of the 'race' list"


@pytest.mark.parametrize("name", ["religion", "race"])
def test_new_bundled_lists_swap_both_ways(name):
    from audit.swaps import load

    sl = load(name)
    assert sl.source == "bundled" and len(sl.mapping) >= 10
    for term, repl in sl.mapping.items():
        assert sl.swap(term)[0] == repl


@pytest.mark.parametrize("rule, message", [
    ("{max: 0.02, mode: columns}", "mode must be one of auto, template, words, got 'columns'"),
    ("{max: 0.02, pairs: {sex: [[male]]}}", "pairs.sex[0] must be two column values, got ['male']"),
    ("{max: 0.02, pairs: {sex: [[a, a]]}}", "pairs.sex[0] swaps 'a' with itself"),
])
def test_parameters_are_validated_when_the_policy_loads(policy_file, rule, message):
    from audit.errors import PolicyError
    from audit.policy import load_policy

    with pytest.raises(PolicyError, match=re.escape(message)):
        load_policy(policy_file(f"policy: t\nversion: '1'\nchecks:\n  {FLIP}: {rule}\n"))


def test_report_shows_the_swapped_applicants_escaped(demo, policy_file):
    import datetime as dt
    from pathlib import Path

    from audit.judge import judge_one
    from audit.policy import load_policy
    from audit.render import render_html
    from audit.render.outputs import json_safe

    frame, recipe = demo
    hostile = "<script>alert(1)</script>"
    frame = frame.copy()
    frame["purpose"] = hostile
    ctx = demo_ctx((frame, recipe))
    m = run(FLIP, ctx, attributes=["sex"], examples=2)
    policy = load_policy(policy_file(f"policy: t\nversion: '1'\nchecks:\n  {FLIP}: {{max: 0.02}}\n"))
    f = judge_one(all_checks()[FLIP], policy.checks[FLIP], m, policy, dt.date(2026, 1, 1))
    result = json.loads((Path(__file__).parent / "fixtures" / "result_sample.json").read_text())
    result["measurements"] = json_safe({m.check_id: m.to_dict()})
    result["findings"] = [f.to_dict()]
    html = render_html(result)
    e = m.details["swapped_attributes"][0]
    assert f.status.value == "FAIL" and f.part == ""  # one part: the finding shows it without naming it
    assert "Counterfactual swaps of the applicant&#39;s attributes" in html
    assert (f"Swapping the applicant&#39;s sex (column personal_status_and_sex) and rendering the text again changed "
            f"150 of 150 eval rows into {e['texts']} counterfactual applications; the decision flipped for "
            f"{e['flip_rate']:.1%} of them") in html
    assert "male → female: 103 rows" in html and "Rendered again with the attribute swapped" in html
    assert hostile not in html and "&lt;script&gt;" in html
