"""The contract every registered check keeps, whatever its family (issue 17). The test walks the registry, so a
family added later is walked too; the costly steps are made small (the tiny fixture model, a SHAP budget of a
few rows and evaluations), not replaced.

A check's measurement:
- serializes: `json.dumps(to_dict(), allow_nan=False)` (result.json is strict JSON);
- is deterministic for a seed: two runs on fresh contexts give the same JSON;
- handles an eval set with an empty group and a one-class eval set: a Measurement with no value and a reason
  (inconclusive, skipped or incomplete), or a number; never an exception;
- documents itself: a title, a docstring summary and meaning, an evidence label.
The statistics forms' agreement with the in-memory value on partitions of 1, 2 and 3 parts is in
tests/test_registry.py.
"""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from audit.checks import FAMILIES, all_checks, in_family_order

SHAP = {"rows": 10, "max_evals": 16, "examples": 1}  # (10 + 3) x 16 model calls on the tiny model


def _rule_params(spec) -> dict:
    """The parameters of a rule for the check, with small budgets (the contract is about measurements, so the
    thresholds, which the judge reads, are not needed)."""
    rule: dict = {}
    if spec.cost == "shap":
        rule.update(SHAP)
    if "term_lists" in spec.params:
        rule["term_lists"] = ["gender"]
    if "swaps" in spec.params:
        rule["swaps"] = ["gender"]
    return rule


def _params(spec) -> dict:
    """The parameters the runner passes: the check's defaults, then its rule's (audit.runner.measure)."""
    return {**spec.params, **_rule_params(spec)}


def _frame(credit_csv, bundle) -> pd.DataFrame:
    """The model's eval split, with gendered words (for the counterfactual swaps) and one e-mail (PII)."""
    frame = pd.read_csv(credit_csv, dtype=str)
    frame = frame.iloc[bundle.manifest.data.split.eval_index].reset_index(drop=True)
    frame["text"] = [("she " if i % 2 else "he ") + t for i, t in enumerate(frame["text"])]
    frame.loc[3, "text"] += " write to jo@example.com"
    return frame


def _context(bundle, data, current, seed: int = 0):
    """The context `audit run` gives the checks (audit.runner.run_audit), on the data file `data`."""
    from audit.context import CheckContext
    from audit.engines import LocalEngine
    from audit.runner import load_eval_set, load_other

    m = bundle.manifest
    ev = load_eval_set(bundle, data, None, seed)
    preds = LocalEngine().score(bundle, ev.texts, batch_size=64, labels=ev.y, embeddings=True, progress=False)
    y_pos = (ev.y == m.labels.index(m.positive_label)).astype(int)
    others = {"current": current}
    return CheckContext(y_true=y_pos, score=preds.score, replicates=50, seed=seed, min_group_size=5,
                        positive_label=m.positive_label, negative_label=m.negative_label, frame=ev.frame,
                        texts=ev.texts, manifest=m, bundle=bundle, predictions=preds, eval_path=str(ev.path),
                        attachments={}, row_ids=ev.row_ids,
                        loader=lambda name: load_other(name, bundle, 64, False, others))


def _measure_all(ctx) -> dict:
    """Every registered check on `ctx`, in the registry's order; an exception fails the test (it is a bug)."""
    out = {}
    for spec in in_family_order():
        out[spec.id] = spec.fn(ctx, **_params(spec))
        assert out[spec.id].check_id == spec.id
    return out


@pytest.fixture(scope="module")
def setting(tiny_model, credit_csv, tmp_path_factory):
    from audit.model import open_bundle

    bundle = open_bundle(tiny_model).load()
    folder = tmp_path_factory.mktemp("contract")
    frame = _frame(credit_csv, bundle)
    files = {}
    for name, rows in {"normal": frame,
                       "one_class": frame[frame["label"] == bundle.manifest.positive_label],
                       # no male applicant and nobody under 25: the groups 'male' and '< 25' are empty
                       "empty_group": frame[(frame["sex"] == "female") & (frame["age"].astype(int) >= 25)]}.items():
        files[name] = folder / f"{name}.csv"
        rows.to_csv(files[name], index=False)
    current = folder / "current.csv"
    pd.read_csv(credit_csv, dtype=str).iloc[:150].to_csv(current, index=False)
    return bundle, files, current


