"""Explainability family: which words the model leans on (SHAP), whether the explanations add up, whether the
ranking of words is stable, and whether prohibited terms are among the words the model leans on.

What is explained. The model's log-odds of the positive label, log p(pos) / p(neg) = z_pos - z_neg (the
difference of its two logits), not the probability: on the log-odds scale a word's push does not shrink to
nothing when the model is already sure, so a word the model leans on shows up in confident rows too, and the
values of a text add up exactly to its log-odds. Each SHAP value reads "this word moved the log-odds of the
positive label by so much"; +0.1 multiplies the odds by about 1.1.

How. `shap.Explainer` (the partition algorithm, Owen values over the tokenizer's hierarchy of tokens) with
`shap.maskers.Text(tokenizer)`: masked tokens become the tokenizer's mask token, and every masked text is scored
in batches through the run's model by the same code that scored the eval set (audit.scoring). `max_evals` model
calls per text bound the cost; with fewer calls than tokens, the explainer resolves the clusters of tokens that
matter most and splits the credit of the others evenly among their tokens.

Which rows. A seeded random sample of `rows` eval rows (the policy's seed) gives the global importance, its
stability and the prohibited-term measurements: a representative sample, not one biased towards errors. Rows
a reviewer wants are explained too and shown in the report: the `examples` highest-scored rows, the false
positives the model was surest of and the false negatives it was surest of (they enter the additivity check,
not the global importance).

Words. Sub-word pieces are merged into words (WordPiece `##` continuations, and shap's token strings, which
carry the whitespace that follows them: a piece that does not end in whitespace continues into the next letter
or digit); a word's value is the sum of its pieces' values. Special tokens ([CLS], [SEP]) are dropped; runs of
punctuation are kept as their own units (shown in examples, counted in the total |SHAP|, never ranked as
words). Words are compared in lower case.

Global importance of a word = mean over the sampled rows of the sum of |SHAP| of its occurrences (a row
without the word counts 0), so a word ranks high when the model leans on it strongly, often, or both. Its
signed mean says which way it pushes on average. It is read from a mergeable statistic,
`audit.mergeable.TokenImportance` (per word: sums of |SHAP| and of signed SHAP, occurrences, rows containing
it; rows seen; total |SHAP|), so that explanations computed elsewhere (partitions of rows) merge into the same
ranking; the checks here are the one-partition case: the ranking, the top k, the prohibited-term share and
the stability of the ranking all come from such objects (one per set of rows, rows added in the sample's order).

Shared budget. All checks of the family read one explanation per run: give the same `rows`, `max_evals`,
`examples` on every explainability rule (or leave the defaults). Rules that differ make the run explain a
second sample. The cost is about (rows + 3 x examples) x max_evals model calls: the default budget makes 4,300
on the demo model (MiniLM, texts of about 88 tokens), about 14 ms each on 2 CPU cores, so about a minute, plus
~8 s to import shap and compile its numba code once per process.

An explanation that does not add up cannot be trusted. When base value + sum of SHAP values differs from the
model's log-odds for the row (as the run scored it) by more than `tolerance` on any explained row, every
measurement of the family carries an error, so each finding is ERROR, except one whose value violates its rule:
a violation that was measured stays FAIL (or WARN), with the error beside it (audit.judge).

Which rows are evidence (each measurement's `n`): the sampled rows explained for the ranking, the share and the
stability; every explained row (sample and reviewer's rows) for the additivity error.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from audit import stats
from audit.checks import check
from audit.context import CheckContext
from audit.mergeable import TokenImportance
from audit.result import Measurement

NEEDS_ROWS = "it explains the model on eval texts, and the statistics carry no text and no model"
BUDGET = {"rows": 40, "max_evals": 100, "examples": 1, "tolerance": 0.01}
TERM_PARAMS = {"terms": [], "term_lists": [], "top_k": 20}
BATCH_SIZE = 64
LOCKSTEP = 16  # texts explained side by side, their masked texts scored in shared batches
MIN_HALF = 5  # default of the rule parameter `min_half_rows`: rows in each half before a rank correlation is read
MIN_WORDS = 10  # default of `stability_words`: a ranking rule reads the stability of at least this many top words
STABILITY = {"min_half_rows": MIN_HALF}  # shared by both checks that read the stability of the ranking
TABLE_WORDS = 40  # words kept in the stored global-importance table
MAX_EXAMPLES = 5
OUTPUT = "log-odds of the positive label"


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


# ---------------------------------------------------------------- prohibited terms


def load_terms(terms: Sequence[str] = (), term_lists: Sequence[str] = ()) -> tuple[list[str], list[str]]:
    """Lower-case single-word terms from `terms` and from named term lists (audit/data/terms/<name>.yaml, shared
    with the counterfactual fairness check, or a .yaml path in the same shape); and the multi-word terms, which a
    word ranking cannot match and which are returned apart."""
    from audit.swaps import load

    if isinstance(terms, str) or isinstance(term_lists, str):
        raise ValueError("terms and term_lists must be lists")
    found: set[str] = set()
    for t in terms:
        if not isinstance(t, str) or not t.strip():
            raise ValueError(f"terms must be non-empty words, got {t!r}")
        found.add(" ".join(t.split()).lower())
    for name in term_lists:
        found.update(load(str(name).strip()).mapping)  # every term of the list, both sides of each pair
    single = sorted(t for t in found if " " not in t)
    multi = sorted(t for t in found if " " in t)
    return single, multi


# ---------------------------------------------------------------- one explanation per run


@dataclass
class Row:
    index: int  # position in the eval set
    text: str
    base: float
    values: np.ndarray  # per token piece
    pieces: list[str]
    output: float  # the model's log-odds for the row, as the run scored it
    units: list[Unit] = field(default_factory=list)

    @property
    def error(self) -> float:
        return abs(self.base + float(self.values.sum()) - self.output)


@dataclass
class Explained:
    rows: dict[int, Row]  # eval index -> explanation
    sample: list[int]  # eval indices of the random sample, in the order drawn
    reviewer: dict[str, list[int]]  # kind -> eval indices
    max_evals: int
    seconds: float
    evaluations: int
    tolerance: float
    _importance: dict[tuple[int, ...], TokenImportance] = field(default_factory=dict, repr=False, compare=False)

    @property
    def errors(self) -> np.ndarray:
        return np.array([r.error for r in self.rows.values()])

    @property
    def max_error(self) -> float:
        return float(self.errors.max()) if self.rows else 0.0

    def units(self, indices: Sequence[int]) -> list[list[Unit]]:
        return [self.rows[i].units for i in indices]

    def importance(self, indices: Sequence[int]) -> TokenImportance:
        """The token importance of these rows (added in this order), computed once per run and shared by the
        family's checks."""
        key = tuple(int(i) for i in indices)
        if key not in self._importance:
            self._importance[key] = token_importance(self.units(key))
        return self._importance[key]

    def ranking(self, indices: Sequence[int]) -> list[WordStat]:
        return ranking(self.importance(indices))

    def broken(self) -> str | None:
        """Why the explanations cannot be trusted, or None."""
        if self.max_error <= self.tolerance:
            return None
        worst = max(self.rows.values(), key=lambda r: r.error)
        bad = int((self.errors > self.tolerance).sum())
        return (f"the explanations do not add up: base value + sum of SHAP values differs from the model's "
                f"{OUTPUT} by up to {self.max_error:.3g} (eval row {worst.index}; {bad} of {len(self.rows)} rows "
                f"over the tolerance {self.tolerance:g})")


