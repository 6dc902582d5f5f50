"""Words from SHAP's token pieces, and what the explainability family reads from them: the global word importance
(mean |SHAP| per row), its ranking, the additivity error and the rank stability of two rankings.

Pure functions over attributions, shared by the explainability checks (audit/checks/explainability.py), the SHAP
step's fidelity comparison (audit/shapstep.py) and the adverse-action reasons; no model and no shap here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from audit.mergeable import TokenImportance


def _r(x: float, digits: int = 6) -> float:
    return round(float(x), digits)
# ---------------------------------------------------------------- words from shap's token pieces


@dataclass
class Unit:
    """One displayed unit of a text: a word (letters and digits) or a run of punctuation."""

    text: str  # as it stands in the text, with the whitespace that follows it
    value: float
    kind: str  # "word" or "punct"

    @property
    def key(self) -> str:
        return self.text.strip().lower()


def merge_pieces(pieces: Sequence[str], values: Sequence[float], specials: frozenset[str] = frozenset()) -> list[Unit]:
    """Merge shap's token pieces into words; drop special tokens ('' or one of `specials`).

    A piece continues the previous word when it starts with `##` (WordPiece), or when the previous piece does
    not end in whitespace and both sides of the joint are letters or digits ('116' + '9 ' is '1169 ').
    Punctuation forms its own units ('account' + ': ' gives 'account' and ': ')."""
    units: list[Unit] = []
    for piece, value in zip(pieces, values):
        piece = str(piece)
        if not piece.strip() or piece.strip() in specials:
            if piece and not piece.strip() and units:
                units[-1].text += piece  # whitespace of a dropped piece stays with the text
            continue
        cont = piece.startswith("##")
        core = piece[2:] if cont else piece
        prev = units[-1] if units else None
        joins = (prev is not None and not core[:1].isspace() and not prev.text[-1:].isspace()
                 and (cont or (prev.text[-1:].isalnum() and core[:1].isalnum())))
        if joins:
            prev.text += core
            prev.value += float(value)
            if any(c.isalnum() for c in core):
                prev.kind = "word"
        else:
            units.append(Unit(core, float(value), "word" if any(c.isalnum() for c in core) else "punct"))
    return units


@dataclass
class WordStat:
    word: str
    mean_abs: float  # mean over rows of the sum of |SHAP| of the word's occurrences (absent: 0)
    mean_signed: float  # the same with signs
    occurrences: int
    rows: int  # rows that contain the word
    share: float  # share of the total |SHAP| of all units

    def to_dict(self, rank: int) -> dict[str, Any]:
        return {"rank": rank, "word": self.word, "mean_abs": _r(self.mean_abs), "mean_signed": _r(self.mean_signed),
                "occurrences": self.occurrences, "rows": self.rows, "share": _r(self.share)}


def token_importance(rows: Sequence[Sequence[Unit]]) -> TokenImportance:
    """The mergeable statistic of the given rows, added in their order: each row's words by key (lower case),
    its other units (punctuation) counted in the total |SHAP| only."""
    ti = TokenImportance()
    for units in rows:
        ti.update([u.key if u.kind == "word" else None for u in units], [u.value for u in units])
    return ti


def ranking(ti: TokenImportance) -> list[WordStat]:
    """Words ranked by mean |SHAP| per row (ties by word), from a (merged) token importance."""
    n = ti.rows_seen()
    if not n:
        return []
    total = ti.total
    out = [WordStat(k, s / n, ti.signed[k] / n, ti.counts[k], ti.in_rows[k], s / total if total > 0 else 0.0)
           for k, s in ti.sums.items()]
    out.sort(key=lambda w: (-w.mean_abs, w.word))
    return out


def global_importance(rows: Sequence[Sequence[Unit]]) -> list[WordStat]:
    """Words ranked by mean |SHAP| per row (ties by word), over the given rows' units."""
    return ranking(token_importance(rows))


def additivity_errors(base: Sequence[float], sums: Sequence[float], outputs: Sequence[float]) -> np.ndarray:
    """|base value + sum of SHAP values - model output| per row."""
    return np.abs(np.asarray(base, float) + np.asarray(sums, float) - np.asarray(outputs, float))


def rank_stability(a: Sequence[WordStat], b: Sequence[WordStat], top_k: int) -> tuple[float | None, list[str]]:
    """Spearman rank correlation of two global importances over the union of their top-k words (a word missing
    from one side counts 0 there); None when it is undefined (fewer than 3 words, or a constant side)."""
    from scipy.stats import spearmanr

    ia = {w.word: w.mean_abs for w in a}
    ib = {w.word: w.mean_abs for w in b}
    words = sorted({w.word for w in a[:top_k]} | {w.word for w in b[:top_k]})
    if len(words) < 3:
        return None, words
    xa = np.array([ia.get(w, 0.0) for w in words])
    xb = np.array([ib.get(w, 0.0) for w in words])
    if np.ptp(xa) == 0 or np.ptp(xb) == 0:
        return None, words
    rho = float(spearmanr(xa, xb).statistic)
    return (rho if math.isfinite(rho) else None), words
