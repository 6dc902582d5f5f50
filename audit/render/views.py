"""View-models of a result dict: every string the report prints, already formatted.

Built from result.json alone (as coverage.py's html.py builds its dataclasses), so templates only loop and
print. Any section may be absent from a result: a policy may not ask for a family, an older result may lack a
key. Readers use `.get` and fall back to an em dash, never to a KeyError.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from audit.render import charts
from audit.render.format import (  # noqa: F401  (re-exported: the views' formatting lives in format.py)
    BASIS_WORDS,
    DASH,
    STATUSES,
    conf_text,
    evidence_text,
    finding_observed,
    fmt,
    humanize,
    num,
    observed_text,
    plural,
    text,
    threshold_text,
)
from audit.render.format import as_dict as _dict
from audit.render.format import as_list as _list

FAMILY_ORDER = ("performance", "fairness", "explainability", "drift", "privacy")
_RESERVED_TEMPLATES = {"base", "report", "macros", "family"}


def part_views(f: dict, default_confidence: Any = None) -> list[PartView]:
    """Each part of a finding (its own status, value, interval, evidence and reason), in the finding's order."""
    unit = str(f.get("unit") or "")
    conf = f.get("confidence", default_confidence)
    out = []
    for p in map(_dict, _list(f.get("parts"))):
        status = str(p.get("status") or "UNKNOWN")
        observed = (observed_text(p.get("value"), p.get("ci_low"), p.get("ci_high"), conf, unit)
                    if num(p.get("value")) is not None else "not measured")
        out.append(PartView(str(p.get("name") or DASH), str(p.get("kind") or ""), status, _css(status), observed,
                            evidence_text(p.get("n"), f.get("evidence")), str(p.get("reason") or "")))
    return out




# ---------------------------------------------------------------- dataclasses


@dataclass
class KV:
    label: str
    value: str
    code: bool = False  # print in monospace (hashes, paths, ids)


@dataclass
class Count:
    status: str
    n: int
    css: str


@dataclass
class VerdictView:
    status: str
    css: str
    headline: str  # "FAIL — 1 blocking finding failed"
    detail: str  # exit code and how the gate reads it
    counts: list[Count]
    blocking: list[str]  # one sentence per blocking finding that stops the release
    stopping: list[StopRow] = field(default_factory=list)  # the same findings, as short links to their rows


@dataclass
class StopRow:
    """A blocking finding that stops the release, as the report's verdict lists it: a link, not its reason
    (the reason is said once, in the findings table)."""

    check_id: str
    title: str
    status: str
    css: str


@dataclass
class PartView:
    """One attribute, intersection or swap list of a finding, judged on its own."""

    name: str
    kind: str
    status: str
    css: str
    observed: str
    evidence: str  # "412 rows"
    reason: str


@dataclass
class FindingView:
    check_id: str
    title: str
    family: str
    status: str
    css: str
    severity: str  # "blocking" / "warning only"
    threshold: str
    observed: str
    applied: str  # the number the rule was applied to, in words
    refs: list[str]
    message: str
    meaning: str
    reason: str
    waiver: list[KV]
    bar: charts.CIBar | None
    part: str = ""  # whose numbers `observed` shows ("sex"), for a rule judged part by part
    evidence: str = ""  # the size of the evidence behind `observed`: "800 rows scanned"
    note: str = ""  # the policy's plain-language requirement
    decided_by: str = ""  # which parts made the status
    parts: list[PartView] = field(default_factory=list)
    references: list[str] = field(default_factory=list)  # papers and guidance behind the rule, not clauses
    resolve: str = ""  # what would resolve a finding that did not pass (audit.render.resolve)
    why: str = ""  # the finding's sentence as the report prints it once (the reason not repeated)


@dataclass
class MeasurementRow:
    check_id: str
    title: str
    value: str
    n: str
    note: str  # why inconclusive, skipped or errored
    bar: charts.CIBar | None


