"""The check registry.

A check is a pure function `fn(ctx, **params) -> Measurement` registered with `@check(...)`. Its id is
`family.name` (`performance.roc_auc`); its docstring's first line says what it measures, the rest what a
reader should make of it. A check never reads a threshold: the judge applies the policy afterwards.

Family modules import only light libraries at the top (numpy), so listing the registry stays fast.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

FAMILIES = ("performance", "fairness", "explainability", "privacy", "drift")  # grows as check families land

Direction = Literal["higher", "lower", "none"]


@dataclass(frozen=True)
class CheckSpec:
    id: str
    family: str
    title: str
    fn: Callable[..., Any]
    direction: Direction  # which way is better: tells the report how to read a value
    params: dict[str, Any] = field(default_factory=dict)  # parameter name -> default (type from the default)
    threshold_required: bool = True
    unit: str = ""  # "" for a plain number, "ratio", "rate", ...
    cost: str | None = None  # a shared expensive step ("shap", "counterfactual"): run only when a rule pays for it
    validate: Callable[[dict[str, Any]], None] | None = None  # raises ValueError(message) for bad parameters
    evidence: str = "rows"  # what a measurement's `n` counts, shown beside every value ("rows scanned")

    @property
    def summary(self) -> str:
        doc = inspect.getdoc(self.fn) or ""
        return doc.split("\n\n")[0].replace("\n", " ").strip()

    @property
    def meaning(self) -> str:
        doc = inspect.getdoc(self.fn) or ""
        parts = doc.split("\n\n", 1)
        return parts[1].replace("\n", " ").strip() if len(parts) > 1 else ""


_REGISTRY: dict[str, CheckSpec] = {}


def check(id: str, *, title: str, direction: Direction, params: dict[str, Any] | None = None,
          threshold_required: bool = True, unit: str = "", cost: str | None = None,
          validate: Callable[[dict[str, Any]], None] | None = None, evidence: str = "rows") -> Callable:
    """Register a check function under `id` ("family.name").

    Checks of a family the policy uses all run (cheap context for the report), except those with a `cost`:
    they run when the policy rules one of the checks that share that cost. `validate` checks parameters when
    the policy is loaded, so a bad value is named with its file and line."""
    family = id.split(".", 1)[0]

    def register(fn: Callable) -> Callable:
        if id in _REGISTRY:
            raise RuntimeError(f"check {id} registered twice")
        if not inspect.getdoc(fn):
            raise RuntimeError(f"check {id} has no docstring")
        _REGISTRY[id] = CheckSpec(id, family, title, fn, direction, dict(params or {}), threshold_required, unit,
                                  cost, validate, evidence)
        return fn

    return register


def all_checks() -> dict[str, CheckSpec]:
    for family in FAMILIES:
        importlib.import_module(f"audit.checks.{family}")
    return dict(sorted(_REGISTRY.items()))


def get(check_id: str) -> CheckSpec:
    return all_checks()[check_id]