def shap_explain(predict: Callable[[list[str]], np.ndarray], tokenizer: Any, texts: Sequence[str], *,
                 max_evals: int, batch_size: int = BATCH_SIZE, progress: bool = False,
                 desc: str = "SHAP explanations", lockstep: int = LOCKSTEP) -> list[tuple[list[str], np.ndarray, float]]:
    """(token pieces, SHAP values, base value) per text: shap's partition explainer over a Text masker.

    With `lockstep` > 1, that many texts are explained side by side and their masked texts share the model's
    batches (audit.shapstep); 1 is shap's own path, one text after another."""
    import shap
    from tqdm.auto import tqdm

    with tqdm(total=len(texts), desc=desc, unit="text", disable=not progress, leave=False) as bar:
        if lockstep > 1 and len(texts) > 1:
            from audit.shapstep import explain_lockstep

            return explain_lockstep(predict, tokenizer, texts, max_evals=max_evals, batch_size=batch_size,
                                    width=lockstep, on_text=lambda: bar.update(1))
        masker = shap.maskers.Text(tokenizer)
        explainer = shap.Explainer(lambda x: predict([str(t) for t in x]), masker, algorithm="partition")
        out = []
        for text in texts:
            sv = explainer([str(text)], max_evals=int(max_evals), batch_size=batch_size, silent=True)
            out.append(([str(p) for p in sv.data[0]], np.asarray(sv.values[0], dtype=np.float64),
                        float(np.asarray(sv.base_values).reshape(-1)[0])))
            bar.update(1)
    return out


