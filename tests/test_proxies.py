"""fairness.proxy_auc: can the text reveal the protected attribute? Numbers against scikit-learn's own
cross-validation and AUC; the demo's marital-status phrase must be found to carry sex."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from audit.checks import all_checks
from audit.context import CheckContext
from audit.manifest import Manifest, ProtectedAttribute, TextRecipe


def run(ctx: CheckContext, **params):
    spec = all_checks()["fairness.proxy_auc"]
    return spec.fn(ctx, **{**spec.params, **params})


@pytest.fixture(scope="module")
def demo():
    """The first 500 bundled German credit rows rendered by the demo's recipe (no model)."""
    from audit.data import make_texts, read_table
    from audit.demo import german_credit
    from audit.manifest import load_recipe

    csv, recipe_path = german_credit()
    recipe = load_recipe(recipe_path)
    frame = read_table(csv).iloc[:500].reset_index(drop=True)
    texts = make_texts(frame, recipe.text, csv)
    m = Manifest(name="demo", labels=["bad", "good"], positive_label="good", label_column=recipe.label_column,
                 text=recipe.text, protected_attributes=recipe.protected_attributes)
    return frame, texts, m


def demo_ctx(demo, replicates=200) -> CheckContext:
    frame, texts, m = demo
    y = (frame["creditability"] == "good").astype(int).to_numpy()
    return CheckContext(y_true=y, score=np.full(len(y), 0.5), texts=texts, frame=frame, manifest=m,
                        replicates=replicates, seed=0, min_group_size=30)


def test_demo_marital_status_phrase_carries_sex(demo):
    m = run(demo_ctx(demo), attributes=["sex"], representations=["words"], top_words=6)
    [p] = m.parts
    assert p.name == "sex" and p.kind == "attribute" and p.n == 500
    assert p.value > 0.95 and p.ci_low > 0.9 and p.ci_low <= p.value <= p.ci_high
    entry = m.details["proxies"][0]
    phrase = set(re.findall(r"\w+", " ".join(demo[2].protected_attributes["sex"].map)))
    top = [w["word"] for w in entry["words"]]
    assert len(top) == 6 and set(top[:3]) <= phrase, top  # the words that carry it come from the phrase
    assert {w["group"] for w in entry["words"]} <= {"male", "female"}
    assert entry["representations"]["words"]["folds"] == 5
    json.dumps(m.to_dict(), allow_nan=False)


