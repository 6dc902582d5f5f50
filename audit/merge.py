"""`audit merge`: judge the union of silos' stats files against a policy, without a row."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

from audit.from_stats import measure_stats
from audit.noise import describe_epsilons
from audit.result_writer import (
    RunResult,
    check_out,
    finish,
    manifest_section,
    statistics_section,
    stats_scoring_section,
)
from audit.stats_files import REVEALS, StatsError, merge_files, source_rows_estimate


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
    grid_notes: list[str] = []
    docs, merged = merge_files([Path(p) for p in stats_paths], grid_notes)
    reference = None
    if reference_paths:
        _, reference = merge_files([Path(p) for p in reference_paths], grid_notes)
        bins, rbins = merged.grid.score_bins, reference.grid.score_bins
        if rbins != bins and rbins % bins == 0 and reference.grid.threshold_bins % merged.grid.threshold_bins == 0:
            reference = reference.coarsened(bins, merged.grid.threshold_bins)
            grid_notes.append(f"The reference statistics were coarsened from {rbins} to {bins} score bins, the "
                              "audited statistics' grid.")
        elif rbins != bins:
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
    not_collected(measurements, docs, stats_paths)
    # noised cells are summed, then clipped (clipping each cell first biases the total upwards)
    rows = max(float(merged.scores.counts.point.sum()), 0.0)
    positives = int(round(max(float(merged.scores.counts.point[1].sum()), 0.0)))
    warnings = [f"This audit was judged from the statistics of {len(docs)} silo(s), without any row: checks that "
                "need texts, inputs or the model are INCONCLUSIVE or SKIPPED with the reason."]
    if scales:
        warnings.append(f"{len(scales)} of {len(docs)} silo(s) added differential-privacy noise "
                        f"({describe_epsilons(epsilons)}): their counts are noised, rates come from sums of noised "
                        "counts clipped at 0, and intervals include the noise.")
    warnings += grid_notes
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
    sections = {"federated": {"silos": silos, "settings": merged.grid.to_dict(), "noised": bool(scales),
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
    run = RunResult(started, t0, command or ["audit", "merge"], policy, merged.grid.replicates,
                    {**manifest_section(manifest), **model_info}, data, inputs,
                    stats_scoring_section(data["eval"]["rows"]), measurements, warnings, sections=sections,
                    strict=strict, noised_epsilons=epsilons)
    out = check_out(out_dir, report_root, manifest.name, started, None, [i.get("path") for i in inputs])
    return finish(run, out, template_dirs=template_dirs)


def not_collected(measurements: dict, docs: list[dict], paths: list) -> None:
    """Where silos ran `audit stats --policy` but collected nothing for a ruled check, and said why (audit.silo:
    no training rows in the silo, say), an INCONCLUSIVE measurement of that check gives that reason and which
    silos, instead of what the merged statistics lack as a consequence."""
    from audit.from_stats import NOT_MEASURABLE

    why: dict[str, list[str]] = {}
    for p, d in zip(paths, docs):
        for cid, reason in ((d.get("data") or {}).get("not_collected") or {}).items():
            why.setdefault(str(cid), []).append(f"{Path(p).name}: {reason}")
    for cid, reasons in why.items():
        m = measurements.get(cid)
        if m is None or m.value is not None or not m.inconclusive:
            continue
        m.inconclusive = (f"{NOT_MEASURABLE}: {len(reasons)} of {len(docs)} silo(s) collected no statistics for "
                          f"this check ({'; '.join(reasons)})")
        m.details["not_collected"] = reasons
