"""`audit train --peft lora` and `--dp-epsilon`: the manifest's ε against opacus' accountant, LoRA models that
re-load and score exactly as trained, the base model's hash, and bad combinations refused with exit 2."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from audit.cli import cli
from audit.manifest import MANIFEST_NAME, load_manifest

pytest.importorskip("peft")
pytest.importorskip("opacus")

DP_POLICY = """\
policy: dp
version: "1"
checks:
  performance.roc_auc: {min: 0.5, basis: point}
  privacy.dp_epsilon: {max: 8, severity: block, missing: MISSING}
budget: {bootstrap: 50, seed: 0}
"""


def train_cli(tiny_base, credit_csv, out, *extra):
    args = ["train", str(credit_csv), "--out", str(out), "--text-column", "text", "--label-column", "label",
            "--positive-label", "good", "--id-column", "id", "--base-model", str(tiny_base), "--max-length", "32",
            "--epochs", "3", "--lr", "2e-3", "--no-progress", *map(str, extra)]
    return CliRunner().invoke(cli, args, catch_exceptions=False)


@pytest.fixture(scope="module")
def lora_base(tiny_base, tmp_path_factory) -> Path:
    """A private copy of the tiny base: one test alters it."""
    dst = tmp_path_factory.mktemp("base") / "tiny-bert"
    shutil.copytree(tiny_base, dst)
    return dst


@pytest.fixture(scope="module")
def lora_dp_model(lora_base, credit_csv, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("m") / "lora-dp"
    r = train_cli(lora_base, credit_csv, out, "--peft", "lora", "--lora-r", "4", "--dp-epsilon", "8",
                  "--dp-delta", "1e-3")
    assert r.exit_code == 0, r.output
    assert "DP-SGD: ε = " in r.output and "LoRA: rank 4" in r.output
    return out


# ---------------------------------------------------------------- DP accounting


@pytest.mark.filterwarnings("ignore:Optimal order is the largest alpha")
def test_manifest_epsilon_matches_opacus_accountant(lora_dp_model):
    from opacus.accountants import PRVAccountant, RDPAccountant
    from opacus.accountants.utils import get_noise_multiplier

    m = load_manifest(lora_dp_model / MANIFEST_NAME)
    dp = m.training["dp"]
    rows = m.data.split.train_rows
    assert dp["training_rows"] == rows == 280
    # Poisson sampling at q = 1 / (batches per epoch), the planned steps all taken
    assert dp["sampling"] == "poisson" and dp["sample_rate"] == pytest.approx(1 / -(-rows // 16))
    assert dp["steps"] == dp["planned_steps"] == 3 * -(-rows // 16)
    assert dp["accountant"] == "rdp" and dp["max_grad_norm"] == 1.0 and dp["delta"] == 1e-3
    # the recorded settings, replayed through opacus' own accountant, give the recorded ε
    acc = RDPAccountant()
    acc.history = [(dp["noise_multiplier"], dp["sample_rate"], dp["steps"])]
    assert acc.get_epsilon(delta=dp["delta"]) == pytest.approx(dp["epsilon"], rel=1e-9)
    assert dp["epsilon"] <= dp["target_epsilon"] == 8.0
    assert dp["epsilon"] > 7.5, "the noise was calibrated to spend (about) the whole budget, not far less"
    # and the noise multiplier is the one opacus calibrates for the target over those steps
    sigma = get_noise_multiplier(target_epsilon=8.0, target_delta=1e-3, sample_rate=dp["sample_rate"],
                                 steps=dp["steps"], accountant="rdp")
    assert dp["noise_multiplier"] == pytest.approx(sigma, rel=1e-6)
    # a tighter accountant on the same run spends no more
    prv = PRVAccountant()
    prv.history = [(dp["noise_multiplier"], dp["sample_rate"], dp["steps"])]
    assert prv.get_epsilon(delta=dp["delta"]) <= dp["epsilon"] + 1e-6
    assert m.training["peft"]["r"] == 4 and "LoRA" in m.training["method"] and "DP-SGD" in m.training["method"]
    assert m.training["seconds_per_epoch"] > 0


def test_full_dp_freezes_position_embeddings_and_says_so(tiny_base, credit_csv, tmp_path):
    """opacus cannot split position-embedding gradients by row (BERT looks them up once per batch): they are
    frozen, the manifest names them, and their weights are exactly the base's."""
    from safetensors.torch import load_file

    out = tmp_path / "dp"
    r = train_cli(tiny_base, credit_csv, out, "--epochs", "1", "--dp-epsilon", "1", "--dp-delta", "1e-3",
                  "--max-grad-norm", "0.5")
    assert r.exit_code == 0, r.output
    dp = load_manifest(out / MANIFEST_NAME).training["dp"]
    assert dp["frozen_for_dp"] == ["bert.embeddings.position_embeddings.weight"]
    assert dp["max_grad_norm"] == 0.5 and dp["epsilon"] <= 1.0
    assert "frozen for DP: bert.embeddings.position_embeddings.weight" in r.output
    key = "bert.embeddings.position_embeddings.weight"
    trained, base = load_file(out / "model.safetensors"), load_file(tiny_base / "model.safetensors")
    assert (trained[key] == base[key]).all()
    assert not (trained["bert.embeddings.word_embeddings.weight"] == base["bert.embeddings.word_embeddings.weight"]).all()


