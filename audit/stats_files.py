"""Stats files: what `audit stats` writes inside a data silo and `audit merge` reads, and which files may merge.

A stats file (JSON, `format: audit-stats`) holds an `AuditStats` (audit/mergeable.py) and what is needed to refuse
a wrong merge: the model's identity (the hash of its weights, its labels and protected-attribute mapping) and the
grid settings. It holds no row, no text, no row id and no score of any single row. What it reveals is listed in
README.md ("Federated audit") and in the file itself (`reveals`): the number of rows, and per protected group the
rows, the label base rate and the score histogram on the threshold grid; the same per group of each intersection
of attributes carried; the fine score histogram by label; calibration sums; the bootstrap replicate counts, which
are the same kind of counts on random reweightings of the rows (without noise, counts of small cells can single
out a person who is known to be in the data); and the silo statistics of the other checks a policy rules
(audit/silo.py): PII counts, counterfactual flip counts, SHAP token importance, loss histograms.

Intersections. `audit stats` carries by default every PAIR of the manifest's protected attributes ("sex × age"),
in the manifest's order; a streaming audit knows the policy and carries exactly the intersections its fairness
rules ask. Files merge only when they carry the same intersections. Differential privacy: audit/noise.py.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import secrets
from pathlib import Path
from typing import Any

from audit import __version__
from audit.errors import AuditError, DataError, OutputError
from audit.mergeable import AuditStats, intersection_name

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


SILO_REVEALS = {
    "pii": "PII: rows scanned, rows with personal data and rows that could hold it, per type rows and finds "
           "(finds not under noise), with bootstrap sums",
    "counterfactual": "counterfactual swaps: per swap list rows swapped, decision flips each way, sums of score "
                      "changes, the largest change and the terms swapped (these two not under noise)",
    "shap": "SHAP: per word the sums of |SHAP| and SHAP, occurrences and rows, over the explained sample and its "
            "halves, the share of |SHAP| on each rule's prohibited terms with bootstrap sums, additivity errors "
            "(the words themselves are revealed; never released under noise)",
    "membership": "membership inference: a histogram of per-row losses of the silo's rows on a fixed grid, with "
                  "bootstrap counts, rows left out, the sum of losses (not under noise)",
    "membership-members": "the same histogram of the model's training rows",
}


def reveals(stats: AuditStats) -> str:
    """REVEALS, with the intersections of attributes and the silo statistics this file carries."""
    names = stats.intersection_names()
    if not names:
        out = REVEALS + " No intersection of attributes."
    else:
        out = (REVEALS + f" The same group counts for each combination of groups of {len(names)} intersection(s) "
               f"of attributes: {', '.join(names)} (by default `audit stats` carries every pair of protected "
               "attributes; rows with no value for any part are counted as missing).")
    kinds = list(dict.fromkeys(st.kind for st in stats.silo.values()))
    if kinds:
        out += " Statistics of the policy's checks, collected in the silo: " + "; ".join(
            SILO_REVEALS.get(k, k) for k in kinds) + "."
    return out


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


def merge_files(paths: list[Path], notes: list[str] | None = None) -> tuple[list[dict[str, Any]], AuditStats]:
    """Read and merge stats files; refuse files of another model, other settings or other attributes.

    A noised and a clean silo of one audit merge although `audit stats` gives them different default grids
    (20 score and threshold bins under --epsilon, 1000 and 100 without): when the files differ only in their
    grids and each grid's bins divide the other's, every file is coarsened to the coarsest grid (each coarse bin
    the exact sum of the fine bins it covers) and then added; the clean files' counts join the noised files'
    noised counts, and the intervals are drawn from the noised counts (audit/replicates.py: a file without
    released replicate counts makes the union drawn, with the noise of each noised file). `notes` gets one line
    per coarsened file."""
    if not paths:
        raise StatsError("give at least one stats file")
    loaded = [(Path(p), *load_stats(p)) for p in paths]
    f, d0, _ = loaded[0]
    for p, doc, _stats in loaded[1:]:
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
        if doc["settings"] != d0["settings"] and not _coarsenable(d0["settings"], doc["settings"]):
            diff = ", ".join(f"{k} {doc['settings'].get(k)} vs {v}" for k, v in d0["settings"].items()
                             if doc["settings"].get(k) != v)
            raise StatsError(f"{p}: refused to merge: computed with other settings than {f} ({diff})")
    target = (min(d["settings"]["score_bins"] for _, d, _ in loaded),
              min(d["settings"]["threshold_bins"] for _, d, _ in loaded))
    merged = None
    for p, _doc, stats in loaded:
        g = stats.grid
        if (g.score_bins, g.threshold_bins) != target:
            try:
                stats = stats.coarsened(*target)
            except ValueError as exc:
                raise StatsError(f"{p}: refused to merge: {exc}") from None
            if notes is not None:
                notes.append(f"{p.name}: its grid ({g.score_bins} score bins, {g.threshold_bins} threshold bins) "
                             f"was coarsened to the coarsest of the merged files ({target[0]} and {target[1]}), "
                             "each coarse bin the exact sum of the fine ones, to merge with a noised file's.")
        if merged is None:
            merged = stats
            continue
        try:  # replicate counts merge when both have them; a noised file has none, and then neither does the union
            merged = merged.merge(stats)
        except ValueError as exc:
            raise StatsError(f"{p}: refused to merge with {f}: {exc}") from None
    assert merged is not None
    return [d for _, d, _ in loaded], merged


def _coarsenable(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Two files' settings that differ only in grids one of which refines the other (audit.merge: a noised
    silo's coarse default grid and a clean silo's fine one)."""
    same = all(a.get(k) == b.get(k) for k in set(a) | set(b) if k not in ("score_bins", "threshold_bins"))
    return same and all(max(a[k], b[k]) % min(a[k], b[k]) == 0 for k in ("score_bins", "threshold_bins"))


def source_rows_estimate(doc: dict[str, Any]) -> float:
    """A stats file's rows from its score histogram: for a noised file the sum of the noised cells, clipped at 0
    after summing (clipping each cell first would add the positive part of every empty cell's noise)."""
    from audit.mergeable import _decode

    return max(float(_decode(doc["stats"]["scores"]["counts"]["point"]).sum()), 0.0)  # summed, then clipped