def _log_odds(probs: np.ndarray, pos: int) -> np.ndarray:
    """log p(pos) - log p(neg) from a (n, 2) probability array; +-inf where one side is 0."""
    with np.errstate(divide="ignore"):
        return np.log(probs[:, pos]) - np.log(probs[:, 1 - pos])


def _model_predict(ctx: CheckContext, counter: list[int]) -> Callable[[list[str]], np.ndarray]:
    from audit.scoring import score_texts

    b = ctx.bundle
    if b is None or b.model is None:
        raise RuntimeError("explanations need the model, and the run has none loaded")
    m = b.manifest
    pos = m.labels.index(m.positive_label)

    def predict(texts: list[str]) -> np.ndarray:
        counter[0] += len(texts)
        preds = score_texts(b.model, b.tokenizer, texts, max_length=m.max_length, positive_index=pos,
                            batch_size=min(max(len(texts), 1), BATCH_SIZE), progress=False)
        return _log_odds(preds.probs, pos)

    return predict


def _run_outputs(ctx: CheckContext) -> np.ndarray:
    """The model's log-odds for every eval row as the run scored it."""
    preds = ctx.predictions
    if preds is not None and getattr(preds, "probs", None) is not None and preds.probs.shape[1] == 2:
        return _log_odds(preds.probs, preds.positive_index)
    s = np.clip(np.asarray(ctx.score, float), 1e-300, 1 - 1e-16)
    return np.log(s) - np.log1p(-s)


def choose_rows(ctx: CheckContext, rows: int, examples: int) -> tuple[list[int], dict[str, list[int]]]:
    """The seeded random sample, and the rows a reviewer wants (highest-scored, surest false positives and
    false negatives)."""
    n = len(ctx.texts)
    rng = np.random.default_rng(ctx.seed)
    sample = [int(i) for i in rng.choice(n, size=min(int(rows), n), replace=False)] if n else []
    score = np.asarray(ctx.score, float)
    order = np.argsort(-score, kind="stable")
    y_pred, y_true = np.asarray(ctx.y_pred), np.asarray(ctx.y_true)
    fp = [int(i) for i in order[(y_pred[order] == 1) & (y_true[order] == 0)][:examples]]
    low_first = order[::-1]
    fn = [int(i) for i in low_first[(y_pred[low_first] == 0) & (y_true[low_first] == 1)][:examples]]
    reviewer = {"highest-scored": [int(i) for i in order[:examples]], "false positive": fp, "false negative": fn}
    return sample, reviewer


def explain(ctx: CheckContext, rows: int, max_evals: int, examples: int, tolerance: float) -> Explained:
    """The family's one explanation per budget, cached on the context (an exception is cached too)."""
    rows, max_evals, examples = int(rows), int(max_evals), int(examples)
    if rows < 2 or max_evals < 2 or examples < 0 or not tolerance >= 0:
        raise ValueError(f"budget out of range: rows {rows} (>= 2), max_evals {max_evals} (>= 2), "
                         f"examples {examples} (>= 0), tolerance {tolerance} (>= 0)")
    cache = ctx.shared.explanations
    key = (rows, max_evals, examples, ctx.seed)
    if key not in cache:
        try:
            cache[key] = _explain(ctx, rows, max_evals, examples)
        except Exception as exc:  # every check of the family reports the same failure, computed once
            cache[key] = exc
    got = cache[key]
    if isinstance(got, Exception):
        raise got
    got.tolerance = float(tolerance)
    return got


