"""SHAP: shap's own path (one text after another) against lockstep batching across texts (audit.shapstep).

Same model, texts, max_evals and scoring function; alternating A B A B in one process; prints each wall time,
the medians, the speed-up and the largest |difference| of any SHAP value or base value between the two paths.

    PEERS_DIR=/tmp/peers .venv/bin/python benchmarks/shap_lockstep.py [--texts 20 --max-evals 200 --rounds 3]

Needs the reference model of ../shared/bench/make_model.py under $PEERS_DIR (benchmarks/peer.py builds it).
`--precision bf16` scores through bfloat16 autocast for both paths.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--texts", type=int, default=20)
    ap.add_argument("--max-evals", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    args = ap.parse_args()
    import numpy as np
    import pandas as pd

    from audit.checks.explainability import _log_odds, shap_explain
    from audit.model import open_bundle
    from audit.scoring import score_texts, with_precision

    peers = Path(os.environ.get("PEERS_DIR", Path.home() / ".cache" / "peers"))
    bundle = open_bundle(peers / "model", manifest_path=peers / "audit-model.yaml").load()
    model = with_precision(bundle.model, args.precision)
    m = bundle.manifest
    pos = m.labels.index(m.positive_label)
    texts = pd.read_csv(peers / "data" / "heldout.csv")["text"].tolist()[: args.texts]

    def predict(batch: list[str]) -> np.ndarray:
        preds = score_texts(model, bundle.tokenizer, batch, max_length=m.max_length, positive_index=pos,
                            batch_size=min(max(len(batch), 1), 64), progress=False)
        return _log_odds(preds.probs, pos)

    import shap  # noqa: F401  (imported once, outside the timings)

    walls: dict[str, list[float]] = {"shap": [], "lockstep": []}
    got = {}
    for r in range(args.rounds):
        for name, width in (("shap", 1), ("lockstep", args.width)):
            np.random.seed(0)
            t = time.perf_counter()
            got[name] = shap_explain(predict, bundle.tokenizer, texts, max_evals=args.max_evals, lockstep=width)
            walls[name].append(time.perf_counter() - t)
            print(f"round {r + 1} {name:<8} {walls[name][-1]:6.2f} s", flush=True)
    diff = max(max(float(np.abs(a[1] - b[1]).max()), abs(a[2] - b[2])) for a, b in zip(got["shap"], got["lockstep"]))
    same_pieces = all(a[0] == b[0] for a, b in zip(got["shap"], got["lockstep"]))
    a, b = statistics.median(walls["shap"]), statistics.median(walls["lockstep"])
    print(f"median: shap {a:.2f} s, lockstep {b:.2f} s, speed-up {a / b:.2f}x; "
          f"max |delta| {diff:.2e}; same pieces: {same_pieces} ({args.texts} texts, max_evals {args.max_evals}, "
          f"{args.precision})")


if __name__ == "__main__":
    main()
