"""Re-scoring changed texts for the checks that compare a text's decision before and after a change
(counterfactual swaps, robustness perturbations, adverse-action declines, drift, label issues).

A binary model: the score is the positive (favourable) label's probability and the decision is the score at or
above the policy's threshold, exactly as every earlier release computed them (`ctx.score_texts`). A model of
more classes (audit.classes): the score is the probability of a favourable class, the decision is favourable
when the most probable class is a favourable one (`ctx.decide`), and the predicted class is kept as well, for
checks that count any change of class.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Rescored:
    score: np.ndarray  # (n,) probability of the favourable outcome
    favourable: np.ndarray  # (n,) 1 where the decision is favourable
    predicted: np.ndarray  # (n,) the decided class: an index into the model's labels (binary: 1 = favourable)


def rescore(ctx, texts: list[str], desc: str = "re-scoring") -> Rescored:
    """Score `texts` through the run's model: the favourable score, the favourable decision, the decided class."""
    texts = list(texts)
    if getattr(ctx, "multiclass", False):
        if not texts:
            empty = np.zeros(0, dtype=np.int64)
            return Rescored(np.zeros(0), empty, empty)
        probs = np.asarray(ctx.score_probs(texts, desc=desc), dtype=float)
        return Rescored(np.asarray(ctx.favourable_score(probs), dtype=float), np.asarray(ctx.decide(probs)),
                        np.asarray(ctx.classes.predict(probs), dtype=np.int64))
    s = np.asarray(ctx.score_texts(texts, desc=desc), dtype=float) if texts else np.zeros(0)
    fav = (s >= ctx.threshold).astype(int)
    return Rescored(s, fav, fav.astype(np.int64))


def run_decisions(ctx) -> Rescored:
    """The same three views of the eval rows as the run scored them."""
    score = np.asarray(ctx.score, dtype=float)
    if getattr(ctx, "multiclass", False):
        return Rescored(score, np.asarray(ctx.y_pred), np.asarray(ctx.classes.pred, dtype=np.int64))
    fav = (score >= ctx.threshold).astype(int)
    return Rescored(score, fav, fav.astype(np.int64))


def decision_label(ctx, favourable: int, predicted: int) -> str:
    """The decision in words: the decided class for a model of more classes, else the positive or negative label."""
    if getattr(ctx, "multiclass", False):
        return str(ctx.classes.labels[int(predicted)])
    return ctx.positive_label if favourable else ctx.negative_label