def _explain(ctx: CheckContext, rows: int, max_evals: int, examples: int) -> Explained:
    t0 = time.perf_counter()
    sample, reviewer = choose_rows(ctx, rows, examples)
    todo = list(dict.fromkeys(sample + [i for ix in reviewer.values() for i in ix]))
    counter = [0]
    predict = _model_predict(ctx, counter)
    tok = ctx.bundle.tokenizer
    specials = frozenset(str(t) for t in getattr(tok, "all_special_tokens", []) or [])
    got = shap_explain(predict, tok, [ctx.texts[i] for i in todo], max_evals=max_evals,
                       progress=ctx.progress)
    outputs = _run_outputs(ctx)
    explained = {}
    for i, (pieces, values, base) in zip(todo, got):
        explained[i] = Row(i, ctx.texts[i], base, values, pieces, float(outputs[i]),
                           merge_pieces(pieces, values, specials))
    return Explained(explained, sample, reviewer, max_evals, time.perf_counter() - t0, counter[0], 0.0)


# ---------------------------------------------------------------- details for the report


def _r(x: float, digits: int = 6) -> float:
    return round(float(x), digits)


def _redact_units(text: str, units: list[Unit]) -> tuple[list[list[Any]], bool]:
    """THE call site of PII redaction for explanation snippets (audit.pii): units that overlap a find of personal
    data are merged into one unit whose text has the find replaced by its token ("[PHONE]") and whose value is
    their sum. Returns [text, value, kind] triples and whether anything was redacted."""
    from audit import pii

    joined = "".join(u.text for u in units)
    finds = sorted(pii.find(joined), key=lambda f: f.start)
    if not finds:
        return [[u.text, _r(u.value), u.kind] for u in units], False
    starts = np.cumsum([0] + [len(u.text) for u in units])
    hit = [any(f.start < starts[j + 1] and f.end > starts[j] for f in finds) for j in range(len(units))]
    out: list[list[Any]] = []
    j = 0
    while j < len(units):
        if not hit[j]:
            out.append([units[j].text, _r(units[j].value), units[j].kind])
            j += 1
            continue
        k = j
        while k + 1 < len(units) and hit[k + 1]:
            k += 1
        a, b = int(starts[j]), int(starts[k + 1])
        piece, last = [], a
        for f in finds:
            if f.start >= a and f.end <= b:
                piece += [joined[last:f.start], pii.TOKENS.get(f.kind, "[REDACTED]")]
                last = f.end
        piece.append(joined[last:b])
        out.append(["".join(piece), _r(sum(u.value for u in units[j:k + 1])), "word"])
        j = k + 1
    return out, True


def _redact_word(word: str) -> str:
    from audit import pii

    return pii.redact(word)


def _row_id(ctx: CheckContext, i: int) -> str:
    m = ctx.manifest
    frame = ctx.frame
    if frame is None:
        return str(i)
    col = getattr(m, "id_column", None) if m is not None else None
    if col and col in frame.columns:
        return str(frame[col].iloc[i])
    return str(frame.index[i])


def _examples(ctx: CheckContext, ex: Explained) -> list[dict[str, Any]]:
    """3 to 5 rows for the report: the reviewer's rows, then the sample's borderline and lowest-scored rows."""
    score = np.asarray(ctx.score, float)
    pos, neg = ctx.positive_label, ctx.negative_label
    chosen: list[tuple[int, str, str]] = []
    for kind, idx in ex.reviewer.items():
        if not idx:
            continue
        i = idx[0]
        s = score[i]
        why = {
            "highest-scored": f"The highest score of all {len(score):,} eval rows ({s:.3f} for '{pos}'): what the "
                              f"model leans on when it is surest of '{pos}'.",
            "false positive": f"The false positive the model was surest of: scored {s:.3f} for '{pos}' (predicted "
                              f"'{pos}'), the true label is '{neg}'.",
            "false negative": f"The false negative the model was surest of: scored {s:.3f} for '{pos}' (predicted "
                              f"'{neg}'), the true label is '{pos}'.",
        }[kind]
        chosen.append((i, kind, why))
    if ex.sample:
        border = min(ex.sample, key=lambda i: (abs(score[i] - ctx.threshold), i))
        chosen.append((border, "borderline", f"Of the sampled rows, the closest to the decision threshold "
                                             f"{ctx.threshold:g} (score {score[border]:.3f}): what tips a close call."))
        low = min(ex.sample, key=lambda i: (score[i], i))
        chosen.append((low, "lowest-scored", f"Of the sampled rows, the lowest score ({score[low]:.3f} for '{pos}'): "
                                             f"the reasons behind the sample's strongest decision for '{neg}'."))
    out, seen = [], set()
    for i, kind, why in chosen:
        if i in seen or len(out) >= MAX_EXAMPLES:
            continue
        seen.add(i)
        r = ex.rows[i]
        units, redacted = _redact_units(r.text, r.units)
        out.append({"row_id": _row_id(ctx, i), "kind": kind, "why": why, "score": _r(score[i]),
                    "predicted": pos if ctx.y_pred[i] else neg, "true": pos if ctx.y_true[i] else neg,
                    "base_value": _r(r.base), "shap_sum": _r(float(r.values.sum())), "output": _r(r.output),
                    "units": units, "redacted": redacted})
    return out


