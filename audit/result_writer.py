"""The one result writer: result.json of every kind of run (`audit run` in memory, a streamed prediction log,
`audit merge` of silos' statistics) is assembled here, from one typed value (`RunResult`), judged and written to
its run folder by `finish`. The kinds of run differ only in what they put in the sections: result.json lists
`schema_version, tool, run, verdict, policy, model, data, inputs, environment, scoring, measurements, findings,
warnings` in that order, then the run's own sections (`baseline`, `links`; `federated`/`streaming`, `statistics`).

Also here: the run folder's name and checks (`check_out`, `default_out`) and the sections every kind of run
shares (`result_head`, `verdict_section`, `policy_section`, `manifest_section`, `statistics_section`).
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from audit import __version__
from audit.from_stats import NOT_MEASURABLE
from audit.result import SCHEMA_VERSION, Measurement, Status


@dataclass
class RunOutcome:
    result: dict[str, Any]
    out_dir: Path
    exit_code: int


@dataclass
class RunResult:
    """What one run hands the writer: the measurements to judge and every section of result.json it fills."""

    started: dt.datetime
    t0: float  # time.perf_counter() at the start: the run's duration
    command: list[str]
    policy: Any  # audit.policy.Policy
    replicates: int | None  # bootstrap replicates behind the intervals (the policy's, or the statistics')
    model: dict[str, Any]
    data: dict[str, Any]
    inputs: list[dict[str, Any]]
    scoring: dict[str, Any]
    measurements: dict[str, Measurement]
    warnings: list[str]
    timings: dict[str, Any] = field(default_factory=dict)
    sections: dict[str, Any] = field(default_factory=dict)  # after `warnings`, in this order
    strict: bool = False
    baseline: dict[str, Any] | None = None  # a baseline run's measurements, for rules that compare
    noised_epsilons: list[float] | None = None  # ε of each noised silo: findings on noised counts say so


def judged(run: RunResult):
    """(findings, verdict, exit code) of the run's measurements under its policy."""
    from audit.checks import all_checks
    from audit.judge import exit_code, verdict
    from audit.judge import judge as judge_all

    findings = judge_all(run.policy, all_checks(), run.measurements, today=run.started.date(),
                         baseline=run.baseline)
    if run.noised_epsilons:
        from audit.noise import mark_noised

        mark_noised(findings, run.measurements, run.noised_epsilons)
    v = verdict(findings, run.policy)
    return findings, v, exit_code(v, findings, run.strict)


def build_result(run: RunResult, findings, v, code: int) -> dict[str, Any]:
    """result.json of a judged run."""
    from audit.provenance import environment

    finished = dt.datetime.now(dt.timezone.utc)
    return {
        **result_head(run.started, finished, run.t0, run.command, run.policy.budget.seed, run.timings),
        "verdict": verdict_section(v, code, findings, run.strict),
        "policy": policy_section(run.policy, run.replicates),
        "model": run.model,
        "data": run.data,
        "inputs": run.inputs,
        "environment": environment(),
        "scoring": run.scoring,
        "measurements": {cid: m.to_dict() for cid, m in run.measurements.items()},
        "findings": [f.to_dict() for f in findings],
        "warnings": list(run.warnings),
        **run.sections,
    }


def finish(run: RunResult, out, *, predictions: str | None = None, template_dirs=None,
           sign_key: Path | None = None, attachments: dict | None = None) -> RunOutcome:
    """Judge the run, build its result.json and write the run folder (`out`: the Target `check_out` returned)."""
    findings, v, code = judged(run)
    result = build_result(run, findings, v, code)
    folder = record_run(out, result, predictions, template_dirs=template_dirs, sign_key=sign_key, extra=attachments)
    return RunOutcome(result, folder, code)


# ---------------------------------------------------------------- the run folder


def run_slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:60] or "model"


def default_out(report_root: Path, name: str, started: dt.datetime) -> Path:
    """`reports/<model>-<time>-<random>`: two runs started in the same second never share a folder (and the
    publication, holding the ledger lock, picks another suffix if one is taken all the same)."""
    return Path(report_root) / f"{run_slug(name)}-{started.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"


def check_out(out_dir, report_root: Path, name: str, started: dt.datetime, model_dir, inputs):
    """The run's output folder, checked before any work (audit.publish.check_out_dir): an explicit `--out` or
    the default name."""
    from audit.publish import check_out_dir

    out = Path(out_dir) if out_dir else default_out(report_root, name, started)
    return check_out_dir(out, inputs=inputs, model_dir=model_dir, unique=not out_dir)


def record_run(out, result: dict[str, Any], predictions: str | None, *, template_dirs=None,
               sign_key: Path | None = None, extra: dict | None = None) -> Path:
    """Write the run folder and append the run to the ledger of the folder it sits in, as one step (see
    audit.publish). `out`: a path, or the Target that `check_out` returned before the run."""
    from audit.render.outputs import write_run

    return write_run(out, result, predictions, template_dirs=template_dirs, sign_key=sign_key, extra=extra,
                     record=True)


# ---------------------------------------------------------------- result.json sections every kind of run shares


