"""The privacy/utility trade-off of `audit train` options on the bundled German credit data.

Trains the packaged MiniLM with the demo's recipe (audit/data/german_credit/recipe.yaml, the same 70/30 split,
seed 0) as: full fine-tuning over-trained for many epochs, LoRA adapters, and LoRA under DP-SGD at ε = 8 and
ε = 1. Each model is then audited (`audit run`) with a small policy that measures held-out ROC-AUC and accuracy,
the loss-threshold membership-inference AUC (training split vs held-out split) and the recorded ε. Prints a
Markdown table with the training time per epoch (wall clock, this machine's threads).

Each row is trained once and kept under --out; a row whose model exists is only re-audited, so rows can be run
one at a time (`--rows full`) and the table assembled at the end (`--table`).

    .venv/bin/python benchmarks/train_options.py --out /tmp/train-options [--rows full,lora,dp8,dp1]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "audit" / "data" / "german_credit"

POLICY = """\
policy: train-options-benchmark
version: "1"
confidence: 0.95
checks:
  performance.roc_auc: {min: 0.5, basis: point}
  performance.accuracy: {min: 0.5, severity: warn}
  privacy.membership_inference_auc: {max: 0.6, basis: ci_high}
  privacy.dp_epsilon: {max: 8, severity: warn, missing: inconclusive}
budget: {bootstrap: 500, seed: 0}
"""

# name -> (label, train options). Learning rates: the demo's 5e-5 for full fine-tuning; adapters and DP-SGD
# need larger steps (LoRA 1e-3; DP with a larger expected batch, as noise is averaged over the batch).
ROWS = {
    "full": ("Full fine-tuning, 3 epochs at lr 1e-4",
             dict(epochs=3, learning_rate=1e-4, batch_size=16)),
    "full-8": ("Full fine-tuning over-trained, 8 epochs at lr 1e-4",
               dict(epochs=8, learning_rate=1e-4, batch_size=16)),
    "lora": ("LoRA r=8 (query, value), 3 epochs", dict(epochs=3, learning_rate=1e-3, batch_size=16, peft="lora")),
    "dp8": ("LoRA r=8 + DP-SGD ε=8, 2 epochs", dict(epochs=2, learning_rate=2e-3, batch_size=32, peft="lora",
                                                   dp_epsilon=8.0, dp_delta=1e-5)),
    "dp8-long": ("LoRA r=8 + DP-SGD ε=8, 4 epochs, lr 5e-3",
                 dict(epochs=4, learning_rate=5e-3, batch_size=32, peft="lora", dp_epsilon=8.0, dp_delta=1e-5)),
    "dp1": ("LoRA r=8 + DP-SGD ε=1, 2 epochs", dict(epochs=2, learning_rate=2e-3, batch_size=32, peft="lora",
                                                   dp_epsilon=1.0, dp_delta=1e-5)),
}


def train_row(name: str, out: Path) -> Path:
    from audit.cli import build_train_config
    from audit.train import train

    model = out / name
    if (model / "audit-model.yaml").exists():
        return model
    cfg = build_train_config(DATA / "recipe.yaml", None, None, None, None, None, (), None, None)
    for key, value in ROWS[name][1].items():
        setattr(cfg, key, value)
    cfg.max_length, cfg.seed = 128, 0
    print(f"training {name}: {ROWS[name][0]}", flush=True)
    train(DATA / "german_credit.csv", model, cfg, progress=False)
    return model


def audit_row(name: str, model: Path, out: Path) -> dict:
    from audit.manifest import load_manifest
    from audit.runner import run_audit

    policy = out / "policy.yaml"
    policy.write_text(POLICY)
    run_dir = out / f"run-{name}"
    if not (run_dir / "result.json").exists():
        run_audit(model, policy, out_dir=run_dir, progress=False, report_root=out / "reports")
    result = json.loads((run_dir / "result.json").read_text())
    m = {k: v for k, v in result["measurements"].items()}
    t = load_manifest(model / "audit-model.yaml").training
    curve = t["loss_curve"]
    dp = t.get("dp") or {}
    row = {
        "name": name, "label": ROWS[name][0], "epochs": t["epochs"],
        "seconds_per_epoch": t.get("seconds_per_epoch") or curve[-1]["seconds"] / len(curve),
        "auc": m["performance.roc_auc"]["value"], "auc_ci": (m["performance.roc_auc"]["ci_low"],
                                                             m["performance.roc_auc"]["ci_high"]),
        "accuracy": m["performance.accuracy"]["value"],
        "mia_auc": m["privacy.membership_inference_auc"]["value"],
        "mia_ci": (m["privacy.membership_inference_auc"]["ci_low"], m["privacy.membership_inference_auc"]["ci_high"]),
        "epsilon": dp.get("epsilon"), "noise_multiplier": dp.get("noise_multiplier"),
        "train_loss": curve[-1]["train_loss"], "eval_loss": curve[-1]["eval_loss"],
        "trainable": (t.get("peft") or {}).get("trainable_parameters"),
    }
    (out / f"row-{name}.json").write_text(json.dumps(row, indent=1))
    return row


def table(out: Path) -> str:
    rows = [json.loads((out / f"row-{n}.json").read_text()) for n in ROWS if (out / f"row-{n}.json").exists()]

    def f(x, d=3):
        return "—" if x is None else f"{x:.{d}f}"

    lines = ["| Training | ε (δ=1e-5) | ROC-AUC (95% CI) | Accuracy | MIA AUC (95% CI) | Train / held-out loss "
             "| s per epoch |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        eps = "∞ (no DP)" if r["epsilon"] is None else f"{r['epsilon']:.2f} (σ={r['noise_multiplier']:.2f})"
        lines.append(f"| {r['label']} | {eps} | {f(r['auc'])} ({f(r['auc_ci'][0])}–{f(r['auc_ci'][1])}) "
                     f"| {f(r['accuracy'])} | {f(r['mia_auc'])} ({f(r['mia_ci'][0])}–{f(r['mia_ci'][1])}) "
                     f"| {f(r['train_loss'])} / {f(r['eval_loss'])} | {r['seconds_per_epoch']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("/tmp/train-options"))
    ap.add_argument("--rows", default="lora,full,dp8,dp1", help=f"comma-separated, of {', '.join(ROWS)}")
    ap.add_argument("--table", action="store_true", help="only print the table of the rows done so far")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.table:
        for name in [r.strip() for r in args.rows.split(",") if r.strip()]:
            t0 = time.perf_counter()
            row = audit_row(name, train_row(name, args.out), args.out)
            print(f"{name}: {json.dumps(row)} ({time.perf_counter() - t0:.0f} s)", flush=True)
    print(table(args.out))


if __name__ == "__main__":
    main()
