"""Provenance: sealed run folders, signatures, verify, the hash-chained ledger, determinism, diff, baselines."""

import json
import multiprocessing
import shutil

import pytest
from click.testing import CliRunner

from audit.cli import cli
from audit.ledger import append_ledger, read_ledger
from tests.conftest import MIN_POLICY, make_frame


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def signed_run(tiny_model, tmp_path, policy_file):
    key = tmp_path / "keys" / "audit.key"
    assert invoke("keygen", "--out", key).exit_code == 0
    data = tmp_path / "eval.csv"
    make_frame(80, seed=9).to_csv(data, index=False)
    pol = policy_file(MIN_POLICY)
    out = tmp_path / "runs" / "r1"
    r = invoke("run", tiny_model, "--policy", pol, "--data", data, "--out", out, "--sign", key, "--no-progress")
    assert r.exit_code == 0, r.output
    return {"out": out, "key": key, "pub": key.with_name("audit.key.pub"), "data": data, "policy": pol}


def test_keygen_refuses_to_overwrite(tmp_path):
    key = tmp_path / "k"
    assert invoke("keygen", "--out", key).exit_code == 0
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    r = invoke("keygen", "--out", key)
    assert r.exit_code == 2 and r.output == f"error: {key}: exists; refusing to overwrite a key\n"


def test_verify_passes_on_an_untouched_run(signed_run):
    r = invoke("verify", signed_run["out"], "--pubkey", signed_run["pub"])
    assert r.exit_code == 0, r.output
    assert "verified:" in r.output and "CHANGED" not in r.output


@pytest.mark.parametrize("target", ["report", "data", "policy"])
def test_verify_names_a_flipped_byte(signed_run, target):
    path = {"report": signed_run["out"] / "report.html", "data": signed_run["data"], "policy": signed_run["policy"]}[target]
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    path.write_bytes(bytes(raw))
    r = invoke("verify", signed_run["out"], "--pubkey", signed_run["pub"])
    assert r.exit_code == 1
    changed = [line for line in r.output.splitlines() if line.startswith("CHANGED")]
    expected = {"report": "CHANGED  report.html: changed", "data": f"CHANGED  input data {path}: changed since the run",
                "policy": f"CHANGED  input policy {path}: changed since the run"}[target]
    assert len(changed) == 1 and changed[0].startswith(expected), r.output


def test_verify_rejects_another_key_and_a_forged_evidence(signed_run, tmp_path):
    other = tmp_path / "other.key"
    invoke("keygen", "--out", other)
    r = invoke("verify", signed_run["out"], "--pubkey", other.with_name("other.key.pub"))
    assert r.exit_code == 1 and "signature.json: the signature does not match" in r.output
    ev = signed_run["out"] / "evidence.json"
    e = json.loads(ev.read_text())
    e["files"]["report.html"] = "0" * 64
    ev.write_text(json.dumps(e))
    r = invoke("verify", signed_run["out"], "--pubkey", signed_run["pub"])
    assert r.exit_code == 1 and "evidence.json: edited" in r.output


def test_unsigned_run_with_pubkey_fails(tiny_model, tmp_path, policy_file, signed_run):
    out = tmp_path / "runs" / "plain"
    assert invoke("run", tiny_model, "--policy", policy_file(MIN_POLICY), "--out", out, "--no-progress").exit_code == 0
    assert invoke("verify", out).exit_code == 0
    r = invoke("verify", out, "--pubkey", signed_run["pub"])
    assert r.exit_code == 1 and "signature.json: missing" in r.output


def test_ledger_chain_and_history(signed_run, tiny_model, policy_file):
    root = signed_run["out"].parent
    out2 = root / "r2"
    assert invoke("run", tiny_model, "--policy", policy_file(MIN_POLICY), "--out", out2, "--no-progress").exit_code == 0
    r = invoke("history", root)
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert len(lines) == 2 and "PASS" in lines[0] and lines[1].rstrip().endswith("r2")
    ledger = root / "ledger.jsonl"
    text = ledger.read_text().splitlines()
    edited = json.loads(text[0])
    edited["verdict"] = "FAIL"
    ledger.write_text(json.dumps(edited, sort_keys=True) + "\n" + text[1] + "\n")
    r = invoke("history", root)
    assert r.exit_code == 1
    assert "BROKEN ledger.jsonl line 1: entry 1 was edited (its hash does not match its content)" in r.output
    ledger.write_text(text[1] + "\n")
    r = invoke("history", root)
    assert r.exit_code == 1 and "line 1: entry 2 does not follow the entry before it" in r.output
    assert invoke("verify", out2).exit_code == 1  # verify checks the ledger too


def _append_many(root, worker, n):
    for i in range(n):
        append_ledger(root, root / f"w{worker}-{i}", {"run": {"id": f"{worker}-{i}"}, "verdict": {"status": "PASS"}},
                      "d" * 64)


def test_concurrent_appends_keep_the_chain(tmp_path):
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_append_many, args=(tmp_path, w, 15)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    entries, problems = read_ledger(tmp_path / "ledger.jsonl")
    assert problems == [] and len(entries) == 45 and [e["seq"] for e in entries] == list(range(1, 46))


