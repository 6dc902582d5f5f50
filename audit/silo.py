"""`audit stats`: inside a data silo, score the silo's rows with the model once and write its mergeable statistics
(audit/stats_files.py), optionally with differential-privacy noise (audit/noise.py)."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import numpy as np

from audit.errors import DataError
from audit.mergeable import AuditStats, Grid
from audit.noise import add_noise
from audit.stats_files import check_stats_out, known_groups, model_identity, stats_document, write_json_atomic


def compute_silo_stats(model_dir, data_path, out_path, *, grid: Grid, epsilon: float | None = None,
                       batch_size: int = 64, progress: bool = False, manifest=None, manifest_path=None,
                       noise_seed: int | None = None, intersections: list[list[str]] | None = None,
                       policy=None) -> dict[str, Any]:
    """`audit stats`: score the silo's rows with the model, once, inside the silo, and write its statistics.
    `intersections`: the intersections of attributes to carry; default every pair of the manifest's attributes,
    each adding 1 to the L1 sensitivity under `epsilon`. `policy` (a loaded Policy, `audit stats --policy`): also
    collect every statistic that a check it rules declares (collect_checks), with the rule's parameters."""
    import itertools

    from audit.data import group_series, sha256_file
    from audit.model import open_bundle
    from audit.runner import load_eval_set
    from audit.scoring import score_texts

    bundle = open_bundle(model_dir, manifest=manifest, manifest_path=manifest_path)
    m = bundle.manifest
    if len(m.labels) != 2:
        raise DataError(f"{bundle.path}: silo statistics (`audit stats`) are collected for binary classifiers; the manifest "
                        f"lists {len(m.labels)} labels: audit a model of more classes with `audit run`")
    if epsilon is not None and not epsilon > 0:
        raise DataError(f"--epsilon must be positive, got {epsilon}")
    ev = load_eval_set(bundle, Path(data_path), None, grid.seed)
    check_stats_out(Path(out_path), [Path(data_path), manifest_path], bundle.path)  # before the model loads
    groups = {}
    for name, attr in m.protected_attributes.items():
        if attr.column not in ev.frame.columns:
            raise DataError(f"{data_path}: no column '{attr.column}' for the protected attribute '{name}' "
                            "(a silo's statistics must cover every attribute so that silos merge)")
        groups[name] = group_series(ev.frame, name, attr, data_path).to_numpy(dtype=object)
    bundle.load()
    pos = m.labels.index(m.positive_label)
    preds = score_texts(bundle.model, bundle.tokenizer, ev.texts, max_length=m.max_length, positive_index=pos,
                        batch_size=batch_size, labels=ev.y, embeddings=False, progress=progress)
    if intersections is None:
        intersections = [list(c) for c in itertools.combinations(m.protected_attributes, 2)]
    try:
        stats = AuditStats.empty(grid, known_groups(m), intersections)
    except ValueError as exc:
        raise DataError(str(exc)) from None
    row_ids, notes = ev.row_ids, []
    if not (m.id_column and m.id_column in ev.frame.columns):
        # row numbers would repeat across silos and give rows of different silos the same bootstrap weights
        row_ids = [f"{ev.sha256[:16]}:{r}" for r in ev.row_ids]
        notes.append("no id column: rows are named by the data file's hash and their row number, so this silo's "
                     "bootstrap weights do not repeat another's, but differ from those of the same rows in another file")
    stats.update(row_ids, preds.score, (ev.y == pos).astype(int), groups)
    collected: list[str] = []
    missing: dict[str, str] = {}
    if policy is not None:
        collected = collect_checks(policy, stats, bundle, ev, preds, row_ids, batch_size, progress,
                                   skip={"shap"} if epsilon is not None else set(), missing=missing)
    privacy = None
    if epsilon is not None:
        seed = noise_seed if noise_seed is not None else secrets.randbits(64)
        privacy = add_noise(stats, float(epsilon), np.random.default_rng(seed))
    data = {"rows": len(ev.texts) if privacy is None else None,
            "sha256": sha256_file(Path(data_path)) if privacy is None else None, "notes": notes,
            **({"checks": collected} if policy is not None else {}),
            **({"not_collected": missing} if missing else {})}  # check id -> why this silo collected nothing
    doc = stats_document(stats, model_identity(bundle), privacy, data)
    write_json_atomic(Path(out_path), doc)
    return doc


def collect_checks(policy, stats: AuditStats, bundle, ev, preds, row_ids, batch_size: int, progress: bool,
                   skip: set[str], missing: dict[str, str] | None = None) -> list[str]:
    """Add to `stats.silo` the statistics of every check the policy rules whose statistics form collects them
    in the silo (the registry: `stats.collect`), computed on a context like `audit run`'s (the same seed,
    replicates and row-id weights, so one silo's numbers are the in-memory ones). Kinds in `skip` are left out
    (SHAP under noise: audit/noise.py). Returns the checks whose statistics were collected; a `collect` that
    returns a reason instead (this silo has no training rows, say) puts it in `missing` by check id."""
    from audit.checks import all_checks
    from audit.context import CheckContext
    from audit.from_stats import check_params
    from audit.runner import load_other

    specs = all_checks()
    params = check_params(policy, specs)
    m = bundle.manifest
    pos = m.labels.index(m.positive_label)
    ctx = CheckContext(y_true=(ev.y == pos).astype(int), score=preds.score, threshold=policy.decision_threshold,
                       confidence=policy.confidence, replicates=stats.grid.replicates, seed=stats.grid.seed,
                       min_group_size=policy.min_group_size, positive_label=m.positive_label,
                       negative_label=m.negative_label, frame=ev.frame, texts=ev.texts, manifest=m, bundle=bundle,
                       loader=lambda name: load_other(name, bundle, batch_size, progress),
                       predictions=preds, progress=progress, eval_path=str(ev.path), row_ids=list(row_ids))
    done = []
    for cid in policy.checks:
        collect = getattr(specs[cid].stats, "collect", None)
        if collect is None:
            continue
        got = collect(ctx, cid, **params[cid])
        if isinstance(got, str):  # nothing to collect in this silo, and why (no training rows here, say)
            if missing is not None:
                missing[cid] = got
            continue
        got = [] if got is None else got if isinstance(got, list) else [got]
        got = [st for st in got if st.kind not in skip]
        for st in got:
            have = stats.silo.get(st.key)
            if have is None:
                stats.silo[st.key] = st
            else:  # another rule of the same step: its own tables (a prohibited-terms rule's share table) join
                for k, v in st.tables.items():
                    have.tables.setdefault(k, v)
        if got:
            done.append(cid)
    return done
