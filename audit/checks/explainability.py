"""Explainability family: which words the model leans on (SHAP), whether the explanations add up, whether the
ranking of words is stable, and whether prohibited terms are among the words the model leans on.

What is explained. The model's log-odds of the positive label, log p(pos) / p(neg) = z_pos - z_neg (the
difference of its two logits), not the probability: on the log-odds scale a word's push does not shrink to
nothing when the model is already sure, so a word the model leans on shows up in confident rows too, and the
values of a text add up exactly to its log-odds. Each SHAP value reads "this word moved the log-odds of the
positive label by so much"; +0.1 multiplies the odds by about 1.1.

Which output (the budget's `explain`, shared by the family's rules like `rows`):
- `auto` (the default): the favourable (positive) label for a binary model, exactly as every earlier release;
  the predicted class for a model of more classes.
- `predicted`: each row's decided class, log p(c) / (1 - p(c)) for the row's own class c (the most probable
  class; for a binary model the label decided at the threshold). A row's values then read "this word moved
  the odds of what the model decided"; a positive signed mean means a word pushes rows towards whatever they
  were decided as.
- `favourable`: the favourable outcome, log P(favourable) / P(unfavourable), with P(favourable) the sum over the
  policy's favourable classes (for a binary model: the positive label, the default numbers).
- a label of the model: that class against all others, on every row.
The masked texts are scored once, giving every class's probability; each text's explainer reads the one
output chosen for its row, so its SHAP values are shap's own explanation of that output, and additivity is
checked against that output of the row as the run scored it. The ranking, the prohibited-term share and the
stability read |SHAP| (which way a word pushes does not enter them), so they mean the same for every choice:
the words the explained output leans on. Adverse-action reasons always explain the favourable outcome
(audit/checks/adverse_action.py): a decline is a decision that is not favourable.

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
from audit.attribution import (  # noqa: F401  (read from here by the family's other modules and tests)
    Unit,
    WordStat,
    additivity_errors,
    global_importance,
    merge_pieces,
    rank_stability,
    ranking,
    token_importance,
)
from audit.checks import check
from audit.context import CheckContext
from audit.mergeable import TokenImportance
from audit.result import Measurement

NEEDS_ROWS = "it explains the model on eval texts, and the statistics carry no text and no model"
BUDGET = {"rows": 40, "max_evals": 100, "examples": 1, "tolerance": 0.01, "explain": "auto"}
TERM_PARAMS = {"terms": [], "term_lists": [], "top_k": 20}
BATCH_SIZE = 64  # shap's batch_size: how many nodes of the partition tree it expands at a time (it moves the values)
# Rows per forward pass of the explained model: memory only (the masked texts of one shap batch are scored in
# chunks of this many; on the reference job of issue 18, 64 rows of 64 tokens held ~140 MiB of activations).
FORWARD_BATCH = 32
LOCKSTEP = 16  # texts explained side by side, their masked texts scored in shared batches
MIN_HALF = 5  # default of the rule parameter `min_half_rows`: rows in each half before a rank correlation is read
MIN_WORDS = 10  # default of `stability_words`: a ranking rule reads the stability of at least this many top words
STABILITY = {"min_half_rows": MIN_HALF}  # shared by both checks that read the stability of the ranking
TABLE_WORDS = 40  # words kept in the stored global-importance table
MAX_EXAMPLES = 5
OUTPUT = "log-odds of the positive label"
EXPLAIN = ("auto", "predicted", "favourable")  # or a label of the model


@dataclass(frozen=True)
class Output:
    """The output of the model that the explanations explain, one log-odds per row (the budget's `explain`).

    `default` is today's binary output (the positive label's log-odds: the explained function returns it alone,
    as every earlier release did); otherwise the explained function returns a (n, k + 1) matrix, every class's
    log-odds against the others and, last, the favourable outcome's, and `columns` picks each row's."""

    kind: str  # "favourable", "predicted" or "label"
    label: str = ""  # kind "label": the class
    what: str = OUTPUT  # in words (details' "output", the report)
    default: bool = True
    towards: str = ""  # the direction of a positive value, in words (the report's legend)
    against: str = ""

    @property
    def key(self) -> tuple[str, ...]:
        """Appended to the family's cache key: nothing for the default (the key of every earlier release)."""
        return () if self.default else (f"{self.kind}:{self.label}",)

    def columns(self, ctx: CheckContext, rows: Sequence[int]) -> list[int] | None:
        """The column of the (n, k + 1) log-odds matrix explained for each eval row; None for the default."""
        if self.default:
            return None
        labels = _labels(ctx)
        if self.kind == "favourable":
            return [len(labels)] * len(rows)
        if self.kind == "label":
            return [labels.index(self.label)] * len(rows)
        pred = _predicted(ctx)
        return [int(pred[i]) for i in rows]