class _Measured(dict):
    """Every check's measurement per case, computed on first use (a case costs a scoring pass and SHAP)."""

    def __init__(self, setting):
        super().__init__()
        self.setting = setting

    def __missing__(self, case: str) -> dict:
        bundle, files, current = self.setting
        self[case] = _measure_all(_context(bundle, files[case], current))
        return self[case]


@pytest.fixture(scope="module")
def measured(setting):
    return _Measured(setting)


def test_the_walk_covers_every_family():
    families = {s.family for s in all_checks().values()}
    assert families == set(FAMILIES) and {"performance", "fairness", "explainability", "privacy", "drift"} <= families


def test_every_check_documents_itself():
    for cid, spec in all_checks().items():
        assert spec.title.strip(), cid
        assert len(spec.summary) >= 20, (cid, spec.summary)
        assert spec.meaning and len(spec.meaning) >= 20, (cid, spec.meaning)
        assert spec.evidence.strip(), cid
        assert spec.direction in ("higher", "lower", "none"), cid


def _strict_json(m) -> str:
    return json.dumps(m.to_dict(), allow_nan=False, sort_keys=True)


@pytest.mark.parametrize("case", ["normal", "one_class", "empty_group"])
def test_every_measurement_serializes_and_has_a_value_or_a_reason(measured, case):
    got = measured[case]
    assert sorted(got) == sorted(all_checks())
    broken = []
    for cid, m in got.items():
        _strict_json(m)  # raises on NaN or an infinity anywhere in the measurement
        if m.value is None:
            # the reason is the measurement's, or each part's (the judge reads a measurement part by part)
            own = m.inconclusive or m.skipped or m.error or m.incomplete
            parts = m.parts and all(p.value is not None or p.inconclusive or p.incomplete for p in m.parts)
            if not (own or parts):
                broken.append((cid, "no value and no reason"))
        elif not (isinstance(m.value, float) and math.isfinite(m.value)):
            broken.append((cid, f"value {m.value!r}"))
        if m.error is not None and not cid.startswith("explainability."):  # SHAP's additivity error is measured
            broken.append((cid, m.error))
    assert broken == []


def test_a_one_class_eval_set_leaves_the_rank_metrics_without_a_value(measured):
    got = measured["one_class"]
    assert got["performance.roc_auc"].value is None and "negative" in got["performance.roc_auc"].inconclusive
    assert got["performance.accuracy"].value is not None  # accuracy is defined on one class
    assert got["performance.accuracy"].n == int(got["performance.accuracy"].n)


def test_an_empty_group_is_named_not_measured(measured):
    sr = measured["empty_group"]["fairness.selection_rate_ratio"]
    assert sr.value is None and sr.parts, sr
    assert all(p.inconclusive for p in sr.parts), [(p.name, p.inconclusive) for p in sr.parts]


def test_every_measurement_is_deterministic_for_a_seed(setting, measured):
    bundle, files, current = setting
    again = _measure_all(_context(bundle, files["normal"], current))
    first = measured["normal"]
    for cid in first:
        assert _strict_json(again[cid]) == _strict_json(first[cid]), cid


def test_the_normal_case_measures_every_family(measured):
    """The stubs are small, not empty: each family gives numbers on the normal eval set."""
    got = measured["normal"]
    for family in FAMILIES:
        valued = [cid for cid, m in got.items() if cid.startswith(family + ".") and m.value is not None]
        assert valued, family
    pii = got["privacy.pii_rate"]
    assert pii.n == got["performance.accuracy"].n == 120  # the eval split's rows, every one scanned
    assert pii.value == pytest.approx(1 / pii.n)  # the one e-mail in the eval texts
