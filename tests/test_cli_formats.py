"""`audit checks`, `audit diff` and `audit history` in text, JSON and Markdown, and a closed pipe as a normal end.

The run folders here are the sample result.json (tests/fixtures) written by hand, changed in known ways, so
every number the comparison prints is checked against a hand count; no model is trained.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from audit.cli import cli
from audit.ledger import LEDGER, append_ledger

HERE = Path(__file__).parent
SAMPLE = json.loads((HERE / "fixtures" / "result_sample.json").read_text(encoding="utf-8"))
ROOT = HERE.parent


def invoke(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def two_runs(tmp_path):
    """Run a (the sample) and run b: roc_auc 0.855 -> 0.655 and FAIL, the weights changed, verdict FAIL."""
    a = copy.deepcopy(SAMPLE)
    b = copy.deepcopy(SAMPLE)
    b["measurements"]["performance.roc_auc"]["value"] = 0.655
    roc = next(f for f in b["findings"] if f["check_id"] == "performance.roc_auc")
    roc["status"] = "FAIL"
    b["verdict"]["status"] = "FAIL"
    b["inputs"][0]["sha256"] = "ab" * 32
    paths = []
    for name, r in (("a", a), ("b", b)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "result.json").write_text(json.dumps(r), encoding="utf-8")
        paths.append(tmp_path / name)
    return paths


def test_diff_text_is_unchanged_by_default(two_runs):
    r = invoke("diff", str(two_runs[0]), str(two_runs[1]))
    assert r.exit_code == 0
    lines = r.output.splitlines()
    assert lines[0] == "verdict: PASS -> FAIL"
    assert lines[1] == "changed inputs: 1"
    assert lines[2] == "  weights    model.safetensors: 010101010101 -> abababababab"
    assert "  performance.roc_auc: PASS -> FAIL" in lines
    roc = next(x for x in lines if x.strip().startswith("performance.roc_auc "))
    a = SAMPLE["measurements"]["performance.roc_auc"]["value"]  # 0.85536...
    assert roc.split()[1:] == [f"{a:.4f}", "->", "0.6550", f"{0.655 - a:+.4f}"] == ["0.8554", "->", "0.6550", "-0.2004"]


def test_diff_json_carries_the_whole_comparison(two_runs):
    r = invoke("diff", str(two_runs[0]), str(two_runs[1]), "--format", "json")
    assert r.exit_code == 0
    d = json.loads(r.output)
    assert d["verdict"] == {"a": "PASS", "b": "FAIL"}
    assert d["inputs"] == [{"role": "weights", "file": "model.safetensors", "a": "01" * 32, "b": "ab" * 32}]
    assert d["statuses"] == [{"check_id": "performance.roc_auc", "a": "PASS", "b": "FAIL"}]
    m = {x["check_id"]: x for x in d["measurements"]}
    assert len(m) == len(SAMPLE["measurements"])
    a_value = SAMPLE["measurements"]["performance.roc_auc"]["value"]
    assert m["performance.roc_auc"] == {"check_id": "performance.roc_auc", "a": a_value, "b": 0.655,
                                        "delta": pytest.approx(0.655 - a_value)}
    assert all(x["delta"] == 0 for cid, x in m.items() if cid != "performance.roc_auc" and x["a"] is not None)


def test_diff_md_is_a_set_of_markdown_tables(two_runs):
    r = invoke("diff", str(two_runs[0]), str(two_runs[1]), "--format", "md")
    assert r.exit_code == 0
    lines = r.output.splitlines()
    assert lines[0] == "**Verdict:** PASS → FAIL"
    assert "| weights | model.safetensors | `010101010101` | `abababababab` |" in lines
    assert "| `performance.roc_auc` | PASS | FAIL |" in lines
    assert "| `performance.roc_auc` | 0.8554 | 0.6550 | -0.2004 |" in lines
    rows = [x for x in lines if x.startswith("| `performance.")]
    assert len(rows) == len(SAMPLE["measurements"]) + 1  # each measurement, and the one status change


def test_checks_formats_list_the_same_registry():
    from audit.checks import all_checks

    ids = list(all_checks())
    text = invoke("checks")
    assert text.exit_code == 0 and [x.split()[0] for x in text.output.splitlines()] == ids
    js = invoke("checks", "--format", "json")
    doc = json.loads(js.output)
    assert [c["id"] for c in doc] == ids
    roc = next(c for c in doc if c["id"] == "performance.roc_auc")
    assert roc["family"] == "performance" and roc["direction"] == "higher" and roc["summary"]
    assert roc["classes"] == "favourable"  # what it reads of a model of more classes
    binary_only = {c["id"] for c in doc if c["classes"] == "binary"}
    assert {x.split()[0] for x in text.output.splitlines() if x.endswith("[binary models only]")} == binary_only
    md = invoke("checks", "--format", "md").output.splitlines()
    assert md[:2] == ["| Check | Family | What it measures | Parameters |", "|---|---|---|---|"]
    assert [x.split("`")[1] for x in md[2:]] == ids


def test_bad_format_is_a_usage_error():
    r = CliRunner().invoke(cli, ["checks", "--format", "yaml"])
    assert r.exit_code == 2 and "'yaml' is not one of 'text', 'json', 'md'" in r.output


@pytest.fixture
def ledger_root(tmp_path):
    root = tmp_path / "reports"
    root.mkdir()
    for i, status in enumerate(("PASS", "FAIL")):
        r = copy.deepcopy(SAMPLE)
        r["verdict"]["status"] = status
        r["run"]["finished"] = f"2026-11-28T17:0{i}:09+00:00"
        (root / f"run{i}").mkdir()
        append_ledger(root, root / f"run{i}", r, f"{i}" * 64)
    return root


def test_history_formats(ledger_root):
    text = invoke("history", str(ledger_root))
    assert text.exit_code == 0
    assert [x.split()[:3] for x in text.output.splitlines()] == [["1", "2026-11-28T17:00:09+00:00", "PASS"],
                                                               ["2", "2026-11-28T17:01:09+00:00", "FAIL"]]
    js = invoke("history", str(ledger_root), "--format", "json")
    doc = json.loads(js.output)
    assert js.exit_code == 0 and doc["intact"] is True and doc["problems"] == []
    assert [(e["seq"], e["verdict"], e["run_dir"]) for e in doc["entries"]] == [(1, "PASS", "run0"), (2, "FAIL", "run1")]
    md = invoke("history", str(ledger_root), "--format", "md").output.splitlines()
    assert md[0] == "| # | Time | Verdict | Model | Run folder |"
    assert md[2] == "| 1 | 2026-11-28T17\\:00\\:09+00\\:00 | PASS | german-credit-minilm | run0 |"


def test_history_json_names_a_broken_chain_and_exits_1(ledger_root):
    ledger = ledger_root / LEDGER
    lines = ledger.read_text().splitlines()
    lines[0] = lines[0].replace('"PASS"', '"FAIL"')
    ledger.write_text("\n".join(lines) + "\n")
    r = invoke("history", str(ledger_root), "--format", "json")
    assert r.exit_code == 1
    doc = json.loads(r.output)
    assert doc["intact"] is False and doc["problems"][0].startswith("line 1: entry 1 was edited")


# ---------------------------------------------------------------- a closed pipe is a normal end


def _env():
    return {**os.environ, "PYTHONPATH": str(ROOT)}


@pytest.fixture
def big_diff(tmp_path):
    """Two results with 4000 measurements each: the diff is ~300 kB, far more than a pipe holds (64 kB)."""
    a = copy.deepcopy(SAMPLE)
    a["measurements"] = {f"performance.m{i:04d}": {"value": i / 4000} for i in range(4000)}
    b = copy.deepcopy(a)
    b["measurements"]["performance.m0001"]["value"] = 0.5
    for name, r in (("a.json", a), ("b.json", b)):
        (tmp_path / name).write_text(json.dumps(r), encoding="utf-8")
    return tmp_path / "a.json", tmp_path / "b.json"


def test_diff_into_head_ends_quietly(big_diff):
    """`audit diff A B | head -1`: before the fix, 'internal error: BrokenPipeError' and exit 2."""
    cmd = f"set -o pipefail; {sys.executable} -m audit diff {big_diff[0]} {big_diff[1]} | head -1"
    out = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, env=_env(), timeout=120)
    assert (out.returncode, out.stdout, out.stderr) == (0, "verdict: PASS -> PASS (unchanged)\n", "")


@pytest.mark.parametrize("fmt", ["text", "json", "md"])
def test_a_pipe_closed_before_any_output_is_a_normal_end(big_diff, fmt):
    proc = subprocess.Popen([sys.executable, "-m", "audit", "diff", str(big_diff[0]), str(big_diff[1]),
                             "--format", fmt], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env())
    proc.stdout.close()  # the reader is gone before the first byte: every write meets EPIPE
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 0
    assert err == b""  # no "internal error", no "Exception ignored ... BrokenPipeError" at shutdown


def test_a_closed_pipe_keeps_the_exit_code_the_command_settled_on(ledger_root):
    """A broken ledger exits 1 even when nobody reads the listing: the code is known before the printing."""
    ledger = ledger_root / LEDGER
    ledger.write_text(ledger.read_text().replace('"PASS"', '"FAIL"', 1))
    proc = subprocess.Popen([sys.executable, "-m", "audit", "history", str(ledger_root)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=_env())
    proc.stdout.close()
    err = proc.stderr.read()
    assert (proc.wait(timeout=120), err) == (1, b"")