def _labels(ctx: CheckContext) -> list[str]:
    if ctx.classes is not None:
        return list(ctx.classes.labels)
    m = ctx.manifest if ctx.manifest is not None else getattr(ctx.bundle, "manifest", None)
    if m is not None:
        return list(m.labels)
    return [ctx.negative_label, ctx.positive_label]


def _favourable_idx(ctx: CheckContext) -> tuple[int, ...]:
    if ctx.classes is not None:
        return tuple(ctx.classes.favourable)
    labels = _labels(ctx)
    return (labels.index(ctx.positive_label) if ctx.positive_label in labels else 1,)


def _predicted(ctx: CheckContext) -> np.ndarray:
    """Each eval row's decided class, as an index into the labels (a binary model: at the threshold)."""
    if ctx.multiclass:
        return np.asarray(ctx.classes.pred)
    pos = _favourable_idx(ctx)[0]
    return np.where(np.asarray(ctx.y_pred) == 1, pos, 1 - pos)


def resolve_output(ctx: CheckContext, explain: Any = "auto") -> Output:
    """The Output that `explain` names for this run's model (ValueError for a label the model lacks)."""
    explain = "auto" if explain is None else explain
    if not isinstance(explain, str) or not explain.strip():
        raise ValueError(f"explain must be one of {', '.join(EXPLAIN)} or a label of the model, got {explain!r}")
    labels = _labels(ctx)
    fav = _favourable_idx(ctx)
    multi = ctx.multiclass
    if explain == "auto":
        explain = "predicted" if multi else "favourable"
    if not multi and explain in ("favourable", labels[fav[0]]):
        return Output("favourable")
    if explain == "predicted":
        return Output("predicted", what="log-odds of the predicted class (each row's decided class against the "
                      "other classes)", default=False, towards="the row's predicted class", against="the other classes")
    if explain == "favourable":
        names = [labels[i] for i in fav]
        words = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
        return Output("favourable", what=f"log-odds of the favourable outcome ({words}) against the other classes",
                      default=False, towards=f"'{words}'", against="the other classes")
    if explain not in labels:
        raise ValueError(f"explain: {explain!r} is not a label of the model (its labels: "
                         f"{', '.join(map(repr, labels))}); use one of them, or {', '.join(EXPLAIN)}")
    return Output("label", explain, what=f"log-odds of '{explain}' against the other classes", default=False,
                  towards=f"'{explain}'", against="the other classes")


def _log_odds_all(probs: np.ndarray, favourable: Sequence[int]) -> np.ndarray:
    """(n, k + 1) from (n, k) probabilities: column c is log p(c) - log(sum of the other classes' p), the last
    column log P(favourable) - log P(unfavourable). For a binary model column pos is _log_odds(probs, pos)."""
    probs = np.asarray(probs, dtype=np.float64)
    n, k = probs.shape
    out = np.empty((n, k + 1))
    fav = sorted(set(int(i) for i in favourable))
    unf = [j for j in range(k) if j not in fav]
    with np.errstate(divide="ignore"):
        for c in range(k):
            out[:, c] = np.log(probs[:, c]) - np.log(probs[:, [j for j in range(k) if j != c]].sum(axis=1))
        out[:, k] = np.log(probs[:, fav].sum(axis=1)) - np.log(probs[:, unf].sum(axis=1))
    return out


