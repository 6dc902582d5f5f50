"""Citations: the clauses a policy's rule serves, the clauses its scope names, and what it does not cover.

A rule's `refs` name the clauses its check serves. An item is a mapping

    {clause: "12 CFR 1002.6(b)(1)", regulation: "ECOA / Regulation B", text: "what the check shows",
     partial: true}

(`clause` is the id the regulation map groups by: make it self-contained, "EU AI Act Art. 10(2)(f)", not
"Art. 10(2)(f)"; `partial: true` says the check tests only part of what the clause requires), or a string,
the older form: "Regulation (clause, clause): text" names each clause in the parentheses (a later clause
without a space takes the first one's leading words: "12 CFR 1002.4(a), 1002.6(a)" is two CFR clauses; words
without a digit are a gloss, not a clause: "SR 11-7 (model validation)" cites "SR 11-7"), and "Clause: text"
or a bare "Clause" names one. A paper or guidance that is not a clause goes in the rule's `references`, never
in `refs`.

A policy's `scope` lists clauses the same way (those it answers for), and `not_covered` mappings
{clause, regulation, text, reason} (what the audit does not test, and why). No pydantic here: the renderers
parse an older result.json's `refs` strings with `parse_ref` as the policy loader does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from audit.yamlsrc import closest
from audit.yamlsrc import shown as _shown

_CITE_KEYS = ("clause", "regulation", "text", "partial")
_NOT_COVERED_KEYS = ("clause", "regulation", "text", "reason")
_PARENS = re.compile(r"^(?P<reg>[^():]+?)\s+\((?P<clauses>(?:[^()]|\([^()]*\))+)\)\s*(?::\s*(?P<text>.*))?$", re.S)


@dataclass(frozen=True)
class Cite:
    """One clause a rule serves (or a policy's scope names), with what the check shows for it."""

    clause: str
    regulation: str = ""
    text: str = ""
    partial: bool = False
    label: str = ""  # the line the findings table prints: the string as written, or one made from the mapping

    @property
    def key(self) -> str:
        return clause_key(self.clause)

    def to_dict(self) -> dict[str, Any]:
        return {"clause": self.clause, "regulation": self.regulation, "text": self.text, "partial": self.partial}


@dataclass(frozen=True)
class NotCovered:
    """A requirement a reviewer would expect that this audit does not test, and why."""

    clause: str
    reason: str
    regulation: str = ""
    text: str = ""

    @property
    def key(self) -> str:
        return clause_key(self.clause)

    def to_dict(self) -> dict[str, Any]:
        return {"clause": self.clause, "regulation": self.regulation, "text": self.text, "reason": self.reason}


def clause_key(clause: str) -> str:
    """What two spellings of one clause share: "Article 10 (2)(f)" and "Art. 10(2)(f)" are one clause."""
    key = " ".join(str(clause).split())
    key = re.sub(r"\bArticle\s+", "Art. ", key, flags=re.I)
    key = re.sub(r"\bArt\.?\s*(?=\d)", "Art. ", key, flags=re.I)
    key = re.sub(r"§\s*", "§", key)
    key = re.sub(r"\s+\(", "(", key)
    return key.casefold()


def _label(clause: str, regulation: str, text: str, partial: bool) -> str:
    """"ECOA / Regulation B (12 CFR 1002.6(a)), in part: text"; the regulation only where the clause id does not
    already start with its name ("GDPR Art. 32", not "GDPR (GDPR Art. 32)")."""
    named = regulation and clause.casefold().startswith(regulation.split()[0].casefold())
    head = f"{regulation} ({clause})" if regulation and not named else clause
    if partial:
        head += ", in part"
    return f"{head}: {text}" if text else head


def parse_ref(text: str) -> list[Cite]:
    """The clauses a string reference names (see the comment above); [] when it names none."""
    s = " ".join(str(text).split())
    m = _PARENS.match(s)
    if m:
        items = [c.strip() for c in _split_commas(m["clauses"]) if c.strip()]
        if items and not any(ch.isdigit() for c in items for ch in c):  # "SR 11-7 (model validation)": a gloss
            gloss = m["clauses"].strip() + (f": {m['text'].strip()}" if m["text"] else "")
            return [Cite(m["reg"].strip(), "", gloss, False, s)]
        if items:
            lead = items[0].rsplit(" ", 1)[0] if " " in items[0] else ""
            clauses = [items[0]] + [f"{lead} {c}" if lead and " " not in c else c for c in items[1:]]
            return [Cite(c, m["reg"].strip(), (m["text"] or "").strip(), False, s) for c in clauses]
    head, _, rest = s.partition(": ")
    head = head.strip().rstrip(":")
    return [Cite(head, "", rest.strip(), False, s)] if head else []


def _split_commas(text: str) -> list[str]:
    """Split at commas outside parentheses."""
    out, depth, cur = [], 0, ""
    for ch in text:
        depth += (ch == "(") - (ch == ")")
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    return out + [cur]


def _mapping_errors(item: dict, keys: tuple[str, ...], required: tuple[str, ...]) -> str | None:
    for key in item:
        if key not in keys:
            return f"unknown key '{key}'{closest(key, keys)} (known: {', '.join(keys)})"
    for key in required:
        if not isinstance(item.get(key), str) or not item[key].strip():
            return f"{key}: {'missing required key' if key not in item else 'expected a non-empty string'}"
    for key in keys:
        if key in item and key not in required:
            want = bool if key == "partial" else str
            if not isinstance(item[key], want):
                return f"{key}: expected {'true or false' if want is bool else 'a string'}, got {_shown(item[key])}"
    return None


def parse_cite(item: Any) -> list[Cite]:
    """A `refs` or `scope` item as its clauses; ValueError with a readable message for a bad one."""
    if isinstance(item, str):
        cites = parse_ref(item)
        if not cites:
            raise ValueError("a reference must name its clause, got an empty string")
        return cites
    if isinstance(item, dict):
        problem = _mapping_errors(item, _CITE_KEYS, ("clause",))
        if problem:
            raise ValueError(problem)
        clause, reg = " ".join(item["clause"].split()), " ".join(str(item.get("regulation", "")).split())
        text, partial = " ".join(str(item.get("text", "")).split()), bool(item.get("partial", False))
        return [Cite(clause, reg, text, partial, _label(clause, reg, text, partial))]
    raise ValueError(f"expected a string or a mapping with clause, regulation, text and partial, got {_shown(item)}")


def parse_not_covered(item: Any) -> NotCovered:
    if not isinstance(item, dict):
        raise ValueError(f"expected a mapping with clause, regulation, text and reason, got {_shown(item)}")
    problem = _mapping_errors(item, _NOT_COVERED_KEYS, ("clause", "reason"))
    if problem:
        raise ValueError(problem)
    return NotCovered(*(" ".join(str(item.get(k, "")).split()) for k in ("clause", "reason", "regulation", "text")))