def test_auc_equals_scikit_learn_cross_validation(demo):
    """The point AUC is scikit-learn's roc_auc_score of cross_val_predict with the same folds."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    frame, texts, man = demo
    m = run(demo_ctx(demo, replicates=0), attributes=["age"], representations=["words"])
    age = (pd.to_numeric(frame["age_in_years"]) >= 25).astype(int).to_numpy()  # groups: under 25 (0), 25 and over
    X = CountVectorizer(binary=True, min_df=2).fit_transform(texts)
    p = cross_val_predict(LogisticRegression(max_iter=2000, solver="liblinear"), X, age,
                          cv=StratifiedKFold(5, shuffle=True, random_state=0), method="predict_proba")[:, 1]
    assert m.value == pytest.approx(roc_auc_score(age, p), abs=1e-9)
    assert m.ci_low is None  # no replicates, no interval


def synthetic(n=240, seed=1):
    rng = np.random.default_rng(seed)
    g = np.array(["a", "b", "c"])[np.arange(n) % 3]
    emb = rng.normal(size=(n, 6))
    emb[:, 0] += (g == "b") * 1.5 - (g == "c") * 1.5  # the embeddings carry the attribute
    words = {"a": "red", "b": "blue", "c": "green"}
    texts = [f"loan {words[x] if rng.random() < 0.6 else 'grey'} applicant {i % 7}" for i, x in enumerate(g)]
    frame = pd.DataFrame({"grp": g, "text": texts, "label": "good"})
    man = Manifest(name="t", labels=["bad", "good"], positive_label="good", label_column="label",
                   text=TextRecipe(column="text"), protected_attributes={"grp": ProtectedAttribute(column="grp")})
    ctx = CheckContext(y_true=np.ones(n, dtype=int), score=np.full(n, 0.5), texts=texts, frame=frame, manifest=man,
                       replicates=100, min_group_size=10, predictions=SimpleNamespace(embeddings=emb))
    return ctx, g, emb, texts


def test_three_groups_macro_auc_and_both_representations():
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    ctx, g, emb, texts = synthetic()
    m = run(ctx)
    entry = m.details["proxies"][0]
    codes = pd.Categorical(g, categories=["a", "b", "c"]).codes
    P = cross_val_predict(make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)), emb, codes,
                          cv=StratifiedKFold(5, shuffle=True, random_state=0), method="predict_proba")
    want = roc_auc_score(codes, P, multi_class="ovr", average="macro")
    assert entry["representations"]["embeddings"]["auc"] == pytest.approx(want, abs=1e-9)
    words = entry["representations"]["words"]["auc"]
    assert m.value == pytest.approx(max(want, words))
    assert entry["representation"] == ("embeddings" if want >= words else "words")
    top = {w["word"]: w["group"] for w in entry["words"]}
    assert top.get("red") == "a" and top.get("blue") == "b" and top.get("green") == "c"
    # the interval: the run's bootstrap weights over the out-of-fold predictions
    assert m.ci_low < m.value < m.ci_high


def test_small_groups_unmapped_attributes_and_no_groups_are_not_passes():
    ctx, g, emb, texts = synthetic()
    m = run(ctx, attributes=["grp", "sex"], min_group_size=81)  # every group has 80 rows
    assert [(p.name, p.value) for p in m.parts] == [("grp", None), ("sex", None)]
    assert m.parts[0].inconclusive.startswith("fewer than two groups of grp have at least 81 rows")
    assert "does not map" in m.parts[1].inconclusive
    ctx.manifest = Manifest(name="t", labels=["bad", "good"], positive_label="good", label_column="label",
                            text=TextRecipe(column="text"))
    assert "maps no protected attributes" in run(ctx).inconclusive


def test_judged_through_the_policy(policy_file):
    import datetime as dt

    from audit.judge import judge_one
    from audit.policy import load_policy

    ctx, *_ = synthetic()
    m = run(ctx)
    policy = load_policy(policy_file("policy: t\nversion: '1'\nchecks:\n  fairness.proxy_auc: {max: 0.6}\n"))
    f = judge_one(all_checks()["fairness.proxy_auc"], policy.checks["fairness.proxy_auc"], m, policy,
                  dt.date(2026, 1, 1))
    assert f.status.value == "FAIL" and f.evidence == "rows with a value for the attribute"


@pytest.mark.parametrize("rule, message", [
    ("{max: 0.6, folds: 1}", "folds must be a whole number from 2 to 20, got 1"),
    ("{max: 0.6, representations: [tfidf]}", "representations must be a non-empty list of embeddings, words"),
    ("{max: 0.6, C: 0}", "C (the inverse regularization strength) must be a positive number, got 0"),
])
def test_parameters_are_validated_when_the_policy_loads(policy_file, rule, message):
    from audit.errors import PolicyError
    from audit.policy import load_policy

    with pytest.raises(PolicyError, match=re.escape(message)):
        load_policy(policy_file(f"policy: t\nversion: '1'\nchecks:\n  fairness.proxy_auc: {rule}\n"))


def test_the_fairness_view_shows_each_attribute_and_its_words(policy_file):
    import datetime as dt

    from audit.judge import judge_one
    from audit.policy import load_policy
    from audit.render.fairness_view import fairness_view

    ctx, *_ = synthetic()
    m = run(ctx)
    policy = load_policy(policy_file("policy: t\nversion: '1'\nchecks:\n  fairness.proxy_auc: {max: 0.6}\n"))
    f = judge_one(all_checks()["fairness.proxy_auc"], policy.checks["fairness.proxy_auc"], m, policy,
                  dt.date(2026, 1, 1))
    result = {"measurements": {m.check_id: m.to_dict()}, "findings": [f.to_dict()], "policy": {"confidence": 0.95}}
    v = fairness_view(json.loads(json.dumps(result)))
    [pv] = v.proxies
    e = m.details["proxies"][0]
    emb = e["representations"]["embeddings"]
    assert pv.name == "grp" and f"from the model's embeddings ROC-AUC {emb['auc']:.3f} (95% CI " in pv.sentence
    assert "the policy allows at most 0.600" in pv.sentence and "red (→ a)" in pv.words
    assert v.sentences == [f"FAIL: {f.message}"] and v.attributes == []
