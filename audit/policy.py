"""The policy: which checks a release must pass, with thresholds, severities and the clauses they serve.

`load_policy(path)` reads YAML safely, validates it with pydantic and the check registry, and raises
`PolicyError` with one line such as

    fin.yaml:14: checks.performance.roc_auc.min: expected a number, got 'high'

`basis` says which number must clear a threshold: `point` (the estimate), `ci_low` or `ci_high` (a bound of
the interval at the policy's `confidence`). For a `min` rule, `basis: ci_low` demands that the evidence shows
compliance (the whole interval is above the line); `basis: ci_high` only fails when the evidence shows a
violation (the whole interval is below it). For a `max` rule it is the other way round.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from audit.cites import Cite, NotCovered, parse_cite, parse_not_covered
from audit.errors import PolicyError
from audit.yamlsrc import Locations, closest, dotted, load_yaml
from audit.yamlsrc import shown as _show

Basis = Literal["point", "ci_low", "ci_high"]
Severity = Literal["block", "warn"]


class BaselineRule(BaseModel):
    """Not worse than the baseline run (the released model) by more than `max_drop` (absolute) or
    `max_relative_drop` (a share of the baseline's value); either alone, or both (then both must hold).
    "Worse" follows the check's direction: lower for higher-is-better checks, higher for lower-is-better."""

    model_config = ConfigDict(extra="forbid")

    max_drop: float | None = Field(default=None, ge=0)
    max_relative_drop: float | None = Field(default=None, ge=0)


class Rule(BaseModel):
    """One check's rule. Keys other than these are the check's own parameters."""

    model_config = ConfigDict(extra="allow")

    min: float | None = None
    max: float | None = None
    basis: Basis = "point"
    severity: Severity = "block"
    refs: list[Any] = Field(default_factory=list)  # the clauses it serves: strings or mappings (see Cite)
    references: list[str] = Field(default_factory=list)  # papers and guidance behind it that are not clauses
    note: str = ""
    baseline: BaselineRule | None = None
    min_evidence: int | None = Field(default=None, ge=0)  # below it a part is INCONCLUSIVE (judge, not check)

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    @property
    def cites(self) -> list[Cite]:
        """The clauses the rule serves, one Cite per clause (a string may name several)."""
        return [c for item in self.refs for c in parse_cite(item)]

    @property
    def ref_labels(self) -> list[str]:
        """One line per `refs` item, as the findings table and summaries print it."""
        return [item if isinstance(item, str) else parse_cite(item)[0].label for item in self.refs]


class Waiver(BaseModel):
    model_config = ConfigDict(extra="forbid")

    check: str
    reason: str = Field(min_length=1)
    approved_by: str = Field(min_length=1)
    expires: dt.date

    def active(self, today: dt.date) -> bool:
        return today <= self.expires


class Budget(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_rows: int | None = Field(default=None, gt=0)
    bootstrap: int = Field(default=1000, ge=0, le=100_000)
    seed: int = Field(default=0, ge=0, le=2**32 - 1)
    batch_size: int = Field(default=64, gt=0, le=4096)


class Statistics(BaseModel):
    """Run-wide rules of the statistics behind every interval (audit.stats), applied by every kind of run."""

    model_config = ConfigDict(extra="forbid")

    # an interval is undefined (the finding INCONCLUSIVE where it needs one) when fewer than this share of the
    # bootstrap replicates are finite; the default is audit.stats.FINITE_SHARE (a test holds them equal)
    min_finite_share: float = Field(default=0.9, gt=0, le=1)


class Policy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    policy: str = Field(min_length=1)
    version: str
    description: str = ""
    confidence: float = Field(default=0.95, gt=0, lt=1)
    inconclusive: Literal["fail", "inconclusive"] = "inconclusive"
    min_group_size: int = Field(default=30, ge=1)
    decision_threshold: float = Field(default=0.5, ge=0, le=1)
    # The favourable outcome (one label or a list of labels of the model): the decision that fairness,
    # counterfactual and adverse-action checks read as favourable. Default: the manifest's positive_label. A
    # model of three or more classes decides its most probable class (audit.classes).
    favourable: list[str] | None = None
    # eval rows that the model was trained on (with --data; audit.overlap): kept with a warning, left out, or
    # the run refused (exit 2 before the model loads)
    training_rows_in_eval: Literal["warn", "exclude", "refuse"] = "warn"
    checks: dict[str, Rule]
    budget: Budget = Field(default_factory=Budget)
    statistics: Statistics = Field(default_factory=Statistics)
    waivers: list[Waiver] = Field(default_factory=list)
    scope: list[Any] = Field(default_factory=list)  # clauses the policy answers for: strings or mappings (Cite)
    not_covered: list[Any] = Field(default_factory=list)  # what this audit does not test, each with its reason

    @property
    def scope_cites(self) -> list[Cite]:
        return [c for item in self.scope for c in parse_cite(item)]

    @property
    def not_covered_items(self) -> list[NotCovered]:
        return [parse_not_covered(item) for item in self.not_covered]

    @field_validator("favourable", mode="before")
    @classmethod
    def _favourable(cls, value: Any) -> Any:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            value = [value]
        if isinstance(value, list):
            value = [str(v) for v in value]
            if not value:
                raise ValueError("name at least one favourable label")
            if len(set(value)) != len(value):
                raise ValueError("labels must be distinct")
        return value

    # filled by load_policy, not by the YAML
    source: str = Field(default="", exclude=True)
    favourable_where: str = Field(default="", exclude=True)  # file:line of `favourable`, for errors at run time
    sha256: str = Field(default="", exclude=True)


_KNOWN_KEYS: dict[tuple, list[str]] = {
    (): [k for k in Policy.model_fields if k not in ("source", "sha256", "favourable_where")],
    ("budget",): list(Budget.model_fields),
    ("statistics",): list(Statistics.model_fields),
    ("waivers",): list(Waiver.model_fields),
    ("checks", "baseline"): list(BaselineRule.model_fields),
}


def bundled_policies() -> dict[str, Path]:
    from audit.resources import policies_dir

    return {p.stem: p for p in sorted(policies_dir().glob("*.yaml"))}


def resolve_policy_path(value: str | Path) -> Path:
    """A path, or the name of a bundled policy pack (`fin`)."""
    path = Path(value)
    if not path.exists() and path.suffix == "" and str(value) in bundled_policies():
        return bundled_policies()[str(value)]
    return path


def load_policy(path: str | Path) -> Policy:
    path = resolve_policy_path(path)
    data, loc = load_yaml(path, PolicyError, what="policy")
    if not isinstance(data, dict):
        raise PolicyError(f"{loc.where(())}: a policy must be a mapping of keys, got {_show(data)}")
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(_first_error(exc, loc)) from None
    _check_rules(policy, loc)
    policy.source = str(path)
    policy.favourable_where = loc.where(("favourable",))
    from audit.safeio import read_regular
    from audit.yamlsrc import MAX_BYTES

    policy.sha256 = hashlib.sha256(read_regular(path, MAX_BYTES, "policy", PolicyError)).hexdigest()
    return policy


def _check_rules(policy: Policy, loc: Locations) -> None:
    from audit.checks import all_checks

    registry = all_checks()
    if not policy.checks:
        raise PolicyError(f"{loc.where(('checks',))}: checks: the policy lists no checks")
    problems: list[tuple[int, str]] = []

    def problem(path: tuple, message: str) -> None:
        problems.append((loc.line(path) or 0, f"{loc.where(path)}: {dotted(path)}: {message}"))

    for check_id, rule in policy.checks.items():
        base = ("checks", check_id)
        spec = registry.get(check_id)
        if spec is None:
            problem(base, f"unknown check '{check_id}'{closest(check_id, registry)}")
            continue
        for key, value in rule.params.items():
            if key not in spec.params:
                options = list(Rule.model_fields) + list(spec.params)
                problem(base + (key,), f"unknown key '{key}' for {check_id}{closest(key, options)}")
                continue
            expected = _type_name(spec.params[key])
            if expected and not _fits(value, spec.params[key]):
                problem(base + (key,), f"expected {expected}, got {_show(value)}")
        if spec.validate is not None:
            try:
                spec.validate({**spec.params, **rule.params})
            except ValueError as exc:
                problem(base, str(exc))
        if spec.threshold_required and rule.min is None and rule.max is None and rule.baseline is None:
            problem(base, "missing threshold: give min or max")
        if rule.baseline is not None and rule.baseline.max_drop is None and rule.baseline.max_relative_drop is None:
            problem(base + ("baseline",), "give max_drop or max_relative_drop")
        if rule.baseline is not None and spec.direction == "none":
            problem(base + ("baseline",), f"{check_id} has no better direction to compare with a baseline")
        if rule.min is not None and rule.max is not None and rule.min > rule.max:
            problem(base + ("min",), f"min ({rule.min:g}) is above max ({rule.max:g})")
        for key in ("min", "max"):
            value = getattr(rule, key)
            if value is not None and value != value:  # NaN
                problem(base + (key,), "expected a number, got NaN")
            elif value is not None and abs(value) == float("inf"):
                problem(base + (key,), f"expected a finite number, got {value}")
        for i, item in enumerate(rule.refs):
            try:
                parse_cite(item)
            except ValueError as exc:
                problem(base + ("refs", i), str(exc))
    _check_scope(policy, problem)
    for i, waiver in enumerate(policy.waivers):
        if waiver.check not in policy.checks:
            problem(("waivers", i, "check"),
                    f"waives '{waiver.check}', which the policy does not check{closest(waiver.check, policy.checks)}")
    if problems:
        raise PolicyError(sorted(problems)[0][1])


def _check_scope(policy: Policy, problem) -> None:
    """`scope` and `not_covered` items parse; a clause listed as not covered is not also cited as fully tested."""
    for i, item in enumerate(policy.scope):
        try:
            parse_cite(item)
        except ValueError as exc:
            problem(("scope", i), str(exc))
    full: dict[str, str] = {}
    for check_id, rule in policy.checks.items():
        for i, item in enumerate(rule.refs):
            try:
                full.update({c.key: f"checks.{check_id}.refs[{i}]" for c in parse_cite(item) if not c.partial})
            except ValueError:
                continue  # reported above
    for i, item in enumerate(policy.not_covered):
        try:
            nc = parse_not_covered(item)
        except ValueError as exc:
            problem(("not_covered", i), str(exc))
            continue
        if nc.key in full:
            problem(("not_covered", i, "clause"),
                    f"'{nc.clause}' is listed as not covered, but {full[nc.key]} cites it as tested in full: "
                    "mark that citation `partial: true`, or drop it here")


def _type_name(default: Any) -> str:
    if isinstance(default, bool):
        return "true or false"
    if isinstance(default, (int, float)):
        return "a number"
    if isinstance(default, str):
        return "a string"
    if isinstance(default, (list, tuple)):
        return "a list"
    return ""


def _fits(value: Any, default: Any) -> bool:
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, (int, float)):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, str):
        return isinstance(value, str)
    if isinstance(default, (list, tuple)):
        return isinstance(value, list)
    return True




