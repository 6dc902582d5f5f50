"""The check registry is the only list of what each input supports (issue 17): every statistics form a check
declares equals its in-memory value on a random partition of the rows, and no module of the run paths keeps a
list of check ids of its own."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pytest
from test_mergeable import GRID, R, groups, in_memory_ctx, manifest, rows, same_parts, stats_of

from audit.checks import FAMILIES, all_checks, in_family_order, needs_rows

# forms over the statistics every run path holds; those whose statistics a silo collects with the model (`collect`:
# PII, counterfactual swaps, SHAP, loss histograms) are held against `audit run` in tests/test_federated.py
FROM_STATS = [cid for cid, s in all_checks().items() if s.stats is not None and s.stats_form != "manifest"
              and not hasattr(s.stats, "collect")]


def test_the_registry_declares_statistics_forms():
    specs = all_checks()
    assert {s.stats_form for s in specs.values()} == {"", "exact", "binned", "silo", "manifest"}
    # the forms whose statistics `audit stats --policy` collects inside the silo: every "silo" form, and the
    # binned loss-histogram attack
    collected = {c for c, s in specs.items() if hasattr(s.stats, "collect")}
    assert collected == {c for c, s in specs.items() if s.stats_form == "silo"} | {
        "privacy.membership_inference_auc", "privacy.mia_tpr_at_1pct_fpr"}
    for s in specs.values():
        assert (s.stats is None) == (s.stats_form == "")
    # the forms a distributed run takes from its workers' statistics, exactly as in memory
    assert sorted(c for c, s in specs.items() if s.stats_form == "exact") == [
        "performance.accuracy", "performance.balanced_accuracy", "performance.brier_score", "performance.ece",
        "performance.f1", "performance.precision", "performance.recall"]
    assert sorted(c for c, s in specs.items() if s.stats_form == "manifest") == ["privacy.dp_epsilon"]
    # every family whose checks are not all measurable from statistics says why
    for family in FAMILIES:
        if any(s.stats is None for s in specs.values() if s.family == family):
            assert needs_rows(family) != "it needs the rows", family
    assert [s.id for s in in_family_order()][:2] == ["performance.accuracy", "performance.balanced_accuracy"]


@pytest.mark.parametrize("parts", [1, 2, 3])
@pytest.mark.parametrize("check_id", [c for c in FROM_STATS if not c.startswith("drift.")])
def test_statistics_form_equals_the_in_memory_check_on_a_random_partition(check_id, parts):
    """Scores on the grid (two decimals), row-id bootstrap weights: the merge of a random partition of the rows
    into 1, 2 or 3 parts gives the in-memory value, interval, reason and parts. (Score drift compares two sets:
    its binned form is checked against the raw-score KS and PSI in tests/test_mergeable.py.)"""
    from functools import reduce

    from audit.from_stats import measure_stats
    from audit.policy import Policy

    df = rows(n=1500, seed=11, decimals=2)
    spec = all_checks()[check_id]
    params = {**spec.params}
    if spec.family == "fairness":
        params["intersections"] = ["race×age"]
    expected = spec.fn(in_memory_ctx(df), **params)
    part = np.random.default_rng(sum(check_id.encode()) + parts).integers(0, parts, len(df))
    assert sorted(set(part)) == list(range(parts))  # no part is empty
    merged = reduce(lambda a, b: a.merge(b), [crossed(df[part == k]) for k in range(parts)])
    rule = {"max": 1, **({"intersections": ["race×age"]} if spec.family == "fairness" else {})}
    policy = Policy.model_validate({"policy": "t", "version": "1", "checks": {check_id: rule},
                                    "budget": {"bootstrap": R, "seed": GRID.seed}})
    got = measure_stats(policy, merged, manifest())[check_id]
    assert got.error is None, got.error
    assert got.value == pytest.approx(expected.value, abs=1e-12)
    assert got.ci_low == pytest.approx(expected.ci_low, abs=1e-12)
    assert got.ci_high == pytest.approx(expected.ci_high, abs=1e-12)
    assert got.inconclusive == expected.inconclusive
    same_parts(got, expected)
    if spec.family == "fairness":
        assert [p.name for p in got.parts][-1] == "race × age"


def test_manifest_form_equals_the_in_memory_check():
    from audit.from_stats import measure_stats
    from audit.policy import Policy

    df = rows(n=300)
    policy = Policy.model_validate({"policy": "t", "version": "1", "checks": {
        "privacy.dp_epsilon": {"max": 8, "missing": "fail"}, "privacy.pii_rate": {"max": 0}}})
    got = measure_stats(policy, stats_of(df), manifest())
    want = all_checks()["privacy.dp_epsilon"].fn(in_memory_ctx(df), missing="fail")
    assert got["privacy.dp_epsilon"].to_dict() == want.to_dict()
    # the check measures no ε; the rule's `missing: fail` is the judge's: it counts as ε = ∞ against max 8
    assert got["privacy.dp_epsilon"].value is None and got["privacy.dp_epsilon"].inconclusive
    import datetime as dt

    from audit.judge import judge

    finding = judge(policy, all_checks(), got, today=dt.date(2026, 1, 1))[0]
    assert (finding.status.value, finding.value, finding.observed) == ("FAIL", float("inf"), float("inf"))
    assert got["privacy.pii_rate"].inconclusive == (
        "not measurable from statistics: it needs the texts or the model's per-row losses on training rows, "
        "which the statistics do not carry")


def crossed(d):
    """Statistics of rows `d` that also carry the intersection race × age."""
    import audit.mergeable as mg

    s = mg.AuditStats.empty(GRID, {n: a.group_names() for n, a in manifest().protected_attributes.items()},
                            [["race", "age"]])
    s.update(d["id"].tolist(), d["score"].to_numpy(), d["y"].to_numpy(), groups(d))
    return s


ID = re.compile(rf"^({'|'.join(FAMILIES)})\.[a-z0-9_]+$")
# the run paths: they ask the registry which checks their input supports. (The report's view modules under
# audit/render still name the checks each table shows: that is presentation, not which input supports what.)
RUN_PATHS = sorted((Path(__file__).parent.parent / "audit").glob("*.py"))


@pytest.mark.parametrize("path", RUN_PATHS, ids=lambda p: p.name)
def test_no_run_path_keeps_its_own_list_of_check_ids(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, (ast.List, ast.Set, ast.Tuple, ast.Dict)):
            elts = node.keys if isinstance(node, ast.Dict) else node.elts
            ids = [e.value for e in elts if isinstance(e, ast.Constant) and isinstance(e.value, str)
                   and ID.match(e.value) and e.value in all_checks()]
            assert len(ids) < 2, f"{path.name}:{node.lineno} lists check ids {ids}: ask audit.checks.all_checks()"


def test_status_deciding_numbers_are_rule_parameters_with_defaults():
    specs = all_checks()
    assert specs["explainability.additivity_error"].params["tolerance"] == 0.01
    assert specs["explainability.prohibited_terms_in_top_k"].params["min_stability"] == 0.5
    # the ranking's evidence floors, constants of explainability.py until issue 17 (tests/test_thresholds.py)
    assert specs["explainability.stability"].params["min_half_rows"] == 5
    top = specs["explainability.prohibited_terms_in_top_k"].params
    assert (top["min_half_rows"], top["stability_words"]) == (5, 10)
    assert specs["privacy.dp_epsilon"].params == {"missing": "inconclusive"}
    for cid in ("privacy.membership_inference_auc", "privacy.mia_tpr_at_1pct_fpr"):
        assert specs[cid].params == {"min_members": 20}
        with pytest.raises(ValueError, match="min_members must be a whole number of at least 2"):
            specs[cid].validate({"min_members": 1})


def test_every_family_view_module_names_a_family_and_has_detail():
    """audit/render/<family>_view.py is found by name (views._family_view_module): a module whose name matches no
    family would never render, and one without `detail` would be skipped silently."""
    import pkgutil

    import audit.render
    from audit.checks import FAMILIES
    from audit.render.views import _family_view_module

    names = [m.name[:-5] for m in pkgutil.iter_modules(audit.render.__path__) if m.name.endswith("_view")]
    family_views = [n for n in names if n != "statistics"]  # the statistics section is not a family
    assert sorted(family_views) == sorted(FAMILIES)
    for fam in FAMILIES:
        module = _family_view_module(fam)
        assert module is not None and callable(module.detail), fam
    assert _family_view_module("no_such_family") is None
    assert _family_view_module("../etc") is None
