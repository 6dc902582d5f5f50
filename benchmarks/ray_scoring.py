"""Scoring throughput: the local engine vs `--engine ray` (a local Ray, N one-CPU workers), same rows, same model.

The texts are every row of the model's training file, repeated `--copies` times with a small variation each
(so that the scoring pass, which scores identical texts once, has them all to score). Passes alternate
local, ray, local, ray, ... so that machine noise hits both. A Ray pass is timed end to end as `audit run` pays
it: partitioning, the actor pool's start-up and model load, scoring, and the merge on the driver; the one-off
`ray.init` is timed apart. Prints rows/s per pass, the medians, and the largest score difference between the
engines. Usage:

    .venv/bin/python benchmarks/ray_scoring.py MODEL_DIR [--copies 10] [--rounds 2] [--workers 2]

MODEL_DIR: a model folder made by `audit train` (e.g. the demo model: `audit demo --epochs 1 --out /tmp/d`,
then /tmp/d/model).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("--copies", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--no-embeddings", action="store_true", help="Score without keeping embeddings.")
    args = ap.parse_args()

    import numpy as np
    import torch

    from audit.data import make_texts, read_table
    from audit.engines import LocalEngine, RayEngine
    from audit.model import open_bundle
    from audit.runner import _find_source

    bundle = open_bundle(Path(args.model_dir)).load()
    m = bundle.manifest
    path = _find_source(m.data.source.path, bundle.path)
    base = make_texts(read_table(path), m.text, path)
    texts = [t if k == 0 else f"{t} Copy {k}." for k in range(args.copies) for t in base]
    emb = not args.no_embeddings
    print(f"{len(texts):,} texts ({len(set(texts)):,} distinct), model {bundle.path} ({m.max_length} tokens max), "
          f"batch {args.batch_size}, embeddings {emb}, torch threads here {torch.get_num_threads()}, "
          f"{os.cpu_count()} CPUs")

    local = LocalEngine()
    ray = RayEngine(workers=args.workers, num_cpus=args.workers)
    t0 = time.perf_counter()
    ray.start()
    print(f"ray.init (local Ray, {args.workers} CPUs): {time.perf_counter() - t0:.1f} s")
    rates: dict[str, list[float]] = {"local": [], "ray": []}
    last: dict[str, np.ndarray] = {}
    for r in range(args.rounds):
        for name, engine in (("local", local), ("ray", ray)):
            t = time.perf_counter()
            preds = engine.score(bundle, texts, batch_size=args.batch_size, embeddings=emb, progress=False)
            wall = time.perf_counter() - t
            rates[name].append(len(texts) / wall)
            last[name] = preds.probs
            extra = ""
            if name == "ray":
                extra = (f" ({preds.meta['partitions']} partitions on {preds.meta['worker_processes']} worker "
                         f"processes, {preds.meta['worker_seconds']:.1f} s of scoring inside the workers; largest "
                         f"|probability difference| from the local pass {np.abs(last['ray'] - last['local']).max():.3g})")
            print(f"round {r + 1} {name:<5}: {wall:6.1f} s, {len(texts) / wall:7.1f} rows/s{extra}")
    ray.close()
    print(f"median rows/s: local {statistics.median(rates['local']):.1f}, ray ({args.workers} workers) "
          f"{statistics.median(rates['ray']):.1f}, ratio ray/local "
          f"{statistics.median(rates['ray']) / statistics.median(rates['local']):.2f}")


if __name__ == "__main__":
    main()