@dataclass
class FamilyView:
    id: str
    title: str
    templates: list[str]  # the family's own partial first, then the generic one
    judged: list[MeasurementRow]
    unjudged: list[MeasurementRow]  # "measured without a rule"
    detail: Any = None  # a family's own view-model (audit/render/<family>_view.py), e.g. FairnessView


@dataclass
class InputFile:
    role: str
    path: str
    size: str
    sha256: str


@dataclass
class Dataset:
    role: str
    facts: list[KV]


@dataclass
class Report:
    title: str
    subtitle: str
    verdict: VerdictView
    findings: list[FindingView]
    families: list[FamilyView]
    model: list[KV]
    labels: list[KV]
    datasets: list[Dataset]
    run: list[KV]
    policy: list[KV]
    inputs: list[InputFile]
    environment: list[KV]
    packages: list[KV]
    scoring: list[KV]
    warnings: list[str]
    statistics: Any = None  # statistics_view.StatisticsView of a run judged from statistics, else None


# ---------------------------------------------------------------- builders


def _css(status: str) -> str:
    return "st-" + (status.lower() if status in STATUSES else "unknown")






def _kvs(d: dict, known: list[tuple[str, str]], code: set[str] = frozenset(), skip: set[str] = frozenset(),
         extra: bool = True) -> list[KV]:  # noqa: B006 (frozensets are immutable)
    """Known keys in a fixed order with their labels, then any other scalar keys the result carries."""
    out = [KV(label, text(d[key]), key in code) for key, label in known if key in d]
    if extra:
        seen = {k for k, _ in known} | set(skip)
        for key, value in d.items():
            flat = _flat(value)
            if key not in seen and flat is not None and value not in (None, "", [], {}):
                out.append(KV(humanize(key), flat, key in code or "sha256" in key))
    return out


def _key(k: Any) -> str:
    """A key of a nested table in words ('batch_size' -> 'batch size'), not as the JSON spells it."""
    k = str(k)
    return k if "." in k or not re.fullmatch(r"[a-z0-9_]+", k) else humanize(k)


def _flat(value: Any, depth: int = 0) -> str | None:
    """A scalar, a short list or a small nested dict as one line of text; None for what is too big to show."""
    if isinstance(value, dict):
        if depth > 1 or not value:
            return None if depth > 1 else DASH
        parts = [(k, _flat(v, depth + 1)) for k, v in value.items()]
        joined = ("; " if depth == 0 else ", ").join(f"{_key(k)}: {v}" for k, v in parts if v is not None)
        return (joined if depth == 0 else f"({joined})") or None
    if isinstance(value, list):
        if len(value) > 20 or any(isinstance(v, (dict, list)) for v in value):
            return None
        return text(value)
    return text(value)


def verdict_view(result: dict) -> VerdictView:
    findings = [_dict(f) for f in _list(result.get("findings"))]
    v = _dict(result.get("verdict"))
    status = str(v.get("status") or "UNKNOWN")
    by_status = {s: 0 for s in STATUSES}
    for f in findings:
        s = str(f.get("status"))
        by_status[s] = by_status.get(s, 0) + 1
    blocking = [f for f in findings if f.get("severity") == "block"]
    failed = [f for f in blocking if f.get("status") in ("FAIL", "ERROR")]
    lacking = [f for f in blocking if f.get("status") == "INCONCLUSIVE"]
    if status == "FAIL" and failed:
        headline = f"FAIL — {plural(len(failed), 'blocking finding')} failed"
        if lacking:
            headline += f", {len(lacking)} without enough evidence"
    elif status == "FAIL" and lacking:
        headline = (f"FAIL — {plural(len(lacking), 'blocking finding')} without enough evidence "
                    "(the policy counts that as a failure)")
    elif status == "INCONCLUSIVE":
        headline = f"INCONCLUSIVE — {plural(len(lacking), 'blocking finding')} without enough evidence"
    elif status == "PASS":
        headline = f"PASS — {len(blocking)} of {plural(len(blocking), 'blocking finding')} passed"
        if not blocking:
            headline = "PASS — no blocking findings"
        if by_status.get("WARN"):
            headline += f", {plural(by_status['WARN'], 'warning')}"
    else:
        headline = status
    stopping = failed + (lacking if status != "PASS" else [])
    sentences = [f"{f.get('title') or f.get('check_id')} ({f.get('check_id')}, {f.get('status')}): "
                 f"{f.get('message') or f.get('reason') or ''}".rstrip(": ") for f in stopping]
    detail = f"Exit code {text(v.get('exit_code'))}"
    if v.get("strict"):
        detail += " (strict: warnings also fail the gate)"
    counts = [Count(s, n, _css(s)) for s, n in by_status.items()]
    stops = [StopRow(str(f.get("check_id") or ""), str(f.get("title") or humanize(str(f.get("check_id") or ""))),
                     str(f.get("status")), _css(str(f.get("status")))) for f in stopping]
    return VerdictView(status, _css(status), headline, detail + ".", counts, sentences, stops)


