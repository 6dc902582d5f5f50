"""Rows of the training split in the eval data (audit.overlap): found by split indices when --data is the
training file, by text otherwise; kept with a warning (the default), excluded, or refused, per the policy."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from audit.cli import cli
from tests.conftest import MIN_POLICY


def audit(model, data, policy, out):
    return CliRunner().invoke(cli, ["run", str(model), "--policy", str(policy), "--data", str(data), "--out",
                                    str(out), "--no-progress"], catch_exceptions=False)


def split(model) -> dict:
    return yaml.safe_load((model / "audit-model.yaml").read_text())["data"]["split"]


def test_exclude_audits_the_training_file_on_its_held_out_rows_only(tiny_model, credit_csv, tmp_path, policy_file):
    s = split(tiny_model)
    frame = pd.read_csv(credit_csv, dtype=str)
    out = tmp_path / "out"
    r = audit(tiny_model, credit_csv, policy_file(MIN_POLICY.replace("checks:", "training_rows_in_eval: exclude\nchecks:")), out)
    assert r.exit_code == 0, r.output
    res = json.loads((out / "result.json").read_text())
    tr = res["data"]["eval"]["training_rows"]
    k, n = len(s["train_index"]), len(frame)
    assert (tr["rows"], tr["eval_rows"], tr["action"], tr["rows_audited"]) == (k, n, "exclude", n - k)
    assert tr["share"] == pytest.approx(k / n) and "same sha256" in tr["how"]
    assert res["data"]["eval"]["rows"] == len(s["eval_index"]) == n - k
    ids = set(pd.read_csv(out / "predictions.csv", dtype=str)["row_id"])
    assert ids == set(frame["id"].iloc[s["eval_index"]])  # exactly the held-out rows, by id
    warning = next(w for w in res["warnings"] if "rows the model was trained on" in w)
    assert warning.startswith(f"{k:,} of the {n:,} eval rows ({k / n:.1%}) are rows the model was trained on")
    assert "left out" in warning
    assert f"{k:,} of the {n:,} eval rows ({k / n:.1%})" in (out / "report.html").read_text()


def test_warn_the_default_keeps_the_rows_and_says_so(tiny_model, credit_csv, tmp_path, policy_file):
    pol = policy_file(MIN_POLICY)
    out = tmp_path / "out"
    r = audit(tiny_model, credit_csv, pol, out)
    assert r.exit_code == 0, r.output
    res = json.loads((out / "result.json").read_text())
    k = len(split(tiny_model)["train_index"])
    assert res["data"]["eval"]["rows"] == 400 and res["data"]["eval"]["training_rows"]["rows"] == k
    assert res["data"]["eval"]["training_rows"]["action"] == "warn"
    assert any(w.startswith(f"{k:,} of the 400 eval rows ({k / 400:.1%}) are rows the model was trained on")
               and "They were kept" in w and "overstates" in w for w in res["warnings"])


def test_refuse_exits_2_before_the_model_loads(tiny_model, credit_csv, tmp_path, policy_file, monkeypatch):
    from audit.model import ModelBundle

    def no_load(self):
        raise AssertionError("the model must not load")

    monkeypatch.setattr(ModelBundle, "load", no_load)
    pol = policy_file(MIN_POLICY.replace("checks:", "training_rows_in_eval: refuse\nchecks:"))
    out = tmp_path / "out"
    r = audit(tiny_model, credit_csv, pol, out)
    k = len(split(tiny_model)["train_index"])
    assert r.exit_code == 2
    assert r.output == (f"error: {credit_csv}: {k:,} of the 400 eval rows ({k / 400:.1%}) are rows the model was "
                        "trained on: the --data file is the model's training file (same sha256) and these rows are "
                        "in its training split; the policy's training_rows_in_eval is 'refuse' (audit held-out "
                        "data, or set it to exclude or warn)\n")
    assert not out.exists()


def test_another_file_is_matched_by_text(tiny_model, credit_csv, tmp_path, policy_file):
    s = split(tiny_model)
    frame = pd.read_csv(credit_csv, dtype=str)
    train_texts = set(frame["text"].iloc[s["train_index"]])
    copied = frame.iloc[s["train_index"][:5]]
    fresh = frame.iloc[s["eval_index"][:20]].copy()
    fresh["text"] = [f"applicant number {i} writes something new" for i in range(20)]
    data = tmp_path / "other.csv"
    both = pd.concat([fresh, copied])
    both.to_csv(data, index=False)
    expected = sum(t in train_texts for t in both["text"])  # a plain set lookup, not the sha256 of audit.overlap
    assert expected == 5
    for mode, rows in (("warn", 25), ("exclude", 20)):
        out = tmp_path / mode
        pol = policy_file(MIN_POLICY.replace("checks:", f"training_rows_in_eval: {mode}\nchecks:"), f"{mode}.yaml")
        r = audit(tiny_model, data, pol, out)
        assert r.exit_code == 1, r.output
        res = json.loads((out / "result.json").read_text())
        tr = res["data"]["eval"]["training_rows"]
        assert (tr["rows"], tr["eval_rows"]) == (expected, 25) and "text of a row of the training split" in tr["how"]
        assert res["data"]["eval"]["rows"] == rows


def test_a_bad_mode_is_named_at_policy_load(policy_file):
    from audit.errors import PolicyError
    from audit.policy import load_policy

    pol = policy_file(MIN_POLICY.replace("checks:", "training_rows_in_eval: drop\nchecks:"))
    with pytest.raises(PolicyError, match="training_rows_in_eval"):
        load_policy(pol)