def _pick(values: np.ndarray, columns: Sequence[int] | None) -> np.ndarray:
    """Each row's explained output: `values` itself (the default output), else its column of each row."""
    values = np.asarray(values, dtype=float)
    if columns is None or values.ndim == 1:
        return values
    return values[np.arange(len(values)), np.asarray(columns, dtype=np.int64)]


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
    column: int | None = None  # the explained output's column (Output.columns); None: the default output

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
    precision: str = "fp32"  # of the explained function's masked evaluations (audit.precision)
    fidelity: dict[str, Any] | None = None  # bf16 against fp32 on a sample, where they ran in bf16 (shapstep)
    output: Output = field(default_factory=lambda: Output("favourable"))  # what was explained
    labels: list[str] = field(default_factory=list)  # the model's labels (for the explained classes' names)
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
                f"{self.output.what} by up to {self.max_error:.3g} (eval row {worst.index}; {bad} of {len(self.rows)} rows "
                f"over the tolerance {self.tolerance:g})")


def shap_explain(predict: Callable[[list[str]], np.ndarray], tokenizer: Any, texts: Sequence[str], *,
                 max_evals: int, batch_size: int = BATCH_SIZE, progress: bool = False,
                 desc: str = "SHAP explanations", lockstep: int = LOCKSTEP,
                 columns: Sequence[int] | None = None) -> list[tuple[list[str], np.ndarray, float]]:
    """(token pieces, SHAP values, base value) per text: shap's partition explainer over a Text masker.

    With `lockstep` > 1, that many texts are explained side by side and their masked texts share the model's
    batches (audit.shapstep); 1 is shap's own path, one text after another. `columns`: `predict` gives several
    outputs per text (a matrix), and text i's explainer explains its output columns[i] alone."""
    import shap

    from audit.progress import bar as progress_bar

    with progress_bar(total=len(texts), desc=desc, unit="text", progress=progress) as bar:
        if lockstep > 1 and len(texts) > 1:
            from audit.shapstep import explain_lockstep

            return explain_lockstep(predict, tokenizer, texts, max_evals=max_evals, batch_size=batch_size,
                                    width=lockstep, on_text=lambda: bar.update(1), columns=columns)
        masker = shap.maskers.Text(tokenizer)
        column: list[int | None] = [None]

        def model(x):
            out = predict([str(t) for t in x])
            return out if column[0] is None else np.asarray(out)[:, column[0]]

        explainer = shap.Explainer(model, masker, algorithm="partition")
        out = []
        for j, text in enumerate(texts):
            if columns is not None:
                column[0] = int(columns[j])
                explainer._curr_base_value = None  # shap keeps a fixed background's base value: it is per output
            sv = explainer([str(text)], max_evals=int(max_evals), batch_size=batch_size, silent=True)
            out.append(([str(p) for p in sv.data[0]], np.asarray(sv.values[0], dtype=np.float64),
                        float(np.asarray(sv.base_values).reshape(-1)[0])))
            bar.update(1)
    return out


def _log_odds(probs: np.ndarray, pos: int) -> np.ndarray:
    """log p(pos) - log p(neg) from a (n, 2) probability array; +-inf where one side is 0."""
    with np.errstate(divide="ignore"):
        return np.log(probs[:, pos]) - np.log(probs[:, 1 - pos])


def _model_predict(ctx: CheckContext, counter: list[int], precision: str | None = None,
                   output: Output | None = None) -> Callable[[list[str]], np.ndarray]:
    """The explained function: the run's model (in `precision`, audit.precision; None: as the run's model scores)
    mapping texts to log-odds: of the positive label (the default output), else every output of
    _log_odds_all, one row per text."""
    from audit.scoring import score_texts

    b = ctx.bundle
    if b is None or b.model is None:
        raise RuntimeError("explanations need the model, and the run has none loaded")
    m = b.manifest
    pos = m.labels.index(m.positive_label)
    fav = _favourable_idx(ctx)
    if precision is None:
        model = b.model
    else:
        from audit.precision import model_in

        model = model_in(b.model, precision)

    def predict(texts: list[str]) -> np.ndarray:
        counter[0] += len(texts)
        preds = score_texts(model, b.tokenizer, texts, max_length=m.max_length, positive_index=pos,
                            batch_size=min(max(len(texts), 1), FORWARD_BATCH), progress=False)
        if output is None or output.default:
            return _log_odds(preds.probs, pos)
        return _log_odds_all(preds.probs, fav)

    return predict


def _run_outputs(ctx: CheckContext, output: Output | None = None) -> np.ndarray:
    """The model's log-odds for every eval row as the run scored it: of the positive label (the default output),
    else the explained output of each row (Output.columns)."""
    preds = ctx.predictions
    if output is not None and not output.default:
        probs = preds.probs if preds is not None and getattr(preds, "probs", None) is not None else ctx.classes.probs
        return _pick(_log_odds_all(probs, _favourable_idx(ctx)), output.columns(ctx, range(len(probs))))
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