_MESSAGES = {
    "float_parsing": "expected a number",
    "float_type": "expected a number",
    "int_parsing": "expected a whole number",
    "int_type": "expected a whole number",
    "int_from_float": "expected a whole number",
    "string_type": "expected a string",
    "bool_parsing": "expected true or false",
    "bool_type": "expected true or false",
    "dict_type": "expected a mapping",
    "model_type": "expected a mapping",
    "list_type": "expected a list",
    "date_parsing": "expected a date (YYYY-MM-DD)",
    "date_from_datetime_parsing": "expected a date (YYYY-MM-DD)",
    "date_type": "expected a date (YYYY-MM-DD)",
}


def _error_line(err: dict, loc: Locations) -> tuple[int, str]:
    path = tuple(err["loc"])
    kind = err["type"]
    value = err.get("input")
    ctx = err.get("ctx") or {}
    if kind == "extra_forbidden":
        known = _KNOWN_KEYS.get(tuple(p for p in path[:-1] if not isinstance(p, int)), [])
        message = f"unknown key '{path[-1]}'{closest(path[-1], known)}"
    elif kind == "missing":
        message = "missing required key"
    elif kind == "literal_error":
        message = f"expected one of {ctx.get('expected')}, got {_show(value)}"
    elif kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        sign = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}[kind]
        bound = next(iter(ctx.values()), "")
        bound = f"{bound:g}" if isinstance(bound, float) else bound
        message = f"must be {sign} {bound}, got {_show(value)}"
    elif kind == "value_error":
        message = str(ctx.get("error", err["msg"]))
    elif kind == "string_too_short":
        message = "must not be empty"
    elif kind in _MESSAGES:
        message = f"{_MESSAGES[kind]}, got {_show(value)}"
        if kind == "string_type" and isinstance(value, (int, float)) and not isinstance(value, bool):
            message += f' (quote it: "{value}")'
    else:
        message = err["msg"]
    return loc.line(path) or 0, f"{loc.where(path)}: {dotted(path)}: {message}"


def _first_error(exc: ValidationError, loc: Locations) -> str:
    return sorted(_error_line(e, loc) for e in exc.errors())[0][1]
