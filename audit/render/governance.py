"""What a compliance officer signs: the executive summary, the regulation map, the model card, the sign-off.

View-models built from the result dict alone (strings already formatted; templates only loop and print), and
the model card again as a Hugging Face-style README.md (YAML metadata, then sections) for the run folder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from audit.render.views import _dict, _list, finding_observed, fmt, observed_text, text

STATUS_ORDER = ["ERROR", "FAIL", "INCONCLUSIVE", "WARN", "WAIVED", "SKIPPED", "PASS"]  # worst first
KEY_METRICS = ["performance.roc_auc", "performance.balanced_accuracy", "performance.accuracy", "performance.f1",
               "performance.recall", "performance.precision", "performance.brier_score", "performance.ece"]


@dataclass
class ClauseFinding:
    """One finding that serves a clause: what it shows for the clause, and whether that is a partial test."""

    check_id: str
    title: str
    status: str
    css: str
    text: str  # what the check shows for this clause, from the policy's citation
    partial: bool


@dataclass
class ClauseRow:
    clause: str  # the clause id as the policy first writes it
    regulation: str
    status: str  # the worst status of the findings that serve it
    css: str
    findings: list[ClauseFinding]
    partial: bool  # every finding tests only part of the clause
    not_covered: str = ""  # what of the clause the audit does not test, when the policy says


@dataclass
class NotCoveredRow:
    clause: str
    regulation: str
    text: str  # the requirement
    reason: str  # why this audit does not test it
    partly: bool  # some rule tests part of the clause: it is also in the map


@dataclass
class CardSection:
    heading: str
    paragraphs: list[str] = field(default_factory=list)
    items: list[str] = field(default_factory=list)


@dataclass
class Governance:
    purpose: str  # what the model is for and who may use it
    summary: list[str]  # the executive summary, a sentence each
    clauses: list[ClauseRow]
    card: list[CardSection]
    not_covered: list[NotCoveredRow] = field(default_factory=list)


def _worst(statuses: list[str]) -> str:
    return min(statuses, key=lambda s: STATUS_ORDER.index(s) if s in STATUS_ORDER else len(STATUS_ORDER))


def _cites(f: dict) -> list[dict]:
    """The clauses a finding serves: its structured `clauses`, or (an older result.json) its `refs` strings
    parsed as a policy's string references are."""
    from audit.cites import parse_ref

    clauses = [c for c in map(_dict, _list(f.get("clauses"))) if str(c.get("clause") or "").strip()]
    if clauses or not _list(f.get("refs")):
        return clauses
    return [c.to_dict() for r in _list(f.get("refs")) for c in parse_ref(str(r))]


def regulation_map(result: dict) -> list[ClauseRow]:
    """One row per clause (grouped by its id, however it is spelled), with every finding that serves it and the
    worst of their statuses. Papers and guidance (a rule's `references`) are not clauses and are not here."""
    from audit.cites import clause_key

    rows: dict[str, ClauseRow] = {}
    for f in map(_dict, _list(result.get("findings"))):
        status = str(f.get("status"))
        for c in _cites(f):
            clause = str(c.get("clause")).strip()
            row = rows.get(clause_key(clause))
            if row is None:
                row = rows[clause_key(clause)] = ClauseRow(clause, "", "", "", [], True)
            row.regulation = row.regulation or str(c.get("regulation") or "")
            cf = ClauseFinding(str(f.get("check_id") or ""), str(f.get("title") or f.get("check_id")), status,
                               f"st-{status.lower()}", str(c.get("text") or ""), bool(c.get("partial")))
            if not any(x.check_id == cf.check_id and x.text == cf.text for x in row.findings):
                row.findings.append(cf)
    for row in rows.values():
        row.status = _worst([x.status for x in row.findings])
        row.css = f"st-{row.status.lower()}"
        row.partial = all(x.partial for x in row.findings)
    return sorted(rows.values(), key=lambda r: _natural(clause_key(r.clause)))


def _natural(key: str) -> list:
    """"gdpr art. 5(1)(c)" before "gdpr art. 25": numbers compare as numbers."""
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", key) if t]


