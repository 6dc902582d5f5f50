"""What a check reads: the eval set's labels and scores, shared bootstrap weights, and the run's settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from audit.stats import poisson_weights


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
    extra: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def y_pred(self) -> np.ndarray:
        return (self.score >= self.threshold).astype(int)

    @cached_property
    def weights(self) -> np.ndarray:
        """(1 + replicates, n): ones, then Poisson bootstrap weights shared by every check of the run."""
        return poisson_weights(len(self.y_true), self.replicates, self.seed)