def test_same_inputs_give_identical_result_json(tiny_model, tmp_path, policy_file):
    pol = policy_file(MIN_POLICY)
    for name in ("a", "b"):
        assert invoke("run", tiny_model, "--policy", pol, "--out", tmp_path / name, "--no-progress").exit_code == 0
    a, b = (json.loads((tmp_path / n / "result.json").read_text()) for n in ("a", "b"))
    assert a["run"]["id"] != b["run"]["id"]
    for r in (a, b):
        r.pop("run")
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    assert (tmp_path / "a" / "predictions.csv").read_bytes() == (tmp_path / "b" / "predictions.csv").read_bytes()


BROAD_POLICY = """\
policy: broad
version: "1"
min_group_size: 5
checks:
  performance.roc_auc: {min: 0.6}
  fairness.selection_rate_ratio: {min: 0.5}
  fairness.counterfactual_flip_rate: {max: 0.5, swaps: gender}
  explainability.additivity_error: {max: 0.01, rows: 6, max_evals: 40}
  privacy.membership_inference_auc: {max: 0.9}
budget: {bootstrap: 100}
"""


def test_every_family_is_reproducible(tiny_model, tmp_path, policy_file):
    pol = policy_file(BROAD_POLICY)
    for name in ("a", "b"):
        r = invoke("run", tiny_model, "--policy", pol, "--out", tmp_path / name, "--no-progress")
        assert r.exit_code == 3, r.output  # INCONCLUSIVE, both times
    a, b = (json.loads((tmp_path / n / "result.json").read_text()) for n in ("a", "b"))
    assert {"fairness.selection_rate_ratio", "explainability.additivity_error",
            "privacy.membership_inference_auc"} <= set(a["measurements"])
    for r in (a, b):
        r.pop("run")
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def test_diff_names_status_and_measurement_changes(tiny_model, tmp_path, policy_file):
    a = tmp_path / "a"
    b = tmp_path / "b"
    invoke("run", tiny_model, "--policy", policy_file(MIN_POLICY, "p1.yaml"), "--out", a, "--no-progress")
    strict = MIN_POLICY.replace("{min: 0.6, basis: point", "{min: 0.999, basis: point")
    invoke("run", tiny_model, "--policy", policy_file(strict, "p2.yaml"), "--out", b, "--no-progress")
    r = invoke("diff", a, b)
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[0] == "verdict: PASS -> FAIL"
    assert "  policy     p1.yaml:" in r.output and "  performance.roc_auc: PASS -> FAIL" in r.output
    assert "+0.0000" in r.output  # same model: every measurement's delta is zero


BASELINE_POLICY = """\
policy: gate
version: "1"
checks:
  performance.roc_auc: {baseline: {max_drop: 0.01, max_relative_drop: 0.02}, refs: ["SR 11-7"]}
budget: {bootstrap: 100}
"""


def test_baseline_gate(tiny_model, tmp_path, policy_file):
    pol = policy_file(BASELINE_POLICY)
    base = tmp_path / "base"
    r = invoke("run", tiny_model, "--policy", pol, "--out", base, "--no-progress")
    assert r.exit_code == 3, r.output  # no --baseline given: the comparison cannot be made
    f = json.loads((base / "result.json").read_text())["findings"][0]
    assert f["status"] == "INCONCLUSIVE" and "give --baseline RUN_DIR" in f["reason"]
    assert invoke("run", tiny_model, "--policy", pol, "--out", tmp_path / "same", "--baseline", base,
                  "--no-progress").exit_code == 0
    better = tmp_path / "better"
    shutil.copytree(base, better)
    res = json.loads((better / "result.json").read_text())
    auc = res["measurements"]["performance.roc_auc"]["value"]
    res["measurements"]["performance.roc_auc"]["value"] = auc + 0.05
    (better / "result.json").write_text(json.dumps(res))
    r = invoke("run", tiny_model, "--policy", pol, "--out", tmp_path / "worse", "--baseline", better, "--no-progress")
    assert r.exit_code == 1, r.output
    f = json.loads((tmp_path / "worse" / "result.json").read_text())["findings"][0]
    assert f["status"] == "FAIL" and f["baseline_value"] == pytest.approx(auc + 0.05)
    assert f["baseline_delta"] == pytest.approx(-0.05)
    assert "this model is worse by 0.050" in f["message"] and "at most 0.010 absolute and 2.0% relative" in f["message"]


def test_expired_waiver_is_reported(tiny_model, tmp_path, policy_file):
    pol = policy_file(MIN_POLICY.replace("{min: 0.6, basis: point", "{min: 0.999, basis: point")
                      + "waivers:\n  - {check: performance.roc_auc, reason: old, approved_by: MRM, expires: 2001-01-01}\n")
    assert invoke("run", tiny_model, "--policy", pol, "--out", tmp_path / "o", "--no-progress").exit_code == 1
    f = json.loads((tmp_path / "o" / "result.json").read_text())["findings"][0]
    assert f["status"] == "FAIL" and f["waiver"]["expired"] is True
    assert "A waiver by MRM expired on 2001-01-01 and no longer applies (old)." in f["reason"]
    assert "expired on 2001-01-01" in (tmp_path / "o" / "report.html").read_text()
