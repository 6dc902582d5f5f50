"""Data-quality family: duplicates, near duplicates (normalised and MinHash), training texts in the eval set with
the metrics re-measured without them, conflicting labels, short texts and label issues, each against a hand count,
a brute-force pair scan, scikit-learn or cleanlab; policy validation; the report (escaped, redacted)."""

from __future__ import annotations

import json
from itertools import combinations
from types import SimpleNamespace

import numpy as np
import pytest

from audit.checks import all_checks
from audit.checks import quality as q
from audit.context import CheckContext, Scored


def run(check_id: str, ctx: CheckContext, **params):
    spec = all_checks()[check_id]
    return spec.fn(ctx, **{**spec.params, **params})


TEXTS = [
    "Pays on time, income 1,000.",  # 0
    "pays on time income 1000",  # 1: 0 without case, punctuation and grouping
    "Pays on time, income 1,000.",  # 2: 0 exactly
    "late payer",  # 3
    "late payer",  # 4: 3 exactly, the other label
    "ok",  # 5
    "a completely different application about a car loan",  # 6
]
Y = np.array([1, 1, 1, 0, 1, 0, 1])


def ctx_of(texts, y, score=None, replicates=200, **kw) -> CheckContext:
    score = np.where(np.asarray(y) == 1, 0.8, 0.2) if score is None else np.asarray(score, dtype=float)
    return CheckContext(y_true=np.asarray(y), score=score, texts=list(texts), replicates=replicates,
                        positive_label="good", negative_label="bad", **kw)


def test_normalise_sets_aside_case_space_punctuation_and_grouping():
    assert q.normalise("Credit of 1,169 DM;  SAVINGS: 1 000 000.") == "credit of 1169 dm savings 1000000"
    assert q.normalise("Ｃａｒ\u00a0loan") == "car loan"  # NFKC: full-width letters, no-break space
    assert q.normalise("3.5") == "3 5" and q.normalise("12,34") == "12 34"  # not a thousands grouping


def test_duplicates_exact_and_normalised_equal_hand_counts():
    ctx = ctx_of(TEXTS, Y)
    exact = run("quality.duplicate_share", ctx, near="exact")
    assert exact.value == pytest.approx(2 / 7) and exact.details["exact_duplicate_rows"] == 2  # rows 2 and 4
    near = run("quality.duplicate_share", ctx)
    assert near.value == pytest.approx(3 / 7) and near.n == 7
    d = near.details
    assert (d["exact_duplicate_rows"], d["near_duplicate_rows"], d["groups"]) == (2, 1, 2)
    assert [(g["rows"], g["kind"]) for g in d["listed"]] == [([0, 1, 2], "near"), ([3, 4], "exact")]
    assert d["listed"][0]["variants"] == ["pays on time income 1000"]
    W = ctx.weights
    flags = np.array([0, 1, 1, 0, 1, 0, 0], dtype=float)
    reps = (W[1:] @ flags) / W[1:].sum(axis=1)
    assert (near.ci_low, near.ci_high) == tuple(pytest.approx(x) for x in np.quantile(reps, [0.025, 0.975]))
    json.dumps(near.to_dict(), allow_nan=False)


def _trigrams(text: str) -> set:
    w = q.normalise(text).split()
    return {tuple(w[i:i + 3]) for i in range(len(w) - 2)} if len(w) > 3 else {tuple(w)}


def test_minhash_near_duplicates_equal_a_brute_force_pair_scan():
    rng = np.random.default_rng(1)
    vocab = [f"w{i}" for i in range(500)]
    texts = []
    for i in range(40):
        words = list(rng.choice(vocab, size=100))
        texts.append(" ".join(words))
        if i % 4 == 0:  # a copy with one word changed (Jaccard about 0.94) and one with half changed (about 0.3)
            texts.append(" ".join(words[:50] + ["changed"] + words[51:]))
            texts.append(" ".join(words[:50] + list(rng.choice(vocab, size=50))))
    sets = [_trigrams(t) for t in texts]
    pairs = {(i, j) for i, j in combinations(range(len(texts)), 2)
             if len(sets[i] & sets[j]) / len(sets[i] | sets[j]) >= 0.8}
    expected = np.zeros(len(texts), dtype=bool)
    expected[[j for _, j in pairs]] = True  # the later text of each similar pair repeats the earlier
    assert len(pairs) == 10
    m = run("quality.duplicate_share", ctx_of(texts, np.ones(len(texts), dtype=int)), near="minhash", jaccard=0.8)
    assert m.details["near_duplicate_rows"] == 10 and m.value == pytest.approx(expected.mean())
    assert sorted(tuple(g["rows"]) for g in m.details["listed"]) == sorted(pairs)
    assert q._bands(0.8) == (8, 8) and q._bands(0.5) == (16, 4)