def _budget_details(ex: Explained) -> dict[str, Any]:
    return {"output": OUTPUT, "algorithm": "shap partition explainer, Text masker", "max_evals": ex.max_evals,
            "sample_rows": len(ex.sample), "rows_explained": len(ex.rows),
            "reviewer_rows": {k: len(v) for k, v in ex.reviewer.items()}, "model_evaluations": ex.evaluations}
    # wall time is not a measurement (result.json must be reproducible): the runner records check timings


def _ranked(stats_: Sequence[WordStat], limit: int) -> list[dict[str, Any]]:
    return [dict(w.to_dict(rank), word=_redact_word(w.word)) for rank, w in enumerate(stats_[:limit], start=1)]


# ---------------------------------------------------------------- checks


_RANGES = {"rows": (2, None, True), "max_evals": (2, None, True), "examples": (0, None, True),
           "tolerance": (0, None, False), "top_k": (1, None, True), "min_stability": (-1, 1, False),
           "min_half_rows": (2, None, True), "stability_words": (3, None, True)}


def _validate(params: dict) -> None:
    """At policy load: budget and ranking parameters in range, terms non-empty words, term lists that exist
    (raises ValueError naming the problem). A value of the wrong type is left to the policy's type check."""
    for key, (lo, hi, whole) in _RANGES.items():
        v = params.get(key)
        if key not in params or isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if whole and v != int(v):
            raise ValueError(f"{key} must be a whole number, got {v:g}")
        if hi is not None and not lo <= v <= hi:
            raise ValueError(f"{key} must be between {lo:g} and {hi:g}, got {v:g}")
        if v < lo:
            raise ValueError(f"{key} must be at least {lo:g}, got {v:g}")
    terms, lists = params.get("terms"), params.get("term_lists")
    if isinstance(terms, list) and isinstance(lists, list):
        load_terms(terms, lists)


def _start(ctx: CheckContext, check_id: str, params: dict) -> tuple[Measurement | None, Explained | None]:
    if not len(ctx.texts):
        return Measurement(check_id, None, skipped="the eval set has no rows"), None
    ex = explain(ctx, params["rows"], params["max_evals"], params["examples"], params["tolerance"])
    return None, ex


def _guard(m: Measurement, ex: Explained) -> Measurement:
    """Explanations that do not add up make the measurement carry an error. The judge makes such a finding
    ERROR, unless its value shows a violation of the rule: that stands (FAIL/WARN), with the error beside it."""
    why = ex.broken()
    if why:
        m.error = why
    return m


@check("explainability.additivity_error", title="SHAP additivity error", direction="lower", params=BUDGET,
       validate=_validate, cost="shap", evidence="rows explained")
def additivity_error(ctx: CheckContext, **params) -> Measurement:
    """Largest gap, over the explained rows, between base value + sum of SHAP values and the model's log-odds for the row.

    SHAP values are efficient: for each text they must add up to the model's output. A gap means the explanation
    explains something other than the decision in this report (a masker that changes the text, a model scored
    differently); above the check's tolerance every explainability finding is an ERROR."""
    early, ex = _start(ctx, "explainability.additivity_error", params)
    if early:
        return early
    errs = ex.errors
    worst = max(ex.rows.values(), key=lambda r: r.error)
    details = {**_budget_details(ex), "tolerance": ex.tolerance, "mean_error": _r(float(errs.mean()), 9),
               "worst_row": _row_id(ctx, worst.index), "rows_over_tolerance": int((errs > ex.tolerance).sum()),
               "examples": _examples(ctx, ex)}
    return _guard(Measurement("explainability.additivity_error", float(errs.max()), n=len(errs), details=details), ex)


