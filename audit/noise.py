"""Differential privacy of a stats file (`audit stats --epsilon E`), and how noised numbers are reported.

The Laplace mechanism on the whole released vector. Adding or removing one row changes it by at most
L1 = 5 + A + I (A protected attributes, I intersections carried): 1 in the (label, score bin) histogram; at most
1 + 1 + 1 + 1 in the calibration bin's rows, sum of labels, sum of scores (scores are in [0, 1]) and the sum of
squared errors; 1 in each attribute's table and 1 in each intersection's table (the row's group cell, or its count
of rows with no value). Every released number gets independent Laplace(0, L1 / E) noise, which makes the whole
file E-differentially private (Dwork et al. 2006; equivalently E / L1 per table, each of sensitivity 1, composed
sequentially, with parallel composition over the disjoint cells inside a table). Each intersection carried thus
costs noise: with A = 3 attributes, the 3 pairs raise L1 from 8 to 11, and every count's noise scale with it.
Replicate counts are NOT released under noise (one row's replicate counts have unbounded sensitivity); the merge
draws them instead from the noised counts (audit/replicates.py), so the intervals carry both the sampling and the
noise variance. Not covered by E: the settings, the model hash, and the group NAMES of an attribute without
defined groups (raw values: which values occur is data-dependent; map or bin such attributes in the manifest
before a noised release).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from audit.errors import DataError
from audit.mergeable import AuditStats
from audit.result import Measurement


def noise_sensitivity(stats: AuditStats) -> float:
    """L1 change of the released vector when one row is added or removed: 1 (score histogram) + 4 (calibration
    sums) + 1 per attribute table + 1 per intersection table, + each silo statistic's own (SiloStat.l1, stated
    where the check collects it: PII 3 + 2 per type, counterfactual 6 per swap list, loss histograms 5)."""
    base = 5 + len(stats.attributes) + len(stats.intersections)
    extra = sum(st.l1 for st in stats.silo.values())
    return base + extra if extra else base


def add_noise(stats: AuditStats, epsilon: float, rng: np.random.Generator) -> dict[str, Any]:
    """Laplace noise on every released count and sum (in place); drops the replicate counts. Returns the record
    of what was done, for the stats file."""
    if not epsilon > 0:
        raise DataError(f"--epsilon must be positive, got {epsilon}")
    l1 = noise_sensitivity(stats)
    scale = l1 / float(epsilon)

    def noisy(a: np.ndarray) -> np.ndarray:
        return a + rng.laplace(0.0, scale, size=a.shape)

    stats.scores.counts = stats.scores.counts.with_point(noisy(stats.scores.counts.point))
    stats.calibration.sums = stats.calibration.sums.with_point(noisy(stats.calibration.sums.point))
    for g in stats.tables():
        g.counts = g.counts.with_point(noisy(g.counts.point))
        g.missing = float(g.missing + rng.laplace(0.0, scale))
        g.replicates = 0
    stats.scores.replicates = stats.calibration.replicates = 0
    stats.rows = float("nan")  # not released: the sum of the noised histogram estimates it
    silo = {}
    for key, st in stats.silo.items():
        for name, c in st.tables.items():
            point = c.point.copy()
            if st.kind == "pii" and name == "by_type":
                point[:, 0] = 0.0  # finds per type: one row can hold many, unbounded; not released
            if name in ("non_member_facts", "member_facts"):
                point[1 if name == "non_member_facts" else 0] = 0.0  # sums of losses: unbounded, not released
            st.tables[name] = c.with_point(noisy(point))
        st.maxima, st.tallies = {}, {}  # the largest change and the term tallies: unbounded, not released
        silo[key] = {"kind": st.kind, "l1_sensitivity": st.l1}
    return {"mechanism": "laplace", "epsilon": float(epsilon), "l1_sensitivity": l1, "scale": scale,
            "neighbouring": "add or remove one row",
            "accounting": (f"one Laplace mechanism over every released number; one row changes them by at most "
                           f"{l1:g} in L1 (1 score histogram + 4 calibration sums + 1 per protected attribute "
                           f"({len(stats.attributes)}) + 1 per intersection of attributes "
                           f"({len(stats.intersections)})"
                           + "".join(f" + {v['l1_sensitivity']:g} for the {v['kind']} statistics" for v in silo.values()
                                     if v["l1_sensitivity"])
                           + f"), so noise of scale {l1:g}/epsilon makes the whole file epsilon-DP"),
            "replicates_released": False,
            "tables": {"attributes": list(stats.attributes), "intersections": stats.intersection_names()},
            "not_covered": ["settings and model hash (public)",
                            "group names of attributes without defined groups (raw values)"],
            **({"silo_statistics": {**silo, "not_released": ["SHAP token importance (per-word sums have no bound, "
                                                             "and the words themselves are data)",
                                                             "PII finds per type, the largest counterfactual score "
                                                             "change, terms swapped, mean losses"]}}
               if silo else {})}


def mark_noised(findings, measurements: dict[str, Measurement], epsilons: list[float]) -> None:
    """Say in each finding judged on noised counts that it was, and that its interval includes the noise."""
    eps = describe_epsilons(epsilons)
    for f in findings:
        if "noise" in measurements[f.check_id].details:
            f.message = (f"{f.message} (From counts with differential-privacy noise, {eps}; the interval is "
                         "widened by the noise.)")


def describe_epsilons(epsilons: list[float]) -> str:
    if len(set(epsilons)) == 1:
        return f"ε = {epsilons[0]:g}" + (f" in each of {len(epsilons)} silos" if len(epsilons) > 1 else "")
    return "ε = " + ", ".join(f"{e:g}" for e in epsilons) + " (one per noised silo)"
