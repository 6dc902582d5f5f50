"""Refactoring guard (issue 17): result.json of a streaming run and of a merge of two silos stays the same.

Both are built from synthetic scores (no model scores enter the numbers), so their gold copies in
tests/gold/equivalence/ hold on any machine; what changes between runs (times, run ids, paths, hashes, the tiny
model's training record) is scrubbed. An in-memory `audit run` of the tiny model depends on the trained weights,
which are this machine's: it is compared only against a baseline folder that you capture yourself:

    AUDIT_EQUIV_CAPTURE=/tmp/eq-before pytest tests/test_registry_equivalence.py   # on the old code
    AUDIT_EQUIV_BASELINE=/tmp/eq-before pytest tests/test_registry_equivalence.py  # on the new code

`AUDIT_UPDATE_GOLD=1` rewrites the gold copies (only for an intended change of behaviour: say so in the commit).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

GOLD = Path(__file__).parent / "gold" / "equivalence"

RUN_POLICY = """\
policy: equivalence
version: "1"
inconclusive: inconclusive
min_group_size: 10
checks:
  performance.roc_auc: {min: 0.5, basis: point}
  performance.accuracy: {min: 0.5, severity: warn}
  performance.ece: {max: 0.3, severity: warn}
  fairness.selection_rate_ratio: {min: 0.5, attributes: [age, sex], intersections: ["sex×age"]}
  fairness.equalized_odds_difference: {max: 0.5, attributes: [sex], severity: warn}
  fairness.counterfactual_flip_rate: {max: 0.5, swaps: gender, severity: warn}
  privacy.pii_in_training_text: {max: 10, severity: warn}
  privacy.membership_inference_auc: {max: 0.9, basis: point}
  privacy.dp_epsilon: {max: 8, severity: warn}
  drift.prediction_psi: {max: 0.25, severity: warn}
budget: {bootstrap: 50, seed: 0}
"""

# every key whose value is a time, a random id, a path, a hash of a file made in the session, or the tiny
# model's training record (its weights differ from machine to machine)
SCRUB = {"started", "finished", "duration_s", "timings", "created", "trained", "environment", "sha256", "bytes",
         "path", "command", "files", "data_sha256", "training", "loss_curve", "id", "name_hash", "seconds"}


def scrub(value, roots: list[str]):
    if isinstance(value, dict):
        return {k: ("<scrubbed>" if k in SCRUB else scrub(v, roots)) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v, roots) for v in value]
    if isinstance(value, str):
        for r in roots:
            value = value.replace(r, "<tmp>")
        return value
    return value


def synthetic(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.6
    sex = rng.choice(["male", "female"], n)
    score = np.round(np.clip(0.35 * y + 0.65 * rng.random(n) - 0.05 * (sex == "female"), 0, 1), 6)
    return pd.DataFrame({"row_id": [f"s{seed}-{i}" for i in range(n)], "score": score,
                         "label": np.where(y, "good", "bad"), "age": rng.integers(18, 80, n).astype(str),
                         "sex": sex})


def silo_stats(bundle, df: pd.DataFrame, path: Path, epsilon: float | None = None) -> None:
    from audit.data import group_series
    from audit.mergeable import AuditStats, Grid
    from audit.noise import add_noise
    from audit.stats_files import known_groups, model_identity, stats_document, write_json_atomic

    m = bundle.manifest
    stats = AuditStats.empty(Grid(replicates=50, seed=0), known_groups(m), [["sex", "age"]])
    groups = {name: group_series(df, name, a, path).to_numpy(dtype=object) for name, a in m.protected_attributes.items()}
    stats.update(df["row_id"].tolist(), df["score"].to_numpy(float), (df["label"] == "good").to_numpy().astype(int),
                 groups)
    privacy = add_noise(stats, epsilon, np.random.default_rng(3)) if epsilon else None
    write_json_atomic(path, stats_document(stats, model_identity(bundle), privacy, {"rows": len(df), "notes": []}))


def read(folder: Path, roots: list[str]) -> dict:
    return scrub(json.loads((folder / "result.json").read_text()), roots)


def compare(name: str, got: dict, gold_dir: Path | None, capture: Path | None) -> None:
    if capture is not None:
        capture.mkdir(parents=True, exist_ok=True)
        (capture / f"{name}.json").write_text(json.dumps(got, indent=1, ensure_ascii=False) + "\n")
        return
    if gold_dir is None:
        pytest.skip(f"{name}: no baseline (AUDIT_EQUIV_BASELINE) to compare with")
    want = json.loads((gold_dir / f"{name}.json").read_text())
    assert json.dumps(got, indent=1, ensure_ascii=False) == json.dumps(want, indent=1, ensure_ascii=False), name


@pytest.fixture(scope="module")
def where(tmp_path_factory):
    return tmp_path_factory.mktemp("equivalence")


def _gold_mode():
    if os.environ.get("AUDIT_UPDATE_GOLD"):
        return None, GOLD
    return GOLD, None


def test_streaming_result_is_unchanged(tiny_model, where):
    from audit.streaming import run_predictions

    log = where / "log.csv"
    synthetic(3000, 0).to_csv(log, index=False)
    (where / "stream.yaml").write_text(RUN_POLICY)
    out = run_predictions(tiny_model, where / "stream.yaml", log, out_dir=where / "stream", chunk_rows=700)
    gold, capture = _gold_mode()
    compare("stream", read(out.out_dir, [str(where), str(tiny_model)]), gold, capture)


@pytest.mark.parametrize("epsilon", [None, 5.0])
def test_merge_result_is_unchanged(tiny_model, where, epsilon):
    from audit.merge import run_merge
    from audit.model import open_bundle

    bundle = open_bundle(tiny_model)
    tag = "noised" if epsilon else "clean"
    files = []
    for seed in (1, 2):
        p = where / f"{tag}-silo{seed}.stats.json"
        silo_stats(bundle, synthetic(800, seed), p, epsilon if seed == 2 else None)
        files.append(p)
    ref = where / f"{tag}-ref.stats.json"
    silo_stats(bundle, synthetic(600, 9), ref)
    (where / "merge.yaml").write_text(RUN_POLICY)
    out = run_merge(files, where / "merge.yaml", reference_paths=[ref], out_dir=where / f"merge-{tag}")
    gold, capture = _gold_mode()
    compare(f"merge-{tag}", read(out.out_dir, [str(where), str(tiny_model)]), gold, capture)


def test_in_memory_run_is_unchanged(tiny_model, where):
    """Only against a baseline captured on this machine (the tiny model's scores are this machine's)."""
    capture = Path(os.environ["AUDIT_EQUIV_CAPTURE"]) if os.environ.get("AUDIT_EQUIV_CAPTURE") else None
    base = Path(os.environ["AUDIT_EQUIV_BASELINE"]) if os.environ.get("AUDIT_EQUIV_BASELINE") else None
    if capture is None and base is None:
        pytest.skip("set AUDIT_EQUIV_CAPTURE=DIR (old code) or AUDIT_EQUIV_BASELINE=DIR (new code)")
    from audit.runner import run_audit

    (where / "run.yaml").write_text(RUN_POLICY.replace("  drift.prediction_psi: {max: 0.25, severity: warn}\n", ""))
    out = run_audit(tiny_model, where / "run.yaml", out_dir=where / "run", progress=False)
    compare("run", read(out.out_dir, [str(where), str(tiny_model)]), base, capture)
