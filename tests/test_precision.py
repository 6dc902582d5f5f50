"""Opt-in reduced precision: `audit run --precision bf16` states its precision and what it costs; fp32 stays the
default and scores the model as trained."""

import json

import numpy as np
import pandas as pd
from click.testing import CliRunner

from audit.cli import cli
from tests.conftest import MIN_POLICY


def _run(model, policy, out, *extra):
    return CliRunner().invoke(cli, ["run", str(model), "--policy", str(policy), "--out", str(out), "--no-progress",
                                    *extra], catch_exceptions=False)


def test_bf16_run_states_precision_and_its_difference_from_fp32(tiny_model, tmp_path):
    pol = tmp_path / "p.yaml"
    pol.write_text(MIN_POLICY)
    a = _run(tiny_model, pol, tmp_path / "fp32")
    b = _run(tiny_model, pol, tmp_path / "bf16", "--precision", "bf16")
    assert (a.exit_code, b.exit_code) == (0, 0), a.output + b.output
    ra = json.loads((tmp_path / "fp32" / "result.json").read_text())
    rb = json.loads((tmp_path / "bf16" / "result.json").read_text())
    assert ra["scoring"]["precision"] == "fp32" and "precision_check" not in ra["scoring"]
    check = rb["scoring"]["precision_check"]
    assert rb["scoring"]["precision"] == "bf16"
    # the stated difference is the real one: compare the two runs' written scores on every row
    pa = pd.read_csv(tmp_path / "fp32" / "predictions.csv")
    pb = pd.read_csv(tmp_path / "bf16" / "predictions.csv")
    score_col = next(c for c in pa.columns if c.startswith("score") or c.startswith("p_"))
    full = float(np.abs(pa[score_col] - pb[score_col]).max())
    assert check["rows"] == min(256, len(pa))
    assert 0 < check["max_abs_score_diff"] <= full + 1e-6
    assert check["max_abs_score_diff"] < 0.02
    assert any("bf16" in w and "fp32" in w for w in rb["warnings"])
    html = (tmp_path / "bf16" / "report.html").read_text()
    assert "bf16" in html


def test_unknown_precision_is_a_usage_error(tiny_model, tmp_path):
    pol = tmp_path / "p.yaml"
    pol.write_text(MIN_POLICY)
    r = CliRunner().invoke(cli, ["run", str(tiny_model), "--policy", str(pol), "--precision", "fp8"])
    assert r.exit_code == 2
    assert "fp8" in r.output


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def test_heap_release_returns_freed_pages_from_the_middle_of_the_heap():
    import sys

    import pytest

    from audit.heap import release

    if not (sys.platform.startswith("linux") and release()):
        pytest.skip("malloc_trim is glibc's")
    blocks = [bytearray(b"x" * 60_000) for _ in range(2000)]  # ~120 MB in heap-sized blocks (below mmap's cut)
    fence = bytearray(b"y" * 60_000)  # keeps the freed blocks in the middle, where free() alone never trims
    del blocks
    before = _rss_mb()
    assert release() is True
    after = _rss_mb()
    assert before - after > 50, (before, after)
    assert fence[0] == ord("y")


def test_numbers_in_messages_read_as_people_write_them():
    from audit.judge import fmt

    assert fmt(float("inf")) == "∞" and fmt(float("-inf")) == "−∞"
    assert fmt(None) == "n/a"
    assert fmt(0.00012) == "0.00012" and fmt(0.5) == "0.500" and fmt(1234.0, "count") == "1,234"


def test_cls_only_last_layer_scores_as_the_full_forward_pass(tiny_model, credit_csv):
    """Without embeddings, a BERT classifier's last layer runs for the [CLS] position only: the same scores as the
    full forward pass (padded batches of mixed lengths, so the key mask matters), and the layer is put back."""
    import torch

    from audit.model import open_bundle
    from audit.scoring import cls_only_last_layer, score_texts

    b = open_bundle(tiny_model).load()
    texts = pd.read_csv(credit_csv)["text"].tolist()[:120]
    texts = texts + [" ".join(t.split()[: 2 + i % 5]) for i, t in enumerate(texts)]  # short rows beside long
    layer = b.model.bert.encoder.layer[-1]
    assert cls_only_last_layer(b.model) is not None
    seen = []
    hook = b.model.bert.pooler.register_forward_pre_hook(lambda mod, args: seen.append(args[0].shape[1]))
    fast = score_texts(b.model, b.tokenizer, texts, max_length=32, positive_index=1, batch_size=16,
                       embeddings=False, progress=False)
    assert set(seen) == {1}  # the pooler saw one position: the last layer ran for [CLS] only
    seen.clear()
    full = score_texts(b.model, b.tokenizer, texts, max_length=32, positive_index=1, batch_size=16,
                       embeddings=True, progress=False)
    hook.remove()
    assert min(seen) > 1 and b.model.bert.encoder.layer[-1] is layer
    assert np.abs(fast.probs - full.probs).max() < 1e-6
    # an independent reference: transformers' own forward pass, one text at a time (no padding at all)
    with torch.inference_mode():
        for t, p in list(zip(texts, fast.score))[::20]:
            enc = b.tokenizer(t, return_tensors="pt", truncation=True, max_length=32)
            ref = torch.softmax(b.model(**enc).logits, -1)[0, 1].item()
            assert abs(ref - p) < 1e-6
    assert cls_only_last_layer(torch.nn.Linear(2, 2)) is None  # not a BERT classifier: the full pass


def test_cls_only_last_layer_under_bf16_autocast(tiny_model, credit_csv):
    """The opt-in bf16 wrapper gets the [CLS]-only last layer too; its scores stay within bf16 rounding of the
    full bf16 pass and of fp32."""
    from audit.model import open_bundle
    from audit.scoring import cls_only_last_layer, score_texts, with_precision

    b = open_bundle(tiny_model).load()
    texts = pd.read_csv(credit_csv)["text"].tolist()[:60]
    low = with_precision(b.model, "bf16")
    assert cls_only_last_layer(low) is not None
    fast = score_texts(low, b.tokenizer, texts, max_length=32, positive_index=1, embeddings=False, progress=False)
    full = score_texts(low, b.tokenizer, texts, max_length=32, positive_index=1, embeddings=True, progress=False)
    fp32 = score_texts(b.model, b.tokenizer, texts, max_length=32, positive_index=1, embeddings=True, progress=False)
    assert b.model.bert.encoder.layer[-1].__class__.__name__ == "BertLayer"
    assert np.abs(fast.score - full.score).max() < 1e-3  # measured 0 on the peer job
    assert np.abs(fast.score - fp32.score).max() < 2e-2
