"""SHAP explanations of many texts in lockstep: the masked texts of all of them scored in shared batches.

shap's partition explainer explains one text at a time. For each text it walks a tree of token clusters and asks
the model for a small batch of masked texts per step (2, 4, 8 ... up to `batch_size`, a handful of calls per
text), so the model runs many small, separate batches. Here every text gets its own explainer (shap's own code,
unchanged) in its own thread, and the threads take turns: each runs until its explainer asks the model for
outputs, then hands over to the next. When every active text has asked, the union of their masked texts is
scored at once (audit.scoring: sorted by length, batched), and each text gets its own rows back.

Only one thread runs at a time, in a fixed order, so a run is deterministic: shap's queue breaks exact ties
with `np.random.randn()`, and the draws happen in the same order every time. The threads share one copy of the
tokenizer (not the model's own, which the scoring in the caller's thread uses): a fast tokenizer must not be
called from two threads at once, and here no two threads ever run at once. (A copy per thread cost 115 MB of
peak RSS for 16 threads on MiniLM's tokenizer.)
The values equal shap's one-text-at-a-time path up to float noise from batch composition (padding), which the
tests bound at 1e-6 on the log-odds; a tie between two exactly equal priorities may be broken differently.

Several outputs (a model of more than two classes): `predict` may return a matrix, one row of outputs per text,
and `columns` name the one output each text's explainer explains. A masked text is still scored once (every
output at once, cached by text); each explainer reads its own text's column, so its values are shap's
explanation of that output alone.
"""

from __future__ import annotations

import copy
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


class _Slot:
    """One thread that explains texts one after another, pausing whenever its explainer calls the model."""

    def __init__(self, make_explainer: Callable[[], Any], explain: Callable[[Any, str], Any], todo: deque,
                 results: dict[int, Any], back: threading.Semaphore, columns: Sequence[int] | None = None):
        self.go = threading.Semaphore(0)
        self.back = back
        self.request: list[str] | None = None
        self.response: np.ndarray | None = None
        self.done = False
        self.error: BaseException | None = None
        self._todo, self._results, self._explain = todo, results, explain
        self._make = make_explainer
        self._columns = columns
        self.column: int | None = None  # the output the current text's explainer explains (None: the only one)
        self.thread = threading.Thread(target=self._main, daemon=True)

    def model(self, texts) -> np.ndarray:
        """What the explainer calls: post the texts, hand over, wait for the outputs."""
        self.request = [str(t) for t in texts]
        self.back.release()
        self.go.acquire()
        out, self.response = self.response, None
        if self.column is not None and out is not None:
            out = np.asarray(out)[:, self.column]
        return out

    def _main(self) -> None:
        self.go.acquire()
        try:
            explainer = self._make(self.model)
            while self._todo:
                index, text = self._todo.popleft()
                if self._columns is not None:
                    self.column = int(self._columns[index])
                    explainer._curr_base_value = None  # shap keeps a fixed background's base value: per output
                self._results[index] = self._explain(explainer, text)
        except BaseException as exc:  # handed to the caller's thread
            self.error = exc
        self.done = True
        self.request = None
        self.back.release()


def explain_lockstep(predict: Callable[[list[str]], np.ndarray], tokenizer: Any, texts: Sequence[str], *,
                     max_evals: int, batch_size: int, width: int = 16,
                     on_text: Callable[[], None] | None = None,
                     columns: Sequence[int] | None = None) -> list[tuple[list[str], np.ndarray, float]]:
    """(token pieces, SHAP values, base value) per text, as shap's partition explainer over a Text masker gives
    them; `width` texts at a time share the model's batches. `predict` maps a list of texts to one output each,
    or (with `columns`, one per text) to a row of outputs each, of which text i's explainer explains columns[i]."""
    import shap

    todo: deque = deque(enumerate(texts))
    results: dict[int, Any] = {}
    seen: dict[str, Any] = {}  # masked text -> model output, for this call
    back = threading.Semaphore(0)

    shared = copy.deepcopy(tokenizer)

    def make(model):
        masker = shap.maskers.Text(shared)
        return shap.Explainer(model, masker, algorithm="partition")

    def explain(explainer, text):
        sv = explainer([str(text)], max_evals=int(max_evals), batch_size=int(batch_size), silent=True)
        if on_text is not None:
            on_text()
        return ([str(p) for p in sv.data[0]], np.asarray(sv.values[0], dtype=np.float64),
                float(np.asarray(sv.base_values).reshape(-1)[0]))

    slots = [_Slot(make, explain, todo, results, back, columns) for _ in range(max(1, min(int(width), len(texts))))]
    for s in slots:
        s.thread.start()
    try:
        active = list(slots)
        while active:
            for s in active:  # each runs until it asks the model for outputs or runs out of texts
                s.go.release()
                back.acquire()
            failed = next((s.error for s in active if s.error is not None), None)
            if failed is not None:
                raise failed
            active = [s for s in active if not s.done]
            if not active:
                break
            sizes = [len(s.request) for s in active]
            asked = [t for s in active for t in s.request]
            # a masked text asked again (by another text's explainer or in a later round: fully masked texts of one
            # length, masks that leave the same words) is scored once per run; measured on the reference job: 10.6%
            # of 4,000 masked texts were repeats
            new = list(dict.fromkeys(t for t in asked if t not in seen))
            if new:
                for t, v in zip(new, np.asarray(predict(new))):
                    seen[t] = v
            outputs = np.asarray([seen[t] for t in asked])
            for s, lo, n in zip(active, np.cumsum([0] + sizes[:-1]), sizes):
                s.response = outputs[lo: lo + n]
    finally:
        todo.clear()
        for s in slots:  # a failure elsewhere: let every waiting thread finish (its model call raises)
            if not s.done:
                s.response = None
                s.go.release()
    return [results[i] for i in range(len(texts))]


