"""The classes of a model and the favourable outcome: what a multi-class audit reads besides the binary view.

A binary model decides at the policy's threshold on the positive label's probability; a model of three or more
classes decides its most probable class. Fairness, counterfactual and adverse-action checks read a decision as
favourable or not: the policy's `favourable` names the favourable classes (one class or a set), and without it
the manifest's `positive_label` is the one favourable class. The favourable view of a run is then

- `y_true`: the row's true class is favourable;
- `score`: the probability of a favourable class (the sum over the favourable classes);
- `y_pred`: the decision (the predicted class) is favourable.

For a binary model this is exactly the positive-label view of every earlier release.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from audit.errors import PolicyError


@dataclass
class Classes:
    labels: list[str]  # every class, in the model's output order
    y: np.ndarray | None  # each eval row's true class (index into labels); None for unlabelled rows
    probs: np.ndarray  # (n, k) the model's probability of every class
    favourable: tuple[int, ...]  # indices of the favourable classes
    threshold: float = 0.5  # a binary model's decision threshold on the favourable label's probability

    @property
    def k(self) -> int:
        return len(self.labels)

    @property
    def favourable_labels(self) -> list[str]:
        return [self.labels[i] for i in self.favourable]

    def predict(self, probs: np.ndarray) -> np.ndarray:
        """The decided class of each row: the most probable class (the first on a tie, as numpy's argmax); for a
        binary model the favourable label at or above the threshold, else the other."""
        probs = np.asarray(probs, dtype=float)
        if self.k == 2:
            fav = self.favourable[0]
            return np.where(probs[:, fav] >= self.threshold, fav, 1 - fav)
        return np.argmax(probs, axis=1)

    @property
    def pred(self) -> np.ndarray:
        return self.predict(self.probs)

    def favourable_score(self, probs: np.ndarray) -> np.ndarray:
        return np.asarray(probs, dtype=float)[:, list(self.favourable)].sum(axis=1)

    def favourable_decision(self, probs: np.ndarray) -> np.ndarray:
        return np.isin(self.predict(probs), self.favourable).astype(int)

    def describe(self) -> str:
        """'approve' or 'approve or refer': the favourable outcome in words."""
        names = self.favourable_labels
        return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def favourable_classes(policy, manifest) -> tuple[int, ...]:
    """The indices of the favourable classes: the policy's `favourable`, else the manifest's positive label.

    Refused (PolicyError naming the policy's line) when the policy names a label the model lacks, names every
    label (no decision would then be unfavourable), or, for a binary model, names another favourable label than
    the manifest's positive label (the two would disagree about every binary number)."""
    labels = list(manifest.labels)
    named = getattr(policy, "favourable", None)
    where = getattr(policy, "favourable_where", "") or getattr(policy, "source", "") or "policy"
    if not named:
        return (labels.index(manifest.positive_label),)
    unknown = [x for x in named if x not in labels]
    if unknown:
        raise PolicyError(f"{where}: favourable: {unknown[0]!r} is not a label of the model (its labels: "
                          f"{', '.join(map(repr, labels))})")
    if len(set(named)) == len(labels):
        raise PolicyError(f"{where}: favourable: names every label of the model; a favourable outcome must leave "
                          "at least one label unfavourable")
    if len(labels) == 2 and list(named) != [manifest.positive_label]:
        raise PolicyError(f"{where}: favourable: {', '.join(map(repr, named))} differs from the model's "
                          f"positive_label {manifest.positive_label!r} (audit-model.yaml); for a binary model the "
                          "favourable label is the positive label: change one of them")
    return tuple(sorted(labels.index(x) for x in set(named)))


def class_confusion(W: np.ndarray, y: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    """(len(W), k, k) weighted confusion counts: [r, i, j] sums row r of the weights W (1 + replicates, n) over
    the rows of true class i decided as class j (scikit-learn's confusion_matrix layout, with sample weights)."""
    cell = np.asarray(y, dtype=np.int64) * k + np.asarray(pred, dtype=np.int64)
    out = np.zeros((W.shape[0], k * k))
    for c in np.unique(cell):  # one pass over the rows per occupied cell: k² at most, no (n, k²) one-hot
        out[:, c] = W[:, cell == c].sum(axis=1)
    return out.reshape(W.shape[0], k, k)


def accuracy(C: np.ndarray) -> np.ndarray:
    """Share of rows decided as their true class, per confusion table of class_confusion."""
    total = C.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, np.trace(C, axis1=1, axis2=2) / np.where(total > 0, total, 1), np.nan)


def per_class_recall(C: np.ndarray) -> np.ndarray:
    """(len(C), k) recall of each class; NaN where a class has no rows (in that replicate)."""
    support = C.sum(axis=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diagonal(C, axis1=1, axis2=2) / np.where(support > 0, support, 1), np.nan)


def balanced_accuracy(C: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Mean recall over the classes `present` in the eval rows (scikit-learn's balanced_accuracy_score, which
    leaves out classes without true rows); NaN in a replicate that lost one of them."""
    rec = per_class_recall(C)[:, present]
    return rec.mean(axis=1) if rec.shape[1] else np.full(len(C), np.nan)
