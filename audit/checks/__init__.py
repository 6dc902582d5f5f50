"""The check registry.

A check is a pure function `fn(ctx, **params) -> Measurement` registered with `@check(...)`. Its id is
`family.name` (`performance.roc_auc`); its docstring's first line says what it measures, the rest what a
reader should make of it. A check never reads a threshold: the judge applies the policy afterwards.

A check may also declare how it is measured from mergeable statistics (audit/mergeable.py), the counts that a
streaming run, a Ray run and `audit merge` hold instead of rows: `stats=fn(sctx, check_id, **params) ->
Measurement`, where `sctx` is an audit.context.StatsContext, and `stats_form` says how that form relates to the
in-memory one: "exact" (the same value, interval and details from the same counts: a distributed run takes it
from its workers' statistics), "binned" (the same formula over scores binned on the statistics' grid: a run that
holds the rows computes it in memory instead), "silo" (from statistics that `audit stats` collects inside a
silo, where the rows and the model are, with the form's `collect` function: on one silo's rows the same value,
interval and parts as in memory, without the text examples; silos add their counts) or "manifest" (it reads only
the model's manifest, and is measured from statistics only when a rule asks for it). A binned or silo form whose
statistics are collected in the silo has `collect` too (`stats.collect(ctx, check_id, **params) -> SiloStat`,
or a string saying why this silo has nothing to collect, which `audit merge` reports). A check without `stats`
needs rows; its family module's `NEEDS_ROWS` says why, and the statistics path reports that reason. This
registry is the only list of which checks which input supports.

Family modules import only light libraries at the top (numpy), so listing the registry stays fast.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

FAMILIES = ("performance", "fairness", "explainability", "privacy", "drift", "robustness", "quality")  # grows as check families land

Direction = Literal["higher", "lower", "none"]
StatsForm = Literal["", "exact", "binned", "silo", "manifest"]
# What a check reads of a model's classes (audit.classes): "binary" (a binary model only: a run of a model of more
# classes reports it INCONCLUSIVE, with the reason), "favourable" (the favourable outcome's view, the same for any
# number of classes: the report says which classes are favourable), "any" (every class, or none: text, losses).
Classes = Literal["binary", "favourable", "any"]


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
    stats: Callable[..., Any] | None = None  # fn(sctx, check_id, **params) -> Measurement from statistics
    stats_form: StatsForm = ""  # how `stats` relates to the in-memory form (module docstring); "" without it
    classes: Classes = "binary"  # what it reads of the model's classes (Classes above)
    # reads the model's embeddings (Predictions.embeddings): a run's scoring passes keep them, at the cost of the
    # whole last layer and every layer's hidden states, only when a check that will run says so
    embeddings: bool = False

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
          validate: Callable[[dict[str, Any]], None] | None = None, evidence: str = "rows",
          stats: Callable[..., Any] | None = None, stats_form: StatsForm = "", classes: Classes = "binary",
          embeddings: bool = False) -> Callable:
    """Register a check function under `id` ("family.name").

    Checks of a family the policy uses all run (cheap context for the report), except those with a `cost`:
    they run when the policy rules one of the checks that share that cost. `validate` checks parameters when
    the policy is loaded, so a bad value is named with its file and line. `stats` and `stats_form`: the
    statistics form (module docstring). `classes`: what it reads of a model of more than two classes (Classes).
    `embeddings`: the check reads the model's embeddings of a scored set (without it they are not kept)."""
    family = id.split(".", 1)[0]
    if (stats is None) != (stats_form == ""):
        raise RuntimeError(f"check {id}: a statistics form needs both `stats` and `stats_form`")

    def register(fn: Callable) -> Callable:
        if id in _REGISTRY:
            raise RuntimeError(f"check {id} registered twice")
        if not inspect.getdoc(fn):
            raise RuntimeError(f"check {id} has no docstring")
        _REGISTRY[id] = CheckSpec(id, family, title, fn, direction, dict(params or {}), threshold_required, unit,
                                  cost, validate, evidence, stats, stats_form, classes, embeddings)
        return fn

    return register


def _modules() -> list[str]:
    """Every module of this package: a family's module (FAMILIES) and the modules that hold more of its checks
    (proxies.py and adverse_action.py register fairness and explainability checks), found by listing the package,
    so that a new module needs no import line elsewhere."""
    import pkgutil

    found = sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))
    return [f for f in FAMILIES if f in found] + [m for m in found if m not in FAMILIES]


def all_checks() -> dict[str, CheckSpec]:
    for name in _modules():
        importlib.import_module(f"audit.checks.{name}")
    unknown = sorted({s.family for s in _REGISTRY.values()} - set(FAMILIES))
    if unknown:
        raise RuntimeError(f"checks registered under families not in FAMILIES: {', '.join(unknown)}")
    return dict(sorted(_REGISTRY.items()))


def in_family_order() -> list[CheckSpec]:
    """Every check, family by family (FAMILIES' order), each family in the order its module registers them: the
    order in which the statistics path measures (and result.json lists) them."""
    specs = all_checks()
    return [specs[cid] for family in FAMILIES for cid in _REGISTRY if specs[cid].family == family]


def needs_rows(family: str) -> str:
    """Why a check of `family` without a statistics form cannot be measured from statistics."""
    return getattr(importlib.import_module(f"audit.checks.{family}"), "NEEDS_ROWS", "it needs the rows")


def get(check_id: str) -> CheckSpec:
    return all_checks()[check_id]
