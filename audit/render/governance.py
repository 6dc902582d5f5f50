"""What a compliance officer signs: the executive summary, the regulation map, the model card, the sign-off.

View-models built from the result dict alone (strings already formatted; templates only loop and print), and
the model card again as a Hugging Face-style README.md (YAML metadata, then sections) for the run folder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from audit.render.format import as_dict as _dict
from audit.render.format import as_list as _list
from audit.render.format import finding_observed, fmt, observed_text, text

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


def model_card(result: dict, *, in_report: bool = False) -> list[CardSection]:
    """The model card's sections. `in_report`: the card inside report.html, where each finding's message is
    already in the findings table, so its ethical considerations name the findings and their statuses only."""
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
                    [f"{f.get('title')}: {f.get('status')}" + ("" if in_report else f" — {f.get('message')}")
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
    # each finding's reason and what would resolve it are said once, in the findings table: here, names only
    def names(fs: list[dict]) -> str:
        return ", ".join(str(f.get("title") or f.get("check_id")) for f in fs)

    blocking = [f for f in findings if f.get("severity") == "block" and f.get("status") in ("FAIL", "ERROR")]
    if blocking:
        lines.append(f"Blocking, failed: {names(blocking)} (the findings table says why and what would resolve it).")
    lacking = [f for f in findings if f.get("severity") == "block" and f.get("status") == "INCONCLUSIVE"]
    if lacking:
        lines.append(f"Blocking, without enough evidence: {names(lacking)} (the findings table says what evidence "
                     "is missing and what would resolve it).")
    waived = [f for f in findings if f.get("status") == "WAIVED"]
    for f in waived:
        w = _dict(f.get("waiver"))
        lines.append(f"Waived: {f.get('title')}" + (f" by {w['approved_by']}" if w.get("approved_by") else "")
                     + (f" until {w['expires']}" if w.get("expires") else "") + ".")
    return lines


def governance_view(result: dict) -> Governance:
    info = _card_info(_dict(result.get("model")))
    purpose = str(info.get("intended_use") or "The model's manifest does not state its intended use.")
    if info.get("users"):
        purpose += f" Intended users: {info['users']}."
    clauses = regulation_map(result)
    return Governance(purpose, executive_summary(result), clauses, model_card(result, in_report=True),
                      not_covered(result, clauses))


# ---------------------------------------------------------------- README.md: the model card for the Hugging Face Hub

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")  # "org/name", as the Hub's base_model expects
_CARD_SPECIAL = re.compile(r"([\\`*\[\]|~$])|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")
_BLOCK_START = re.compile(r"^(#{1,6}(\s|$)|>|[-+](\s|$)|\d{1,9}[.)](\s|$)|[-=]{3,})")  # a heading, quote, list, rule
_ABS_PATH = re.compile(r"(?<![\w:/.~-])/(?:[^\s/'\"`]+/)+([^\s/'\"`]+)")


def card_text(value: Any, paths: dict[str, str] | None = None) -> str:
    """Data-derived text for the model card's Markdown body, on one line: inert (HTML as entities; emphasis, code,
    links, tables, math and strikethrough escaped; no autolink, mention or block syntax at the start) yet
    readable: colons, full stops and the underscores inside words (`roc_auc`) stay as they are. Local paths
    become file names (`paths`: the result's own paths, then any absolute path)."""
    s = " ".join(str("" if value is None else value).split())
    s = _no_paths(s, paths or {})
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    s = _CARD_SPECIAL.sub(lambda m: "\\" + m.group(0), s)
    s = s.replace("://", ":&#47;&#47;").replace("www.", "www&#46;").replace("@", "@\u200b")  # no autolinks
    return "\\" + s if _BLOCK_START.match(s) else s


def _card_code(value: Any) -> str:
    """Inside a code span: backticks and pipes cannot be escaped there, so they are replaced."""
    return " ".join(str(value or "").split()).replace("`", "'").replace("|", "/")


def _no_paths(s: str, paths: dict[str, str]) -> str:
    for full, name in sorted(paths.items(), key=lambda kv: -len(kv[0])):
        s = s.replace(full, name)
    return _ABS_PATH.sub(lambda m: m.group(1), s)


def _local_paths(result: dict) -> dict[str, str]:
    """Every local path the result names, mapped to its file name (the card names files, never folders)."""
    from pathlib import PurePath

    found: set[str] = set()
    model, data = _dict(result.get("model")), _dict(result.get("data"))
    found.update(str(x) for x in (model.get("path"), _dict(model.get("training_data")).get("path"),
                                  _dict(result.get("policy")).get("path"), _dict(result.get("baseline")).get("path"))
                 if x)
    found.update(str(_dict(d).get("path")) for d in data.values() if _dict(d).get("path"))
    found.update(str(_dict(i).get("path")) for i in _list(result.get("inputs")) if _dict(i).get("path"))
    out = {}
    for p in found:
        if "/" not in p.rstrip("/"):
            continue  # a bare name is already its file name (and replacing it would touch every word)
        name = PurePath(p.rstrip("/")).name or p
        out[p] = name
        absolute = p if p.startswith("/") else None
        if absolute is None:
            continue
        parent = str(PurePath(p).parent)
        if parent not in ("/", "."):
            out.setdefault(parent, PurePath(parent).name)
    return out


def _slug(text_: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text_.lower()).strip("-") or "data"


def _dataset(d: dict, description: str) -> dict[str, str]:
    """A data file as the model card names it: an id from its name and sha256, a readable name, its revision."""
    from pathlib import PurePath

    file = PurePath(str(d.get("path") or "data")).name
    sha = str(d.get("sha256") or "")
    ident = f"{_slug(PurePath(file).stem)}-{sha[:12]}" if sha else _slug(PurePath(file).stem)
    rows = d.get("rows")
    name = " ".join(str(description or "").split()) or (f"{file} ({rows} rows)" if rows is not None else file)
    return {"type": ident, "name": name[:200], **({"revision": sha} if sha else {})}


def _hub_base_model(model: dict) -> str | None:
    name = str(model.get("base_model") or "").split(" (")[0].strip()
    return name if HUB_ID.match(name) else None


def _languages(card: dict) -> list[str]:
    lang = card.get("language")
    items = lang if isinstance(lang, list) else str(lang or "").replace(",", " ").split()
    return [str(x).strip() for x in items if str(x).strip()]


def card_metadata(result: dict) -> dict[str, Any]:
    """The YAML metadata of README.md, as the Hub's model card reads it: license (the manifest's, or `other` with
    the name `unknown` when none is recorded), language, datasets, metrics, base_model when it is a Hub id, and a
    model-index whose results name their dataset (the eval set: an id from its name and sha256, its description,
    split and revision)."""
    model, data, policy = _dict(result.get("model")), _dict(result.get("data")), _dict(result.get("policy"))
    card = _card_info(model)
    ms = _dict(result.get("measurements"))
    conf = policy.get("confidence")
    meta: dict[str, Any] = {}
    license_ = " ".join(str(card.get("license") or "").split())
    if license_:
        meta["license"] = license_
        if card.get("license_link"):
            meta["license_link"] = str(card["license_link"]).strip()
    else:
        meta.update({"license": "other", "license_name": "unknown"})
    langs = _languages(card)
    if langs:
        meta["language"] = langs
    status = str(_dict(result.get("verdict")).get("status") or "unknown").lower()
    meta.update({"library_name": "transformers", "pipeline_tag": "text-classification",
                 "tags": ["text-classification", "audit", f"audit-verdict-{status}"]})
    base = _hub_base_model(model)
    if base:
        meta["base_model"] = base
    description = str(model.get("description") or "")
    train = _dict(model.get("training_data"))
    evals = _dict(data.get("eval"))
    eval_ds = _dataset(evals, description if train and evals.get("sha256") == train.get("sha256") else "")
    held_out = bool(train) and evals.get("sha256") == train.get("sha256")
    eval_ds["split"] = "held-out" if held_out else "all rows"
    datasets = [_dataset(train, description)["type"]] if train else []
    if eval_ds["type"] not in datasets:
        datasets.append(eval_ds["type"])
    meta["datasets"] = datasets
    titles = {f.get("check_id"): f.get("title") for f in map(_dict, _list(result.get("findings")))}
    metrics = []
    for cid, m in ms.items():
        m = _dict(m)
        if cid not in KEY_METRICS and not str(cid).startswith("fairness."):
            continue
        value = m.get("value")
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value != value:
            continue
        name = str(titles.get(cid) or cid.split(".", 1)[-1].replace("_", " "))
        if m.get("ci_low") is not None and m.get("ci_high") is not None:
            name += f" ({observed_text(value, m.get('ci_low'), m.get('ci_high'), conf).split(' (', 1)[1]}"
        metrics.append({"type": str(cid).split(".", 1)[-1], "value": round(float(value), 4),
                        "name": " ".join(name.split())[:200], "verified": False})
    order = {cid.split(".", 1)[1]: i for i, cid in enumerate(KEY_METRICS)}
    metrics.sort(key=lambda x: (order.get(x["type"], len(order)), x["type"]))
    if metrics:
        meta["metrics"] = list(dict.fromkeys(x["type"] for x in metrics))
        meta["model-index"] = [{"name": " ".join(str(model.get("name") or "model").split()),
                                "results": [{"task": {"type": "text-classification", "name": "Text Classification"},
                                             "dataset": eval_ds, "metrics": metrics}]}]
    meta["audit_verdict"] = str(_dict(result.get("verdict")).get("status") or "")
    meta["audit_run_id"] = str(_dict(result.get("run")).get("id") or "")
    meta["audit_policy"] = " ".join(f"{policy.get('name') or ''} {policy.get('version') or ''}".split())
    return meta


def group_tables(result: dict) -> list[tuple[str, list[list[str]]]]:
    """Per-group metrics from the fairness measurements (each attribute and intersection once): rows,
    selection rate, true- and false-positive rate, accuracy, each group as the checks measured it."""
    seen: dict[str, list[list[str]]] = {}
    for cid, m in _dict(result.get("measurements")).items():
        if not str(cid).startswith("fairness."):
            continue
        for a in map(_dict, _list(_dict(_dict(m).get("details")).get("attributes"))):
            name = str(a.get("attribute") or "")
            if not name or name in seen or not _list(a.get("groups")):
                continue
            rows = []
            for g in map(_dict, _list(a.get("groups"))):
                rows.append([str(g.get("group")), text(g.get("count")), fmt(g.get("selection_rate")),
                             fmt(g.get("tpr")), fmt(g.get("fpr")), fmt(g.get("accuracy")),
                             "too small to judge" if g.get("too_small") else ""])
            seen[name] = rows
    return list(seen.items())


def model_card_markdown(result: dict) -> str:
    """README.md for the model folder, as the Hugging Face Hub reads a model card: YAML metadata (safe_dump of
    one-line strings), then the card's sections, per-group metrics, limitations and the findings. No local path
    appears; every data-derived string goes through `card_text`."""
    import yaml

    model = _dict(result.get("model"))
    paths = _local_paths(result)

    def t(value: Any) -> str:
        return card_text(value, paths)

    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml's safe dumper: the same YAML, 5x faster
    meta = yaml.dump(_no_paths_deep(card_metadata(result), paths), Dumper=dumper, sort_keys=False, allow_unicode=True,
                     width=10**6, default_flow_style=False)
    verdict, policy, run = _dict(result.get("verdict")), _dict(result.get("policy")), _dict(result.get("run"))
    body = [f"# {t(model.get('name') or 'Model')}", "",
            f"Audit verdict: **{t(verdict.get('status'))}** against the policy {t(policy.get('name'))} "
            f"{t(policy.get('version'))} (run {t(run.get('id'))}).".replace("  ", " "), ""]
    sections = model_card(result)
    if not any(sec.heading == "Limitations" for sec in sections):
        at = next((i for i, sec in enumerate(sections) if sec.heading == "Ethical considerations"), len(sections))
        sections.insert(at, CardSection("Limitations", ["No limitations are recorded in the model's manifest "
                                                        "(card.limitations). The findings below are the evidence "
                                                        "this audit has; it tests only what its policy asks."]))
    card = _card_info(model)
    license_line = (f"License: {t(card.get('license'))}." if card.get("license") else
                    "License: not recorded in the model's manifest (card.license); the metadata says `other` "
                    "until the model's owner states one.")
    for section in sections:
        body += [f"## {section.heading}", ""]
        body += [t(p) for p in section.paragraphs] + ([""] if section.paragraphs else [])
        body += [f"- {t(i)}" for i in section.items] + ([""] if section.items else [])
        if section.heading == "Model":
            body += [license_line, ""]
        if section.heading == "Metrics":
            body += _group_lines(result, t)
    body += ["## Findings", "", "| Check | Status | Observed | Clauses |", "|---|---|---|---|"]
    for f in map(_dict, _list(result.get("findings"))):
        body.append(f"| {t(f.get('title'))} (`{_card_code(f.get('check_id'))}`) | {t(f.get('status'))} | "
                    f"{t(finding_observed(f))} | {t('; '.join(map(str, _list(f.get('refs')))))} |")
    return "---\n" + meta + "---\n\n" + "\n".join(body) + "\n"


def _group_lines(result: dict, t) -> list[str]:
    from audit.render.views import part_views

    lines: list[str] = []
    tables = group_tables(result)
    if tables:
        lines += ["### Metrics by group", "",
                  f"Each group's rates at the decision threshold "
                  f"{fmt(_dict(result.get('policy')).get('decision_threshold'))}.", ""]
        for name, rows in tables:
            lines += [f"**{t(name)}**", "", "| Group | Rows | Selection rate | True-positive rate | "
                      "False-positive rate | Accuracy | Note |", "|---|---:|---:|---:|---:|---:|---|"]
            lines += ["| " + " | ".join(t(c) for c in row) + " |" for row in rows]
            lines.append("")
    conf = _dict(result.get("policy")).get("confidence")
    fair = [f for f in map(_dict, _list(result.get("findings"))) if f.get("family") == "fairness"]
    if fair:
        lines += ["### Fairness, part by part", ""]
        for f in fair:
            lines.append(f"- {t(f.get('title'))}: {t(f.get('status'))}, {t(finding_observed(f, conf))}")
            lines += [f"  - {t(p.name)}: {t(p.status)}, {t(p.observed)}" + (f" ({t(p.reason)})" if p.reason else "")
                      for p in part_views(f, conf) if p.name and p.name != "—"]
        lines.append("")
    return lines


def _no_paths_deep(x: Any, paths: dict[str, str]) -> Any:
    """The metadata with every string on one line and without local paths."""
    if isinstance(x, dict):
        return {k: _no_paths_deep(v, paths) for k, v in x.items()}
    if isinstance(x, list):
        return [_no_paths_deep(v, paths) for v in x]
    if isinstance(x, str):
        return _no_paths(" ".join(x.split()), paths)
    return x