def _why_once(f: dict) -> str:
    """The finding's message, printed once: when its parts table gives each part's reason, the message's
    'It cannot be judged: <the parts' reasons>' tail points there instead of repeating them."""
    message, reason = str(f.get("message") or ""), str(f.get("reason") or "")
    if reason and _list(f.get("parts")) and message.endswith(f"It cannot be judged: {reason}."):
        return message[: -len(f"{reason}.")] + "see the parts below."
    if reason and _list(f.get("parts")) and message.endswith(f"cannot be judged: {reason}."):
        return message[: -len(f"{reason}.")] + "see the parts below."
    return message


def finding_view(f: dict, default_confidence: Any = None, min_group_size: Any = None) -> FindingView:
    unit = str(f.get("unit") or "")
    conf = f.get("confidence", default_confidence)
    status = str(f.get("status") or "UNKNOWN")
    basis = str(f.get("basis") or "point")
    applied = ""
    if num(f.get("observed")) is not None and basis != "point":
        side = {"ci_low": "lower bound", "ci_high": "upper bound"}.get(basis, basis)
        applied = f"rule applied to the {side}: {fmt(f.get('observed'), unit)}"
    waiver = _dict(f.get("waiver"))
    waiver_kvs = _kvs(waiver, [("status_waived", "Status without the waiver"), ("approved_by", "Approved by"),
                                ("expires", "Expires"), ("reason", "Reason")]) if waiver else []
    title = str(f.get("title") or humanize(str(f.get("check_id", ""))))
    bar = charts.ci_bar(f.get("value"), f.get("ci_low"), f.get("ci_high"), f.get("min"), f.get("max"),
                        desc=f"{title}: {observed_text(f.get('value'), f.get('ci_low'), f.get('ci_high'), conf, unit)}"
                             f"; threshold {threshold_text(f.get('min'), f.get('max'), basis, conf, unit)}.")
    return FindingView(
        check_id=str(f.get("check_id", "")), title=title, family=str(f.get("family", "")), status=status,
        css=_css(status), severity="blocking" if f.get("severity") == "block" else "warning only",
        threshold=threshold_text(f.get("min"), f.get("max"), basis, conf, unit),
        observed=observed_text(f.get("value"), f.get("ci_low"), f.get("ci_high"), conf, unit), applied=applied,
        refs=[str(r) for r in _list(f.get("refs"))], message=str(f.get("message") or ""),
        meaning=str(f.get("meaning") or ""), reason=str(f.get("reason") or ""), waiver=waiver_kvs, bar=bar,
        part=str(f.get("part") or ""), evidence=evidence_text(f.get("n"), f.get("evidence")),
        note=str(f.get("note") or ""), decided_by=str(f.get("decided_by") or ""),
        parts=part_views(f, default_confidence),
        references=[str(r) for r in _list(f.get("references"))],
        resolve=_resolution(f, min_group_size), why=_why_once(f),
    )


def _resolution(f: dict, min_group_size: Any) -> str:
    from audit.render.resolve import resolution

    return resolution(f, min_group_size)


