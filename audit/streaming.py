"""`audit run MODEL_DIR --policy P --predictions LOG.parquet`: audit a prediction log in chunks, in bounded memory.

The log holds one row per decision the model made: a row id, the model's score (probability of the positive
label), the true label, and the protected attributes' columns as the model's manifest names them (text is
optional and not read). It is read `chunk_rows` rows at a time (Parquet row batches through pyarrow, or CSV
chunks through pandas); each chunk updates the mergeable statistics (audit/mergeable.py) and is dropped, so
memory holds one chunk and the statistics (about 16 MB per 1,000 replicates for the score histogram, plus the
group tables), whatever the log's length, and time grows linearly with rows. The checks, the judge and the
run-folder writer are the federated audit's (audit/from_stats.py, audit/result_writer.py), which are the in-memory
audit's on the same numbers: the same result.json schema, report, JUnit and exit codes.

Columns: the id column is `--id-column`, else `row_id`, else the manifest's id column, else the row number;
the score column is `--score-column` (default `score`); the label column is the manifest's. A missing column is
named with the file; a score outside [0, 1], an empty or unknown label fails with the row number.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from audit.errors import DataError

CHUNK_ROWS = 65536


def _columns_of(path: Path) -> list[str]:
    from audit.safeio import check_regular

    check_regular(path, None, "prediction log", DataError)  # a FIFO or a device would block pandas / pyarrow
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        try:
            return list(pq.ParquetFile(path).schema_arrow.names)
        except Exception as exc:  # pyarrow raises several types for a damaged file
            raise DataError(f"{path}: not a readable Parquet file ({type(exc).__name__}: {exc})") from None
    if path.suffix.lower() in (".csv", ".tsv"):
        import pandas as pd

        try:
            return list(pd.read_csv(path, nrows=0, sep="\t" if path.suffix.lower() == ".tsv" else ",").columns)
        except Exception as exc:
            raise DataError(f"{path}: not a readable CSV file ({type(exc).__name__}: {exc})") from None
    raise DataError(f"{path}: a prediction log is a .parquet or .csv file")


def _chunks(path: Path, columns: list[str], chunk_rows: int) -> Iterator[Any]:
    """pandas DataFrames of `chunk_rows` rows (strings for every column but the score)."""
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(path)
        for batch in pf.iter_batches(batch_size=chunk_rows, columns=columns):
            yield batch.to_pandas()
    else:
        import pandas as pd

        yield from pd.read_csv(path, usecols=columns, chunksize=chunk_rows, dtype=str, keep_default_na=True,
                               sep="\t" if path.suffix.lower() == ".tsv" else ",")


def _scores(values, path: Path, column: str, offset: int) -> np.ndarray:
    import pandas as pd

    s = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(s) | (s < 0) | (s > 1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{path}: column '{column}' must hold probabilities in [0, 1]; row {offset + i} has "
                        f"{values.iloc[i]!r} ({int(bad.sum())} bad value(s) in rows {offset}–{offset + len(s) - 1})")
    return s


def _labels(values, labels: list[str], positive: str, path: Path, column: str, offset: int) -> np.ndarray:
    v = values.astype(object)
    missing = v.isna().to_numpy()
    if missing.any():
        raise DataError(f"{path}: label column '{column}' is empty in row {offset + int(np.flatnonzero(missing)[0])}")
    text = v.astype(str).str.strip()
    unknown = ~text.isin(labels).to_numpy()
    if unknown.any():
        i = int(np.flatnonzero(unknown)[0])
        raise DataError(f"{path}: label column '{column}' has a value the model does not know in row {offset + i}: "
                        f"{text.iloc[i]!r} (model labels: {', '.join(repr(x) for x in labels)})")
    return (text == positive).to_numpy().astype(np.int64)


def run_predictions(model_dir, policy_path, log_path, *, out_dir: Path | None = None, strict: bool = False,
                    manifest=None, manifest_path: Path | None = None, id_column: str | None = None,
                    score_column: str = "score", chunk_rows: int = CHUNK_ROWS,
                    reference_stats: list[Path] | None = None, command: list[str] | None = None,
                    report_root: Path = Path("reports"), template_dirs=None, progress: bool = False,
                    report_url: str | None = None):
    from audit.checks.fairness import policy_intersections
    from audit.data import group_series, sha256_file
    from audit.from_stats import measure_stats
    from audit.mergeable import AuditStats, Grid
    from audit.model import open_bundle
    from audit.policy import load_policy
    from audit.progress import on as progress_term
    from audit.result_writer import (
        RunResult,
        check_out,
        finish,
        manifest_section,
        statistics_section,
        stats_scoring_section,
    )
    from audit.stats_files import load_stats, merge_files
    from audit.stats_files import model_identity as identity

    progress_on = progress_term(progress)  # a terminal only: a CI log gets no row counter

    started = dt.datetime.now(dt.timezone.utc)
    t0 = time.perf_counter()
    policy = load_policy(policy_path)
    bundle = open_bundle(model_dir, manifest=manifest, manifest_path=manifest_path)  # hashes; no torch
    m = bundle.manifest
    if len(m.labels) != 2:
        raise DataError(f"{bundle.path}: streamed runs read binary classifiers; the manifest lists {len(m.labels)} labels: "
                        "audit a model of more classes with `audit run`")
    path = Path(log_path)
    if not path.is_file():
        raise DataError(f"{path}: prediction log not found")
    check_out(out_dir, report_root, m.name, started, bundle.path, [path, policy.source])  # fail fast, before reading
    have = _columns_of(path)
    warnings: list[str] = []
    idc = id_column or ("row_id" if "row_id" in have else m.id_column)
    if id_column and id_column not in have:
        raise DataError(f"{path}: no id column '{id_column}' (the log has: {', '.join(have[:20])})")
    if idc not in have:
        warnings.append("The log has no row id column ('row_id' or the manifest's id column): rows are named by "
                        "their row number, which fixes each row's bootstrap weights to its position in the log.")
        idc = None
    for col, role in ((score_column, f"the model's score of the positive label '{m.positive_label}'"),
                      (m.label_column, "the true label")):
        if col not in have:
            raise DataError(f"{path}: no column '{col}' ({role}); the log has: {', '.join(have[:20])}")
    attrs = {}
    for name, a in m.protected_attributes.items():
        if a.column in have:
            attrs[name] = a
        else:
            warnings.append(f"The log has no column '{a.column}' for the protected attribute '{name}': checks by "
                            "that attribute cannot run.")
    reference = None
    if reference_stats:
        _, reference = merge_files([Path(p) for p in reference_stats])
        doc, _ = load_stats(reference_stats[0])
        if doc["model"]["sha256"] != identity(bundle)["sha256"]:
            raise DataError(f"{reference_stats[0]}: refused: these statistics are of another model")
    grid = Grid(score_bins=reference.grid.score_bins if reference else 1000, threshold_bins=100,
                replicates=policy.budget.bootstrap, seed=policy.budget.seed)
    # the policy is known: carry exactly the intersections its fairness rules ask (of the attributes in the log)
    crossed = policy_intersections(policy, list(attrs))
    stats = AuditStats.empty(grid, {n: [str(g) for g in a.group_names()] for n, a in attrs.items()}, crossed)
    columns = list(dict.fromkeys([c for c in (idc, score_column, m.label_column) if c] +
                                 [a.column for a in attrs.values()]))
    offset, t_read, t_update = 0, 0.0, 0.0
    it = _chunks(path, columns, int(chunk_rows))
    while True:
        t = time.perf_counter()
        try:
            df = next(it)
        except StopIteration:
            break
        except DataError:
            raise
        except Exception as exc:
            raise DataError(f"{path}: cannot read rows after row {offset} ({type(exc).__name__}: {exc})") from None
        t_read += time.perf_counter() - t
        t = time.perf_counter()
        score = _scores(df[score_column], path, score_column, offset)
        y = _labels(df[m.label_column], m.labels, m.positive_label, path, m.label_column, offset)
        ids = df[idc].astype(str).tolist() if idc else [str(i) for i in range(offset, offset + len(df))]
        groups = {}
        for name, a in attrs.items():
            col = df[a.column]
            if a.bins is None:
                col = col.astype(object).where(col.notna(), None).map(lambda v: v if v is None else str(v))
            groups[name] = group_series(df.assign(**{a.column: col}), name, a, path).to_numpy(dtype=object)
        stats.update(ids, score, y, groups)
        t_update += time.perf_counter() - t
        offset += len(df)
        del df
        if progress_on:
            print(f"\r{offset:,} rows", end="", file=sys.stderr, flush=True)
    if progress_on:
        print(file=sys.stderr)
    if offset == 0:
        raise DataError(f"{path}: the prediction log has no rows")
    t = time.perf_counter()
    measurements = measure_stats(policy, stats, m, reference=reference,
                                 why_no_rows="a prediction-log audit reads scores, labels and groups only")
    t_measure = time.perf_counter() - t
    if policy.budget.max_rows and offset > policy.budget.max_rows:
        warnings.append(f"The policy's max_rows budget ({policy.budget.max_rows:,}) caps the rows `audit run` scores; "
                        f"a prediction log is already scored, and all {offset:,} rows were audited.")
    pos = int(round(stats.scores.counts.point[1].sum()))
    data = {"eval": {"path": str(path), "sha256": sha256_file(path), "rows": offset,
                     "source": f"prediction log, read in chunks of {int(chunk_rows):,} rows",
                     "positives": pos, "negatives": offset - pos}}
    inputs = bundle.inputs() + [
        {"role": "policy", "path": str(policy.source), "sha256": policy.sha256, "bytes": Path(policy.source).stat().st_size},
        {"role": "predictions", "path": str(path), "sha256": data["eval"]["sha256"], "bytes": path.stat().st_size}]
    inputs += [{"role": "reference statistics", "path": str(p), "sha256": sha256_file(Path(p)),
                "bytes": Path(p).stat().st_size} for p in (reference_stats or [])]
    model_info = {"path": str(bundle.path), "name": m.name, "base_model": m.base_model.name if m.base_model else None,
                  "base_model_sha256": m.base_model.sha256 if m.base_model else None, "labels": m.labels,
                  "positive_label": m.positive_label, "num_parameters": None, "label_column": m.label_column,
                  "protected_attributes": {k: a.model_dump(exclude_none=True) for k, a in m.protected_attributes.items()}}
    timings = {"read_s": round(t_read, 3), "statistics_s": round(t_update, 3), "checks_s": round(t_measure, 3),
               "rows_per_s": round(offset / max(t_read + t_update, 1e-9), 1)}
    sections = {"streaming": {"rows": offset, "chunk_rows": int(chunk_rows), "columns": columns,
                              "settings": grid.to_dict(), "intersections": stats.intersection_names()}}
    log_source = {"name": path.name, "path": str(path), "kind": "prediction log", "sha256": data["eval"]["sha256"],
                  "rows": offset, "rows_estimate": None, "data_sha256": None, "created": None, "noised": False,
                  "epsilon": None, "noise_scale": None, "l1_sensitivity": None}
    ref_sources = [{"name": Path(p).name, "path": str(p), "sha256": i["sha256"]}
                   for p, i in zip(reference_stats or [], [x for x in inputs if x["role"] == "reference statistics"])]
    sections["statistics"] = statistics_section(
        "predictions-log", [log_source], stats, measurements, reference=reference, reference_sources=ref_sources,
        extra={"chunk_rows": int(chunk_rows), "columns": columns, "id_column": idc, "score_column": score_column})
    if report_url:  # `--report-url`: summary.md links under the published run folder
        sections["links"] = {"report_url": report_url}
    run = RunResult(started, t0, command or ["audit", "run", str(model_dir), "--predictions", str(path)], policy,
                    grid.replicates, {**manifest_section(m), **model_info}, data, inputs,
                    stats_scoring_section(data["eval"]["rows"]), measurements, warnings, timings, sections,
                    strict=strict)
    out = check_out(out_dir, report_root, m.name, started, model_info.get("path") or None,
                    [i.get("path") for i in inputs])
    return finish(run, out, template_dirs=template_dirs)