def test_an_empty_poisson_batch_still_takes_its_noisy_step(lora_base, credit_csv, tmp_path, monkeypatch):
    """Under Poisson sampling a batch can be empty; the step (noise only) must still happen, as accounted."""
    from audit import peft_dp

    real = peft_dp.DPTraining._epoch

    def with_an_empty_batch(self):
        import torch

        first = True
        for batch in real(self):
            if first:
                first = False
                self.empty_batches += 1
                yield torch.zeros((0, 1), dtype=torch.long), torch.zeros((0, 1), dtype=torch.long), \
                    torch.zeros((0,), dtype=torch.long)
                continue
            yield batch

    monkeypatch.setattr(peft_dp.DPTraining, "_epoch", with_an_empty_batch)
    out = tmp_path / "m"
    r = train_cli(lora_base, credit_csv, out, "--epochs", "1", "--peft", "lora", "--dp-epsilon", "8",
                  "--dp-delta", "1e-3")
    assert r.exit_code == 0, r.output
    dp = load_manifest(out / MANIFEST_NAME).training["dp"]
    assert dp["empty_batches"] == 1 and dp["steps"] == dp["planned_steps"]


# ---------------------------------------------------------------- LoRA: saved, re-loaded, scored as trained


def test_lora_model_reloads_and_scores_identically(lora_base, credit_csv, tmp_path, monkeypatch):
    import audit.train as train_mod
    from audit.model import open_bundle
    from audit.scoring import score_texts
    from tests.conftest import make_frame

    texts = make_frame().text.tolist()[:120]
    seen = {}
    real_save = train_mod._save

    def capture(model, tokenizer, manifest, out_dir):
        model.eval()
        seen["score"] = score_texts(model, tokenizer, texts, max_length=32, positive_index=1, progress=False).score
        seen["type"] = type(model).__name__
        real_save(model, tokenizer, manifest, out_dir)

    monkeypatch.setattr(train_mod, "_save", capture)
    out = tmp_path / "lora"
    r = train_cli(lora_base, credit_csv, out, "--peft", "lora", "--lora-r", "4", "--lora-alpha", "8",
                  "--lora-dropout", "0.0", "--target-modules", "query,value,dense", "--lr", "1e-2")
    assert r.exit_code == 0, r.output
    files = sorted(p.name for p in out.iterdir())
    assert "adapter_model.safetensors" in files and "adapter_config.json" in files
    assert "model.safetensors" not in files, "a LoRA model folder holds the adapter, not a merged copy"
    m = load_manifest(out / MANIFEST_NAME)
    peft = m.training["peft"]
    assert peft["r"] == 4 and peft["alpha"] == 8 and peft["merged"] is False
    assert peft["target_modules"] == ["dense", "query", "value"] and peft["modules_to_save"] == ["classifier"]
    assert peft["trainable_parameters"] < peft["total_parameters"] / 3
    assert m.base_model.path == str(lora_base.resolve()) and m.training["dp"] is None
    assert peft["base_weights"] == {"model.safetensors": m.base_model.sha256}
    from audit.data import sha256_file

    assert peft["adapter_sha256"] == sha256_file(out / "adapter_model.safetensors")

    bundle = open_bundle(out).load()
    assert type(bundle.model).__name__ == seen["type"] == "PeftModelForSequenceClassification"
    again = score_texts(bundle.model, bundle.tokenizer, texts, max_length=32, positive_index=1, progress=False).score
    assert np.abs(again - seen["score"]).max() <= 1e-6
    assert np.ptp(again) > 0.05, "the scores vary: the adapter learned something, the test compares real numbers"
    roles = {row["role"] for row in bundle.inputs()}
    assert {"adapter weights", "base weights"} <= roles