def _measurement_row(cid: str, m: dict, title: str, confidence: Any, finding: dict | None) -> MeasurementRow:
    unit = str((finding or {}).get("unit") or "")
    note = m.get("error") or m.get("skipped") or m.get("inconclusive") or ""
    kind = "error" if m.get("error") else "skipped" if m.get("skipped") else "inconclusive" if note else ""
    value = observed_text(m.get("value"), m.get("ci_low"), m.get("ci_high"), confidence, unit)
    f = finding or {}
    bar = charts.ci_bar(m.get("value"), m.get("ci_low"), m.get("ci_high"), f.get("min"), f.get("max"),
                        desc=f"{title}: {value}" + (f"; threshold {threshold_text(f.get('min'), f.get('max'), f.get('basis'), confidence, unit)}"
                                                    if finding else "") + ".")
    return MeasurementRow(cid, title, value, text(m.get("n")), f"{kind}: {note}" if note else "", bar)


def _family_title(family: str) -> str:
    return family.replace("_", " ").capitalize()


def _family_view_module(family: str):
    """A family's own view-model module, found by name: `audit/render/<family>_view.py` with a function
    `detail(result) -> view-model` that its template (`reports/templates/<family>.html`) reads as `fam.detail`.
    A family without one gets the generic tables of family.html."""
    import importlib
    import importlib.util

    if not re.fullmatch(r"[a-z][a-z0-9_]*", family):
        return None
    name = f"audit.render.{family}_view"
    if importlib.util.find_spec(name) is None:
        return None
    return importlib.import_module(name)


def family_views(result: dict) -> list[FamilyView]:
    measurements = _dict(result.get("measurements"))
    findings = {str(f.get("check_id")): f for f in map(_dict, _list(result.get("findings")))}
    confidence = _dict(result.get("policy")).get("confidence")
    names = {cid.split(".", 1)[0] for cid in measurements} | {str(f.get("family")) for f in findings.values()}
    names.discard("None")
    names.discard("")
    order = [n for n in FAMILY_ORDER if n in names] + sorted(names - set(FAMILY_ORDER))
    views = []
    for fam in order:
        own = [f"{fam}.html"] if re.fullmatch(r"[a-z][a-z0-9_]*", fam) and fam not in _RESERVED_TEMPLATES else []
        judged, unjudged = [], []
        for cid, m in measurements.items():
            if cid.split(".", 1)[0] != fam:
                continue
            f = findings.get(cid)
            title = str(_dict(m).get("title") or (f or {}).get("title") or humanize(cid))
            (judged if f else unjudged).append(_measurement_row(cid, _dict(m), title, confidence, f))
        view = FamilyView(fam, _family_title(fam), own + ["family.html"], judged, unjudged)
        module = _family_view_module(fam)
        if module is not None and callable(getattr(module, "detail", None)):
            view.detail = module.detail(result)
        views.append(view)
    return views


def _command(cmd: Any) -> str:
    if isinstance(cmd, list):
        return shlex.join(str(c) for c in cmd)
    return text(cmd)


def _timing_rows(t: dict) -> list[KV]:
    """The run's timings as sentences, not a dictionary: scoring, then the slowest checks."""
    out = []
    if num(t.get("scoring_s")) is not None:
        rate = f" ({text(round(t['scoring_rows_per_s']))} rows per second)" if num(t.get("scoring_rows_per_s")) else ""
        out.append(KV("Scoring time", f"{num(t['scoring_s']):.2f} s{rate}"))
    checks = sorted(((str(k), num(v)) for k, v in _dict(t.get("checks_s")).items() if num(v) is not None),
                    key=lambda kv: -kv[1])
    if checks:
        shown = "; ".join(f"{k} {v:.1f} s" for k, v in checks[:5])
        rest = f"; {len(checks) - 5} more, {sum(v for _, v in checks[5:]):.1f} s together" if len(checks) > 5 else ""
        out.append(KV("Slowest checks", f"{shown}{rest} ({sum(v for _, v in checks):.1f} s for all {len(checks)})"))
    known = {"scoring_s", "scoring_rows_per_s", "checks_s"}
    out += [KV(humanize(k), f) for k, v in t.items() if k not in known and (f := _flat(v)) is not None]
    return out


