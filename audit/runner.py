"""The one place that knows the whole flow of `audit run`.

policy → model folder (checked, hashed) → eval data (from the manifest's split, or --data) → score once →
checks → judge → verdict → outputs. Everything that can be refused is refused before torch is imported.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from audit.data import find_source as _find_source
from audit.data import (  # noqa: F401  (other_rows, safe_cell: read from here too)
    group_series,
    label_indices,
    make_texts,
    other_rows,
    read_table,
    safe_cell,
    sha256_file,
)
from audit.errors import DataError, UsageError
from audit.from_stats import under_policy_statistics
from audit.manifest import Manifest
from audit.model import ModelBundle, open_bundle
from audit.policy import Policy, load_policy
from audit.result import Measurement
from audit.result_writer import (  # noqa: F401  (RunOutcome, default_out, policy_section: read from here too)
    RunOutcome,
    RunResult,
    check_out,
    default_out,
    finish,
    manifest_section,
    policy_section,
)

if TYPE_CHECKING:
    from audit.engines import Engine


@dataclass
class EvalSet:
    path: Path
    frame: Any
    texts: list[str]
    y: np.ndarray  # label indices into manifest.labels
    source: str  # how the rows were chosen
    row_ids: list[str]
    sha256: str
    notes: list[str]
    training_rows: dict[str, Any] | None = None  # eval rows found in the training split (see training_overlap)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def load_eval_set(bundle: ModelBundle, data_path: Path | None, max_rows: int | None, seed: int,
                  training_rows: str = "warn") -> EvalSet:
    """The eval rows. With --data, rows of the model's training split in it are found (training_overlap) and,
    per `training_rows` (the policy's training_rows_in_eval; see audit.overlap), kept with a warning, left
    out, or refused."""
    m: Manifest = bundle.manifest
    notes: list[str] = []
    recorded = data_path is None and m.data is None and m.eval_data is not None
    if recorded:  # the eval file `audit init` recorded
        try:
            data_path = _find_source(m.eval_data.source.path, bundle.path)
        except DataError:
            raise DataError(f"{m.eval_data.source.path}: eval data file from the manifest (eval_data) not found; "
                            "give --data FILE") from None
        if sha256_file(data_path) != m.eval_data.source.sha256:
            raise DataError(f"{data_path}: eval data file changed since 'audit init' recorded it (sha256 differs "
                            "from the manifest's eval_data); give --data FILE to audit other data")
    if data_path is None:
        if m.data is None:
            raise DataError(f"{bundle.path}: the manifest records no training data; give --data FILE")
        path = _find_source(m.data.source.path, bundle.path)
        digest = sha256_file(path)
        if digest != m.data.source.sha256:
            raise DataError(f"{path}: data file changed since the model was trained (sha256 {digest[:12]}…, "
                            f"manifest {m.data.source.sha256[:12]}…); give --data FILE to audit other data")
        frame = read_table(path)
        index = m.data.split.eval_index
        if index and max(index) >= len(frame):
            raise DataError(f"{path}: the manifest's eval split names row {max(index)}, the file has {len(frame)}")
        frame = frame.iloc[index]
        source = f"held-out split of the training file ({m.data.split.eval_rows} rows, seed {m.data.split.seed})"
    else:
        path = Path(data_path)
        frame = read_table(path)
        digest = sha256_file(path)
        source = ("eval data file recorded in the manifest (all rows)" if recorded else "--data file (all rows)")
    if max_rows is not None and len(frame) > max_rows:
        keep = np.sort(np.random.default_rng(seed).choice(len(frame), size=max_rows, replace=False))
        frame = frame.iloc[keep]
        notes.append(f"The eval set was capped at {max_rows:,} rows by the policy's budget (a seeded random sample).")
    texts = make_texts(frame, m.text, path)
    overlap = None
    if data_path is not None:
        from audit.overlap import apply_policy

        frame, texts, overlap = apply_policy(bundle, path, digest, frame, texts, training_rows, notes)
    y = label_indices(frame, m.label_column, m.labels, path)
    for name, attr in m.protected_attributes.items():
        if attr.column in frame.columns:
            group_series(frame, name, attr, path)  # a bad value fails now, before the model loads
        else:
            notes.append(f"The eval data has no column '{attr.column}' for the protected attribute '{name}': "
                         "checks by that attribute cannot run.")
    if m.id_column and m.id_column in frame.columns:
        row_ids = frame[m.id_column].astype(str).tolist()
    else:
        row_ids = [str(i) for i in frame.index]
        if m.id_column:
            notes.append(f"The eval data has no id column '{m.id_column}': rows are named by their row number.")
    if m.text.template:
        notes.append("The text of every row is generated from a template over tabular columns; the model never "
                     "saw free text written by applicants.")
    return EvalSet(path, frame, texts, y, source, row_ids, digest, notes, overlap)




def load_other(name: str, bundle: ModelBundle, batch_size: int, progress: bool,
               paths: dict[str, Path] | None = None, engine: Engine | None = None, embeddings: bool = True):
    """Load and score another data set of the run (see other_rows), once, with embeddings from the same pass when
    a check of the run reads them (needs_embeddings)."""
    from audit.context import Scored
    from audit.engines import LocalEngine

    got = other_rows(name, bundle, paths)
    if got is None:
        return None
    frame, texts, y, path = got
    preds = (engine or LocalEngine()).score(bundle, texts, batch_size=batch_size, labels=y, embeddings=embeddings,
                                            progress=progress, desc=f"scoring {name} rows")
    return Scored(name, frame, texts, y, preds, str(path))


# The families whose checks read another data set of the run (privacy: the training rows' losses; drift: the
# training split as reference, the --current set): a distributed engine scores those sets in the eval set's pass.
OTHER_SETS = {"train": {"privacy", "drift"}, "current": {"drift"}}


def score_all(engine: Engine, bundle: ModelBundle, policy: Policy, ev: EvalSet, request, others: dict[str, Path],
              batch_size: int, progress: bool, embeddings: bool = True):
    """The eval set's Predictions, and the other sets the policy's families read, scored on `engine` in ONE pass
    (one actor pool, one model load per worker for the whole run) when the engine is distributed
    (audit.engines.Engine); the local engine scores the eval set now and the others when a check first asks."""
    from audit.checks import all_checks
    from audit.context import Scored
    from audit.engines import ScoringJob

    if not engine.distributed:
        preds = engine.score(bundle, ev.texts, batch_size=batch_size, labels=ev.y, embeddings=embeddings,
                             progress=progress, **({"stats": request} if request else {}))
        return preds, {}
    specs = all_checks()
    families = {specs[cid].family for cid in policy.checks}
    jobs = {"eval": ScoringJob(ev.texts, ev.y, embeddings, request)}
    rows = {}
    for name, used_by in OTHER_SETS.items():
        if families & used_by:
            got = other_rows(name, bundle, others)
            if got is not None:
                rows[name] = got
                jobs[name] = ScoringJob(got[1], got[2], embeddings)
    scored = engine.score_many(bundle, jobs, batch_size=batch_size, progress=progress)
    sets = {name: Scored(name, frame, texts, y, scored[name], str(path))
            for name, (frame, texts, y, path) in rows.items()}
    return scored["eval"], sets


# The costly steps that run the model over many perturbed texts (SHAP's masked texts, the re-scoring checks). Their
# activations are the run's largest transient memory, so their checks run first, before other families import
# evidently and scikit-learn (about 130 MiB resident from then on): on the reference job of issue 18 this lowered
# the peak RSS (benchmarks/README.md). Each check is seeded on its own, so the order changes no number
# (tests/test_embeddings_plan.py runs a policy both ways); the measurements keep the registry's order.
MODEL_FIRST = frozenset({"shap", "counterfactual", "robustness", "adverse_action"})


def planned(policy: Policy, everything: bool = False, multiclass: bool = False) -> list[str]:
    """The checks `measure` runs, in the registry's order: those the policy rules and, with `everything`, the
    other checks of its families (a costly one only when a rule pays for its step; a binary-only one not on a
    model of more than two classes)."""
    from audit.checks import all_checks

    specs = all_checks()
    families = {specs[cid].family for cid in policy.checks}
    paid = {specs[cid].cost for cid in policy.checks if specs[cid].cost}
    return [cid for cid, spec in specs.items()
            if cid in policy.checks or (everything and spec.family in families
                                        and not (spec.cost and spec.cost not in paid)
                                        and not (multiclass and spec.classes == "binary"))]


def needs_embeddings(policy: Policy, everything: bool = False, multiclass: bool = False) -> bool:
    """Whether a check the run will measure reads the model's embeddings (CheckSpec.embeddings)."""
    from audit.checks import all_checks

    specs = all_checks()
    return any(specs[cid].embeddings for cid in planned(policy, everything, multiclass))


@under_policy_statistics  # the policy's run-wide `statistics:` rules for every interval (audit.stats)
def measure(policy: Policy, ctx, precomputed: dict[str, Measurement] | None = None,
            everything: bool = False) -> dict[str, Measurement]:
    """Run the checks the policy rules; a check that raises becomes an ERROR measurement. With `everything`
    (`audit run --all-checks`), also the other checks of the families the policy uses, as context that is shown
    and not judged (a costly step still runs only when a rule pays for it). `precomputed` measurements (from
    merged statistics) are taken as they are instead of running the check."""
    from audit.checks import all_checks
    from audit.from_stats import check_params
    from audit.heap import release
    from audit.progress import step

    specs = all_checks()
    # Checks that share a costly step share its budget: parameters given on any rule of that cost (SHAP rows,
    # max_evals, ...) apply to all of them unless a rule sets its own, so the step runs once, not per rule.
    in_effect = check_params(policy, specs)
    out: dict[str, Measurement] = {}
    todo = planned(policy, everything, bool(getattr(ctx, "multiclass", False)))
    for cid in sorted(todo, key=lambda c: specs[c].cost not in MODEL_FIRST):
        spec = specs[cid]
        if precomputed and cid in precomputed:
            out[cid] = precomputed[cid]
            continue
        params = in_effect[cid]
        if getattr(ctx, "multiclass", False) and spec.classes == "binary":
            out[cid] = Measurement(cid, None, n=len(ctx.y_true), inconclusive=(
                f"not measured: this check reads a binary model's decision threshold, and this model has "
                f"{ctx.classes.k} classes; it is not yet built for more than two classes"))
            continue
        started = time.perf_counter()
        try:
            with step(f"check {cid}", ctx.progress):  # a line in a terminal if it takes > 1 s
                out[cid] = spec.fn(ctx, **params)
        except Exception as exc:  # one broken check never aborts the audit
            out[cid] = Measurement(cid, None, error=f"{type(exc).__name__}: {exc}",
                                   details={"traceback": traceback.format_exc(limit=3)})
        ctx.check_seconds[cid] = round(time.perf_counter() - started, 3)
        release()  # what the check freed goes back to the system before the next one allocates (audit.heap)
    # the registry's order, whatever order they ran in
    ran = dict(ctx.check_seconds)
    ctx.check_seconds.clear()
    ctx.check_seconds.update({cid: ran[cid] for cid in specs if cid in ran})
    ctx.check_seconds.update(ran)
    return {cid: out[cid] for cid in specs if cid in out}


def stats_request(policy: Policy, ev: EvalSet, m: Manifest, y_pos: np.ndarray):
    """What the engine needs to compute the eval set's mergeable statistics alongside its scores; None when the
    rows have no unique ids (the bootstrap weights are then drawn by position, which statistics cannot repeat)."""
    from audit.engines import StatsRequest
    from audit.mergeable import Grid

    if len(set(ev.row_ids)) != len(ev.row_ids):
        return None
    ece = policy.checks["performance.ece"].params.get("bins", 10) if "performance.ece" in policy.checks else 10
    groups = {name: group_series(ev.frame, name, attr, ev.path).to_numpy(dtype=object)
              for name, attr in m.protected_attributes.items() if attr.column in ev.frame.columns}
    known = {name: [str(g) for g in m.protected_attributes[name].group_names()] for name in groups}
    grid = Grid(replicates=policy.budget.bootstrap, seed=policy.budget.seed, ece_bins=int(ece))
    return StatsRequest(grid, known, list(ev.row_ids), y_pos, groups)


def stats_measurements(policy: Policy, stats, m: Manifest) -> dict[str, Measurement]:
    """The measurements of the merged statistics that equal the in-memory ones: those of checks whose statistics
    form is "exact" in the registry (audit.checks; counts at a threshold on the grid, calibration sums; tested
    in tests/test_engines.py). Binned forms (ROC-AUC and average precision from a histogram, the per-group
    ROC-AUC that every fairness check lists) are computed, like every check that needs rows, from the per-row
    scores the driver holds."""
    from audit.checks import all_checks
    from audit.from_stats import measure_stats
    from audit.mergeable import threshold_index

    g = stats.grid
    if threshold_index(policy.decision_threshold, g.threshold_bins) is None or \
            threshold_index(policy.decision_threshold, g.score_bins) is None:
        return {}
    specs = all_checks()
    out = {}
    for cid, meas in measure_stats(policy, stats, m).items():
        params = {**specs[cid].params, **(policy.checks[cid].params if cid in policy.checks else {})}
        if specs[cid].stats_form == "exact" and meas.error is None and not params.get("intersections"):
            out[cid] = meas
    return out


def explained_labels(policy: Policy, m: Manifest) -> None:
    """A rule's `explain: <label>` (explainability) names a label of the model: refused (PolicyError, with the
    rule's line) before anything loads, rather than an ERROR of every SHAP check after the model has scored."""
    from audit.checks.explainability import EXPLAIN
    from audit.errors import PolicyError
    from audit.yamlsrc import load_yaml

    named = {"explain": lambda v: v not in EXPLAIN, "label": lambda v: v != "", "outcome": lambda v: v != ""}
    for cid, rule in policy.checks.items():
        for key, may_be_label in named.items():  # keys whose value may be a label of the model
            what = rule.params.get(key)
            if key == "label" and cid != "performance.class_f1":
                continue  # other checks' `label` is positive|negative, validated at load
            if isinstance(what, str) and may_be_label(what) and what not in m.labels:
                _, loc = load_yaml(Path(policy.source), PolicyError, what="policy")
                also = f", or {', '.join(EXPLAIN)}" if key == "explain" else ""
                raise PolicyError(f"{loc.where(('checks', cid, key))}: checks.{cid}.{key}: {what!r} is not a label "
                                  f"of the model (its labels: {', '.join(map(repr, m.labels))}); use one of them{also}")


def predictions_csv(ev: EvalSet, preds, labels: list[str], threshold: float, classes=None) -> str:
    """One line per eval row: its id, the score, the decided label, the true label. For a model of more than two
    classes, `score` is the probability of a favourable class, and one `p(<label>)` column per class follows."""
    import csv
    import io

    from audit.pii import redact

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    if classes is not None and classes.k > 2:
        w.writerow(["row_id", "score", "predicted_label", "true_label",
                    *(safe_cell(f"p({label})") for label in labels)])
        score, pred = classes.favourable_score(preds.probs), classes.pred
        for rid, s, p, t, row in zip(ev.row_ids, score, pred, ev.y, preds.probs):
            w.writerow([safe_cell(redact(rid)), repr(float(s)), safe_cell(labels[p]), safe_cell(labels[t]),
                        *(repr(float(v)) for v in row)])
        return buf.getvalue()
    w.writerow(["row_id", "score", "predicted_label", "true_label"])
    positive, negative = labels[preds.positive_index], labels[1 - preds.positive_index]
    for rid, s, t in zip(ev.row_ids, preds.score, ev.y):
        w.writerow([safe_cell(redact(rid)), repr(float(s)), safe_cell(positive if s >= threshold else negative),
                    safe_cell(labels[t])])  # every cell from data or labels goes through the neutralizer
    return buf.getvalue()




def run_audit(model_dir: str | Path, policy_path: str | Path, *, data_path: str | Path | None = None,
              out_dir: str | Path | None = None, current_path: str | Path | None = None, strict: bool = False, progress: bool = True,
              template_dirs: list[Path] | None = None, manifest: Manifest | None = None,
              manifest_path: Path | None = None, batch_size: int | None = None,
              command: list[str] | None = None, report_root: Path = Path("reports"),
              sign_key: Path | None = None, baseline_dir: Path | None = None,
              notes: list[str] | None = None, engine: str | Any = "local",
              address: str | None = None, precision: str = "auto", every_check: bool = False,
              report_url: str | None = None) -> RunOutcome:
    from audit.context import CheckContext
    from audit.engines import make_engine

    started = _now()
    t0 = time.perf_counter()
    engine = make_engine(engine, address)  # a missing Ray or a misplaced --address fails before anything loads
    from audit.precision import PRECISIONS

    if precision not in PRECISIONS:
        raise UsageError(f"--precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    if precision == "bf16" and engine.distributed:
        raise UsageError(f"--precision {precision} scores in this process; it does not combine with --engine "
                         f"{engine.name}")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                   or not 1 <= batch_size <= 4096):
        raise UsageError(f"--batch-size must be a whole number from 1 to 4096, got {batch_size!r}")
    policy = load_policy(policy_path)
    bundle = open_bundle(model_dir, manifest=manifest, manifest_path=manifest_path)
    m = bundle.manifest
    from audit.classes import favourable_classes

    favourable = favourable_classes(policy, m)  # a label the model lacks is refused before anything loads
    explained_labels(policy, m)
    if len(m.labels) > 2 and engine.distributed:
        raise UsageError(f"--engine {engine.name}: distributed runs score binary classifiers; this model has "
                         f"{len(m.labels)} labels: run it with the local engine")
    ev = load_eval_set(bundle, Path(data_path) if data_path else None, policy.budget.max_rows, policy.budget.seed,
                       policy.training_rows_in_eval)
    others: dict[str, Path] = {}
    if current_path is not None:
        # check the current set before the model loads: a bad file fails fast
        current = read_table(current_path)
        make_texts(current, m.text, current_path)
        others["current"] = Path(current_path)
    out = check_out(out_dir, report_root, m.name, started, bundle.path,
                    [ev.path, policy.source, current_path, manifest_path, sign_key, getattr(bundle, "base", None),
                     *(template_dirs or [])])

    baseline = None
    if baseline_dir is not None:
        from audit.render.outputs import load_result

        bpath = Path(baseline_dir)
        baseline = load_result(bpath / "result.json" if bpath.is_dir() else bpath)
    if sign_key is not None:
        from audit.ledger import _load_private

        _load_private(Path(sign_key))  # a bad key fails before the model loads
    bundle.load()
    pos = m.labels.index(m.positive_label)
    from audit.precision import resolve

    plan = resolve(precision)  # which precision each stage computes in, and why (result.json: scoring.precision_plan)
    precision = plan.scoring.precision
    full_precision = bundle.model
    if precision != "fp32":
        # opt-in: every pass of the run (eval, other sets, SHAP, swaps) goes through the reduced-precision model
        from audit.scoring import with_precision

        bundle.model = with_precision(bundle.model, precision)
    y_pos = np.isin(ev.y, favourable).astype(int)  # the favourable outcome's view (audit.classes)
    # a distributed engine also computes the eval set's statistics on its workers (bootstrap included)
    request = stats_request(policy, ev, m, y_pos) if engine.distributed else None
    # embeddings (the whole last layer and every layer's hidden states) only when a check of the run reads them
    embeddings = needs_embeddings(policy, every_check, len(m.labels) > 2)
    preds, scored_sets = score_all(engine, bundle, policy, ev, request, others,
                                   batch_size if batch_size is not None else policy.budget.batch_size, progress,
                                   embeddings)
    if len(preds.score) != len(ev.texts) or not np.isfinite(preds.score).all():
        raise DataError(f"{ev.path}: scoring returned {len(preds.score)} finite scores for {len(ev.texts)} rows; "
                        "refusing to judge scores that were not computed")
    from_stats = stats_measurements(policy, preds.stats, m) if preds.stats is not None else {}
    precision_info = None
    if precision != "fp32":
        # a seeded sample of the eval rows is scored again in fp32, so the report states what the shortcut costs
        from audit.scoring import precision_check

        precision_info = precision_check(full_precision, bundle.tokenizer, ev.texts, preds.score,
                                         max_length=m.max_length, positive_index=pos, seed=policy.budget.seed,
                                         threshold=policy.decision_threshold)
        ev.notes.append(
            f"Scored in {precision} (opt-in --precision), not in the fp32 the model was trained in: on "
            f"{precision_info['rows']} eval rows scored both ways the largest |score difference| was "
            f"{precision_info['max_abs_score_diff']:.2g} and {precision_info['flipped_decisions']} "
            f"decision(s) at the threshold {policy.decision_threshold:g} changed.")
    from audit.classes import Classes

    classes = Classes(list(m.labels), np.asarray(ev.y), preds.probs, favourable, policy.decision_threshold)
    if classes.k > 2:
        ev.notes.append(f"The model has {classes.k} classes and decides its most probable class; the favourable "
                        f"outcome that fairness and decision checks read is {classes.describe()}"
                        + ("" if policy.favourable else " (the manifest's positive_label; the policy's "
                           "`favourable` can name a set of classes)") + ".")
        if "decision_threshold" in policy.model_fields_set:
            ev.notes.append(f"The policy's decision_threshold ({policy.decision_threshold:g}) applies to binary "
                            "models only; this model's decisions are its most probable classes.")
    ctx = CheckContext(y_true=y_pos, score=classes.favourable_score(preds.probs), threshold=policy.decision_threshold,
                       confidence=policy.confidence, replicates=policy.budget.bootstrap, seed=policy.budget.seed,
                       min_group_size=policy.min_group_size, positive_label=m.positive_label,
                       negative_label=m.negative_label, frame=ev.frame, texts=ev.texts, manifest=m, bundle=bundle,
                       loader=lambda name: load_other(name, bundle, batch_size if batch_size is not None else
                                                      policy.budget.batch_size, progress, others,
                                                      engine, embeddings),
                       predictions=preds, progress=progress, eval_path=str(ev.path), attachments={},
                       row_ids=ev.row_ids, datasets=dict(scored_sets), precision=plan, classes=classes)
    measurements = measure(policy, ctx, from_stats, everything=every_check)
    from audit.shapstep import fidelity_of

    plan_doc = plan.to_dict()
    if fidelity_of(ctx.shared.explanations):  # explanations in bf16: their agreement with fp32, on every such run
        plan_doc["stages"]["explanations"]["fidelity"] = fidelity_of(ctx.shared.explanations)
    engine.close()
    if preds.truncated:
        ev.notes.append(f"{preds.truncated} of {len(ev.texts)} texts were longer than the model's window "
                        f"({m.max_length} tokens) and were truncated.")
    inputs = bundle.inputs() + [
        {"role": "policy", "path": str(policy.source), "sha256": policy.sha256,
         "bytes": Path(policy.source).stat().st_size},
        {"role": "data", "path": str(ev.path), "sha256": ev.sha256, "bytes": ev.path.stat().st_size},
    ] + [{"role": f"data ({name})", "path": str(p), "sha256": sha256_file(p), "bytes": p.stat().st_size}
         for name, p in others.items()] + template_inputs(template_dirs)
    if baseline is not None:
        inputs.append({"role": "baseline", "path": str(baseline_dir), "sha256": baseline.get("run", {}).get("id", ""),
                       "bytes": 0})
    sections: dict[str, Any] = {}
    if baseline is not None:
        sections["baseline"] = {"path": str(baseline_dir), "run_id": baseline.get("run", {}).get("id"),
                                "verdict": baseline.get("verdict", {}).get("status")}
    if report_url:  # where the run folder will be published: summary.md links there (`--report-url`)
        sections["links"] = {"report_url": report_url}
    run = RunResult(
        started, t0, command or ["audit", "run", str(model_dir), "--policy", str(policy_path)], policy,
        policy.budget.bootstrap,
        model={"path": str(bundle.path), "name": m.name, "base_model": m.base_model.name if m.base_model else None,
               "base_model_sha256": m.base_model.sha256 if m.base_model else None,
               **manifest_section(m), "num_parameters": bundle.num_parameters},
        data={"eval": {"path": str(ev.path), "sha256": ev.sha256, "rows": len(ev.texts), "source": ev.source,
                       "positives": int(y_pos.sum()), "negatives": int(len(y_pos) - y_pos.sum()),
                       **({"training_rows": ev.training_rows} if ev.training_rows is not None else {}),
                       **({"favourable": classes.favourable_labels,
                           "classes": {label: int(n) for label, n in
                                       zip(m.labels, np.bincount(ev.y, minlength=classes.k))}}
                          if classes.k > 2 else {})},
              **{name: {"path": str(p), "sha256": sha256_file(p), "rows": len(ctx.datasets[name].texts),
                        "source": f"--{name} file"}
                 for name, p in others.items() if name in ctx.datasets}},
        inputs=inputs,
        scoring={**engine.describe(), "rows": len(ev.texts), "batch_size": preds.meta["batch_size"],
                 "max_length": m.max_length, "device": "cpu",
                 "embeddings": embeddings,  # kept by the scoring passes: a check of the run reads them
                 "precision": precision, "precision_plan": plan_doc, "truncated": preds.truncated,
                 **({"precision_check": precision_info} if precision_info else {}),
                 **({"statistics": {"partitions": preds.meta.get("stats_partitions"),
                                    "checks": sorted(c for c in from_stats if c in measurements)}}
                    if preds.stats is not None else {}),
                 "mean_tokens": round(float(preds.lengths.mean()), 1)},
        measurements=measurements, warnings=ev.notes + list(notes or []),
        timings={"scoring_s": round(preds.seconds, 3), "scoring_rows_per_s": round(preds.rows_per_s, 1),
                 "checks_s": ctx.check_seconds},
        sections=sections, strict=strict, baseline=baseline["measurements"] if baseline else None)
    return finish(run, out, predictions=predictions_csv(ev, preds, m.labels, policy.decision_threshold, classes),
                  template_dirs=template_dirs, sign_key=Path(sign_key) if sign_key else None,
                  attachments=ctx.attachments)


def template_inputs(template_dirs: list[Path] | None) -> list[dict[str, Any]]:
    """The report templates in effect (a user folder's override first), hashed as inputs of the run."""
    from audit.resources import templates_dir

    seen: dict[str, Path] = {}
    for folder in [*(template_dirs or []), templates_dir()]:
        for p in sorted(Path(folder).glob("*.html")):
            seen.setdefault(p.name, p)
    return [{"role": "template", "path": str(p), "sha256": sha256_file(p), "bytes": p.stat().st_size}
            for _, p in sorted(seen.items())]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)