def _cache_key(ctx: CheckContext, params: dict) -> tuple:
    """The family's cache key of a budget: (rows, max_evals, examples, seed), and the explained output when it is
    not the default (Output.key)."""
    return ((int(params["rows"]), int(params["max_evals"]), int(params["examples"]), ctx.seed)
            + resolve_output(ctx, params.get("explain", "auto")).key)


def explain(ctx: CheckContext, rows: int, max_evals: int, examples: int, tolerance: float,
            explain: Any = "auto") -> Explained:
    """The family's one explanation per budget, cached on the context (an exception is cached too)."""
    rows, max_evals, examples = int(rows), int(max_evals), int(examples)
    if rows < 2 or max_evals < 2 or examples < 0 or not tolerance >= 0:
        raise ValueError(f"budget out of range: rows {rows} (>= 2), max_evals {max_evals} (>= 2), "
                         f"examples {examples} (>= 0), tolerance {tolerance} (>= 0)")
    output = resolve_output(ctx, explain)
    cache = ctx.shared.explanations
    key = (rows, max_evals, examples, ctx.seed) + output.key
    if key not in cache:
        try:
            cache[key] = _explain(ctx, rows, max_evals, examples, output)
        except Exception as exc:  # every check of the family reports the same failure, computed once
            cache[key] = exc
    got = cache[key]
    if isinstance(got, Exception):
        raise got
    got.tolerance = float(tolerance)
    return got


def _explain(ctx: CheckContext, rows: int, max_evals: int, examples: int, output: Output) -> Explained:
    t0 = time.perf_counter()
    sample, reviewer = choose_rows(ctx, rows, examples)
    todo = list(dict.fromkeys(sample + [i for ix in reviewer.values() for i in ix]))
    counter = [0]
    from audit.precision import unwrapped

    plan = ctx.precision  # audit.precision.Plan; None (a context built by hand): as the run's model scores
    scored_in = plan.scoring.precision if plan is not None else (
        "fp32" if unwrapped(ctx.bundle.model) is ctx.bundle.model else "bf16")
    explain_in = plan.explanations.precision if plan is not None else scored_in
    predict = _model_predict(ctx, counter, explain_in, output)
    columns = output.columns(ctx, todo)  # None: the default output, the explained function's only one
    tok = ctx.bundle.tokenizer
    specials = frozenset(str(t) for t in getattr(tok, "all_special_tokens", []) or [])
    texts = [ctx.texts[i] for i in todo]
    state = np.random.get_state()  # shap breaks ties with np.random: no draw of it may move another family's numbers
    try:
        got = shap_explain(predict, tok, texts, max_evals=max_evals, progress=ctx.progress, columns=columns)
        outputs = _run_outputs(ctx, output)
        # additivity is checked against the function that was explained: the run's scores when it is the run's
        # model, else that function's own output on the explained rows
        explained_out = outputs[todo] if explain_in == scored_in else _pick(predict(texts), columns)
        fidelity = None
        if explain_in != "fp32":
            fidelity = _fidelity(ctx, todo, sample, got, explained_out, outputs if scored_in == "fp32" else None,
                                 max_evals, specials, output)
    finally:
        np.random.set_state(state)
    explained = {}
    for j, (i, (pieces, values, base), out) in enumerate(zip(todo, got, explained_out)):
        explained[i] = Row(i, ctx.texts[i], base, values, pieces, float(out), merge_pieces(pieces, values, specials),
                           None if columns is None else int(columns[j]))
    return Explained(explained, sample, reviewer, max_evals, time.perf_counter() - t0, counter[0], 0.0,
                     explain_in, fidelity, output=output, labels=_labels(ctx))