def test_audit_run_on_lora_dp_model_reports_dp(lora_dp_model, tmp_path, policy_file):
    pol = policy_file(DP_POLICY.replace("MISSING", "inconclusive"))
    out = tmp_path / "run"
    r = CliRunner().invoke(cli, ["run", str(lora_dp_model), "--policy", str(pol), "--out", str(out),
                                 "--no-progress"], catch_exceptions=False)
    assert r.exit_code == 1, r.output
    result = json.loads((out / "result.json").read_text())
    f = next(f for f in result["findings"] if f["check_id"] == "privacy.dp_epsilon")
    dp = load_manifest(lora_dp_model / MANIFEST_NAME).training["dp"]
    assert f["status"] == "PASS" and f["value"] == pytest.approx(dp["epsilon"])
    base = next(i for i in result["inputs"] if i["role"] == "base weights")
    assert base["sha256"] == load_manifest(lora_dp_model / MANIFEST_NAME).base_model.sha256
    html = (out / "report.html").read_text()
    assert "Differential privacy" in html and "Noise multiplier" in html and "Sampling rate" in html


@pytest.mark.parametrize("missing,status,code", [("inconclusive", "INCONCLUSIVE", 3), ("fail", "FAIL", 1)])
def test_a_model_without_dp_has_no_epsilon(tiny_model, tmp_path, policy_file, missing, status, code):
    pol = policy_file(DP_POLICY.replace("MISSING", missing))
    out = tmp_path / "run"
    r = CliRunner().invoke(cli, ["run", str(tiny_model), "--policy", str(pol), "--out", str(out), "--no-progress"],
                           catch_exceptions=False)
    assert r.exit_code == code, r.output
    f = next(f for f in json.loads((out / "result.json").read_text())["findings"]
             if f["check_id"] == "privacy.dp_epsilon")
    assert f["status"] == status
    if missing == "inconclusive":
        assert f["reason"] == "the model was trained without differential privacy (no DP-SGD), so its ε is unbounded"
    else:
        assert f["message"] == "Differential privacy ε was ∞; the policy requires at most 8.000."


# ---------------------------------------------------------------- the base model and unsafe adapter folders


def _run(model, pol, out):
    return CliRunner().invoke(cli, ["run", str(model), "--policy", str(pol), "--out", str(out), "--no-progress"],
                              catch_exceptions=False)


def test_adapter_on_a_changed_base_is_refused(lora_dp_model, lora_base, tmp_path, policy_file):
    pol = policy_file(DP_POLICY.replace("MISSING", "inconclusive"))
    weights = lora_base / "model.safetensors"
    original = weights.read_bytes()
    try:
        from safetensors.torch import load_file, save_file

        tensors = load_file(weights)
        tensors["bert.pooler.dense.bias"] = tensors["bert.pooler.dense.bias"] + 1.0
        save_file(tensors, weights, metadata={"format": "pt"})
        out = tmp_path / "run"
        r = _run(lora_dp_model, pol, out)
        assert r.exit_code == 2, r.output
        assert "the base model's weights changed since the adapter was trained" in r.output
        assert "Traceback" not in r.output and not out.exists()
    finally:
        weights.write_bytes(original)


def test_pickle_adapter_and_unknown_adapter_options_are_refused(lora_dp_model, tmp_path, policy_file):
    pol = policy_file(DP_POLICY.replace("MISSING", "inconclusive"))
    bad = tmp_path / "bin"
    shutil.copytree(lora_dp_model, bad)
    (bad / "adapter_model.bin").write_bytes(b"not loaded")
    r = _run(bad, pol, tmp_path / "o1")
    assert r.exit_code == 2 and "adapter_model.bin is a pickle file" in r.output, r.output

    odd = tmp_path / "odd"
    shutil.copytree(lora_dp_model, odd)
    cfg = json.loads((odd / "adapter_config.json").read_text())
    cfg["layer_replication"] = [[0, 2], [0, 2]]
    (odd / "adapter_config.json").write_text(json.dumps(cfg))
    r = _run(odd, pol, tmp_path / "o2")
    assert r.exit_code == 2 and "'layer_replication' is set" in r.output, r.output

    swapped = tmp_path / "swapped"
    shutil.copytree(lora_dp_model, swapped)
    from safetensors.torch import load_file, save_file

    tensors = load_file(swapped / "adapter_model.safetensors")
    tensors = {k: v * 2 for k, v in tensors.items()}
    save_file(tensors, swapped / "adapter_model.safetensors")
    r = _run(swapped, pol, tmp_path / "o3")
    assert r.exit_code == 2 and "the adapter was changed or replaced" in r.output, r.output


