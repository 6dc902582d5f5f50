"""Recorded sign-off: `audit approve` appends a reviewer's decision to the ledger, bound to the run's evidence
digest; verify, history and a re-rendered report show it; the run folder and the verdict never change."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from audit.cli import cli
from audit.ledger import LEDGER, read_ledger, verify_run
from audit.render.outputs import write_run

SAMPLE = json.loads((Path(__file__).parent / "fixtures" / "result_sample.json").read_text(encoding="utf-8"))


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture
def run(tmp_path) -> Path:
    """A sealed run folder recorded in the ledger of its root (written as `audit run` writes one)."""
    data = tmp_path / "eval.csv"
    data.write_text("text,label\nhello,good\n")
    result = copy.deepcopy(SAMPLE)
    result["inputs"] = [{"role": "data", "path": str(data), "bytes": data.stat().st_size,
                         "sha256": hashlib.sha256(data.read_bytes()).hexdigest()}]
    return write_run(tmp_path / "runs" / "r1", result, "row_id,score\n1,0.5\n", record=True)


def approve(run, *extra, reviewer="Dana Reyes (MRM)", decision="approve-with-conditions",
            comment="Release to 10% of traffic; re-audit after 30 days."):
    return invoke("approve", run, "--reviewer", reviewer, "--decision", decision, "--comment", comment, *extra)


def test_approve_appends_a_chained_decision_bound_to_the_evidence(run):
    before = hashes(run)
    r = approve(run)
    assert r.exit_code == 0, r.output
    entries, problems = read_ledger(run.parent / LEDGER)
    assert problems == [] and len(entries) == 2
    run_entry, d = entries
    evidence = json.loads((run / "evidence.json").read_text())
    assert d["kind"] == "decision" and d["seq"] == 2 and d["prev_hash"] == run_entry["hash"]
    assert d["run_id"] == SAMPLE["run"]["id"] == run_entry["run_id"]
    assert d["evidence_digest"] == evidence["digest"] == run_entry["evidence_digest"]
    assert d["run_seq"] == 1 and d["run_hash"] == run_entry["hash"]
    assert (d["reviewer"], d["decision"]) == ("Dana Reyes (MRM)", "approve-with-conditions")
    assert d["comment"] == "Release to 10% of traffic; re-audit after 30 days."
    assert d["verdict"] == SAMPLE["verdict"]["status"]  # recorded beside it, not changed by it
    assert hashes(run) == before  # the run folder is not touched
    assert r.output.startswith(f"recorded: Dana Reyes (MRM) approved with conditions run {SAMPLE['run']['id']} "
                               f"(verdict {SAMPLE['verdict']['status']}), ledger entry 2")
    head = json.loads((run.parent / "ledger.head").read_text())
    assert head["entries"] == 2 and head["last_hash"] == d["hash"]
    # the run still verifies (its files are untouched), and verify shows the decision
    v = invoke("verify", run, "--outputs-only")
    assert v.exit_code == 0, v.output
    assert ("decision Dana Reyes (MRM) approved with conditions at " in v.output
            and "(ledger entry 2): Release to 10% of traffic; re-audit after 30 days." in v.output)


def test_verify_says_when_no_decision_is_recorded(run):
    v = invoke("verify", run, "--outputs-only")
    assert v.exit_code == 0
    assert f"decision none recorded yet (record one with: audit approve {run} --reviewer NAME" in v.output


def test_history_shows_decisions_in_every_format(run):
    assert approve(run).exit_code == 0
    assert approve(run, reviewer="Ola", decision="reject", comment="Fairness | evidence too thin").exit_code == 0
    text = invoke("history", run.parent)
    assert text.exit_code == 0, text.output
    lines = text.output.splitlines()
    assert len(lines) == 3
    assert lines[1].split()[0] == "2" and lines[1].split()[2] == "decision"
    assert "on entry 1 (r1): Dana Reyes (MRM) approved with conditions" in lines[1]
    assert "on entry 1 (r1): Ola rejected at" in lines[2] and lines[2].endswith(": Fairness | evidence too thin")
    doc = json.loads(invoke("history", run.parent, "--format", "json").output)
    assert [d["decision"] for d in doc["decisions"]] == ["approve-with-conditions", "reject"]
    assert doc["runs"][0]["decisions"] == [2, 3] and doc["intact"] is True
    md = invoke("history", run.parent, "--format", "md").output.splitlines()
    assert md[0] == "| # | Time | Verdict | Model | Run folder |"
    assert len(md) == 5 and md[4].startswith("| 3 |")
    assert "decision: rejected | by Ola on entry 1: Fairness \\| evidence too thin | r1 |" in md[4]


def test_a_signed_decision_is_checked_by_verify(run, tmp_path):
    key = tmp_path / "rev.key"
    assert invoke("keygen", "--out", key).exit_code == 0
    r = approve(run, "--sign", key, decision="approve", comment="")
    assert r.exit_code == 0, r.output
    assert ", signed by key " in r.output
    entries, _ = read_ledger(run.parent / LEDGER)
    assert entries[-1]["signature"]["algorithm"] == "ed25519" and entries[-1]["comment"] == ""
    v = invoke("verify", run, "--outputs-only")
    assert v.exit_code == 0 and "[signed, key " in v.output
    assert json.loads((run.parent / "ledger.head").read_text())["signature"]["key_id"] == \
        entries[-1]["signature"]["key_id"]


def test_a_forged_decision_breaks_the_chain_and_verify(run):
    assert approve(run).exit_code == 0
    ledger = run.parent / LEDGER
    lines = ledger.read_text().splitlines()
    d = json.loads(lines[1])
    d["decision"] = "approve"  # rewritten after the fact
    ledger.write_text(lines[0] + "\n" + json.dumps(d, sort_keys=True) + "\n")
    v = invoke("verify", run, "--outputs-only")
    assert v.exit_code == 1
    assert "CHANGED  ledger.jsonl line 2: entry 2 was edited (its hash does not match its content)" in v.output


@pytest.mark.parametrize("how, message", [
    ("edit", "not a verified audit run, so no decision is recorded: report.html: changed (sha256"),
    ("extra", "not a verified audit run, so no decision is recorded: notes.txt: a file that is not part of the "
              "sealed run"),
    ("unsealed", "not an audit run folder (no evidence.json and .audit-run); nothing to decide on"),
    ("no-ledger", "no ledger.jsonl beside the run folder, so the run is not recorded"),
    ("input", "not a verified audit run, so no decision is recorded: input data "),
])
def test_approve_refuses_a_run_that_is_not_verified(run, how, message):
    if how == "edit":
        (run / "report.html").write_text("<p>all is well</p>")
    elif how == "extra":
        (run / "notes.txt").write_text("x")
    elif how == "input":
        (run.parent.parent / "eval.csv").write_text("text,label\nhello,bad\n")
    elif how == "unsealed":
        (run / "evidence.json").unlink()
    else:
        (run.parent / LEDGER).unlink()
        (run.parent / "ledger.head").unlink()
    ledger_before = (run.parent / LEDGER).read_bytes() if (run.parent / LEDGER).exists() else None
    r = approve(run)
    assert r.exit_code == 2
    assert r.output.startswith(f"error: {run}: {message}") and r.output.count("\n") == 1, r.output
    after = (run.parent / LEDGER).read_bytes() if (run.parent / LEDGER).exists() else None
    assert after == ledger_before  # nothing recorded


@pytest.mark.parametrize("args, message", [
    (["--reviewer", "  "], "error: --reviewer: empty; say who you are\n"),
    (["--reviewer", "Eve\x1b[2J"], "error: --reviewer: holds the control character U+001B; give plain text\n"),
    (["--decision", "maybe"], "error: Invalid value for '--decision': 'maybe' is not one of 'approve', "
                              "'approve-with-conditions', 'reject'.\n"),
    (["--decision", "reject", "--comment", ""], "error: --comment: empty\n"),
])
def test_approve_refuses_bad_input_in_one_line(run, args, message):
    base = {"--reviewer": "Dana", "--decision": "approve-with-conditions", "--comment": "10% traffic"}
    for flag, value in zip(args[::2], args[1::2]):
        base[flag] = value
    r = invoke("approve", run, *[x for kv in base.items() for x in kv])
    assert r.exit_code == 2 and r.output == message
    entries, _ = read_ledger(run.parent / LEDGER)
    assert len(entries) == 1


def test_a_folder_that_is_not_a_run(tmp_path):
    r = approve(tmp_path / "nope")
    assert r.exit_code == 2 and r.output == f"error: {tmp_path / 'nope'}: run folder not found\n"


def test_decisions_on_another_run_are_not_shown(run, tmp_path):
    other = json.loads((run / "result.json").read_text())
    other["run"]["id"] = "20261129T000000Z-ffffff"
    r2 = write_run(run.parent / "r2", other, None, record=True)
    assert approve(r2).exit_code == 0
    assert verify_run(run, outputs_only=True).decisions == []
    assert [d["run_id"] for d in verify_run(r2, outputs_only=True).decisions] == ["20261129T000000Z-ffffff"]


def test_a_rerendered_report_shows_every_decision_and_the_sealed_one_stays(run, tmp_path):
    sealed = (run / "report.html").read_text()
    assert "No decision recorded yet." in sealed and "audit approve RUN_DIR --reviewer NAME" in sealed
    assert approve(run, reviewer="<script>alert(1)</script> Dana").exit_code == 0
    assert approve(run, reviewer="Ola", decision="reject", comment="Equalized odds <b>not</b> shown").exit_code == 0
    r = invoke("report", run)
    assert r.exit_code == 0, r.output
    beside = run.parent / "r1.signed-off.html"
    assert r.output == (f"report: {beside} (with the 2 decision(s) the ledger records; the sealed "
                        f"{run / 'report.html'} is left as it was written)\n")
    html = beside.read_text()
    assert "No decision recorded yet." not in html
    assert html.count('<tr><td><span class="badge') == 2  # one row per decision
    assert "&lt;script&gt;alert(1)&lt;/script&gt; Dana" in html and "<script>alert" not in html
    assert "approved with conditions" in html and "rejected" in html
    assert "Equalized odds &lt;b&gt;not&lt;/b&gt; shown" in html
    digest = json.loads((run / "evidence.json").read_text())["digest"]
    assert f"evidence <code>{digest[:16]}…</code>" in html
    assert (run / "report.html").read_text() == sealed  # the sealed report is not rewritten
    assert invoke("verify", run, "--outputs-only").exit_code == 0
    # to another folder: that folder's report carries the decisions
    r = invoke("report", run, "--out", tmp_path / "copy")
    assert r.exit_code == 0, r.output
    assert "Ola" in (tmp_path / "copy" / "report.html").read_text()


def test_the_signoff_block_sits_right_after_the_verdict_with_the_hashes(run):
    html = (run / "report.html").read_text()
    verdict, signoff, findings = (html.index(f'id="{i}"') for i in ("verdict", "sign-off", "findings"))
    assert verdict < signoff < findings
    between = html[verdict:signoff]
    assert "<section" in between and between.count("<section") == 1  # nothing else in between
    block = html[signoff:findings]
    assert f"Run <code>{SAMPLE['run']['id']}</code>" in block
    result_sha = hashlib.sha256((run / "result.json").read_bytes()).hexdigest()
    assert f"<code>{result_sha}</code>" in block  # the hash of result.json as written
    data_sha = json.loads((run / "result.json").read_text())["inputs"][0]["sha256"]
    assert f"<td>data: eval.csv</td><td><code>{data_sha}</code></td>" in block


def test_runs_recorded_after_a_decision_keep_the_chain_and_the_verdict_stands(run):
    assert approve(run, decision="approve", comment="").exit_code == 0
    nxt = json.loads((run / "result.json").read_text())
    nxt["run"]["id"] = "20261130T000000Z-aaaaaa"
    write_run(run.parent / "r3", nxt, None, record=True)
    entries, problems = read_ledger(run.parent / LEDGER)
    assert problems == [] and [e.get("kind", "run") for e in entries] == ["run", "decision", "run"]
    assert invoke("history", run.parent).exit_code == 0
    assert invoke("verify", run, "--outputs-only").exit_code == 0
    assert invoke("verify", run.parent / "r3", "--outputs-only").exit_code == 0
    # the approval is recorded beside the verdict; the run's result is what the policy judged
    assert json.loads((run / "result.json").read_text())["verdict"] == SAMPLE["verdict"]


def test_a_hostile_run_id_cannot_break_out_of_the_print_footer():
    from audit.render.html import render_html

    r = copy.deepcopy(SAMPLE)
    r["run"]["id"] = '20261128"; } body { display: none } @page { @top-left { content: "x'
    html = render_html(r)
    footer = html[html.index("@bottom-left"):].split("\n", 1)[0]
    assert footer == ('@bottom-left { content: "audit run 20261128bodydisplay:nonepagetop-leftcontent:x"; '
                      "font-size: 8pt; color: #4a5361; }")