def _fidelity(ctx: CheckContext, todo: list[int], sample: list[int], got, explained_out: np.ndarray,
              fp32_outputs: np.ndarray | None, max_evals: int, specials: frozenset[str],
              output: Output | None = None) -> dict[str, Any]:
    """A seeded subsample of the explained sample explained again in fp32 (audit.shapstep.compare), and the gap
    between the explained function and the fp32 model on every explained row (of the same explained output)."""
    from audit import shapstep

    output = output or Output("favourable")
    counter = [0]
    full = _model_predict(ctx, counter, "fp32", output)
    texts = [ctx.texts[i] for i in todo]
    ref = fp32_outputs[todo] if fp32_outputs is not None else _pick(full(texts), output.columns(ctx, todo))
    gap = np.abs(np.asarray(explained_out, float) - ref)
    pick = shapstep.fidelity_rows(sample, ctx.seed)
    where = {i: j for j, i in enumerate(todo)}
    again = shap_explain(full, ctx.bundle.tokenizer, [ctx.texts[i] for i in pick], max_evals=max_evals,
                         columns=output.columns(ctx, pick))
    out = shapstep.compare([got[where[i]][:2] for i in pick], [g[:2] for g in again], specials=specials)
    add = [abs(b + float(v.sum()) - ref[where[i]]) for i, (_, v, b) in zip(pick, again)]
    out.update({"top_words_low": [_redact_word(w) for w in out["top_words_low"]],
                "top_words_fp32": [_redact_word(w) for w in out["top_words_fp32"]],
                "max_abs_diff": _r(out["max_abs_diff"], 9),
                "spearman": None if out["spearman"] is None else _r(out["spearman"]),
                "row_ids": [_row_id(ctx, i) for i in pick], "max_evals": max_evals,
                "fp32_additivity_error": _r(max(add), 9) if add else None,
                "model_gap": {"rows": len(todo), "max": _r(float(gap.max()), 9) if len(gap) else None,
                              "mean": _r(float(gap.mean()), 9) if len(gap) else None,
                              "what": f"|explained function - fp32 model| of the {output.what} on the explained "
                                      "rows"},
                "fp32_evaluations": counter[0]})
    return out


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
    multi = ctx.multiclass
    if multi:  # the favourable outcome in words; a row's decided and true class by name
        pos, neg = ctx.classes.describe(), "an unfavourable class"
        pred, labels = np.asarray(ctx.classes.pred), ctx.classes.labels
        true = np.asarray(ctx.classes.y) if ctx.classes.y is not None else None
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
        if multi and kind != "highest-scored":
            t = f"'{labels[true[i]]}'" if true is not None else "not known"
            why = (f"The {kind} the model was surest of: scored {s:.3f} for '{pos}' (predicted '{labels[pred[i]]}'), "
                   f"the true class is {t}.")
        chosen.append((i, kind, why))
    if ex.sample and multi:  # no threshold: the closest call is the smallest gap between the two likeliest classes
        top2 = np.sort(np.asarray(ctx.classes.probs, float), axis=1)[:, -2:]
        border = min(ex.sample, key=lambda i: (top2[i, 1] - top2[i, 0], i))
        chosen.append((border, "borderline", f"Of the sampled rows, the closest call between two classes (their "
                                             f"probabilities {top2[border, 1]:.3f} and {top2[border, 0]:.3f}): what "
                                             "tips a close call."))
    elif ex.sample:
        border = min(ex.sample, key=lambda i: (abs(score[i] - ctx.threshold), i))
        chosen.append((border, "borderline", f"Of the sampled rows, the closest to the decision threshold "
                                             f"{ctx.threshold:g} (score {score[border]:.3f}): what tips a close call."))
    if ex.sample:
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
        e = {"row_id": _row_id(ctx, i), "kind": kind, "why": why, "score": _r(score[i]),
             "predicted": pos if ctx.y_pred[i] else neg, "true": pos if ctx.y_true[i] else neg,
             "base_value": _r(r.base), "shap_sum": _r(float(r.values.sum())), "output": _r(r.output),
             "units": units, "redacted": redacted}
        if multi:
            e["predicted"] = labels[pred[i]]
            e["true"] = labels[true[i]] if true is not None else None
        if not ex.output.default:  # the class (or outcome) whose log-odds this row's values explain
            e["explained"] = (ex.labels[r.column] if r.column is not None and r.column < len(ex.labels)
                              else ex.output.towards.strip("'"))
        out.append(e)
    return out


