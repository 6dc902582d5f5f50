"""The report's sign-off block: the run it is about, the hashes a decision signs for, the decisions recorded.

A decision is recorded with `audit approve` as an entry of the ledger (audit.ledger.record_decision), bound to
the digest of the run's evidence.json; it is a person's record and changes neither the run folder nor the
verdict. The run's own report, written before anyone decided, says that no decision is recorded yet and how to
record one; `audit report RUN_DIR` re-renders the report with every decision the ledger holds on the run.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

APPROVE_COMMAND = ("audit approve RUN_DIR --reviewer NAME --decision approve|approve-with-conditions|reject "
                   "--comment TEXT [--sign KEY]")
KEY_ROLES = ("weights", "policy", "baseline", "predictions", "stats")  # and every data role; the rest: Provenance
_CSS_SAFE = re.compile(r"[^A-Za-z0-9._:+-]")


@dataclass
class HashRow:
    what: str
    sha256: str


@dataclass
class DecisionView:
    reviewer: str
    decision: str  # "approved with conditions"
    css: str
    time: str
    comment: str
    seq: str  # the ledger entry
    digest: str  # the evidence digest it is bound to
    signed: str  # "signed with key 3f2a…" or ""


@dataclass
class SignoffView:
    run_id: str
    verdict: str
    hashes: list[HashRow]
    other_inputs: int = 0  # inputs sealed too but listed under Provenance only (templates, tokenizer, config)
    decisions: list[DecisionView] = field(default_factory=list)
    command: str = APPROVE_COMMAND
    read_ledger: bool = False  # the decisions were read from the ledger (a re-render); False: the run's own report
    footer: str = ""  # the run id as the PDF footer prints it (CSS-string safe)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _d(x: Any) -> dict:
    return x if isinstance(x, dict) else {}


def decision_view(d: dict) -> DecisionView:
    from audit.ledger import DECISION_WORDS

    decision = str(d.get("decision") or "")
    css = {"approve": "st-pass", "approve-with-conditions": "st-warn", "reject": "st-fail"}.get(decision, "st-unknown")
    sig = _d(d.get("signature"))
    return DecisionView(
        reviewer=str(d.get("reviewer") or "—"), decision=DECISION_WORDS.get(decision, decision or "—"), css=css,
        time=str(d.get("time") or "—"), comment=str(d.get("comment") or ""), seq=str(d.get("seq") or "?"),
        digest=str(d.get("evidence_digest") or ""),
        signed=f"signed with key {sig.get('key_id')}" if sig.get("key_id") else "")


def signoff_view(result: dict, result_text: str | None = None, decisions: list[dict] | None = None) -> SignoffView:
    """The block for `result` (as in result.json, whose text is `result_text`), with the `decisions` the ledger
    records on the run (None: the ledger was not read, as when the run writes its own report)."""
    if result_text is None:
        from audit.render.format import json_safe, result_json

        result_text = result_json(json_safe(result))
    run_id = str(_d(result.get("run")).get("id") or "")
    hashes = [HashRow("result.json (every number and finding of this report)", _sha(result_text))]
    others = 0
    for item in result.get("inputs") or []:
        item = _d(item)
        if not item.get("sha256"):
            continue
        role = str(item.get("role") or "input")
        if role not in KEY_ROLES and not role.startswith("data"):
            others += 1
            continue
        name = str(item.get("path") or "").replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
        hashes.append(HashRow(f"{role}: {name}", str(item["sha256"])))
    return SignoffView(run_id=run_id or "—", verdict=str(_d(result.get("verdict")).get("status") or "UNKNOWN"),
                       hashes=hashes, other_inputs=others, decisions=[decision_view(_d(d)) for d in decisions or []],
                       read_ledger=decisions is not None, footer=_CSS_SAFE.sub("", run_id)[:80])
