"""What a check reads: the eval set's labels and scores, shared bootstrap weights, and the run's settings.

Checks that need another data set (the training rows for membership inference or as a drift reference) ask
`ctx.dataset("train")`: the runner loads and scores it on first use, once per run, and every later check
reads the same `Scored` value. Checks that must re-score changed texts (counterfactual swaps, SHAP maskers)
call `ctx.score_texts(texts)`, which batches them through the same model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from audit.stats import poisson_weights

if TYPE_CHECKING:
    from audit.checks.quality import DuplicateScan
    from audit.checks.robustness import Perturbed


@dataclass
class Scored:
    """A data set scored once: rows, texts, label indices, the model's output."""

    name: str
    frame: Any  # pandas DataFrame of the rows, as read (strings)
    texts: list[str]
    y: np.ndarray | None  # label indices into manifest.labels (None when the set has no labels)
    predictions: Any  # audit.scoring.Predictions
    path: str = ""


@dataclass
class Shared:
    """Results that several checks of one run share, computed once by the first check that needs them and read
    by the rest. Each slot belongs to one family's module, which alone writes it."""

    groupings: dict[tuple[str, ...], Any] = field(default_factory=dict)  # fairness: Grouping by its parts
    group_tables: dict[str, Any] = field(default_factory=dict)  # fairness: GroupTable by grouping name
    swaps: dict[tuple[str, str], Any] = field(default_factory=dict)  # fairness: counterfactual outcomes by list
    # fairness: templated counterfactuals (the protected column's value swapped) by (attribute, pairs given)
    column_swaps: dict[tuple[str, str], Any] = field(default_factory=dict)
    explanations: dict[tuple, Any] = field(default_factory=dict)  # explainability: Explained (or its error)
    # explainability: SHAP of the declined rows for adverse-action reasons, by (rows, max_evals, seed)
    declines: dict[tuple, Any] = field(default_factory=dict)
    membership: dict[tuple, dict] = field(default_factory=dict)  # privacy: the membership attack by settings
    drift: dict[tuple, Any] = field(default_factory=dict)  # drift: compared sets and evidently runs
    robustness: dict[tuple, Perturbed] = field(default_factory=dict)  # robustness: perturbed texts, scores by settings
    quality: dict[tuple, DuplicateScan] = field(default_factory=dict)  # quality: eval rows grouped by text, by settings


