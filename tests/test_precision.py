"""Opt-in reduced precision: `audit run --precision bf16` states its precision and what it costs; fp32 stays the
default and scores the model as trained."""

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from audit.cli import cli
from tests.conftest import MIN_POLICY


@pytest.fixture(autouse=True)
def _bf16_explanations_allowed(monkeypatch):
    """These tests exercise the bf16 explanation path, which `auto` takes only with AUTO_EXPLAIN_BF16 on (off by
    default until agreement is shown: audit/precision.py); a test about the default sets it back itself."""
    from audit import precision as _precision

    monkeypatch.setattr(_precision, "AUTO_EXPLAIN_BF16", True)



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


# ---------------------------------------------------------------- the precision policy (issue 18)


def test_detection_reads_the_cpu_flags_and_torchs_capability(tmp_path):
    from audit import precision as P

    amx = {"fpu", "avx2", "avx512f", "amx_tile", "amx_bf16", "amx_int8"}
    assert P.detect(amx, "AVX512").native
    zen4 = {"avx2", "avx512f", "avx512_bf16"}
    d = P.detect(zen4, "AVX512")
    assert d.native and d.flags == ("avx512_bf16",) and d.to_dict()["native_bf16"] is True
    assert not P.detect({"avx2", "fma"}, "AVX2").native  # this machine's kind: fp32
    vetoed = P.detect(amx, "DEFAULT")  # ATEN_CPU_CAPABILITY=default: torch dispatches no AVX-512 code
    assert not vetoed.native and "DEFAULT" in vetoed.why
    assert P.detect(amx, None).native  # torch could not say: the flags decide
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu sse2 avx2 amx_bf16 amx_tile\n\n"
                    "processor\t: 1\nflags\t\t: fpu\n")
    assert P.cpu_flags(str(info)) == {"fpu", "sse2", "avx2", "amx_bf16", "amx_tile"}
    assert P.cpu_flags(str(tmp_path / "none")) is None
    unreadable = P.detect(None, "AVX512")  # no /proc/cpuinfo: torch's own probes stand in
    assert unreadable.cpuinfo is False and "torch's CPU probes" in unreadable.why


def test_detection_of_this_machine_matches_its_cpuinfo():
    """The independent reference: the flags in /proc/cpuinfo as grep would find them."""
    import os
    import re

    from audit import precision as P

    if not os.path.exists("/proc/cpuinfo"):
        import pytest

        pytest.skip("no /proc/cpuinfo")
    text = open("/proc/cpuinfo").read()
    native = bool(re.search(r"\b(amx_bf16|avx512_bf16)\b", text))
    d = P.detect()
    assert d.cpuinfo and bool(d.flags) == native
    assert d.native == (native and P._capable(d.capability))


def test_plans_for_each_setting(monkeypatch):
    from audit import precision as P

    yes = P.Detection(True, ("amx_bf16",), True, "AVX512", "native")
    no = P.Detection(False, (), True, "AVX2", "none")
    auto = P.resolve("auto", yes)
    assert (auto.scoring.precision, auto.explanations.precision) == ("fp32", "bf16")
    assert (P.resolve("auto", no).scoring.precision, P.resolve("auto", no).explanations.precision) == ("fp32", "fp32")
    for cpu in (yes, no):
        f = P.resolve("fp32", cpu)
        assert (f.scoring.precision, f.explanations.precision) == ("fp32", "fp32")
        b = P.resolve("bf16", cpu)
        assert (b.scoring.precision, b.explanations.precision) == ("bf16", "bf16")
    doc = auto.to_dict()
    assert doc["requested"] == "auto" and doc["stages"]["explanations"]["precision"] == "bf16"
    assert doc["cpu"]["native_bf16"] is True and "fp32" in doc["stages"]["scoring"]["why"]
    import pytest

    with pytest.raises(ValueError, match="fp8"):
        P.resolve("fp8", yes)
    monkeypatch.setattr(P, "AUTO_EXPLAIN_BF16", False)  # the default held at fp32 until shown (issue 18)
    held = P.resolve("auto", yes)
    assert held.explanations.precision == "fp32" and "AUTO_EXPLAIN_BF16" in held.explanations.why


def test_gated_numbers_do_not_depend_on_the_explanations_precision(tiny_model, credit_csv, tmp_path, monkeypatch):
    """The demo policy (fin.yaml) on the tiny model, explanations forced to bf16 (native bf16 faked) and to fp32:
    every measurement outside the explainability family is identical, and so are the scores."""
    from audit import precision as P
    from tests.conftest import make_frame

    current = tmp_path / "current.csv"
    make_frame(150, seed=7).to_csv(current, index=False)
    monkeypatch.setattr(P, "detected", lambda: P.Detection(True, ("amx_bf16",), True, "AVX512", "faked"))
    runs = {}
    for name, extra in (("bf16", []), ("fp32", ["--precision", "fp32"])):
        r = CliRunner().invoke(cli, ["run", str(tiny_model), "--policy", "fin", "--current", str(current),
                                     "--out", str(tmp_path / name), "--no-progress", *extra], catch_exceptions=False)
        assert r.exit_code in (0, 1, 3), r.output
        runs[name] = json.loads((tmp_path / name / "result.json").read_text())
    a, b = runs["bf16"], runs["fp32"]
    assert a["scoring"]["precision_plan"]["stages"]["explanations"]["precision"] == "bf16"
    assert b["scoring"]["precision_plan"]["stages"]["explanations"]["precision"] == "fp32"
    assert a["scoring"]["precision"] == b["scoring"]["precision"] == "fp32"
    gated = sorted(k for k in a["measurements"] if not k.startswith("explainability."))
    assert gated == sorted(k for k in b["measurements"] if not k.startswith("explainability."))
    assert any(k.startswith("drift.") and a["measurements"][k]["value"] is not None for k in gated)
    assert {k.split(".")[0] for k in gated} >= {"performance", "fairness", "privacy", "drift"}
    for k in gated:
        assert a["measurements"][k] == b["measurements"][k], k
    fa = {f["check_id"]: f["status"] for f in a["findings"] if not f["check_id"].startswith("explainability.")}
    fb = {f["check_id"]: f["status"] for f in b["findings"] if not f["check_id"].startswith("explainability.")}
    assert fa == fb
    assert (tmp_path / "bf16" / "predictions.csv").read_bytes() == (tmp_path / "fp32" / "predictions.csv").read_bytes()
    # and the explanations did run in two precisions
    fid = a["scoring"]["precision_plan"]["stages"]["explanations"]["fidelity"][0]
    assert fid["max_abs_diff"] > 0 and fid["rows"] == 8


def test_auto_keeps_fp32_explanations_by_default_until_agreement_is_shown(monkeypatch):
    """Issue 18's rule: bf16 explanations become the default only once they agree with fp32 as well as two fp32
    samples agree with each other; on the evidence so far they did not (audit/precision.py), so even a CPU with
    native bf16 explains in fp32 under `auto`, and says why."""
    from audit import precision as P

    monkeypatch.undo()
    assert P.AUTO_EXPLAIN_BF16 is False
    plan = P.resolve("auto", P.Detection(True, ("amx_bf16",), True, "AVX512", "native (faked)"))
    assert plan.explanations.precision == "fp32" and "AUTO_EXPLAIN_BF16" in plan.explanations.why
    assert plan.scoring.precision == "fp32"