def test_conflicting_labels_and_short_texts_equal_hand_counts():
    ctx = ctx_of(TEXTS, Y)
    c = run("quality.conflicting_labels_share", ctx)
    assert c.value == pytest.approx(2 / 7) and c.details["conflicting_groups"] == 1  # rows 3 and 4
    assert c.details["listed"] == [{"rows": [3, 4], "ids": ["3", "4"], "size": 2, "kind": "exact",
                                    "text": "late payer", "variants": [], "labels": {"bad": 1, "good": 1}}]
    ctx2 = ctx_of(TEXTS + ["PAYS ON TIME income 1000"], list(Y) + [0])
    assert run("quality.conflicting_labels_share", ctx2).value == pytest.approx(6 / 8)  # normalised: 0,1,2,7 too
    assert run("quality.conflicting_labels_share", ctx2, near="exact").value == pytest.approx(2 / 8)
    s = run("quality.short_text_share", ctx)
    assert s.value == pytest.approx(3 / 7) and [r["row"] for r in s.details["listed"]] == [3, 4, 5]
    assert run("quality.short_text_share", ctx, min_words=1).value == 0.0


def test_train_overlap_and_the_inflation_equal_scikit_learn():
    from sklearn.metrics import accuracy_score, roc_auc_score

    train = ["pays on time", "Late payer.", "owns a home", "rents, often late"]
    train_y = np.array([1, 0, 1, 0])  # label indices into manifest.labels ["bad", "good"]
    texts = ["pays on time", "LATE PAYER", "owns a home", "new applicant a", "new applicant b", "new c", "new d",
             "new e"]
    y = np.array([1, 0, 0, 1, 0, 1, 0, 1])  # "owns a home" has the other label in training
    score = np.array([0.9, 0.1, 0.2, 0.6, 0.55, 0.4, 0.3, 0.7])
    ctx = ctx_of(texts, y, score, manifest=SimpleNamespace(labels=["bad", "good"], id_column=None))
    ctx.datasets["train"] = Scored("train", None, train, train_y, None)
    m = run("quality.train_overlap_share", ctx)
    d = m.details
    assert m.value == pytest.approx(3 / 8) and (d["shared_rows"], d["shared_exact"], d["shared_other_label"]) == (3, 2, 1)
    keep = np.arange(8) >= 3
    assert d["all_rows"]["roc_auc"] == pytest.approx(roc_auc_score(y, score))
    assert d["without_shared"]["roc_auc"] == pytest.approx(roc_auc_score(y[keep], score[keep]))
    assert d["inflation"]["roc_auc"] == pytest.approx(roc_auc_score(y, score) - roc_auc_score(y[keep], score[keep]))
    assert d["inflation"]["accuracy"] == pytest.approx(accuracy_score(y, score >= 0.5)
                                                       - accuracy_score(y[keep], score[keep] >= 0.5))
    assert [(r["row"], r["exact"], r["other_label_in_training"]) for r in d["listed"]] == [
        (0, True, False), (1, False, False), (2, True, True)]
    assert run("quality.train_overlap_share", ctx, match="exact").value == pytest.approx(2 / 8)
    none = run("quality.train_overlap_share", ctx_of(texts, y, score))
    assert none.value is None and none.inconclusive == "no training data was given to the checks"


def test_confident_learning_rule_equals_cleanlab():
    from cleanlab.filter import find_label_issues

    rng = np.random.default_rng(0)
    for n in (50, 400):
        y = rng.integers(0, 2, n)
        s = np.clip(np.where(y == 1, 0.7, 0.3) + rng.normal(0, 0.25, n), 0.001, 0.999)
        probs = np.column_stack([1 - s, s])
        ours = q.confident_learning_issues(y, probs)
        theirs = find_label_issues(y, probs, filter_by="confident_learning", n_jobs=1)
        assert ours.any() and np.array_equal(ours, theirs)