def report_view(result: dict) -> Report:
    from audit.render.statistics_view import statistics_view

    model, policy, run = _dict(result.get("model")), _dict(result.get("policy")), _dict(result.get("run"))
    env, tool = _dict(result.get("environment")), _dict(result.get("tool"))
    confidence = policy.get("confidence")
    model_name = text(model.get("name") or model.get("path"))
    policy_name = text(policy.get("name"))
    if policy.get("version"):
        policy_name += f" {policy['version']}"
    findings = sorted((_dict(f) for f in _list(result.get("findings"))),
                      key=lambda f: STATUSES.index(f["status"]) if f.get("status") in STATUSES else -1)
    labels = [KV("Labels", text(model.get("labels"))), KV("Positive (favourable) label", text(model.get("positive_label"))),
              KV("Negative label", text(model.get("negative_label"))), KV("Label column", text(model.get("label_column")), True)]
    text_recipe = [KV(humanize(k), text(v), True) for k, v in _dict(model.get("text")).items()]
    if isinstance(model.get("text"), str):
        text_recipe = [KV("Text", model["text"], True)]
    datasets = [Dataset(role, _kvs(_dict(d), [("path", "File"), ("rows", "Rows"), ("positives", "Positive rows"),
                                             ("negatives", "Negative rows"), ("source", "Source"), ("sha256", "SHA-256")],
                                   code={"path", "sha256"}))
                for role, d in _dict(result.get("data")).items()]
    run_kvs = [KV("Run id", text(run.get("id")), True), KV("Started", text(run.get("started"))),
               KV("Finished", text(run.get("finished"))), KV("Duration", f"{text(run.get('duration_s'))} s"),
               KV("Command", _command(run.get("command")), True), KV("Seed", text(run.get("seed"))),
               KV("Tool", f"{text(tool.get('name', 'audit'))} {text(tool.get('version'))}"),
               KV("Result schema", text(result.get("schema_version")))]
    run_kvs += _timing_rows(_dict(run.get("timings")))
    run_kvs += _kvs(run, [], skip={"id", "started", "finished", "duration_s", "command", "seed", "timings"})
    return Report(
        title=f"Model audit: {model_name}",
        subtitle=f"against the policy {policy_name}",
        verdict=verdict_view(result),
        findings=[finding_view(f, confidence, policy.get("min_group_size")) for f in findings],
        families=family_views(result),
        model=_kvs(model, [("name", "Name"), ("path", "Folder"), ("base_model", "Base model"),
                           ("base_model_sha256", "Base model SHA-256"), ("num_parameters", "Parameters"),
                           ("trained", "Trained")],
                   code={"path", "base_model_sha256"},
                   skip={"labels", "positive_label", "negative_label", "label_column", "text"}),
        labels=labels + text_recipe, datasets=datasets, run=run_kvs,
        policy=_kvs(policy, [("name", "Name"), ("version", "Version"), ("description", "Description"),
                             ("path", "File"), ("sha256", "SHA-256"), ("confidence", "Confidence level"),
                             ("inconclusive", "Blocking findings without evidence count as"),
                             ("min_group_size", "Minimum group size"), ("decision_threshold", "Decision threshold"),
                             ("replicates", "Bootstrap replicates")], code={"path", "sha256"}),
        inputs=[InputFile(text(i.get("role")), text(i.get("path")), text(i.get("bytes")), text(i.get("sha256")))
                for i in map(_dict, _list(result.get("inputs")))],
        environment=_kvs(env, [("python", "Python"), ("platform", "Platform")], skip={"packages"}),
        packages=[KV(str(k), text(v), True) for k, v in _dict(env.get("packages")).items()],
        scoring=_kvs(_dict(result.get("scoring")), [("rows", "Rows scored"), ("seconds", "Seconds"),
                                                    ("rows_per_s", "Rows per second"), ("batch_size", "Batch size"),
                                                    ("max_length", "Max tokens"), ("device", "Device"),
                                                    ("precision", "Precision")]),
        warnings=[str(w) for w in _list(result.get("warnings"))],
        statistics=statistics_view(result),
    )