# ---------------------------------------------------------------- bad combinations: exit 2, one line, nothing written


@pytest.mark.parametrize("extra,message", [
    (["--dp-epsilon", "0"], "--dp-epsilon must be a positive finite number, got 0"),
    (["--dp-epsilon", "-1"], "--dp-epsilon must be a positive finite number, got -1"),
    (["--dp-epsilon", "inf"], "--dp-epsilon must be a positive finite number, got inf"),
    (["--dp-epsilon", "nan"], "--dp-epsilon must be a positive finite number, got nan"),
    (["--dp-epsilon", "8", "--dp-delta", "0.01"],
     "--dp-delta 0.01 is not below 1/n = 1/280 = 0.00357 (n = training rows): at that δ the guarantee allows "
     "leaking a whole record; use e.g. --dp-delta 0.001"),
    (["--dp-epsilon", "8", "--dp-delta", "1"], "--dp-delta must be in (0, 1), got 1"),
    (["--dp-epsilon", "8", "--max-grad-norm", "0"], "--max-grad-norm must be a positive finite number, got 0"),
    (["--peft", "lora", "--lora-r", "0"], "--lora-r must be a positive integer (the adapters' rank), got 0"),
    (["--peft", "lora", "--lora-r", "-2"], "--lora-r must be a positive integer (the adapters' rank), got -2"),
    (["--peft", "lora", "--lora-dropout", "1"], "--lora-dropout must be in [0, 1), got 1"),
    (["--lora-r", "8"], "--lora-r applies to LoRA adapters: add --peft lora"),
    (["--dp-delta", "1e-5"], "--dp-delta applies to DP-SGD: add --dp-epsilon"),
    (["--peft", "lora", "--target-modules", "query,nosuchlayer"],
     "--target-modules: the base model has no module named 'nosuchlayer' (its linear layers: classifier, dense, "
     "key, query, value)"),
])
def test_bad_combinations_exit_2(tiny_base, credit_csv, tmp_path, extra, message):
    out = tmp_path / "out"
    r = train_cli(tiny_base, credit_csv, out, *extra)
    assert r.exit_code == 2, r.output
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.output
    if message:
        assert lines[0] == f"error: {message}"
    else:
        raise AssertionError("every case names its message")
    assert not out.exists() and not list(tmp_path.glob(".out.tmp-*"))


@pytest.mark.parametrize("module,flags", [("peft", ["--peft", "lora"]), ("opacus", ["--dp-epsilon", "8"])])
def test_missing_library_names_the_extra(tiny_base, credit_csv, tmp_path, monkeypatch, module, flags):
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    r = train_cli(tiny_base, credit_csv, tmp_path / "out", *flags)
    assert r.exit_code == 2, r.output
    assert f"needs the package '{module}', which is not installed: pip install 'audit[train]'" in r.output


# ---------------------------------------------------------------- the report's view


def test_privacy_view_shows_dp_settings_from_result_alone():
    from audit.render.privacy_view import privacy_view

    dp = {"epsilon": 7.99, "target_epsilon": 8, "delta": 1e-5, "accountant": "rdp", "library": "opacus 1.6.0",
          "noise_multiplier": 0.62, "max_grad_norm": 1.0, "sample_rate": 0.0286, "sampling": "poisson",
          "steps": 105, "frozen_for_dp": []}
    v = privacy_view({"measurements": {"privacy.dp_epsilon": {"value": 7.99, "details": {"dp": dp}}},
                      "model": {"training": {"dp": dp, "peft": {"r": 8, "target_modules": ["query", "value"]}}}})
    rows = dict(v.dp.rows)
    assert rows["ε spent (target)"] == "7.99 (8)" and rows["δ"] == "1e-05" and rows["Noise multiplier"] == "0.62"
    assert rows["Sampling rate"] == "0.0286 (poisson sampling), 105 steps" and rows["Frozen for DP"] == "none"
    assert rows["Adapters"] == "LoRA rank 8 on query, value" and "e^ε = 2.95e+03" in v.dp.sentence
    none = privacy_view({"measurements": {"privacy.dp_epsilon": {"value": None, "inconclusive": "no DP"}}})
    assert none.dp.rows == [] and none.dp.reason == "no DP"
    assert privacy_view({"measurements": {}}).dp is None
