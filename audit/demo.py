"""`audit demo`: fine-tune the packaged all-MiniLM-L6-v2 on the bundled German credit data and audit it."""

from __future__ import annotations

from pathlib import Path

from audit.resources import data_dir


def german_credit() -> tuple[Path, Path]:
    folder = data_dir() / "german_credit"
    return folder / "german_credit.csv", folder / "recipe.yaml"


CURRENT = "current-shifted-cohort.csv"
PURPOSE_WEIGHTS = {"car (new)": 4.0, "business": 3.0, "car (used)": 2.0, "radio/television": 0.5}
AMOUNT_FACTOR = 1.5
DURATION_ADDED = 6  # months


def shifted_cohort(csv: Path, eval_index: list[int], seed: int = 0, rows: int = 200):
    """A drifted 'current' cohort for the demo, and one sentence on how it was made.

    `rows` of the held-out applicants (the model never fitted them), drawn without replacement with the loan
    purposes re-weighted (PURPOSE_WEIGHTS), every credit amount raised by AMOUNT_FACTOR and every duration by
    DURATION_ADDED months; labels as recorded."""
    import numpy as np

    from audit.data import read_table

    frame = read_table(csv).iloc[list(eval_index)]
    rng = np.random.default_rng(seed)
    weights = frame["purpose"].map(PURPOSE_WEIGHTS).fillna(1.0).to_numpy()
    rows = min(rows, len(frame))
    pick = np.sort(rng.choice(len(frame), size=rows, replace=False, p=weights / weights.sum()))
    cohort = frame.iloc[pick].copy()
    amounts = cohort["credit_amount"].astype(float) * AMOUNT_FACTOR
    cohort["credit_amount"] = amounts.round().astype(int).astype(str)
    cohort["duration_in_month"] = (cohort["duration_in_month"].astype(int) + DURATION_ADDED).astype(str)
    shown = ", ".join(f"{k} ×{v:g}" for k, v in PURPOSE_WEIGHTS.items())
    about = (f"The current set of the demo is synthetic: {rows} of the {len(frame)} held-out applicants, drawn "
             f"without replacement (seed {seed}) with loan purposes re-weighted ({shown}), every credit amount "
             f"raised by {AMOUNT_FACTOR - 1:.0%} and every duration by {DURATION_ADDED} months; labels as recorded. "
             "It stands in for a later cohort whose loans are larger, longer and more often for cars and business.")
    return cohort.reset_index(drop=True), about


def run_demo(out_root: Path, *, epochs: int = 3, policy: str = "fin", progress: bool = True,
             max_length: int = 128, batch_size: int = 16, learning_rate: float = 5e-5, seed: int = 0):
    from audit.runner import run_audit
    from audit.train import train
    from audit.trainsetup import build_train_config

    csv, recipe = german_credit()
    out_root = Path(out_root)
    model_dir = out_root / "model"
    if not (model_dir / "audit-model.yaml").exists():
        cfg = build_train_config(recipe, None, None, None, None, None, (), None, None)
        cfg.epochs, cfg.max_length, cfg.batch_size, cfg.learning_rate, cfg.seed = (
            epochs, max_length, batch_size, learning_rate, seed)
        print(f"training {model_dir} on {csv.name} ({epochs} epochs)…", flush=True)
        train(csv, model_dir, cfg, progress=progress)
    else:
        print(f"using the demo model already trained in {model_dir}", flush=True)
    from audit.manifest import load_manifest

    split = load_manifest(model_dir / "audit-model.yaml").data.split
    cohort, about = shifted_cohort(csv, split.eval_index, seed=seed)
    current = out_root / CURRENT
    cohort.to_csv(current, index=False)
    print(f"current set for the drift checks: {current}. {about}", flush=True)
    return run_audit(model_dir, policy, out_dir=None, progress=progress, current_path=current,
                     command=["audit", "demo", "--out", str(out_root)], report_root=out_root / "reports",
                     notes=[about])