def result_head(started: dt.datetime, finished: dt.datetime, t0: float, command: list[str], seed: int,
                timings: dict[str, Any]) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "audit", "version": __version__},
        "run": {"id": f"{started.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}",
                "started": started.isoformat(timespec="seconds"), "finished": finished.isoformat(timespec="seconds"),
                "duration_s": round(time.perf_counter() - t0, 2), "timings": timings, "command": command,
                "seed": seed},
    }


def verdict_section(v, code: int, findings, strict: bool) -> dict[str, Any]:
    counts = {s.value: sum(f.status == s for f in findings) for s in Status if any(f.status == s for f in findings)}
    return {"status": v.value, "exit_code": code, "counts": counts, "strict": strict,
            "blocking_failures": [f.check_id for f in findings
                                  if f.blocking and f.status in (Status.FAIL, Status.ERROR)]}


def policy_section(policy, replicates: int | None) -> dict[str, Any]:
    return {"name": policy.policy, "version": policy.version, "description": policy.description,
            "path": str(policy.source), "sha256": policy.sha256, "confidence": policy.confidence,
            "inconclusive": policy.inconclusive, "min_group_size": policy.min_group_size,
            "decision_threshold": policy.decision_threshold, "replicates": replicates,
            "scope": [c.to_dict() for c in policy.scope_cites],
            "not_covered": [n.to_dict() for n in policy.not_covered_items]}


def manifest_section(m) -> dict[str, Any]:
    """What result.json's `model` says from the manifest alone (the caller adds the folder, hashes, size)."""
    return {"name": m.name, "labels": m.labels, "positive_label": m.positive_label,
            "negative_label": m.negative_label, "text": m.text.model_dump(exclude_none=True),
            "label_column": m.label_column, "max_length": m.max_length, "trained": m.created,
            "training": {k: v for k, v in m.training.items() if k != "loss_curve"},
            "loss_curve": m.training.get("loss_curve", []),
            "protected_attributes": {k: a.model_dump(exclude_none=True) for k, a in m.protected_attributes.items()},
            "training_data": m.data.source.model_dump() if m.data else None,
            "description": m.data.description if m.data else "", "card": m.card.model_dump(),
            # the eval file `audit init` recorded for a model that `audit train` did not make
            **({"eval_data": m.eval_data.model_dump()} if m.eval_data is not None else {})}


STATS_SCORING = "none: scores read from statistics or a prediction log"


def stats_scoring_section(rows: int | None) -> dict[str, Any]:
    """result.json's `scoring` of a run judged from statistics: nothing was scored."""
    return {"rows": rows, "device": STATS_SCORING, "precision": "", "truncated": 0}



def statistics_section(kind: str, sources: list[dict[str, Any]], stats,
                       measurements: dict[str, Measurement], *, reference=None,
                       reference_sources: list[dict[str, Any]] | None = None,
                       extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """result.json's `statistics` section of a run judged from statistics (`kind`: "merge" or "predictions-log"):
    where the counts came from (per silo or log: name, rows, sha256, noise), what they hold (the grid, the
    attributes and intersections), what noise was added and how intervals carry it, which measurements came from
    noised counts, the approximations of binned statistics, and the checks that needed rows. Counts only."""
    point = stats.scores.counts.point
    rows, positives = max(float(point.sum()), 0.0), max(float(point[1].sum()), 0.0)  # summed, then clipped
    noised = [s for s in sources if s.get("noised")]
    scales = [float(s["noise_scale"]) for s in noised]
    noise = None
    if noised:
        noise = {"mechanism": "laplace", "noised_sources": len(noised), "sources": len(sources),
                 "epsilons": [float(s["epsilon"]) for s in noised], "scales": scales,
                 "per_count_sd": float(np.sqrt(sum(2 * b * b for b in scales))),
                 "rates": "computed from sums of noised counts, clipped at 0 after summing",
                 "intervals": ("each bootstrap replicate is a Poisson resample of the noised counts plus a fresh "
                               "draw of every noised source's Laplace noise, so the intervals are widened by the "
                               "noise as well as by sampling"),
                 "replicates_released": False}
    auc = measurements.get("performance.roc_auc")
    ks = measurements.get("drift.prediction_ks")
    binned = (auc.details.get("binned") or {}) if auc is not None else {}
    ref = None
    if reference is not None:
        ref = {"sources": list(reference_sources or []),
               "rows": int(round(max(float(reference.scores.counts.point.sum()), 0.0)))}
    return {
        "kind": kind,
        "rows": int(round(rows)),
        "positives": int(round(positives)),
        "negatives": int(round(rows)) - int(round(positives)),
        "rows_exact": not noised,
        "sources": sources,
        "grid": stats.grid.to_dict(),
        "attributes": list(stats.attributes),
        "intersections": stats.intersection_names(),
        "noise": noise,
        "noised_measurements": sorted(cid for cid, m in measurements.items() if "noise" in m.details),
        "roc_auc_binning": ({"score_bins": binned.get("score_bins"), "max_abs_error": binned.get("max_abs_error")}
                            if auc is not None and auc.value is not None else None),
        "ks_bounds": ({"lower": ks.value, "upper": ks.details.get("ks_upper_bound")}
                      if ks is not None and ks.value is not None else None),
        "reference": ref,
        "needs_rows": sorted(cid for cid, m in measurements.items()
                             if (m.inconclusive or "").startswith(NOT_MEASURABLE)),
        **(extra or {}),
    }