def test_label_issues_find_the_flipped_labels():
    from cleanlab.filter import find_label_issues

    rng = np.random.default_rng(3)
    n = 200
    y = rng.integers(0, 2, n)
    score = np.clip(np.where(y == 1, 0.85, 0.15) + rng.normal(0, 0.05, n), 0.01, 0.99)
    wrong = np.array([5, 17, 60, 111, 150])
    score[wrong] = np.where(y[wrong] == 1, 0.99, 0.01)
    y[wrong] = 1 - y[wrong]  # labels flipped by hand where the model is sure of the other class
    texts = [f"text {i}" for i in range(n)]
    # confident learning's rule finds every flipped label and nothing else
    m = run("quality.label_issue_share", ctx_of(texts, y, score), method="confident_learning")
    assert sorted(r["row"] for r in m.details["listed"]) == sorted(wrong.tolist())
    assert m.value == pytest.approx(5 / n) and m.details["label_issues"] == 5
    # and so does cleanlab's default (prune by noise rate), which the check reports as it finds it
    c = run("quality.label_issue_share", ctx_of(texts, y, score))
    theirs = np.flatnonzero(find_label_issues(y, np.column_stack([1 - score, score])))
    assert theirs.tolist() == sorted(wrong.tolist())
    assert sorted(r["row"] for r in c.details["listed"]) == theirs.tolist() and c.value == len(theirs) / n
    assert c.details["used"].startswith("cleanlab 2.") and "prune_by_noise_rate" in c.details["used"]
    listed = m.details["listed"]
    assert [r["label_probability"] for r in listed] == sorted(r["label_probability"] for r in listed)
    one = run("quality.label_issue_share", ctx_of(["a", "b"], [1, 1]))
    assert one.value is None and "one label only" in one.inconclusive


def test_parameters_are_validated_at_policy_load(policy_file):
    from audit.errors import PolicyError
    from audit.policy import load_policy

    head = "policy: p\nversion: '1'\nchecks:\n"
    with pytest.raises(PolicyError, match="near must be one of exact, normalised, minhash, got 'fuzzy'"):
        load_policy(policy_file(head + "  quality.duplicate_share: {max: 0.1, near: fuzzy}\n"))
    with pytest.raises(PolicyError, match="jaccard must be a number above 0 and at most 1, got 1.5"):
        load_policy(policy_file(head + "  quality.duplicate_share: {max: 0.1, near: minhash, jaccard: 1.5}\n"))
    with pytest.raises(PolicyError, match="method must be one of cleanlab, confident_learning"):
        load_policy(policy_file(head + "  quality.label_issue_share: {max: 0.1, method: knn}\n"))
    with pytest.raises(PolicyError, match="min_words must be a whole number of at least 1, got 0"):
        load_policy(policy_file(head + "  quality.short_text_share: {max: 0.1, min_words: 0}\n"))


def test_report_lists_rows_escaped_and_redacted():
    from audit.render.html import render_html
    from audit.render.quality_view import detail

    texts = ["<script>alert(1)</script> mail ann@example.com", "<script>alert(1)</script> mail ann@example.com",
             "fine text here"]
    ctx = ctx_of(texts, [1, 0, 1])
    ms = {cid: run(cid, ctx).to_dict() for cid in ("quality.duplicate_share", "quality.conflicting_labels_share",
                                                   "quality.short_text_share")}
    result = {"measurements": ms, "findings": [], "policy": {"confidence": 0.95}, "verdict": {"status": "PASS"}}
    view = detail(result)
    assert [s.title for s in view.sections] == ["Duplicate texts", "The same text with different labels",
                                                "Empty or very short texts"]
    assert view.sections[0].sentence.startswith("1 of 3 eval rows (33.3%, 95% CI")
    assert view.sections[1].listed[0].note == "bad: 1, good: 1"
    html = render_html(result)
    assert "&lt;script&gt;alert(1)&lt;/script&gt; mail [EMAIL]" in html
    assert "<script>alert(1)" not in html and "ann@example.com" not in html


def test_thirty_thousand_templated_rows_scan_fast():
    """Hashed, not pairwise: 30,000 templated rows in seconds (MinHash on the same rows: about 6 s here)."""
    import time

    rng = np.random.default_rng(0)
    n = 30_000
    acct, purpose = rng.choice(["none", "< 0 DM", ">= 200 DM"], n), rng.choice(["car", "business", "radio"], n)
    amount, months, age = rng.integers(250, 20000, n), rng.integers(4, 72, n), rng.integers(19, 75, n)
    texts = [f"Checking account: {a}. Credit of {c} DM for {d} months, purpose {p}. Age {g}."
             for a, c, d, p, g in zip(acct.tolist(), amount.tolist(), months.tolist(), purpose.tolist(), age.tolist())]
    ctx = ctx_of(texts, rng.integers(0, 2, n), replicates=0)
    t0 = time.perf_counter()
    m = run("quality.duplicate_share", ctx)
    assert time.perf_counter() - t0 < 20
    exact = n - len(set(texts))
    assert m.details["exact_duplicate_rows"] == exact and m.value >= exact / n
