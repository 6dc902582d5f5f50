"""Before bf16 explanations become the default on a machine: do bf16 and fp32 explanations agree at least as well
as two fp32 explanations of different seeded samples agree with each other? (Issue 18: if they do not, keep fp32.)

On the model's eval rows (its manifest's held-out split), with the explainability family's own code
(audit.checks.explainability.shap_explain, the lockstep path, and its word ranking):
- sample A (seed --seeds[0]) explained in fp32 and in bf16 (audit.scoring.with_precision: bf16 autocast);
- sample B (seed --seeds[1]) explained in fp32.
Printed: the largest |Δ| of any attribution between A in bf16 and A in fp32; the Spearman correlation of the
global word rankings (over the union of the top 20 words, as explainability.stability reads it) of A-bf16 against
A-fp32 (the precision's effect alone), of A-fp32 against B-fp32 (the sampling noise: the reference) and of A-bf16
against B-fp32 (like for like with the reference); whether the top 5 words agree; and the verdict.

    .venv/bin/python benchmarks/fidelity.py MODEL_DIR [--manifest M] [--rows 40] [--max-evals 100] [--seeds 0 1]

Run it on a CPU with native bf16 (AMX or AVX-512 BF16): elsewhere bf16 is emulated (same rounding, much slower).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", type=Path)
    ap.add_argument("--manifest", type=Path)
    ap.add_argument("--rows", type=int, default=40)
    ap.add_argument("--max-evals", type=int, default=100)
    ap.add_argument("--seeds", type=int, nargs=2, default=[0, 1])
    ap.add_argument("--top-k", type=int, default=20)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import numpy as np

    from audit.checks import explainability as E
    from audit.model import open_bundle
    from audit.precision import detected
    from audit.runner import load_eval_set
    from audit.scoring import score_texts, with_precision
    from audit.shapstep import compare

    bundle = open_bundle(args.model, manifest_path=args.manifest).load()
    m = bundle.manifest
    pos = m.labels.index(m.positive_label)
    ev = load_eval_set(bundle, None, None, args.seeds[0])
    tok = bundle.tokenizer
    specials = frozenset(str(t) for t in getattr(tok, "all_special_tokens", []) or [])

    def predictor(precision: str):
        model = with_precision(bundle.model, precision)

        def predict(texts: list[str]) -> np.ndarray:
            p = score_texts(model, tok, texts, max_length=m.max_length, positive_index=pos,
                            batch_size=min(max(len(texts), 1), 64), progress=False).probs
            return E._log_odds(p, pos)

        return predict

    def sample(seed: int) -> list[str]:
        rng = np.random.default_rng(seed)
        idx = rng.choice(len(ev.texts), size=min(args.rows, len(ev.texts)), replace=False)
        return [ev.texts[int(i)] for i in idx]

    def explain(texts: list[str], precision: str):
        t = time.perf_counter()
        got = E.shap_explain(predictor(precision), tok, texts, max_evals=args.max_evals)
        return got, time.perf_counter() - t

    def rank(got):
        return E.ranking(E.token_importance([E.merge_pieces(p, v, specials) for p, v, _ in got]))

    a, b = sample(args.seeds[0]), sample(args.seeds[1])
    a32, t_a32 = explain(a, "fp32")
    a16, t_a16 = explain(a, "bf16")
    b32, t_b32 = explain(b, "fp32")
    same = compare([g[:2] for g in a16], [g[:2] for g in a32], specials=specials, top_k=args.top_k)
    ra32, ra16, rb32 = rank(a32), rank(a16), rank(b32)
    noise, _ = E.rank_stability(ra32, rb32, args.top_k)
    cross, _ = E.rank_stability(ra16, rb32, args.top_k)
    # the criterion: changing the precision moves the ranking no more than drawing other rows does
    ok = same["spearman"] is not None and noise is not None and same["spearman"] >= noise
    out = {"model": str(args.model), "rows": len(a), "max_evals": args.max_evals, "seeds": args.seeds,
           "cpu": detected().to_dict(), "load_average": os.getloadavg(),
           "seconds": {"A fp32": t_a32, "A bf16": t_a16, "B fp32": t_b32},
           "max_abs_diff_A_bf16_vs_fp32": same["max_abs_diff"],
           "spearman_A_bf16_vs_A_fp32": same["spearman"], "spearman_A_fp32_vs_B_fp32": noise,
           "spearman_A_bf16_vs_B_fp32": cross, "top_words_agree": same["top_words_agree"],
           "top_words": {"A bf16": same["top_words_low"], "A fp32": same["top_words_fp32"],
                         "B fp32": [w.word for w in rb32[:5]]},
           "bf16_agrees_at_least_as_well_as_two_fp32_samples": ok}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