@check("explainability.stability", title="Stability of the word ranking (Spearman)", direction="higher",
       params={**BUDGET, "top_k": 20, **STABILITY}, validate=_validate, cost="shap",
       evidence="sampled rows explained")
def stability(ctx: CheckContext, **params) -> Measurement:
    """Spearman rank correlation of the global word importance between two halves of the explained sample.

    Over the union of the top-k words of both halves. Near 1, the ranking does not depend on which rows were
    drawn; a low value means the sample is too small (or the model too erratic) for a ranking to be read, and
    a pass of the ranking rules (no prohibited term in the top k) is then INCONCLUSIVE. With fewer than
    `min_half_rows` (default 5) rows in a half, it is INCONCLUSIVE."""
    cid = "explainability.stability"
    early, ex = _start(ctx, cid, params)
    if early:
        return early
    top_k = int(params["top_k"])
    half_a, half_b = ex.sample[0::2], ex.sample[1::2]
    ia, ib = ex.ranking(half_a), ex.ranking(half_b)
    everything = ex.ranking(ex.sample)
    rho, words = rank_stability(ia, ib, top_k)
    details = {**_budget_details(ex), "top_k": top_k, "halves": [len(half_a), len(half_b)],
               "words_compared": len(words), "importance": _ranked(everything, max(TABLE_WORDS, top_k)),
               "top_half_a": [_redact_word(w.word) for w in ia[:top_k]],
               "top_half_b": [_redact_word(w.word) for w in ib[:top_k]]}
    m = Measurement(cid, rho, n=len(ex.sample), details=details)
    min_half = int(params.get("min_half_rows", MIN_HALF))
    if len(half_b) < min_half:
        m.inconclusive = f"too few sampled rows to compare two halves ({len(half_a)} and {len(half_b)}; {min_half} each needed)"
    elif rho is None:
        m.inconclusive = f"the rank correlation is undefined ({len(words)} words, or no variation in one half)"
    return _guard(m, ex)


def _terms(check_id: str, params: dict) -> tuple[list[str], list[str], Measurement | None]:
    terms, multi = load_terms(params.get("terms") or [], params.get("term_lists") or [])
    if not terms:
        why = ("no prohibited terms are given (terms or term_lists)" if not multi
               else f"only multi-word terms were given ({', '.join(multi)}), which a word ranking cannot match")
        return terms, multi, Measurement(check_id, None, skipped=why)
    return terms, multi, None


def _term_rows(ranked: Sequence[WordStat], terms: set[str]) -> list[dict[str, Any]]:
    return [w.to_dict(rank) for rank, w in enumerate(ranked, start=1) if w.word in terms]


def _prohibited_start(ctx: CheckContext, cid: str, params: dict):
    """(a measurement to return early, or None; the explanation; the terms; the multi-word terms not matched)."""
    terms, multi, skipped = _terms(cid, params)
    if skipped:
        return skipped, None, terms, multi
    early, ex = _start(ctx, cid, params)
    return early, ex, terms, multi


@check("explainability.prohibited_terms", title="Share of |SHAP| on prohibited terms", direction="lower",
       unit="share", params={**BUDGET, **TERM_PARAMS}, validate=_validate, cost="shap",
       evidence="sampled rows explained")