def _budget_details(ex: Explained) -> dict[str, Any]:
    out = {"output": ex.output.what, "algorithm": "shap partition explainer, Text masker", "max_evals": ex.max_evals,
           "sample_rows": len(ex.sample), "rows_explained": len(ex.rows),
           "reviewer_rows": {k: len(v) for k, v in ex.reviewer.items()}, "model_evaluations": ex.evaluations}
    if not ex.output.default:  # which output, and (one per row for `predicted`) how many rows explained each class
        o = ex.output
        out["explain"] = o.label if o.kind == "label" else o.kind
        out["towards"], out["against"] = o.towards, o.against
        if o.kind == "predicted" and ex.labels:
            counts: dict[str, int] = {}
            for i in ex.sample:
                r = ex.rows.get(i)
                if r is not None and r.column is not None:
                    counts[ex.labels[r.column]] = counts.get(ex.labels[r.column], 0) + 1
            out["explained_classes"] = dict(sorted(counts.items()))
    return out
    # wall time is not a measurement (result.json must be reproducible): the runner records check timings


def _ranked(stats_: Sequence[WordStat], limit: int) -> list[dict[str, Any]]:
    return [dict(w.to_dict(rank), word=_redact_word(w.word)) for rank, w in enumerate(stats_[:limit], start=1)]


# ---------------------------------------------------------------- SHAP token importance from silos' statistics
#
# In each silo `audit stats` explains a seeded sample of the silo's rows, as `audit run` does (explain above), and
# keeps only mergeable numbers: the token importance of the sample and of its two halves (sums of |SHAP| and of
# SHAP per word, occurrences, rows), the share tables of each prohibited-terms rule (the sums of |SHAP| on its
# terms and in total, under the same bootstrap weights as in memory), and the additivity errors' largest value,
# sum and count over the tolerance. On one silo's rows every number equals the in-memory check's; merged, the
# sample is the union of the silos' samples. Per-word SHAP sums have no bound on what one row changes, and the
# words a silo's texts contain are themselves revealed: these statistics are NOT released under --epsilon.


def _budget_key(params: dict) -> dict[str, Any]:
    """The SHAP budget a silo's statistics are keyed by; `explain` only when it is not the default (the key of
    statistics files made before it existed)."""
    return {k: params[k] for k in BUDGET if k != "explain" or params.get(k, "auto") != "auto"}


def _share_table(terms: list[str]) -> str:
    return "share " + " ".join(sorted(terms))


def _shap_collect(ctx: CheckContext, check_id: str, **params):
    from audit.mergeable import Counts, SiloStat

    if not len(ctx.texts):
        return None
    ex = explain(ctx, params["rows"], params["max_evals"], params["examples"], params["tolerance"],
                 params.get("explain", "auto"))
    s = ex.sample
    errs = ex.errors
    st = SiloStat("shap", _budget_key(params))  # never released under noise: no sensitivity
    st.importance = {"sample": ex.importance(s), "half_a": ex.importance(s[0::2]), "half_b": ex.importance(s[1::2])}
    st.maxima = {"max_error": float(errs.max()) if len(errs) else 0.0}
    st.tables["errors"] = Counts((3,), 0, np.array([float(len(errs)), float(errs.sum()),
                                                   float((errs > ex.tolerance).sum())]))
    st.tables["budget"] = Counts((2,), 0, np.array([float(len(s)), float(ex.evaluations)]))
    st.tallies["reviewer_rows"] = {k: float(len(v)) for k, v in ex.reviewer.items()}
    if check_id == "explainability.prohibited_terms":
        terms, _multi, skipped = _terms(check_id, params)
        if skipped is None:
            wanted = set(terms)
            per_row = [ex.importance([i]) for i in s]
            on_terms = np.array([t.term_sum(wanted) for t in per_row])
            total = np.array([t.total for t in per_row])
            W = stats.poisson_weights(len(per_row), ctx.replicates, ctx.seed)
            sums = np.column_stack([W @ on_terms, W @ total])
            R = sums.shape[0] - 1
            st.tables[_share_table(terms)] = Counts((2,), R, sums[0].copy(), sums[1:].copy() if R else None)
    return st


