"""Every number that decides a status is a policy key with a default: a rule parameter, validated when the policy
loads (named with file and line), or a key the judge applies. Each is moved off its default here and shown to
move the status; at its default the status is the one it had when the number was a constant."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from audit.checks import all_checks
from audit.checks import explainability as X
from audit.errors import PolicyError
from audit.judge import judge_one
from audit.policy import load_policy
from audit.result import Measurement
from tests.test_explainability import _ctx_with, _explained, _units


def _policy(tmp_path, check_id: str, rule: str):
    p = tmp_path / "p.yaml"
    p.write_text(f"policy: t\nversion: '1'\nchecks:\n  {check_id}: {rule}\n")
    return p


def _judge(m: Measurement, rule: str, tmp_path):
    policy = load_policy(_policy(tmp_path, m.check_id, rule))
    return judge_one(all_checks()[m.check_id], policy.checks[m.check_id], m, policy, dt.date(2026, 1, 1))


@pytest.mark.parametrize("check_id,rule,message", [
    ("explainability.stability", "{min: 0.5, min_half_rows: 1}", "min_half_rows must be at least 2, got 1"),
    ("explainability.prohibited_terms_in_top_k", "{max: 0, terms: [he], min_half_rows: 2.5}",
     "min_half_rows must be a whole number, got 2.5"),
    ("explainability.prohibited_terms_in_top_k", "{max: 0, terms: [he], stability_words: 2}",
     "stability_words must be at least 3, got 2"),
    ("explainability.additivity_error", "{max: 0.001, tolerance: -1}", "tolerance must be at least 0, got -1"),
    ("privacy.membership_inference_auc", "{max: 0.6, min_members: 1}",
     "min_members must be a whole number of at least 2, got 1"),
    ("privacy.dp_epsilon", "{max: 8, missing: pass}", "missing must be 'fail' or 'inconclusive', got 'pass'"),
])
def test_a_bad_threshold_parameter_is_named_with_file_and_line(tmp_path, check_id, rule, message):
    path = _policy(tmp_path, check_id, rule)
    with pytest.raises(PolicyError) as exc:
        load_policy(path)
    assert str(exc.value) == f"{path}:4: checks.{check_id}: {message}"


def _stable_rows(n: int):
    a, b = _units(female=0.6, job=0.3, late=-0.1), _units(male=0.2, job=0.2, late=-1.0)
    return [a, a, b, b] * (n // 4)


def test_min_half_rows_decides_whether_the_stability_is_read(tmp_path):
    ctx = _ctx_with(_explained(_stable_rows(12)), 12)  # halves of 6 rows
    params = {**X.BUDGET, "top_k": 20}
    m = X.stability(ctx, **params)  # default 5: read
    assert m.value == pytest.approx(1.0) and m.inconclusive is None
    assert _judge(m, "{min: 0.6}", tmp_path).status.value == "PASS"
    m = X.stability(ctx, **params, min_half_rows=7)
    assert m.inconclusive == "too few sampled rows to compare two halves (6 and 6; 7 each needed)"
    assert _judge(m, "{min: 0.6, min_half_rows: 7}", tmp_path).status.value == "INCONCLUSIVE"


def test_min_half_rows_and_stability_words_decide_a_pass_of_the_top_k_rule(tmp_path):
    ctx = _ctx_with(_explained(_stable_rows(12)), 12)
    params = {**X.BUDGET, **X.TERM_PARAMS, "terms": ["nobody"], "top_k": 2, "min_stability": 0.5}
    rule = "{max: 0, terms: [nobody], top_k: 2}"
    assert _judge(X.prohibited_terms_in_top_k(ctx, **params), rule, tmp_path).status.value == "PASS"
    m = X.prohibited_terms_in_top_k(ctx, **params, min_half_rows=7)
    assert m.incomplete.startswith("the stability of the word ranking cannot be measured")
    assert _judge(m, rule, tmp_path).status.value == "INCONCLUSIVE"


def test_stability_words_widens_the_words_compared(tmp_path):
    # both halves rank job > car > w1 > w2 and disagree only on rent and late (ranks 5 and 6): over the top 3
    # words the ranking is stable (Spearman 1); over 5 or more the union holds all six words and
    # Spearman = 1 - 6 * 2 / (6 * 35) = 0.943 (a hand count), under a min_stability of 0.95
    a = _units(job=1.0, car=0.9, w1=0.8, w2=0.7, rent=0.2, late=0.1)
    b = _units(job=1.0, car=0.9, w1=0.8, w2=0.7, rent=0.1, late=0.2)
    rows = [a if i % 2 == 0 else b for i in range(12)]  # half 0::2 all a, half 1::2 all b
    ctx = _ctx_with(_explained(rows), 12)
    params = {**X.BUDGET, **X.TERM_PARAMS, "terms": ["nobody"], "top_k": 2, "min_stability": 0.95}
    narrow = X.prohibited_terms_in_top_k(ctx, **params, stability_words=3)
    assert narrow.details["stability"] == pytest.approx(1.0) and narrow.incomplete is None
    wide = X.prohibited_terms_in_top_k(ctx, **params, stability_words=5)
    assert wide.details["stability"] == pytest.approx(1 - 12 / 210)
    assert "unstable (Spearman 0.94 between two halves" in wide.incomplete
    assert X.prohibited_terms_in_top_k(ctx, **params).details["stability"] == pytest.approx(1 - 12 / 210)  # 10
    rule = "{max: 0, terms: [nobody], top_k: 2, min_stability: 0.95"
    assert _judge(narrow, rule + ", stability_words: 3}", tmp_path).status.value == "PASS"
    assert _judge(wide, rule + ", stability_words: 5}", tmp_path).status.value == "INCONCLUSIVE"


def test_the_additivity_tolerance_decides_error(tmp_path):
    rows = _stable_rows(12)
    ctx = _ctx_with(_explained(rows, off=0.02), 12)  # row 1 is 0.02 off its output
    m = X.additivity_error(ctx, **X.BUDGET)
    assert m.value == pytest.approx(0.02) and "over the tolerance 0.01" in m.error
    assert _judge(m, "{max: 0.1}", tmp_path).status.value == "ERROR"
    ctx = _ctx_with(_explained(rows, off=0.02), 12)
    m = X.additivity_error(ctx, **{**X.BUDGET, "tolerance": 0.05})
    assert m.error is None
    assert _judge(m, "{max: 0.1, tolerance: 0.05}", tmp_path).status.value == "PASS"


def test_missing_is_applied_by_the_judge(tmp_path):
    from audit.checks.privacy import dp_epsilon
    from audit.manifest import Manifest

    manifest = Manifest.model_construct(training={"epochs": 1}, data=None)
    ctx_kw = {"y_true": np.zeros(0, dtype=int), "score": np.zeros(0)}
    from audit.context import CheckContext

    for missing in ("inconclusive", "fail"):  # the measurement is the same: the check measures, the judge judges
        m = dp_epsilon(CheckContext(**ctx_kw, manifest=manifest), missing=missing)
        assert m.value is None and m.inconclusive.startswith("the model was trained without differential privacy")
    f = _judge(m, "{max: 8}", tmp_path)
    assert (f.status.value, f.value) == ("INCONCLUSIVE", None)
    f = _judge(m, "{max: 8, missing: fail}", tmp_path)
    assert (f.status.value, f.value, f.observed) == ("FAIL", float("inf"), float("inf"))
    assert f.message == "Differential privacy ε was ∞; the policy requires at most 8.000."
    f = _judge(m, "{max: 8, missing: fail, severity: warn}", tmp_path)
    assert f.status.value == "WARN"
    # a check without the parameter is never judged on a value it does not have
    other = Measurement("privacy.pii_rate", None, inconclusive="no rows")
    assert _judge(other, "{max: 0}", tmp_path).status.value == "INCONCLUSIVE"


def test_min_members_reaches_the_attack(tmp_path):
    """min_members end to end: the policy's value reaches the attack (its reason names the rule's number) and
    decides whether it runs."""
    from audit.checks.privacy import membership_inference_auc
    from audit.context import CheckContext, Scored

    rng = np.random.default_rng(0)

    class P:
        def __init__(self, loss):
            self.loss = loss

    n = 30
    train = Scored("train", None, [f"t{i}" for i in range(n)], np.zeros(n, dtype=int), P(rng.random(n) * 0.5))
    ctx = CheckContext(y_true=np.zeros(n, dtype=int), score=np.full(n, 0.5), texts=[f"e{i}" for i in range(n)],
                       predictions=P(rng.random(n)), replicates=20, datasets={"train": train})
    ok = membership_inference_auc(ctx, min_members=20)
    assert ok.value is not None and ok.n == n
    ctx.shared.membership.clear()
    few = membership_inference_auc(ctx, min_members=31)
    assert few.value is None and "needs at least 31 of each, the rule's `min_members`" in few.inconclusive
    policy = load_policy(_policy(tmp_path, "privacy.membership_inference_auc", "{max: 0.6, min_members: 31}"))
    assert policy.checks["privacy.membership_inference_auc"].params == {"min_members": 31}
