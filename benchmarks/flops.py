"""The FLOP rate that scoring and the SHAP stage reach, against the peak of a plain `torch.matmul` here.

FLOPs are counted from the model's shape (config.json: hidden size h, intermediate size i, layers L) and the real
token counts (after truncation, without padding), for the work the output needs: per layer and text of t tokens,
2·t·(4h² + 2hi) in the linear maps and 4·t²·h in attention; with the [CLS]-only last layer that scoring uses
(audit.scoring.cls_only_last_layer) the last layer computes keys and values for every token (4·t·h²) and the
rest for [CLS] alone (2·(2h² + 2hi) + 4·t·h). Pooler and classifier are left out (under 0.1%). Padding is
work the model does and this count does not: it shows as a lower rate.

The peak: `torch.matmul` of (4096 × h) by (h × i), MiniLM's feed-forward shape (h 384, i 1536) by default,
best of 5 timed loops of about a second, in fp32, and in bf16 where the CPU has native bf16 (audit.precision;
`--bf16-peak` forces it). Threads: torch's default (the run's).

Scoring: `audit.scoring.score_texts` on N free-text rows (benchmarks/scale.py's generator). SHAP: the
explainability family's `shap_explain` on K of them at `--max-evals`, its masked texts counted as they are scored;
the rate is given over the stage's wall time and over its model time (the forward passes alone).

    .venv/bin/python benchmarks/flops.py MODEL_DIR [--manifest M] [--texts 300] [--shap-texts 20] [--max-evals 200]
        [--precision fp32|bf16]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def forward_flops(lengths, h: int, i: int, layers: int, cls_only: bool) -> float:
    total = 0.0
    for t in lengths:
        t = float(t)
        full = 2 * t * (4 * h * h + 2 * h * i) + 4 * t * t * h
        if cls_only and layers > 0:
            last = 4 * t * h * h + 2 * (2 * h * h + 2 * h * i) + 4 * t * h
            total += (layers - 1) * full + last
        else:
            total += layers * full
    return total


def matmul_peak(h: int, i: int, dtype, m: int = 4096, seconds: float = 1.0) -> float:
    import torch

    a = torch.randn(m, h).to(dtype)
    b = torch.randn(h, i).to(dtype)
    for _ in range(3):
        torch.matmul(a, b)
    flop = 2.0 * m * h * i
    best = 0.0
    for _ in range(5):
        n, start = 0, time.perf_counter()
        while True:
            torch.matmul(a, b)
            n += 1
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                break
        best = max(best, n * flop / elapsed)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", type=Path)
    ap.add_argument("--manifest", type=Path, help="The model's audit-model.yaml when it is not in the folder.")
    ap.add_argument("--texts", type=int, default=300)
    ap.add_argument("--shap-texts", type=int, default=20)
    ap.add_argument("--max-evals", type=int, default=200)
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--bf16-peak", action="store_true", help="Measure the bf16 peak without native bf16 too.")
    ap.add_argument("--peak-seconds", type=float, default=1.0)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import numpy as np
    import torch
    from scale import free_text

    from audit.checks.explainability import shap_explain
    from audit.model import open_bundle
    from audit.precision import detected
    from audit.scoring import cls_only_last_layer, score_texts, tokenize, with_precision

    bundle = open_bundle(args.model, manifest_path=args.manifest).load()
    cfg = bundle.model.config
    h, i, layers = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    model = with_precision(bundle.model, args.precision)
    cls_only = cls_only_last_layer(bundle.model) is not None
    m = bundle.manifest
    pos = m.labels.index(m.positive_label)
    cpu = detected()
    out = {"model": str(args.model), "shape": {"hidden": h, "intermediate": i, "layers": layers},
           "threads": torch.get_num_threads(), "precision": args.precision, "cpu": cpu.to_dict(),
           "load_average": os.getloadavg()}
    # the peaks at the feed-forward shape of this model (MiniLM: 384 x 1536)
    out["peak_fp32_gflops"] = matmul_peak(h, i, torch.float32, seconds=args.peak_seconds) / 1e9
    if cpu.native or args.bf16_peak:
        out["peak_bf16_gflops"] = matmul_peak(h, i, torch.bfloat16, seconds=args.peak_seconds) / 1e9
        out["peak_bf16_native"] = cpu.native
    texts = list(dict.fromkeys(free_text(args.texts, seed=5)["text"].tolist()))  # scored once each
    score_texts(model, bundle.tokenizer, texts[:8], max_length=m.max_length, positive_index=pos, progress=False)
    start = time.perf_counter()
    preds = score_texts(model, bundle.tokenizer, texts, max_length=m.max_length, positive_index=pos, progress=False)
    seconds = time.perf_counter() - start
    flop = forward_flops(preds.lengths, h, i, layers, cls_only)
    out["scoring"] = {"rows": len(texts), "mean_tokens": float(np.mean(preds.lengths)), "seconds": seconds,
                      "gflop": flop / 1e9, "gflops": flop / seconds / 1e9}
    # the SHAP stage: masked texts recorded, counted after the clock stops
    asked: list[str] = []
    model_time = [0.0]

    def predict(batch: list[str]) -> np.ndarray:
        asked.extend(batch)
        t = time.perf_counter()
        p = score_texts(model, bundle.tokenizer, batch, max_length=m.max_length, positive_index=pos,
                        batch_size=min(max(len(batch), 1), 64), progress=False).probs
        model_time[0] += time.perf_counter() - t
        with np.errstate(divide="ignore"):
            return np.log(p[:, pos]) - np.log(p[:, 1 - pos])

    start = time.perf_counter()
    shap_explain(predict, bundle.tokenizer, texts[: args.shap_texts], max_evals=args.max_evals)
    stage = time.perf_counter() - start
    _, full = tokenize(bundle.tokenizer, asked, m.max_length)
    lengths = np.minimum(full, m.max_length)
    flop = forward_flops(lengths, h, i, layers, cls_only)
    out["shap"] = {"texts": args.shap_texts, "max_evals": args.max_evals, "masked_texts": len(asked),
                   "mean_tokens": float(lengths.mean()) if len(lengths) else 0.0, "stage_seconds": stage,
                   "model_seconds": model_time[0], "gflop": flop / 1e9, "gflops_stage": flop / stage / 1e9,
                   "gflops_model": flop / model_time[0] / 1e9 if model_time[0] > 0 else None}
    peak = out["peak_bf16_gflops"] if args.precision == "bf16" and "peak_bf16_gflops" in out else out["peak_fp32_gflops"]
    out["fraction_of_peak"] = {"scoring": out["scoring"]["gflops"] / peak, "shap_stage": out["shap"]["gflops_stage"] / peak,
                               "shap_model": (out["shap"]["gflops_model"] or 0) / peak}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
