"""Measurements from merged statistics instead of rows: the registry's statistics forms (audit.checks, `stats=`)
run over an AuditStats (a merge of silos, a streamed prediction log, a distributed run's partitions). A check the
policy rules that has no statistics form, or whose statistics the input does not carry, is INCONCLUSIVE with the
reason."""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

from audit.mergeable import AuditStats
from audit.replicates import Replicates
from audit.result import Measurement

NOT_MEASURABLE = "not measurable from statistics"  # starts the reason of a check that needs rows


def under_policy_statistics(measure: Callable[..., dict[str, Measurement]]) -> Callable[..., dict[str, Measurement]]:
    """Decorates a `measure(policy, ...) -> {check id: Measurement}` of any kind of run (audit.runner.measure,
    measure_stats): every interval it computes follows the policy's run-wide `statistics:` rules (audit.stats,
    `finite_rule`). Where the policy gives a `statistics:` block, each measurement records the
    rules in effect in its details (`statistics`), so a reader sees which rule decided (all but the SKIPPED); a
    policy without one runs on the defaults and its measurements are as before."""

    @functools.wraps(measure)
    def measured(policy, *args, **kwargs) -> dict[str, Measurement]:
        from audit import stats

        rules = getattr(policy, "statistics", None)
        if rules is None:
            return measure(policy, *args, **kwargs)
        with stats.finite_rule(rules.min_finite_share):
            out = measure(policy, *args, **kwargs)
        if "statistics" in policy.model_fields_set:
            for m in out.values():
                if not m.skipped:
                    m.details.setdefault("statistics", rules.model_dump())
        return out

    return measured


@under_policy_statistics
def measure_stats(policy, stats: AuditStats, manifest, *, noise_scales: list[float] | None = None,
                  reference: AuditStats | None = None, why_no_rows: str = "") -> dict[str, Measurement]:
    """Measurements of every check the stats can support (the registry's `stats` forms, audit.checks) in the
    families the policy uses; checks the policy rules that need rows, texts or the model are INCONCLUSIVE with
    the reason (the policy's `inconclusive` setting then decides the gate). A check whose statistics form reads
    only the manifest is measured when a rule asks for it."""
    from audit.checks import all_checks, in_family_order, needs_rows
    from audit.context import StatsContext

    specs = all_checks()
    families = {specs[cid].family for cid in policy.checks}
    params = check_params(policy, specs)
    sctx = StatsContext(stats, Replicates(stats, list(noise_scales or []), stats.grid.seed), manifest,
                        policy.decision_threshold, policy.confidence, policy.min_group_size, params,
                        frozenset(policy.checks), reference)
    out: dict[str, Measurement] = {}

    def measure(spec) -> Measurement | None:
        try:
            return spec.stats(sctx, spec.id, **{**spec.params, **params.get(spec.id, {})})
        except Exception as exc:  # as runner.measure: one broken check never aborts the audit
            return Measurement(spec.id, None, error=f"{type(exc).__name__}: {exc}")

    # a statistics form returns None when the statistics carry nothing it reads (no silo statistics at all)
    for spec in in_family_order():
        if spec.stats is not None and spec.stats_form != "manifest" and spec.family in families:
            got = measure(spec)
            if got is not None:
                out[spec.id] = got
    for cid in policy.checks:
        if cid in out:
            continue
        spec = specs[cid]
        got = measure(spec) if spec.stats is not None else None
        if got is not None:
            out[cid] = got
        elif spec.family == "drift" and reference is None:
            out[cid] = Measurement(cid, None, skipped="no reference statistics to compare with")
        else:
            out[cid] = Measurement(cid, None, inconclusive=f"{NOT_MEASURABLE}: {needs_rows(spec.family)}"
                                   + (f" ({why_no_rows})" if why_no_rows else ""))
    if noise_scales:
        sd = float(np.sqrt(sum(2 * b * b for b in noise_scales)))
        for m in out.values():
            if m.value is not None or m.ci_low is not None:
                m.details["noise"] = {"mechanism": "laplace", "scales": list(noise_scales),
                                      "per_count_sd": sd,
                                      "note": ("computed from counts with differential-privacy noise; the interval "
                                               "adds the noise to the bootstrap (drawn again per replicate)")}
    return out


def carried(sctx, check_id: str, kind: str, params: dict):
    """The silo statistic (audit.mergeable.SiloStat) a check's statistics form reads, as (stat, None); or
    (None, why) with an INCONCLUSIVE measurement when the statistics carry silo statistics but not this one; or
    (None, None) when they carry none at all, and the check is reported as needing rows (measure_stats)."""
    from audit.mergeable import silo_key

    key = silo_key(kind, params)
    stats = sctx.stats
    if key in stats.silo:
        return stats.silo[key], None
    if key in stats.silo_dropped:
        return None, Measurement(check_id, None, inconclusive=f"{NOT_MEASURABLE}: its {kind} statistics were "
                                 f"{stats.silo_dropped[key]}, so the union of the silos lacks rows")
    if not stats.silo:
        return None, None
    return None, Measurement(check_id, None, inconclusive=(
        f"{NOT_MEASURABLE}: the statistics carry no {kind} statistics computed with this rule's parameters "
        f"({key.split(' ', 1)[1]}); make them with `audit stats --policy` of this policy"))


def check_params(policy, specs) -> dict[str, dict]:
    """The parameters in effect for each check the policy rules: the check's defaults, then the parameters that
    any rule of the same costly step gives (SHAP rows, max_evals, ...: the step runs once, not per rule), then
    the rule's own. `audit run` (audit.runner.measure), `audit stats` and the statistics forms read the same."""
    shared: dict[str, dict] = {}
    for cid, rule in policy.checks.items():
        if specs[cid].cost:
            shared.setdefault(specs[cid].cost, {}).update(rule.params)
    out = {}
    for cid, spec in specs.items():
        p = dict(spec.params)
        if spec.cost:
            p.update({k: v for k, v in shared.get(spec.cost, {}).items() if k in spec.params})
        if cid in policy.checks:
            p.update(policy.checks[cid].params)
        out[cid] = p
    return out