def prohibited_terms(ctx: CheckContext, **params) -> Measurement:
    """Share of the total |SHAP| of the sampled rows that falls on prohibited terms (protected attributes or their proxies).

    How much of what the model leans on is a prohibited word (terms given by the rule and named term lists
    shared with the counterfactual fairness check). The interval is a Poisson bootstrap over the sampled rows.
    Whether any of them ranks in the top k is the separate count explainability.prohibited_terms_in_top_k."""
    cid = "explainability.prohibited_terms"
    early, ex, terms, multi = _prohibited_start(ctx, cid, params)
    if early:
        return early
    top_k = int(params["top_k"])
    wanted = set(terms)
    # one token importance per sampled row (the bootstrap resamples rows): W's first row, all ones, sums them as
    # merging does, so the value is the merged sample's share (to rounding); the replicates reweight the rows
    per_row = [ex.importance([i]) for i in ex.sample]
    on_terms = np.array([t.term_sum(wanted) for t in per_row])
    total = np.array([t.total for t in per_row])
    W = stats.poisson_weights(len(per_row), ctx.replicates, ctx.seed)
    with np.errstate(divide="ignore", invalid="ignore"):
        shares = np.where(W @ total > 0, (W @ on_terms) / (W @ total), np.nan)
    ranked = ex.ranking(ex.sample)
    found = _term_rows(ranked, wanted)
    low, high = stats.percentile_interval(shares[1:], ctx.confidence)
    value = None if not math.isfinite(shares[0]) else float(shares[0])
    details = {**_budget_details(ex), "top_k": top_k, "terms": terms, "term_lists": list(params.get("term_lists") or []),
               "not_matched": multi, "found": found, "in_top_k": [r for r in found if r["rank"] <= top_k]}
    m = Measurement(cid, value, low, high, n=len(per_row), details=details)
    if value is None:
        m.inconclusive = "the sampled rows carry no SHAP values to share out"
    return _guard(m, ex)


@check("explainability.prohibited_terms_in_top_k", title="Prohibited terms among the top-k words",
       direction="lower", unit="count",
       params={**BUDGET, **TERM_PARAMS, "min_stability": 0.5, **STABILITY, "stability_words": MIN_WORDS},
       validate=_validate, cost="shap", evidence="sampled rows explained")
def prohibited_terms_in_top_k(ctx: CheckContext, **params) -> Measurement:
    """Number of prohibited terms among the k words the model leans on most (global importance over the sampled rows).

    A rule `max: 0` forbids any of them in the top k. A pass is only read from a stable ranking: when the
    Spearman correlation between the two halves of the sample (as explainability.stability measures it, over the
    top k words, at least `stability_words`, default 10) is below `min_stability`, or cannot be measured (fewer
    than `min_half_rows` rows in a half), a count within the rule is INCONCLUSIVE, with the terms each half ranks
    in its top k; a count over the rule is a violation whatever the stability."""
    cid = "explainability.prohibited_terms_in_top_k"
    early, ex, terms, multi = _prohibited_start(ctx, cid, params)
    if early:
        return early
    top_k = int(params["top_k"])
    wanted = set(terms)
    ranked = ex.ranking(ex.sample)
    in_top = [r for r in _term_rows(ranked, wanted) if r["rank"] <= top_k]
    half_a, half_b = ex.ranking(ex.sample[0::2]), ex.ranking(ex.sample[1::2])
    rho, _ = rank_stability(half_a, half_b, max(top_k, int(params.get("stability_words", MIN_WORDS))))
    details = {**_budget_details(ex), "top_k": top_k, "terms": terms,
               "term_lists": list(params.get("term_lists") or []), "not_matched": multi, "in_top_k": in_top,
               "top_k_words": [_redact_word(w.word) for w in ranked[:top_k]], "stability": rho,
               "min_stability": params["min_stability"],
               "in_top_k_half_a": [w.word for w in half_a[:top_k] if w.word in wanted],
               "in_top_k_half_b": [w.word for w in half_b[:top_k] if w.word in wanted]}
    m = Measurement(cid, float(len(in_top)), n=len(ex.sample), details=details)
    # An unstable ranking limits what a pass says (other rows could bring a prohibited term into the top k), not
    # what a violation says: terms that the whole sample ranks in the top k are there. So the measurement is
    # `incomplete`, not `inconclusive`: a violation stands, a pass is INCONCLUSIVE.
    if len(ex.sample[1::2]) < int(params.get("min_half_rows", MIN_HALF)) or rho is None:
        m.incomplete = ("the stability of the word ranking cannot be measured on this sample, so a top k without "
                        "prohibited terms could change with other rows")
    elif rho < float(params["min_stability"]):
        m.incomplete = (f"the word ranking is unstable (Spearman {rho:.2f} between two halves of the sample, "
                        f"{float(params['min_stability']):g} needed); the top {top_k} could change with other rows")
    return _guard(m, ex)