# ---------------------------------------------------------------- fidelity of reduced-precision explanations

FIDELITY_ROWS = 8  # sampled rows explained a second time, in fp32, when the explanations ran in bf16
TOP_WORDS = 5  # "the top words agree": the same set of the 5 words ranked highest in both precisions
FIDELITY_TOP_K = 20  # the rank correlation is read over the union of both rankings' top 20 words


def fidelity_rows(sample: Sequence[int], seed: int, rows: int = FIDELITY_ROWS) -> list[int]:
    """A seeded subsample of the explained sample (in the sample's order), drawn from its own stream, so that it
    does not move any other draw of the run."""
    if not len(sample):
        return []
    rng = np.random.default_rng([int(seed), 18])
    keep = set(int(i) for i in rng.choice(len(sample), size=min(int(rows), len(sample)), replace=False))
    return [int(s) for j, s in enumerate(sample) if j in keep]


def compare(low: Sequence[tuple[list[str], np.ndarray]], full: Sequence[tuple[list[str], np.ndarray]], *,
            specials: frozenset[str] = frozenset(), top_k: int = FIDELITY_TOP_K,
            top_words: int = TOP_WORDS) -> dict[str, Any]:
    """How far the explanations of the same rows in reduced precision (`low`) are from those in fp32 (`full`):
    (token pieces, SHAP values) per row, in the same order.

    - max_abs_diff: the largest |Δ| of any attribution (per token piece) over the rows;
    - spearman: the Spearman rank correlation of the two global word rankings over these rows (over the union of
      both top-k words, as explainability.stability compares two halves; None where it is undefined);
    - top_words_agree: whether the `top_words` words ranked highest are the same set in both."""
    from audit.attribution import merge_pieces, rank_stability, ranking, token_importance

    if len(low) != len(full):
        raise ValueError(f"{len(low)} reduced-precision explanations against {len(full)} in fp32")
    diff = 0.0
    for (pa, va), (pb, vb) in zip(low, full):
        if list(pa) != list(pb):  # the same masker on the same text: a different tokenization is a bug
            raise ValueError("the two explanations of one row split its text into different token pieces")
        if len(va):
            diff = max(diff, float(np.max(np.abs(np.asarray(va, float) - np.asarray(vb, float)))))
    ra = ranking(token_importance([merge_pieces(p, v, specials) for p, v in low]))
    rb = ranking(token_importance([merge_pieces(p, v, specials) for p, v in full]))
    rho, words = rank_stability(ra, rb, int(top_k))
    ta, tb = [w.word for w in ra[:top_words]], [w.word for w in rb[:top_words]]
    return {"rows": len(low), "max_abs_diff": diff, "spearman": rho, "top_k": int(top_k),
            "words_compared": len(words), "top_words": int(top_words), "top_words_low": ta, "top_words_fp32": tb,
            "top_words_agree": set(ta) == set(tb)}


def fidelity_of(explanations: dict) -> list[dict[str, Any]]:
    """The fidelity measurements of a run's explanations that ran in reduced precision (the explainability family's
    shared cache, audit.context.Shared.explanations), one per explained budget: result.json states them on
    every such run, whether or not a rule asks for explainability.precision_agreement."""
    out = []
    for key, ex in explanations.items():
        f = getattr(ex, "fidelity", None)
        if f is None:
            continue
        rows, max_evals, examples, seed = key[:4]
        budget = {"rows": rows, "max_evals": max_evals, "examples": examples, "seed": seed}
        output = getattr(ex, "output", None)
        if output is not None and not output.default:  # which output (explainability.Output), beyond the default
            budget["explain"] = output.kind if output.kind != "label" else output.label
        out.append({"budget": budget, "precision": ex.precision, **f})
    return out
