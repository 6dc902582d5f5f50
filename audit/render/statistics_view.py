"""View-model of the "Judged from statistics" section: a run that saw counts, not rows (`audit merge` of silos'
stats files, or `audit run --predictions` over a prediction log), told to a compliance officer: what the audit
saw, where the numbers came from (each silo or log, its rows and sha256), what noise was added and how the
intervals carry it, and where binned counts approximate the exact statistics.

Built from result.json's `statistics` section alone (audit/result_writer.py `statistics_section`), like views.py:
every string is formatted here, reports/templates/statistics.html only loops and prints, and the environment
autoescapes it. A result without the section (a normal `audit run`) gives None, and the report has no such
section. Any part may be missing from an older or partial result: readers use `.get` and show less.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from audit.render.charts import _num

DASH = "—"
KINDS = {"merge": "merged statistics of data silos", "predictions-log": "a prediction log"}


def _d(x: Any) -> dict:
    return x if isinstance(x, dict) else {}


def _l(x: Any) -> list:
    return x if isinstance(x, list) else []


def count(x: Any) -> str:
    v = _num(x)
    return DASH if v is None else f"{round(v):,}"


def num(x: Any, digits: int = 4) -> str:
    v = _num(x)
    return DASH if v is None else f"{v:.{digits}g}"


def _plural(n: int, word: str, words: str | None = None) -> str:
    return f"{n:,} {word}" if n == 1 else f"{n:,} {words or word + 's'}"


def _names(items: list) -> str:
    return ", ".join(str(i) for i in items)


@dataclass
class SourceRow:
    name: str
    kind: str
    rows: str
    sha256: str
    noise: str


@dataclass
class StatisticsView:
    kind: str  # "merge" / "predictions-log"
    heading: str
    lead: str
    seen: list[str]
    sources: list[SourceRow]
    grid: list[tuple[str, str]]
    grid_caption: str
    noise: list[str]
    noised_checks: str
    approximations: list[str]
    needs_rows: str
    reference: str
    badge: str = ""  # "noised" / "exact counts"
    notes: list[str] = field(default_factory=list)


def _source_row(s: dict) -> SourceRow:
    rows = count(s.get("rows"))
    if s.get("rows") is None and s.get("rows_estimate") is not None:
        rows = f"about {count(s.get('rows_estimate'))} (noised; the exact count was not released)"
    if s.get("noised"):
        noise = (f"Laplace noise, ε = {num(s.get('epsilon'))}, scale {num(s.get('noise_scale'))} "
                 f"(one row changes the file's numbers by at most {count(s.get('l1_sensitivity'))} in total)")
    else:
        noise = "none: exact counts"
    return SourceRow(str(s.get("name") or s.get("path") or DASH), str(s.get("kind") or DASH), rows,
                     str(s.get("sha256") or DASH), noise)


def statistics_view(result: dict) -> StatisticsView | None:
    st = result.get("statistics")
    if not isinstance(st, dict):
        return None
    kind = str(st.get("kind") or "")
    sources = [_d(s) for s in _l(st.get("sources"))]
    grid = _d(st.get("grid"))
    noise = st.get("noise") if isinstance(st.get("noise"), dict) else None
    positive = str(_d(result.get("model")).get("positive_label") or "favourable")
    exact = bool(st.get("rows_exact", noise is None))
    rows = count(st.get("rows")) if exact else f"about {count(st.get('rows'))}"
    totals = (f"{rows} rows ({count(st.get('positives'))} with the favourable label '{positive}', "
              f"{count(st.get('negatives'))} without)")
    if kind == "merge":
        heading = "Judged from statistics: a federated audit"
        lead = (f"This audit did not see a single row. Each of {_plural(len(sources), 'data silo')} scored its own "
                "rows with the model inside the silo and sent only counts (a stats file); the counts were added "
                f"up and the policy was judged on the totals: {totals}.")
    elif kind == "predictions-log":
        chunk = count(st.get("chunk_rows"))
        heading = "Judged from statistics: a prediction log"
        lead = (f"This audit read a log of decisions the model had already made (per row: its score, the true "
                f"label and the protected attributes), {chunk} rows at a time, into counts, and judged the policy "
                f"on those counts: {totals}. The model was not run and no text was read.")
    else:
        heading = "Judged from statistics"
        lead = f"This audit was judged from {KINDS.get(kind, 'statistics')}: {totals}."
    score_bins, threshold_bins = _num(grid.get("score_bins")), _num(grid.get("threshold_bins"))
    attributes, intersections = _l(st.get("attributes")), _l(st.get("intersections"))
    seen = []
    if kind == "predictions-log":
        cols = _l(st.get("columns"))
        seen.append("Per row of the log: its id (for the bootstrap weights), its score, its true label and its "
                    "protected attributes" + (f" (columns read: {_names(cols)})" if cols else "") + "; each chunk "
                    "was added to the counts below and dropped.")
    if score_bins:
        seen.append(f"Rows per true label and score bin: {count(score_bins)} bins of width {1 / score_bins:g}.")
    if attributes and threshold_bins:
        per = f"each protected attribute ({_names(attributes)})"
        if intersections:
            per += f" and each intersection of attributes ({_names(intersections)})"
        seen.append(f"Rows per group of {per}, per true label and score bin on {count(threshold_bins)} bins "
                    f"(decision thresholds on multiples of {1 / threshold_bins:g}); rows with no value are counted "
                    "apart.")
    if grid.get("ece_bins") is not None:
        seen.append(f"Calibration sums in {count(grid.get('ece_bins'))} bins (rows, labels, scores) and the sum "
                    "of squared errors.")
    reps = _num(grid.get("replicates"))
    if reps:
        how = ("drawn from the noised counts, since noised sources do not release replicate counts; see Noise "
               "and intervals below"
               if noise else f"each row's Poisson weights drawn from its row id and the seed {count(grid.get('seed'))}, so "
               "they are the whole data's, whatever the partition")
        seen.append(f"{count(reps)} bootstrap replicates of every count ({how}); every interval is a percentile "
                    "interval over them.")
    else:
        seen.append("No bootstrap replicates: the findings have no intervals.")
    seen.append("No text and no input column; the model was not run." if kind == "predictions-log" else
                "No row, row id, text, input column or individual score.")
    grid_rows = [(label, count(grid.get(key))) for key, label in
                 (("score_bins", "Score bins"), ("threshold_bins", "Threshold bins (group tables)"),
                  ("ece_bins", "Calibration bins"), ("replicates", "Bootstrap replicates"), ("seed", "Seed"))
                 if grid.get(key) is not None]
    if kind == "predictions-log":
        grid_rows += [(label, str(st.get(key))) for key, label in
                      (("score_column", "Score column"), ("id_column", "Row id column")) if st.get(key)]
    paragraphs = []
    if noise:
        eps = _l(noise.get("epsilons"))
        eps_text = (f"ε = {num(eps[0])}" if len(set(eps)) == 1 else "ε = " + ", ".join(num(e) for e in eps)) if eps \
            else "ε unknown"
        paragraphs = [
            f"{count(noise.get('noised_sources'))} of {_plural(int(_num(noise.get('sources')) or len(sources)), 'source')} "
            f"added differential-privacy noise (the Laplace mechanism, {eps_text}): every count they released "
            "carries random noise, and their exact row counts were not released.",
            f"The noise on one count has a standard deviation of {num(noise.get('per_count_sd'), 3)} rows (all "
            "noised sources together); rates sum many counts, so small groups are affected most.",
            "Rates are computed from sums of noised counts, clipped at 0 after summing.",
            "Intervals are widened by the noise: each bootstrap replicate is a resample of the noised counts plus "
            "a fresh draw of every source's noise, so an interval covers both the sampling and the noise.",
        ]
    else:
        paragraphs = ["No noise was added: every count is exact, and the intervals are those an audit of the same "
                      "rows in one place would give."]
    noised_checks = _l(st.get("noised_measurements"))
    approximations = []
    auc = _d(st.get("roc_auc_binning"))
    if auc.get("max_abs_error") is not None:
        approximations.append(
            f"ROC-AUC is computed from rows per score bin ({count(auc.get('score_bins'))} bins): a positive and a "
            "negative row in one bin count as a tie, so it may differ from the AUC of the exact scores by at most "
            f"{num(auc.get('max_abs_error'))}.")
    ks = _d(st.get("ks_bounds"))
    if ks.get("lower") is not None:
        approximations.append(
            f"The KS statistic of score drift is computed from histograms: the value reported, "
            f"{num(ks.get('lower'))}, is a lower bound, and the KS statistic of the exact scores lies between "
            f"{num(ks.get('lower'))} and {num(ks.get('upper'))}.")
    if threshold_bins:
        approximations.append(f"Group rates exist only at decision thresholds on the grid (multiples of "
                              f"{1 / threshold_bins:g}).")
    ref = _d(st.get("reference"))
    reference = ""
    if ref:
        names = _names(f"{_d(s).get('name')} (SHA-256 {_d(s).get('sha256')})" for s in _l(ref.get("sources")))
        reference = f"Score drift compares with reference statistics: {names or DASH}, {count(ref.get('rows'))} rows."
    needs = _l(st.get("needs_rows"))
    return StatisticsView(
        kind=kind, heading=heading, lead=lead, seen=seen, sources=[_source_row(s) for s in sources],
        grid=grid_rows, grid_caption="The grid every source shares" if len(sources) > 1 else "The grid of the counts",
        noise=paragraphs,
        noised_checks=(f"Measured from noised counts (each such finding says so): {_names(noised_checks)}."
                       if noised_checks else ""),
        approximations=approximations,
        needs_rows=(f"Not measurable from statistics, because they need texts, inputs or the model (INCONCLUSIVE "
                    f"with the reason): {_names(needs)}." if needs else ""),
        reference=reference, badge="noised counts" if noise else "exact counts")


def statistics_line(result: dict) -> str:
    """One sentence for summary.md: how the run was judged from statistics, or "" for a normal run."""
    st = result.get("statistics")
    if not isinstance(st, dict):
        return ""
    sources = [_d(s) for s in _l(st.get("sources"))]
    noise = st.get("noise") if isinstance(st.get("noise"), dict) else None
    rows = count(st.get("rows")) if noise is None else f"about {count(st.get('rows'))}"
    if st.get("kind") == "predictions-log":
        line = f"Judged from a prediction log of {rows} rows, read into counts (the model was not run)"
    elif st.get("kind") == "merge":
        line = f"Judged from the merged statistics of {_plural(len(sources), 'silo')}, {rows} rows, without seeing a row"
    else:
        line = f"Judged from statistics, {rows} rows"
    if noise:
        eps = _l(noise.get("epsilons"))
        line += (f"; {_plural(int(_num(noise.get('noised_sources')) or 0), 'source')} added differential-privacy noise "
                 f"(ε = {', '.join(num(e) for e in dict.fromkeys(eps))}) and intervals include it")
    return line + "."