def not_covered(result: dict, clauses: list[ClauseRow]) -> list[NotCoveredRow]:
    """What a reviewer would expect that this audit does not test: the policy's `not_covered` items with their
    reasons, then each clause of its `scope` that no rule serves."""
    from audit.cites import clause_key

    policy = _dict(result.get("policy"))
    served = {clause_key(r.clause): r for r in clauses}
    out: list[NotCoveredRow] = []
    seen: set[str] = set()
    for n in map(_dict, _list(policy.get("not_covered"))):
        clause = str(n.get("clause") or "").strip()
        if not clause:
            continue
        key = clause_key(clause)
        seen.add(key)
        out.append(NotCoveredRow(clause, str(n.get("regulation") or ""), str(n.get("text") or ""),
                                 str(n.get("reason") or ""), key in served))
        if key in served:
            served[key].not_covered = str(n.get("text") or n.get("reason") or "")
    for c in map(_dict, _list(policy.get("scope"))):
        clause = str(c.get("clause") or "").strip()
        key = clause_key(clause)
        if not clause or key in served or key in seen:
            continue
        seen.add(key)
        out.append(NotCoveredRow(clause, str(c.get("regulation") or ""), str(c.get("text") or ""),
                                 "The policy's scope names this clause, but no rule of the policy serves it.", False))
    return out


def _card_info(model: dict) -> dict:
    return _dict(model.get("card"))


def _metric_lines(result: dict) -> list[str]:
    ms = _dict(result.get("measurements"))
    conf = _dict(result.get("policy")).get("confidence")
    titles = {f.get("check_id"): f.get("title") for f in map(_dict, _list(result.get("findings")))}
    lines = []
    for cid in KEY_METRICS:
        m = _dict(ms.get(cid))
        if m.get("value") is None:
            continue
        name = titles.get(cid) or cid.split(".", 1)[1].replace("_", " ")
        lines.append(f"{name}: {observed_text(m.get('value'), m.get('ci_low'), m.get('ci_high'), conf)}")
    return lines


def _caveats(result: dict) -> list[str]:
    model = _dict(result.get("model"))
    out = []
    for name, attr in _dict(model.get("protected_attributes")).items():
        note = _dict(attr).get("note")
        if note:
            out.append(f"{name}: {note}")
    return out + [str(w) for w in _list(result.get("warnings"))]


def model_card(result: dict) -> list[CardSection]:
    model, data = _dict(result.get("model")), _dict(result.get("data"))
    info = _card_info(model)
    training = _dict(model.get("training"))
    source = _dict(model.get("training_data"))
    text_recipe = _dict(model.get("text"))
    recipe = (f"the column '{text_recipe['column']}'" if text_recipe.get("column")
              else "a template over tabular columns" if text_recipe.get("template") else "not recorded")
    use_items = [f"Intended users: {info['users']}"] if info.get("users") else []
    if info.get("out_of_scope"):
        use_items.append(f"Out of scope: {info['out_of_scope']}")
    data_items = [f"File: {text(source.get('path'))} ({text(source.get('rows'))} rows, sha256 "
                  f"{str(source.get('sha256', ''))[:16]}…)"] if source else []
    data_items.append(f"Text: made from {recipe}.")
    sections = [
        CardSection("Intended use", [str(info.get("intended_use") or "Not stated in the model's manifest.")],
                    use_items),
        CardSection("Model", [f"{text(model.get('name'))}, fine-tuned from {text(model.get('base_model'))}"
                              f" ({text(model.get('num_parameters'))} parameters) to predict "
                              f"'{text(model.get('positive_label'))}' against '{text(model.get('negative_label'))}'."],
                    [f"Training: {text(training.get('method'))}, {text(training.get('epochs'))} epochs, "
                     f"batch {text(training.get('batch_size'))}, learning rate {text(training.get('learning_rate'))}, "
                     f"seed {text(training.get('seed'))}, {text(training.get('seconds'))} s"] if training else []),
        CardSection("Training data", [str(model.get("description") or "No description recorded.")], data_items),
        CardSection("Evaluation data", [], [f"{role}: {text(d.get('rows'))} rows — {text(d.get('source'))}"
                                            for role, d in map(lambda kv: (kv[0], _dict(kv[1])), data.items())]),
        CardSection("Metrics", [f"Intervals are bootstrap intervals at the policy's confidence level, "
                                f"decision threshold {fmt(_dict(result.get('policy')).get('decision_threshold'))}."],
                    _metric_lines(result)),
        CardSection("Limitations", [str(info.get("limitations") or "")] if info.get("limitations") else [],
                    _caveats(result)),
        CardSection("Ethical considerations",
                    [str(info.get("ethical_considerations") or "")] if info.get("ethical_considerations") else [],
                    [f"{f.get('title')}: {f.get('status')} — {f.get('message')}"
                     for f in map(_dict, _list(result.get("findings"))) if f.get("family") in ("fairness", "privacy")]),
    ]
    return [s for s in sections if s.paragraphs or s.items]


