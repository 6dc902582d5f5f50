"""Audits from mergeable statistics: `audit stats` (inside a data silo), `audit merge` (anywhere), and the checks
that read statistics instead of rows (also used by `audit run --predictions`, audit/streaming.py).

A stats file (JSON, `format: audit-stats`) holds an `AuditStats` (audit/mergeable.py) and what is needed to refuse
a wrong merge: the model's hash, its labels and protected-attribute mapping, and the grid settings. It holds no
row, no text, no row id and no score of any single row. What it reveals is listed in README.md ("Federated
audit"): the number of rows, and per protected group the rows, the label base rate and the score histogram on the
threshold grid; the same per group of each intersection of attributes carried; the fine score histogram by label;
calibration sums; and the bootstrap replicate counts, which are the same kind of counts on random reweightings
of the rows (without noise, counts of small cells can single out a person who is known to be in the data).

Intersections. `audit stats` does not know the policy, so by default it carries every PAIR of the manifest's
protected attributes ("sex × age"), in the manifest's order; a streaming audit knows the policy and carries
exactly the intersections its fairness rules ask. A rule asking for an intersection the statistics do not carry
(a triple, or any for a file made without) is INCONCLUSIVE naming it; one asking for a carried intersection in
another order ("age × sex") is judged from the same table, its groups renamed. Files merge only when they carry
the same intersections.

Differential privacy (`audit stats --epsilon E`): the Laplace mechanism on the whole released vector. Adding or
removing one row changes it by at most L1 = 5 + A + I (A protected attributes, I intersections carried): 1 in the
(label, score bin) histogram; at most 1 + 1 + 1 + 1 in the calibration bin's rows, sum of labels, sum of scores
(scores are in [0, 1]) and the sum of squared errors; 1 in each attribute's table and 1 in each intersection's
table (the row's group cell, or its count of rows with no value). Every released number gets independent
Laplace(0, L1 / E) noise, which makes the whole file E-differentially private (Dwork et al. 2006; equivalently
E / L1 per table, each of sensitivity 1, composed sequentially, with parallel composition over the disjoint
cells inside a table). Each intersection carried thus costs noise: with A = 3 attributes, the 3 pairs raise L1
from 8 to 11, and every count's noise scale with it. Replicate counts are NOT released
under noise (one row's replicate counts have unbounded sensitivity); the merge draws them instead from the noised
counts: a cell's Poisson-bootstrap count is Poisson(its count) exactly, and the noise is drawn again per replicate,
so the intervals carry both the sampling and the noise variance. Not covered by E: the settings, the model hash,
and the group NAMES of an attribute without defined groups (raw values: which values occur is data-dependent; map
or bin such attributes in the manifest before a noised release).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

import numpy as np

from audit import __version__
from audit.errors import AuditError, DataError, OutputError
from audit.mergeable import (
    AuditStats,
    Grid,
    GroupConfusion,
    intersection_name,
)
from audit.result import Measurement

FORMAT = "audit-stats"
FORMAT_VERSION = 1


class StatsError(AuditError):
    """A stats file that cannot be read or merged."""


# ---------------------------------------------------------------- identity of what may merge


def model_identity(bundle) -> dict[str, Any]:
    """The model a stats file belongs to: the sha256 of its weights and config, its labels and attributes."""
    m = bundle.manifest
    files = {k: v for k, v in sorted(bundle.hashes.items()) if k.endswith(".safetensors") or k == "config.json"}
    digest = hashlib.sha256("".join(f"{k}:{v}\n" for k, v in files.items()).encode()).hexdigest()
    return {"name": m.name, "sha256": digest, "files": files, "labels": list(m.labels),
            "positive_label": m.positive_label, "label_column": m.label_column,
            "protected_attributes": {k: a.model_dump(exclude_none=True) for k, a in m.protected_attributes.items()},
            "manifest": {"text": m.text.model_dump(exclude_none=True), "max_length": m.max_length, "created": m.created,
                         "card": m.card.model_dump(),
                         "training": {k: v for k, v in m.training.items() if k != "loss_curve"},
                         "base_model": m.base_model.model_dump() if m.base_model else None}}


def known_groups(manifest) -> dict[str, list[str]]:
    return {name: [str(g) for g in a.group_names()] for name, a in manifest.protected_attributes.items()}


# ---------------------------------------------------------------- noise


def noise_sensitivity(stats: AuditStats) -> int:
    """L1 change of the released vector when one row is added or removed: 1 (score histogram) + 4 (calibration
    sums) + 1 per attribute table + 1 per intersection table."""
    return 5 + len(stats.attributes) + len(stats.intersections)


def add_noise(stats: AuditStats, epsilon: float, rng: np.random.Generator) -> dict[str, Any]:
    """Laplace noise on every released count and sum (in place); drops the replicate counts. Returns the record
    of what was done, for the stats file."""
    if not epsilon > 0:
        raise DataError(f"--epsilon must be positive, got {epsilon}")
    l1 = noise_sensitivity(stats)
    scale = l1 / float(epsilon)

    def noisy(a: np.ndarray) -> np.ndarray:
        return a + rng.laplace(0.0, scale, size=a.shape)

    stats.scores.counts = stats.scores.counts.with_point(noisy(stats.scores.counts.point))
    stats.calibration.sums = stats.calibration.sums.with_point(noisy(stats.calibration.sums.point))
    for g in stats.tables():
        g.counts = g.counts.with_point(noisy(g.counts.point))
        g.missing = float(g.missing + rng.laplace(0.0, scale))
        g.replicates = 0
    stats.scores.replicates = stats.calibration.replicates = 0
    stats.rows = float("nan")  # not released: the sum of the noised histogram estimates it
    return {"mechanism": "laplace", "epsilon": float(epsilon), "l1_sensitivity": l1, "scale": scale,
            "neighbouring": "add or remove one row",
            "accounting": (f"one Laplace mechanism over every released number; one row changes them by at most "
                           f"{l1} in L1 (1 score histogram + 4 calibration sums + 1 per protected attribute "
                           f"({len(stats.attributes)}) + 1 per intersection of attributes "
                           f"({len(stats.intersections)})), so noise of scale {l1}/epsilon makes the whole file "
                           "epsilon-DP"),
            "replicates_released": False,
            "tables": {"attributes": list(stats.attributes), "intersections": stats.intersection_names()},
            "not_covered": ["settings and model hash (public)",
                            "group names of attributes without defined groups (raw values)"]}


# ---------------------------------------------------------------- files


def stats_document(stats: AuditStats, model: dict[str, Any], privacy: dict[str, Any] | None,
                   data: dict[str, Any]) -> dict[str, Any]:
    return {"format": FORMAT, "format_version": FORMAT_VERSION,
            "tool": {"name": "audit", "version": __version__},
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "model": model, "settings": stats.grid.to_dict(), "privacy": privacy, "data": data,
            "reveals": reveals(stats), "stats": stats.to_dict()}


REVEALS = ("rows (exact without noise); per protected group: rows, rows with each true label, and both by score "
           "bin of width 1/threshold_bins; rows by true label and fine score bin; calibration sums; rows with no "
           "value per attribute; Poisson-bootstrap replicate counts of the same cells (without noise only). "
           "No row, row id, text, input column or single score.")


def reveals(stats: AuditStats) -> str:
    """REVEALS, with the intersections of attributes this file carries."""
    names = stats.intersection_names()
    if not names:
        return REVEALS + " No intersection of attributes."
    return (REVEALS + f" The same group counts for each combination of groups of {len(names)} intersection(s) "
            f"of attributes: {', '.join(names)} (by default `audit stats` carries every pair of protected "
            "attributes; rows with no value for any part are counted as missing).")


def write_json_atomic(path: Path, doc: dict[str, Any]) -> None:
    from audit.render.outputs import json_safe

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(3)}")
    try:
        tmp.write_text(json.dumps(json_safe(doc), separators=(",", ":"), allow_nan=False) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise DataError(f"cannot write {path}: {exc.strerror or exc}") from None


MAX_STATS_BYTES = 1 << 30  # a stats file holds counts, not rows


def check_stats_out(out: Path, inputs: list, model_dir: Path) -> None:
    """A stats --out never replaces an input, a file in the model folder, or a file that is not a stats file."""
    real = Path(os.path.realpath(out))
    if Path(os.path.realpath(model_dir)) in real.parents:
        raise OutputError(f"will not write {out}: it lies inside the model folder {model_dir}")
    for p in inputs:
        if p is not None and os.path.realpath(p) == str(real):
            raise OutputError(f"will not write {out}: it is the input {p}")
    if os.path.lexists(out):
        try:
            doc = json.loads(Path(out).read_text(encoding="utf-8")) if Path(out).is_file() else None
        except (OSError, ValueError, UnicodeDecodeError):
            doc = None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise OutputError(f"will not replace {out}: it is not a stats file audit wrote; choose another name")


def load_stats(path: str | Path) -> tuple[dict[str, Any], AuditStats]:
    from audit.safeio import read_regular

    path = Path(path)
    raw = read_regular(path, MAX_STATS_BYTES, "stats file", StatsError)  # regular files only, size-capped
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise StatsError(f"{path}: not a readable JSON stats file ({type(exc).__name__})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise StatsError(f"{path}: not an audit stats file (no 'format: {FORMAT}'); make one with 'audit stats'")
    if doc.get("format_version") != FORMAT_VERSION:
        raise StatsError(f"{path}: stats format version {doc.get('format_version')!r}, this audit reads "
                         f"{FORMAT_VERSION}")
    try:
        stats = AuditStats.from_dict(doc["stats"])
    except (KeyError, TypeError, ValueError, zlib_error()) as exc:
        raise StatsError(f"{path}: the statistics are damaged ({type(exc).__name__}: {exc})") from None
    return doc, stats


def zlib_error():
    import zlib

    return zlib.error


def merge_files(paths: list[Path]) -> tuple[list[dict[str, Any]], AuditStats]:
    """Read and merge stats files; refuse files of another model, other settings or other attributes."""
    if not paths:
        raise StatsError("give at least one stats file")
    docs, merged = [], None
    first: tuple[Path, dict] | None = None
    for p in paths:
        doc, stats = load_stats(p)
        if first is None:
            first = (Path(p), doc)
            merged = stats
        else:
            f, d0 = first
            for key, what in (("sha256", "model (weights hash)"), ("labels", "labels"),
                              ("positive_label", "positive label"), ("protected_attributes", "protected attributes")):
                if doc["model"].get(key) != d0["model"].get(key):
                    a, b = d0["model"].get(key), doc["model"].get(key)
                    if key == "sha256":
                        a, b = str(a)[:12] + "…", str(b)[:12] + "…"
                    raise StatsError(f"{p}: refused to merge: its {what} differ from {f}'s ({b} vs {a})")
            mine = [intersection_name(x) for x in d0["stats"].get("intersections") or []]
            theirs = [intersection_name(x) for x in doc["stats"].get("intersections") or []]
            if set(mine) != set(theirs):
                only_p = [x for x in theirs if x not in mine]
                only_f = [x for x in mine if x not in theirs]
                raise StatsError(f"{p}: refused to merge: it carries other intersections of attributes than {f} "
                                 f"(only in {p}: {', '.join(only_p) or 'none'}; only in {f}: "
                                 f"{', '.join(only_f) or 'none'})")
            if doc["settings"] != d0["settings"]:
                diff = ", ".join(f"{k} {doc['settings'].get(k)} vs {v}" for k, v in d0["settings"].items()
                                 if doc["settings"].get(k) != v)
                raise StatsError(f"{p}: refused to merge: computed with other settings than {f} ({diff})")
            try:  # replicate counts merge when both have them; a noised file has none, and then neither does the union
                merged = merged.merge(stats)
            except ValueError as exc:
                raise StatsError(f"{p}: refused to merge with {f}: {exc}") from None
        docs.append(doc)
    assert merged is not None
    return docs, merged


# ---------------------------------------------------------------- replicates: released, or drawn from noised counts


class Replicates:
    """(1 + R, ...) matrices of each table: released replicate counts, or, from noised counts, Poisson draws
    around the (clipped) counts plus fresh draws of the noise each silo added."""

    def __init__(self, stats: AuditStats, noise_scales: list[float], seed: int):
        self.stats, self.scales = stats, noise_scales
        self.R = stats.grid.replicates
        self.rng = np.random.default_rng([seed, 7])
        self.noised = bool(noise_scales)

    def _drawn(self, point: np.ndarray) -> np.ndarray:
        # the point, plus a Poisson-bootstrap deviation of each cell (its resampled count is Poisson(count)), plus
        # a fresh draw of each silo's noise; cells are not clipped (clipping noised zeros at 0 would bias sums)
        c = np.clip(point, 0, None)
        reps = point[None] + (self.rng.poisson(c, size=(self.R, *point.shape)) - c[None])
        for b in self.scales:
            reps += self.rng.laplace(0.0, b, size=reps.shape)
        return np.concatenate([point[None], reps])

    def scores(self) -> np.ndarray:
        c = self.stats.scores.counts
        return self._drawn(c.point) if self.noised or c.reps is None else self.stats.scores.matrix()

    def calibration(self) -> np.ndarray:
        c = self.stats.calibration.sums
        if not (self.noised or c.reps is None):
            return self.stats.calibration.matrix()
        # a replicate rescales each bin's sums by its drawn row count (the rows of a bin resampled together)
        bins = self.stats.calibration.bins
        t = np.clip(c.point[: 3 * bins].reshape(bins, 3), 0, None)
        n = t[:, 0]
        drawn = self.rng.poisson(n, size=(self.R, bins)).astype(float)
        with np.errstate(divide="ignore", invalid="ignore"):
            f = np.where(n > 0, drawn / np.where(n > 0, n, 1), 0.0)
        reps = np.empty((self.R, 3 * bins + 1))
        reps[:, : 3 * bins] = (t[None] * f[:, :, None]).reshape(self.R, -1)
        reps[:, 3 * bins] = max(c.point[-1], 0) * drawn.sum(axis=1) / max(n.sum(), 1)
        for b in self.scales:
            reps += self.rng.laplace(0.0, b, size=reps.shape)
        return np.concatenate([c.point[None], reps])

    def groups(self, g: GroupConfusion) -> np.ndarray:
        c = g.counts
        return self._drawn(c.point) if self.noised or c.reps is None else g.matrix()


# ---------------------------------------------------------------- checks computed from statistics

NOT_MEASURABLE = "not measurable from statistics"  # starts the reason of a check that needs rows


def measure_stats(policy, stats: AuditStats, manifest, *, noise_scales: list[float] | None = None,
                  reference: AuditStats | None = None, why_no_rows: str = "") -> dict[str, Measurement]:
    """Measurements of every check the stats can support (the registry's `stats` forms, audit.checks) in the
    families the policy uses; checks the policy rules that need rows, texts or the model are INCONCLUSIVE with
    the reason (the policy's `inconclusive` setting then decides the gate). A check whose statistics form reads
    only the manifest is measured when a rule asks for it."""
    from audit.checks import all_checks, in_family_order, needs_rows
    from audit.context import StatsContext

    specs = all_checks()
    families = {specs[cid].family for cid in policy.checks}
    params = {cid: {**specs[cid].params, **r.params} for cid, r in policy.checks.items()}
    sctx = StatsContext(stats, Replicates(stats, list(noise_scales or []), stats.grid.seed), manifest,
                        policy.decision_threshold, policy.confidence, policy.min_group_size, params,
                        frozenset(policy.checks), reference)
    out: dict[str, Measurement] = {}

    def measure(spec) -> Measurement:
        try:
            return spec.stats(sctx, spec.id, **{**spec.params, **params.get(spec.id, {})})
        except Exception as exc:  # as runner.measure: one broken check never aborts the audit
            return Measurement(spec.id, None, error=f"{type(exc).__name__}: {exc}")

    for spec in in_family_order():
        if spec.stats is not None and spec.stats_form != "manifest" and spec.family in families:
            out[spec.id] = measure(spec)
    for cid in policy.checks:
        if cid in out:
            continue
        spec = specs[cid]
        if spec.stats is not None:
            out[cid] = measure(spec)
        elif spec.family == "drift" and reference is None:
            out[cid] = Measurement(cid, None, skipped="no reference statistics to compare with")
        else:
            out[cid] = Measurement(cid, None, inconclusive=f"{NOT_MEASURABLE}: {needs_rows(spec.family)}"
                                   + (f" ({why_no_rows})" if why_no_rows else ""))
    if noise_scales:
        sd = float(np.sqrt(sum(2 * b * b for b in noise_scales)))
        for m in out.values():
            if m.value is not None or m.ci_low is not None:
                m.details["noise"] = {"mechanism": "laplace", "scales": list(noise_scales),
                                      "per_count_sd": sd,
                                      "note": ("computed from counts with differential-privacy noise; the interval "
                                               "adds the noise to the bootstrap (drawn again per replicate)")}
    return out


def mark_noised(findings, measurements: dict[str, Measurement], epsilons: list[float]) -> None:
    """Say in each finding judged on noised counts that it was, and that its interval includes the noise."""
    eps = describe_epsilons(epsilons)
    for f in findings:
        if "noise" in measurements[f.check_id].details:
            f.message = (f"{f.message} (From counts with differential-privacy noise, {eps}; the interval is "
                         "widened by the noise.)")


def describe_epsilons(epsilons: list[float]) -> str:
    if len(set(epsilons)) == 1:
        return f"ε = {epsilons[0]:g}" + (f" in each of {len(epsilons)} silos" if len(epsilons) > 1 else "")
    return "ε = " + ", ".join(f"{e:g}" for e in epsilons) + " (one per noised silo)"


# ---------------------------------------------------------------- the report's statistics section


def statistics_section(kind: str, sources: list[dict[str, Any]], stats: AuditStats,
                       measurements: dict[str, Measurement], *, reference: AuditStats | None = None,
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


def source_rows_estimate(doc: dict[str, Any]) -> float:
    """A stats file's rows from its score histogram: for a noised file the sum of the noised cells, clipped at 0
    after summing (clipping each cell first would add the positive part of every empty cell's noise)."""
    from audit.mergeable import _decode

    return max(float(_decode(doc["stats"]["scores"]["counts"]["point"]).sum()), 0.0)  # summed, then clipped


# ---------------------------------------------------------------- a run from statistics


def judge_and_write(policy, manifest, model_info: dict[str, Any], measurements: dict[str, Measurement], *,
                    out_dir: Path | None, strict: bool, started: dt.datetime, t0: float, command: list[str],
                    data: dict[str, Any], inputs: list[dict[str, Any]], warnings: list[str],
                    extra: dict[str, Any], report_root: Path = Path("reports"), template_dirs=None,
                    noised_epsilons: list[float] | None = None, timings: dict[str, Any] | None = None):
    """Judge, build result.json as `audit run` does, and write the run folder with the same writer."""
    from audit.checks import all_checks
    from audit.judge import exit_code, verdict
    from audit.judge import judge as judge_all
    from audit.provenance import environment
    from audit.runner import (
        RunOutcome,
        check_out,
        manifest_section,
        policy_section,
        record_run,
        result_head,
        verdict_section,
    )

    specs = all_checks()
    findings = judge_all(policy, specs, measurements, today=started.date())
    if noised_epsilons:
        mark_noised(findings, measurements, noised_epsilons)
    v = verdict(findings, policy)
    code = exit_code(v, findings, strict)
    finished = dt.datetime.now(dt.timezone.utc)
    out = check_out(out_dir, report_root, manifest.name, started, model_info.get("path") or None,
                    [i.get("path") for i in inputs])
    result = {
        **result_head(started, finished, t0, command, policy.budget.seed, timings or {}),
        "verdict": verdict_section(v, code, findings, strict),
        "policy": policy_section(policy, extra.get("replicates")),
        "model": {**manifest_section(manifest), **model_info},
        "data": data,
        "inputs": inputs,
        "environment": environment(),
        "scoring": {"rows": data.get("eval", {}).get("rows"), "device": "none: scores read from statistics or a "
                    "prediction log", "precision": "", "truncated": 0},
        "measurements": {cid: m.to_dict() for cid, m in measurements.items()},
        "findings": [f.to_dict() for f in findings],
        "warnings": list(warnings),
        **extra.get("sections", {}),
    }
    out = record_run(out, result, None, template_dirs=template_dirs)
    return RunOutcome(result, out, code)


def run_merge(stats_paths: list[Path], policy_path, *, reference_paths: list[Path] | None = None,
              out_dir: Path | None = None, strict: bool = False, command: list[str] | None = None,
              report_root: Path = Path("reports"), template_dirs=None, report_url: str | None = None):
    """`audit merge`: judge the union of silos' statistics against a policy, without a row. `report_url`: where
    the run folder will be published (summary.md links there), as `audit run --report-url`."""
    from audit.data import sha256_file
    from audit.manifest import Manifest
    from audit.policy import load_policy

    started = dt.datetime.now(dt.timezone.utc)
    t0 = time.perf_counter()
    policy = load_policy(policy_path)
    docs, merged = merge_files([Path(p) for p in stats_paths])
    reference = None
    if reference_paths:
        rdocs, reference = merge_files([Path(p) for p in reference_paths])
        if rdocs[0]["settings"]["score_bins"] != docs[0]["settings"]["score_bins"]:
            raise StatsError(f"{reference_paths[0]}: refused: its score grid differs from the audited statistics'")
    model = docs[0]["model"]
    extra_m = model.get("manifest") or {}
    manifest = Manifest(name=model["name"], labels=model["labels"], positive_label=model["positive_label"],
                        label_column=model["label_column"], text=extra_m.get("text") or {"column": "text"},
                        protected_attributes=model["protected_attributes"], card=extra_m.get("card") or {},
                        max_length=extra_m.get("max_length", 128), created=extra_m.get("created", ""),
                        base_model=extra_m.get("base_model"), training=extra_m.get("training") or {})
    scales = [d["privacy"]["scale"] for d in docs if d.get("privacy")]
    epsilons = [d["privacy"]["epsilon"] for d in docs if d.get("privacy")]
    measurements = measure_stats(policy, merged, manifest, noise_scales=scales, reference=reference,
                                 why_no_rows="a federated audit sees statistics only")
    # noised cells are summed, then clipped (clipping each cell first biases the total upwards)
    rows = max(float(merged.scores.counts.point.sum()), 0.0)
    positives = int(round(max(float(merged.scores.counts.point[1].sum()), 0.0)))
    warnings = [f"This audit was judged from the statistics of {len(docs)} silo(s), without any row: checks that "
                "need texts, inputs or the model are INCONCLUSIVE or SKIPPED with the reason."]
    if scales:
        warnings.append(f"{len(scales)} of {len(docs)} silo(s) added differential-privacy noise "
                        f"({describe_epsilons(epsilons)}): their counts are noised, rates come from sums of noised "
                        "counts clipped at 0, and intervals include the noise.")
    if merged.grid.replicates != policy.budget.bootstrap:
        warnings.append(f"The statistics carry {merged.grid.replicates} bootstrap replicates; the policy's budget "
                        f"asks for {policy.budget.bootstrap}. Intervals use the statistics'.")
    silos = [{"path": str(p), "sha256": sha256_file(Path(p)), "created": d.get("created"),
              "rows": d["stats"].get("rows") if not d.get("privacy") else None,
              "privacy": d.get("privacy"), "data_sha256": (d.get("data") or {}).get("sha256")}
             for p, d in zip(stats_paths, docs)]
    inputs = [{"role": "policy", "path": str(policy.source), "sha256": policy.sha256,
               "bytes": Path(policy.source).stat().st_size}]
    inputs += [{"role": "statistics", "path": s["path"], "sha256": s["sha256"], "bytes": Path(s["path"]).stat().st_size}
               for s in silos]
    inputs += [{"role": "reference statistics", "path": str(p), "sha256": sha256_file(Path(p)),
                "bytes": Path(p).stat().st_size} for p in (reference_paths or [])]
    data = {"eval": {"path": ", ".join(str(p) for p in stats_paths), "sha256": "", "rows": int(round(rows)),
                     "source": f"merged statistics of {len(docs)} silo(s)",
                     "positives": positives, "negatives": int(round(rows)) - positives}}
    model_info = {"path": "", "name": model["name"], "base_model": None, "base_model_sha256": None,
                  "sha256": model["sha256"], "labels": model["labels"], "positive_label": model["positive_label"],
                  "num_parameters": None, "label_column": model["label_column"],
                  "protected_attributes": model["protected_attributes"]}
    sections = {"federated": {"silos": silos, "settings": docs[0]["settings"], "noised": bool(scales),
                              "intersections": merged.intersection_names(), "reveals": docs[0].get("reveals", REVEALS)}}
    sources = []
    for s, d in zip(silos, docs):
        priv = d.get("privacy") or {}
        sources.append({"name": Path(s["path"]).name, "path": s["path"], "kind": "stats file",
                        "sha256": s["sha256"], "rows": None if s["rows"] is None else int(round(s["rows"])),
                        "rows_estimate": None if s["rows"] is not None else round(source_rows_estimate(d), 1),
                        "data_sha256": s["data_sha256"], "created": s["created"], "noised": bool(priv),
                        "epsilon": priv.get("epsilon"), "noise_scale": priv.get("scale"),
                        "l1_sensitivity": priv.get("l1_sensitivity")})
    ref_sources = [{"name": Path(p).name, "path": str(p), "sha256": i["sha256"]}
                   for p, i in zip(reference_paths or [], [x for x in inputs if x["role"] == "reference statistics"])]
    sections["statistics"] = statistics_section("merge", sources, merged, measurements, reference=reference,
                                                reference_sources=ref_sources)
    if report_url:  # `--report-url`: summary.md links under the published run folder
        sections["links"] = {"report_url": report_url}
    return judge_and_write(policy, manifest, model_info, measurements, out_dir=out_dir, strict=strict,
                           started=started, t0=t0, command=command or ["audit", "merge"], data=data, inputs=inputs,
                           warnings=warnings, extra={"replicates": merged.grid.replicates, "sections": sections},
                           report_root=report_root, template_dirs=template_dirs, noised_epsilons=epsilons)


def compute_silo_stats(model_dir, data_path, out_path, *, grid: Grid, epsilon: float | None = None,
                       batch_size: int = 64, progress: bool = False, manifest=None, manifest_path=None,
                       noise_seed: int | None = None, intersections: list[list[str]] | None = None) -> dict[str, Any]:
    """`audit stats`: score the silo's rows with the model, once, inside the silo, and write its statistics.
    `intersections`: the intersections of attributes to carry; default every pair of the manifest's attributes
    (the policy is not known here), each adding 1 to the L1 sensitivity under `epsilon`."""
    import itertools

    from audit.data import group_series, sha256_file
    from audit.model import open_bundle
    from audit.runner import load_eval_set
    from audit.scoring import score_texts

    bundle = open_bundle(model_dir, manifest=manifest, manifest_path=manifest_path)
    m = bundle.manifest
    if len(m.labels) != 2:
        raise DataError(f"{bundle.path}: audit supports binary classifiers; the manifest lists {len(m.labels)} labels")
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
    privacy = None
    if epsilon is not None:
        seed = noise_seed if noise_seed is not None else secrets.randbits(64)
        privacy = add_noise(stats, float(epsilon), np.random.default_rng(seed))
    data = {"rows": len(ev.texts) if privacy is None else None,
            "sha256": sha256_file(Path(data_path)) if privacy is None else None, "notes": notes}
    doc = stats_document(stats, model_identity(bundle), privacy, data)
    write_json_atomic(Path(out_path), doc)
    return doc