def _merged_explanation(sctx, check_id: str, params: dict):
    """(a context whose cached explanation is built from the silos' token importance, the statistic), or
    (None, why) when the statistics do not carry it."""
    from audit.from_stats import carried

    st, why = carried(sctx, check_id, "shap", _budget_key(params))
    if st is None:
        return None, why

    def build():
        n = int(round(st.tables["budget"].point[0]))
        sample = list(range(n))
        reviewer = {k: [-1] * int(round(v)) for k, v in st.tallies.get("reviewer_rows", {}).items()}
        ex = Explained({}, sample, reviewer, int(params["max_evals"]), 0.0, int(round(st.tables["budget"].point[1])),
                       float(params["tolerance"]))
        ex._importance[tuple(sample)] = st.importance["sample"]
        ex._importance[tuple(sample[0::2])] = st.importance["half_a"]
        ex._importance[tuple(sample[1::2])] = st.importance["half_b"]
        ctx = CheckContext(y_true=np.zeros(n, dtype=np.int8), score=np.zeros(n), confidence=sctx.confidence,
                           replicates=sctx.replicates.R, seed=sctx.stats.grid.seed, texts=[""] * n,
                           manifest=sctx.manifest)
        ex.output = resolve_output(ctx, params.get("explain", "auto"))
        ctx.shared.explanations[_cache_key(ctx, params)] = ex
        return ctx

    return sctx.once("shap " + json_key(_budget_key(params)), build), st


def json_key(d: dict) -> str:
    import json

    return json.dumps(d, sort_keys=True)


def _stats_guard(m: Measurement, st, params: dict) -> Measurement:
    """As _guard, from the silos' largest additivity error (which row it was is not released)."""
    worst, tol = st.maxima.get("max_error", 0.0), float(params["tolerance"])
    e = st.tables["errors"].point
    m.details["rows_explained"] = int(round(e[0]))
    if worst > tol:
        m.error = (f"the explanations do not add up: base value + sum of SHAP values differs from the model's "
                   f"{OUTPUT} by up to {worst:.3g} ({int(round(e[2]))} of {int(round(e[0]))} rows over the "
                   f"tolerance {tol:g})")
    return m


def _shap_ranking_stats(sctx, check_id: str, **params):
    """Stability and prohibited terms in the top k from the silos' token importance: the in-memory check itself
    on an explanation whose rankings are the merged ones."""
    from audit.checks import all_checks

    ctx, st = _merged_explanation(sctx, check_id, params)
    if ctx is None:
        return st
    m = all_checks()[check_id].fn(ctx, **params)
    return _stats_guard(m, st, params) if m.skipped is None else m


def _shap_share_stats(sctx, check_id: str, **params):
    """The share of |SHAP| on prohibited terms from the silos' sums under the in-memory bootstrap weights."""
    cid = check_id
    ctx, st = _merged_explanation(sctx, check_id, params)
    if ctx is None:
        return st
    terms, multi, skipped = _terms(cid, params)
    if skipped:
        return skipped
    table = st.tables.get(_share_table(terms))
    if table is None:
        from audit.from_stats import NOT_MEASURABLE

        return Measurement(cid, None, inconclusive=f"{NOT_MEASURABLE}: the silos' SHAP statistics carry no share "
                           "table for these terms; make them with `audit stats --policy` of this policy")
    ex = ctx.shared.explanations[_cache_key(ctx, params)]
    M = sctx.replicates.table(table)
    with np.errstate(divide="ignore", invalid="ignore"):
        shares = np.where(M[:, 1] > 0, M[:, 0] / M[:, 1], np.nan)
    top_k = int(params["top_k"])
    found = _term_rows(ex.ranking(ex.sample), set(terms))
    low, high = stats.percentile_interval(shares[1:], sctx.confidence)
    value = None if not math.isfinite(shares[0]) else float(shares[0])
    details = {**_budget_details(ex), "top_k": top_k, "terms": terms, "term_lists": list(params.get("term_lists") or []),
               "not_matched": multi, "found": found, "in_top_k": [r for r in found if r["rank"] <= top_k]}
    m = Measurement(cid, value, low, high, n=len(ex.sample), details=details)
    if value is None:
        m.inconclusive = "the sampled rows carry no SHAP values to share out"
    return _stats_guard(m, st, params)


def _shap_additivity_stats(sctx, check_id: str, **params):
    """The largest additivity error over the silos' explained rows (which row: not released)."""
    ctx, st = _merged_explanation(sctx, check_id, params)
    if ctx is None:
        return st
    ex = ctx.shared.explanations[_cache_key(ctx, params)]
    e = st.tables["errors"].point
    n = int(round(e[0]))
    details = {**_budget_details(ex), "tolerance": float(params["tolerance"]),
               "mean_error": _r(float(e[1] / n), 9) if n else None, "worst_row": None,
               "rows_over_tolerance": int(round(e[2])), "examples": [],
               "examples_note": "no example text leaves a silo: only counts were merged"}
    m = Measurement(check_id, float(st.maxima.get("max_error", 0.0)), n=n, details=details)
    return _stats_guard(m, st, params)


