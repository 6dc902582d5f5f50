"""`audit merge`: when a silo ran `audit stats --policy` but had no training rows, the training-set checks
(membership inference, PII in the training text) are INCONCLUSIVE with that cause, the silo named, and how to
give the rows; not with what the merged statistics lack as a consequence."""

from __future__ import annotations

import json

import pandas as pd
import pytest

POLICY = """\
policy: silo-training
version: "1"
inconclusive: inconclusive
min_group_size: 10
checks:
  performance.accuracy: {min: 0.5, severity: warn}
  privacy.pii_rate: {max: 0.5, severity: warn}
  privacy.pii_in_training_text: {max: 0.5, severity: warn}
  privacy.membership_inference_auc: {max: 0.99, basis: point, severity: warn}
budget: {bootstrap: 50, seed: 0}
"""
TRAINING = ("privacy.membership_inference_auc", "privacy.pii_in_training_text")


@pytest.fixture(scope="module")
def silos(tiny_model, credit_csv, tmp_path_factory):
    """Two silos of new rows (new ids, a word added to each text, so that no eval row is a training row):
    `audit stats --policy` of the first as the model's manifest has it (its training split readable), of the
    second with a manifest that records no training split."""
    from audit.mergeable import Grid
    from audit.model import open_bundle
    from audit.policy import load_policy
    from audit.silo import compute_silo_stats

    folder = tmp_path_factory.mktemp("silo-training")
    df = pd.read_csv(credit_csv, dtype=str)
    df["id"] = "n-" + df["id"]
    df["text"] = [t + (" he" if i % 2 else " she") for i, t in enumerate(df["text"])]
    a, b = folder / "a.csv", folder / "b.csv"
    df.iloc[::2].to_csv(a, index=False)
    df.iloc[1::2].to_csv(b, index=False)
    (folder / "policy.yaml").write_text(POLICY)
    policy = load_policy(folder / "policy.yaml")
    untrained = open_bundle(tiny_model).manifest.model_copy(update={"data": None})
    out = {"folder": folder, "policy": folder / "policy.yaml"}
    for name, data, manifest in (("a", a, None), ("b-none", b, untrained)):
        out[name] = folder / f"{name}.stats.json"
        compute_silo_stats(tiny_model, data, out[name], grid=Grid(replicates=50, seed=0), policy=policy,
                           manifest=manifest)
    return out


def merged(silos, *names, out):
    from audit.merge import run_merge

    outcome = run_merge([silos[n] for n in names], silos["policy"], out_dir=silos["folder"] / out)
    return json.loads((outcome.out_dir / "result.json").read_text())


NO_SPLIT = ("no training data: the model's manifest records no training split (a model that `audit train` did "
            "not make), so there is nothing to compare the eval rows with")


def test_a_silo_without_training_rows_records_why_in_its_stats_file(silos):
    from audit.checks.privacy import SILO_TRAINING

    doc = json.loads(silos["b-none"].read_text())
    assert doc["data"]["not_collected"] == {cid: f"{NO_SPLIT}. {SILO_TRAINING}" for cid in TRAINING}
    assert sorted(doc["data"]["checks"]) == ["privacy.pii_rate"]
    assert "not_collected" not in json.loads(silos["a"].read_text())["data"]
    assert "`audit stats --policy`" in SILO_TRAINING and "audit-model.yaml" in SILO_TRAINING


def test_the_merge_names_the_silo_that_had_no_training_rows(silos):
    from audit.checks.privacy import SILO_TRAINING

    m = merged(silos, "a", "b-none", out="one-missing")["measurements"]
    for cid in TRAINING:
        assert m[cid]["value"] is None, cid
        assert m[cid]["inconclusive"] == (
            "not measurable from statistics: 1 of 2 silo(s) collected no statistics for this check "
            f"(b-none.stats.json: {NO_SPLIT}. {SILO_TRAINING})"), cid
        assert m[cid]["details"]["not_collected"] == [f"b-none.stats.json: {NO_SPLIT}. {SILO_TRAINING}"]
    assert m["privacy.pii_rate"]["value"] is not None  # the eval rows' PII merged as ever
    findings = {f["check_id"]: f["status"] for f in merged(silos, "a", "b-none", out="again")["findings"]}
    assert all(findings[cid] == "INCONCLUSIVE" for cid in TRAINING)


def test_the_merge_of_silos_that_all_lacked_training_rows_says_so(silos):
    m = merged(silos, "b-none", out="all-missing")["measurements"]
    for cid in TRAINING:
        reason = m[cid]["inconclusive"]
        assert reason.startswith("not measurable from statistics: 1 of 1 silo(s) collected no statistics for this "
                                 f"check (b-none.stats.json: {NO_SPLIT}."), cid
        # before: "the statistics carry no ... statistics computed with this rule's parameters ...; make them with
        # `audit stats --policy` of this policy", which the silo had done
        assert "computed with this rule's parameters" not in reason and "some of the merged" not in reason


def test_a_silo_that_had_training_rows_still_measures_the_checks(silos):
    m = merged(silos, "a", out="with-training")["measurements"]
    for cid in TRAINING:
        assert m[cid]["value"] is not None and m[cid]["inconclusive"] is None, cid
        assert "not_collected" not in m[cid]["details"], cid
