"""Adverse-action reasons: the principal reasons a declined applicant is told, from the model's own SHAP values.

Regulation B (12 CFR 1002.9(b)(2)) requires a creditor to give a declined applicant the specific principal
reasons for the action; the CFPB has said this holds when the decision comes from a complex model. This module
turns one row's SHAP values (audit.checks.explainability: shap's partition explainer of the model's log-odds of
the favourable label, pieces merged into words) into reasons:

1. Units to sources. A templated text (the manifest's recipe is a template over columns) is rendered again per
   column with that column's value replaced by a marker; the characters that change are the column's span in
   the text (`field_spans`). A word whose first character lies in a column's span belongs to that column (the
   smallest such span); the template's own wording belongs to no column. Free text: each word is its own source
   (lower case).
2. Push towards the decline. SHAP values are on the log-odds of the FAVOURABLE label (for a model of more than
   two classes, of the favourable outcome: the favourable classes against the others), so a source pushes towards
   the decline when its summed value is negative; its share is its push over the total push of all sources
   (template wording and punctuation included, so a share is never overstated).
3. Principal reasons: the sources (never the template's wording) whose share is at least `min_share`, largest
   first, at most `top_k` (the staff commentary to 1002.9(b)(2) finds more than four reasons unhelpful).
4. Statements: the policy's `reason_codes` table maps a source (a column or a word) to the sentence the
   applicant reads ("Length of employment"); a source without one is named by its column ("credit amount") and
   flagged, so a reviewer sees which statements the table lacks.

A reason is `protected` when its source is a protected attribute's column (the manifest's), a listed proxy, or
(free text) a term of the listed swap lists. No principal reason may be protected: a notice that says "declined
because of your sex" is itself the violation.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

MARK = "\ue000"  # a private-use character that no template or value should produce
TEMPLATE = "(template wording)"
PUNCT = "(punctuation)"
CSV_FIELDS = ("row", "id", "score", "decision", "rank", "source", "statement", "share", "protected",
              "has_statement")


@dataclass
class Reason:
    source: str  # a column, or a word of free text
    statement: str
    share: float  # of the push towards the decline
    contribution: float  # summed SHAP value (log-odds of the favourable label); negative
    protected: bool
    has_statement: bool  # the policy's reason-code table names it

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "statement": self.statement, "share": round(self.share, 6),
                "contribution": round(self.contribution, 6), "protected": self.protected,
                "has_statement": self.has_statement}


@dataclass
class Notice:
    row: int
    id: str
    score: float
    reasons: list[Reason]  # principal reasons, largest share first
    top_source: str | None  # the source with the largest push (any source, protected or not)
    unattributed_share: float  # the push on template wording and punctuation
    pushes: dict[str, float] = field(default_factory=dict)  # every source's push (for the stability check)
    decided: str | None = None  # the decided class, for a model of more than two classes (None: binary)

    def text(self, creditor_words: str = "Your application for credit was declined.") -> str:
        """The notice as an applicant would read it."""
        if not self.reasons:
            return f"{creditor_words} No principal reason could be stated."
        lines = [f"{i}. {r.statement.rstrip()}" + ("" if r.statement.rstrip()[-1:] in ".!?" else ".")
                 for i, r in enumerate(self.reasons, 1)]
        return f"{creditor_words} The principal reasons: " + " ".join(lines)

    def to_dict(self) -> dict[str, Any]:
        out = {"row": self.row, "id": self.id, "score": round(float(self.score), 6),
               "reasons": [r.to_dict() for r in self.reasons], "top_source": self.top_source,
               "unattributed_share": round(self.unattributed_share, 6), "notice": self.text()}
        if self.decided is not None:
            out["decided"] = self.decided
        return out


def field_spans(frame, recipe, columns: list[str], path: str = "eval data") -> list[dict[str, tuple[int, int]]]:
    """Per row of `frame`, column -> (start, end) of the characters of its rendered text that depend on the
    column: the text rendered with the column's value replaced by a marker differs from the text there (common
    prefix and suffix removed). A column whose replacement the template refuses (a filter that needs a number)
    has no span."""
    from audit.data import make_texts
    from audit.errors import DataError

    texts = make_texts(frame, recipe, path)
    spans: list[dict[str, tuple[int, int]]] = [{} for _ in texts]
    for c in columns:
        changed = frame.copy()
        changed[c] = MARK
        try:
            other = make_texts(changed, recipe, path)
        except DataError:
            continue
        for i, (a, b) in enumerate(zip(texts, other)):
            if a == b:
                continue
            p = 0
            while p < min(len(a), len(b)) and a[p] == b[p]:
                p += 1
            s = 0
            while s < min(len(a), len(b)) - p and a[len(a) - 1 - s] == b[len(b) - 1 - s]:
                s += 1
            spans[i][c] = (p, len(a) - s)
    return spans


def unit_starts(text: str, units: list[Any]) -> list[int | None]:
    """Where each unit (audit.checks.explainability.Unit, in text order) starts in `text` (case-insensitive,
    searched forward); None where it is not found (a tokenizer that normalizes characters)."""
    low = text.lower()
    pos, out = 0, []
    for u in units:
        key = u.text.strip().lower()
        j = low.find(key, pos) if key else -1
        if j < 0:
            out.append(None)
            continue
        out.append(j)
        pos = j + len(key)
    return out


def sources(text: str, units: list[Any], spans: dict[str, tuple[int, int]] | None) -> dict[str, float]:
    """Summed SHAP value per source: a column (templated text, `spans`) or a word (free text); the template's
    wording and punctuation in their own buckets."""
    out: dict[str, float] = {}
    starts = unit_starts(text, units) if spans is not None else [None] * len(units)
    for u, at in zip(units, starts):
        if spans is not None:
            inside = [(e - s, c) for c, (s, e) in spans.items() if at is not None and s <= at < e]
            key = min(inside)[1] if inside else TEMPLATE
        else:
            key = u.key if u.kind == "word" else PUNCT
        out[key] = out.get(key, 0.0) + float(u.value)
    return out


def statement_for(source: str, table: dict[str, str]) -> tuple[str, bool]:
    if source in table:
        return str(table[source]), True
    low = {k.lower(): v for k, v in table.items()}
    if source.lower() in low:
        return str(low[source.lower()]), True
    words = source.replace("_", " ").strip()
    return words[:1].upper() + words[1:], False


def notice(row: int, rid: str, score: float, contributions: dict[str, float], *, table: dict[str, str],
           protected: set[str], min_share: float, top_k: int, decided: str | None = None) -> Notice:
    push = {k: max(0.0, -v) for k, v in contributions.items()}
    total = sum(push.values())
    reasons = []
    ranked = sorted(((p, k) for k, p in push.items() if p > 0), key=lambda pk: (-pk[0], pk[1]))
    for p, k in ranked:
        if k in (TEMPLATE, PUNCT):
            continue
        share = p / total if total > 0 else 0.0
        if share < min_share or len(reasons) >= top_k:
            break
        statement, known = statement_for(k, table)
        reasons.append(Reason(k, statement, share, contributions[k], k.lower() in protected, known))
    top = next((k for _, k in ranked if k not in (TEMPLATE, PUNCT)), None)
    unattributed = (push.get(TEMPLATE, 0.0) + push.get(PUNCT, 0.0)) / total if total > 0 else 0.0
    return Notice(row, rid, score, reasons, top, unattributed, push, decided)


def notices_csv(notices: list[dict[str, Any]]) -> str:
    """One line per principal reason of each notice (a decline without a reason: one line with no source), for a
    servicing system. Cells that a spreadsheet would run as a formula are quoted with a leading apostrophe."""
    from audit.data import safe_cell
    from audit.pii import redact

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_FIELDS)
    for n in notices:
        base = [n.get("row"), safe_cell(redact(str(n.get("id", "")))), n.get("score"), "declined"]
        reasons = n.get("reasons") or [None]
        for rank, r in enumerate(reasons, 1):
            if r is None:
                w.writerow(base + ["", "", "", "", "", ""])
            else:
                w.writerow(base + [rank, safe_cell(redact(str(r["source"]))), safe_cell(str(r["statement"])), r["share"],
                                   r["protected"], r["has_statement"]])
    return buf.getvalue()


def declined_rows(y_pred: np.ndarray, budget: int, seed: int) -> list[int]:
    """The declined eval rows the budget covers: every one when the budget allows, else a seeded sample of
    `budget` of them (in eval order)."""
    declined = np.flatnonzero(np.asarray(y_pred) == 0)
    if len(declined) <= budget:
        return [int(i) for i in declined]
    rng = np.random.default_rng([seed, 1002])
    return sorted(int(i) for i in rng.choice(declined, size=budget, replace=False))


def check_notices_out(path: str | Path, inputs: list[Any], model_dir: str | Path | None) -> Path:
    """`--adverse-action FILE`, checked before the run: never an input, never inside the model folder, and an
    existing file only when it is a notices CSV that audit wrote (its header), so nothing else is replaced."""
    import os

    from audit.errors import OutputError

    out = Path(path)
    real = os.path.realpath(out)
    if model_dir is not None and Path(os.path.realpath(model_dir)) in Path(real).parents:
        raise OutputError(f"--adverse-action {out}: will not write inside the model folder {model_dir}")
    for p in inputs:
        if p is not None and os.path.realpath(p) == real:
            raise OutputError(f"--adverse-action {out}: will not write over the input {p}")
    if os.path.lexists(out):
        header = ""
        if out.is_file() and not out.is_symlink():
            try:
                with open(out, encoding="utf-8") as fh:
                    header = fh.readline().strip()
            except (OSError, UnicodeDecodeError):
                header = ""
        if header != ",".join(CSV_FIELDS):
            raise OutputError(f"--adverse-action {out}: will not replace a file that is not a notices CSV audit "
                              "wrote; choose another name")
    if not out.parent.is_dir():
        raise OutputError(f"--adverse-action {out}: the folder {out.parent} does not exist")
    return out


def write_notices_csv(path: str | Path, notices: list[dict[str, Any]]) -> None:
    """Write the CSV next to its final name and rename it into place (no half-written file)."""
    import os
    import secrets

    from audit.errors import OutputError

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(3)}")
    try:
        tmp.write_text(notices_csv(notices), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"--adverse-action {path}: cannot write: {exc.strerror or exc}") from None