for _fn in (_shap_ranking_stats, _shap_share_stats, _shap_additivity_stats):
    _fn.collect = _shap_collect  # type: ignore[attr-defined]


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
    what = params.get("explain", "auto")
    if not isinstance(what, str) or not what.strip():  # a label is checked against the model's when the run starts
        raise ValueError(f"explain must be one of {', '.join(EXPLAIN)} or a label of the model, got {what!r}")


def _start(ctx: CheckContext, check_id: str, params: dict) -> tuple[Measurement | None, Explained | None]:
    if not len(ctx.texts):
        return Measurement(check_id, None, skipped="the eval set has no rows"), None
    ex = explain(ctx, params["rows"], params["max_evals"], params["examples"], params["tolerance"],
                 params.get("explain", "auto"))
    return None, ex


def _guard(m: Measurement, ex: Explained) -> Measurement:
    """Explanations that do not add up make the measurement carry an error. The judge makes such a finding
    ERROR, unless its value shows a violation of the rule: that stands (FAIL/WARN), with the error beside it."""
    why = ex.broken()
    if why:
        m.error = why
    return m


@check("explainability.additivity_error", classes="any", title="SHAP additivity error", direction="lower", params=BUDGET,
       validate=_validate, cost="shap", evidence="rows explained",
       stats=_shap_additivity_stats, stats_form="silo")
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


@check("explainability.stability", classes="any", title="Stability of the word ranking (Spearman)", direction="higher",
       params={**BUDGET, "top_k": 20, **STABILITY}, validate=_validate, cost="shap", evidence="sampled rows explained",
       stats=_shap_ranking_stats, stats_form="silo")
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


@check("explainability.prohibited_terms", classes="any", title="Share of |SHAP| on prohibited terms", direction="lower",
       unit="share", params={**BUDGET, **TERM_PARAMS}, validate=_validate, cost="shap",
       evidence="sampled rows explained", stats=_shap_share_stats, stats_form="silo")
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


@check("explainability.prohibited_terms_in_top_k", classes="any", title="Prohibited terms among the top-k words",
       direction="lower", unit="count",
       params={**BUDGET, **TERM_PARAMS, "min_stability": 0.5, **STABILITY, "stability_words": MIN_WORDS},
       validate=_validate, cost="shap", evidence="sampled rows explained",
       stats=_shap_ranking_stats, stats_form="silo")
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


@check("explainability.precision_agreement", classes="any", title="Agreement of bf16 and fp32 explanations (Spearman)",
       direction="higher", params=BUDGET, validate=_validate, cost="shap",
       evidence="rows explained in both precisions")
def precision_agreement(ctx: CheckContext, **params) -> Measurement:
    """Spearman rank correlation of the global word ranking explained in bf16 and in fp32, on a seeded sample of the explained rows.

    Where the masked evaluations of the explanations ran in bf16 (audit.precision: CPUs with native bf16 matrix
    units, or --precision bf16), a seeded sample of the explained rows is explained again in fp32. Near 1, the
    reduced precision does not change which words the model is shown to lean on. Its details give the largest
    |difference| of any attribution, whether the top words agree, and the gap between the explained function and
    the fp32 model on the explained rows. Not applicable (SKIPPED) when the explanations ran in fp32."""
    cid = "explainability.precision_agreement"
    early, ex = _start(ctx, cid, params)
    if early:
        return early
    if ex.fidelity is None:
        plan = ctx.precision
        why = f" ({plan.explanations.why})" if plan is not None else ""
        return Measurement(cid, None, skipped=f"the explanations ran in fp32{why}: there is no reduced-precision "
                                              "explanation to compare with fp32")
    f = ex.fidelity
    details = {**_budget_details(ex), "precision": ex.precision, **f}
    m = Measurement(cid, f["spearman"], n=int(f["rows"]), details=details)
    if f["spearman"] is None:
        m.inconclusive = (f"the rank correlation is undefined ({f['words_compared']} words, or no variation in one "
                          "ranking)")
    return _guard(m, ex)
