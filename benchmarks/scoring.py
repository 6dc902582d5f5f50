"""Scoring throughput: audit's length-sorted batched scoring vs a plain transformers pipeline.

Same model, same rows, same process, alternating A B A B so machine noise hits both. Prints rows/s for each
and the ratio (audit / pipeline). Usage:

    .venv/bin/python benchmarks/scoring.py [MODEL_DIR] [--rounds 3]

`--mixed` cuts each text to a random length first, as free text varies. MODEL_DIR defaults to demo/model (made by `audit demo`); it must hold audit-model.yaml.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir", nargs="?", default="demo/model")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--mixed", action="store_true",
                    help="Cut each text to a random number of words (seeded): lengths that vary, as free text does.")
    args = ap.parse_args()

    import torch
    from transformers import pipeline

    from audit.model import open_bundle
    from audit.runner import load_eval_set
    from audit.scoring import score_texts

    bundle = open_bundle(Path(args.model_dir)).load()
    ev = load_eval_set(bundle, None, None, 0)
    texts = ev.texts
    if args.mixed:
        import random

        rnd = random.Random(0)
        texts = [" ".join(t.split()[: rnd.randint(3, len(t.split()))]) for t in texts]
    m = bundle.manifest
    pos = m.labels.index(m.positive_label)
    pipe = pipeline("text-classification", model=bundle.model, tokenizer=bundle.tokenizer, top_k=None,
                    device="cpu", truncation=True, max_length=m.max_length)

    def run_audit():
        return score_texts(bundle.model, bundle.tokenizer, texts, max_length=m.max_length, positive_index=pos,
                           batch_size=args.batch_size, progress=False).score

    def run_pipe():
        with torch.inference_mode():
            out = pipe(texts, batch_size=args.batch_size)
        return [next(d["score"] for d in row if d["label"] == m.positive_label) for row in out]

    run_audit(), run_pipe()  # warm-up
    times = {"audit": [], "pipeline": []}
    for _ in range(args.rounds):
        for name, fn in (("audit", run_audit), ("pipeline", run_pipe)):
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    a = statistics.median(times["audit"])
    p = statistics.median(times["pipeline"])
    diff = max(abs(x - y) for x, y in zip(run_audit(), run_pipe()))
    print(f"rows: {len(texts)}{' (mixed lengths)' if args.mixed else ''}, "
          f"mean {sum(len(t) for t in texts) / len(texts):.0f} chars, "
          f"batch {args.batch_size}, threads {torch.get_num_threads()}, rounds {args.rounds}")
    print(f"audit scoring:         {len(texts) / a:8.1f} rows/s (median {a:.2f} s)")
    print(f"transformers pipeline: {len(texts) / p:8.1f} rows/s (median {p:.2f} s)")
    print(f"ratio audit/pipeline:  {p / a:8.2f}x   (largest |score difference| {diff:.2e})")


if __name__ == "__main__":
    main()
