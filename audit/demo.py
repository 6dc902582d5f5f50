"""`audit demo`: fine-tune the packaged all-MiniLM-L6-v2 on the bundled German credit data and audit it."""

from __future__ import annotations

from pathlib import Path

from audit.resources import data_dir


def german_credit() -> tuple[Path, Path]:
    folder = data_dir() / "german_credit"
    return folder / "german_credit.csv", folder / "recipe.yaml"


def run_demo(out_root: Path, *, epochs: int = 3, policy: str = "fin", progress: bool = True,
             max_length: int = 128, batch_size: int = 16, learning_rate: float = 5e-5, seed: int = 0):
    from audit.cli import build_train_config
    from audit.runner import run_audit
    from audit.train import train

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
    return run_audit(model_dir, policy, out_dir=None, progress=progress,
                     command=["audit", "demo", "--out", str(out_root)], report_root=out_root / "reports")