def executive_summary(result: dict) -> list[str]:
    findings = [_dict(f) for f in _list(result.get("findings"))]
    v = _dict(result.get("verdict"))
    model = _dict(result.get("model"))
    counts: dict[str, int] = {}
    for f in findings:
        counts[str(f.get("status"))] = counts.get(str(f.get("status")), 0) + 1
    order = [s for s in reversed(STATUS_ORDER) if counts.get(s)]
    tally = ", ".join(f"{counts[s]} {s}" for s in order) or "no findings"
    lines = [f"The model '{text(model.get('name'))}' was audited against the policy "
             f"'{text(_dict(result.get('policy')).get('name'))}': verdict {text(v.get('status'))} ({tally})."]
    blocking = [f for f in findings if f.get("severity") == "block" and f.get("status") in ("FAIL", "ERROR")]
    for f in blocking:
        lines.append(f"Blocking: {f.get('message') or f.get('reason')}")
    lacking = [f for f in findings if f.get("severity") == "block" and f.get("status") == "INCONCLUSIVE"]
    for f in lacking:
        lines.append(f"Not enough evidence: {f.get('title')} — {f.get('reason')}")
    waived = [f for f in findings if f.get("status") == "WAIVED"]
    for f in waived:
        lines.append(f"Waived: {f.get('title')} — {f.get('reason')}")
    return lines


def governance_view(result: dict) -> Governance:
    info = _card_info(_dict(result.get("model")))
    purpose = str(info.get("intended_use") or "The model's manifest does not state its intended use.")
    if info.get("users"):
        purpose += f" Intended users: {info['users']}."
    clauses = regulation_map(result)
    return Governance(purpose, executive_summary(result), clauses, model_card(result), not_covered(result, clauses))


def _yaml_scalar(value: Any) -> str:
    import json

    return json.dumps(str(value), ensure_ascii=False)


def model_card_markdown(result: dict) -> str:
    """README.md for the model folder, Hugging Face style: YAML metadata, then the card's sections."""
    model = _dict(result.get("model"))
    ms = _dict(result.get("measurements"))
    meta = ["---", "library_name: transformers", "pipeline_tag: text-classification",
            "tags:", "  - audit", "  - text-classification"]
    if model.get("base_model"):  # a hub-style id: the name before any note in parentheses
        meta.append(f"base_model: {_yaml_scalar(str(model['base_model']).split(' (')[0])}")
    metrics = [(cid.split(".", 1)[1], _dict(ms.get(cid)).get("value")) for cid in KEY_METRICS
               if _dict(ms.get(cid)).get("value") is not None]
    if metrics:
        meta += ["model-index:", f"  - name: {_yaml_scalar(model.get('name'))}", "    results:",
                 "      - task: {type: text-classification}", "        metrics:"]
        meta += [f"          - {{type: {name}, value: {round(float(value), 4)}}}" for name, value in metrics]
    meta += [f"audit_verdict: {_yaml_scalar(_dict(result.get('verdict')).get('status'))}",
             f"audit_run_id: {_yaml_scalar(_dict(result.get('run')).get('id'))}", "---", ""]
    body = [f"# {_md(model.get('name'))}", "",
            f"Audit verdict: **{_md(_dict(result.get('verdict')).get('status'))}** against the policy "
            f"{_md(_dict(result.get('policy')).get('name'))} (run {_md(_dict(result.get('run')).get('id'))}).", ""]
    for section in model_card(result):
        body += [f"## {section.heading}", ""]
        body += [_md(p) for p in section.paragraphs] + ([""] if section.paragraphs else [])
        body += [f"- {_md(i)}" for i in section.items] + ([""] if section.items else [])
    body += ["## Findings", "", "| check | status | observed | clauses |", "|---|---|---|---|"]
    for f in map(_dict, _list(result.get("findings"))):
        body.append(f"| {_md(f.get('title'))} | {_md(f.get('status'))} | "
                    f"{_md(finding_observed(f))} | "
                    f"{_md('; '.join(map(str, _list(f.get('refs')))))} |")
    return "\n".join(meta + body) + "\n"


def _md(value: Any) -> str:
    from audit.render.markdown import md

    return md("" if value is None else value)