@dataclass
class CheckContext:
    y_true: np.ndarray  # 1 where the true label is the positive (favourable) label
    score: np.ndarray  # model probability of the positive label
    threshold: float = 0.5
    confidence: float = 0.95
    replicates: int = 1000
    seed: int = 0
    min_group_size: int = 30
    positive_label: str = "1"
    negative_label: str = "0"
    frame: Any = None  # the eval rows (pandas DataFrame), for checks that need columns
    texts: list[str] = field(default_factory=list)  # the eval texts, as the model read them
    manifest: Any = None  # audit.manifest.Manifest
    bundle: Any = None  # audit.model.ModelBundle (loaded), for checks that re-score changed texts
    loader: Callable[[str], Scored] | None = None  # the runner's loader of other data sets
    predictions: Any = None  # audit.scoring.Predictions of the eval rows (probabilities, losses, embeddings)
    eval_path: str = ""  # the eval data's file, named in messages
    progress: bool = False  # show progress lines for long steps
    attachments: dict[str, str] | None = None  # file name -> text: extra files for the run folder; None: none
    check_seconds: dict[str, float] = field(default_factory=dict)  # check id -> seconds it took
    shared: Shared = field(default_factory=Shared)
    # A context built from mergeable statistics (audit.checks.fairness.fairness_context) rather than rows:
    stats_rows: int | None = None  # the statistics' row count, every measurement's evidence size
    not_carried: str | None = None  # what the statistics carry, said of a grouping a rule asks and they lack
    datasets: dict[str, Scored] = field(default_factory=dict)
    row_ids: list[str] | None = None  # the eval rows' ids: bootstrap weights keyed by (seed, row id), see weights
    precision: Any = None  # audit.precision.Plan: the precision of each stage (None: as the run's model scores)
    # Every class of the model (audit.classes.Classes): the labels, each row's true class, the probabilities of
    # every class. `y_true`, `score` and `y_pred` above are then the favourable outcome's view of them: the true
    # class is favourable, the probability of a favourable class, the decision is favourable.
    classes: Any = None

    @property
    def multiclass(self) -> bool:
        return self.classes is not None and self.classes.k > 2

    @cached_property
    def y_pred(self) -> np.ndarray:
        """1 where the decision is favourable: at or above the threshold for a binary model; for more classes,
        where the predicted (most probable) class is a favourable one."""
        if self.multiclass:
            return self.classes.favourable_decision(self.classes.probs)
        return (self.score >= self.threshold).astype(int)

    @cached_property
    def weights(self) -> np.ndarray:
        """(1 + replicates, n): ones, then Poisson bootstrap weights shared by every check of the run.

        With unique row ids, a row's weights are a function of (seed, row id) (audit.mergeable.replicate_weights):
        the in-memory audit is then the one-partition case of the mergeable statistics, and the same rows give the
        same intervals whether audited here, streamed in chunks or merged from silos. Without ids (or with
        repeated ones) the weights are drawn by position."""
        n = len(self.y_true)
        ids = self.row_ids
        if ids is not None and len(ids) == n and len(set(ids)) == n:
            from audit.mergeable import replicate_weights, row_keys

            w = np.ones((1 + self.replicates, n))
            if self.replicates:
                w[1:] = replicate_weights(row_keys(ids, self.seed), self.replicates).T
            return w
        return poisson_weights(n, self.replicates, self.seed)

    def dataset(self, name: str) -> Scored | None:
        """Another data set of the run ("train"), scored once and cached; None when the run has none."""
        if name not in self.datasets:
            if self.loader is None:
                return None
            scored = self.loader(name)
            if scored is None:
                return None
            self.datasets[name] = scored
        return self.datasets[name]

    def score_texts(self, texts: list[str], desc: str = "re-scoring") -> np.ndarray:
        """Probabilities of the favourable outcome for `texts` through the run's model (batched, length-sorted):
        the positive label's for a binary model, the sum over the favourable classes for more classes."""
        return self.favourable_score(self.score_probs(texts, desc))

    def score_probs(self, texts: list[str], desc: str = "re-scoring") -> np.ndarray:
        """(n, classes) probabilities of `texts` through the run's model."""
        from audit.scoring import score_texts

        if self.bundle is None or self.bundle.model is None:
            raise RuntimeError("this check needs the model, and the run has none loaded")
        m = self.bundle.manifest
        preds = score_texts(self.bundle.model, self.bundle.tokenizer, list(texts), max_length=m.max_length,
                            positive_index=m.labels.index(m.positive_label),
                            progress=self.progress, desc=desc)
        return preds.probs

    def favourable_score(self, probs: np.ndarray) -> np.ndarray:
        """The probability of a favourable outcome, from (n, classes) probabilities."""
        if self.classes is not None:
            return self.classes.favourable_score(probs)
        m = self.bundle.manifest
        return np.asarray(probs)[:, m.labels.index(m.positive_label)]

    def decide(self, probs: np.ndarray) -> np.ndarray:
        """1 where the decision on rows of (n, classes) probabilities is favourable, as `y_pred` decides."""
        if self.multiclass:
            return self.classes.favourable_decision(probs)
        return (self.favourable_score(probs) >= self.threshold).astype(int)


@dataclass
class StatsContext:
    """What a check's statistics form reads (audit.checks, `stats=`): merged mergeable statistics instead of
    rows, their bootstrap replicates (released, or drawn from noised counts: audit.replicates.Replicates), the
    model's manifest, the run's settings, every check's parameters (defaults and rule), and the reference
    statistics for drift. `once` caches a computation that several checks share (the confusion counts at the
    threshold, the group tables), so it runs once and in the same order whichever check asks first."""

    stats: Any  # audit.mergeable.AuditStats
    replicates: Any  # audit.replicates.Replicates
    manifest: Any  # audit.manifest.Manifest
    threshold: float
    confidence: float
    min_group_size: int
    params: dict[str, dict[str, Any]]  # check id -> parameters in effect (defaults, then the rule's)
    ruled: frozenset[str] = frozenset()  # the checks the policy rules
    reference: Any = None  # audit.mergeable.AuditStats of the reference period, or None
    _cache: dict[str, Any] = field(default_factory=dict)

    def once(self, key: str, compute: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]
