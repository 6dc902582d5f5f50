"""LoRA adapters (peft) and differentially private training (opacus DP-SGD) for `audit train`.

LoRA: the base model is frozen; low-rank adapters on the attention projections and the classifier head
(peft's `modules_to_save`) are trained and saved as `adapter_model.safetensors` + `adapter_config.json`. A
later audit loads the recorded base (after checking its sha256) and puts the adapter on top, unmerged: the
model that is audited is the model that was trained.

DP-SGD: per-sample gradients clipped to `max_grad_norm`, Gaussian noise whose multiplier opacus calibrates so
that the planned steps at the sampling rate spend at most the target ε (at δ), batches drawn by Poisson
sampling (each row independently with probability q = batch size / rows), which the accountant's guarantee
assumes. Parameters opacus cannot give per-sample gradients for are frozen and named in the manifest.

peft and opacus are optional (`pip install 'audit[train]'`); both are imported only when asked for.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

from audit.errors import UsageError

INSTALL_HINT = "pip install 'audit[train]'"
ACCOUNTANTS = ("rdp", "prv")


def require(module: str, flag: str):
    """Import an optional training library, or say which extra installs it (exit 2)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UsageError(f"{flag} needs the package '{module}', which is not installed: {INSTALL_HINT}") from None


def check_lora(r: int, alpha: float, dropout: float, target_modules: list[str] | None) -> None:
    if not isinstance(r, int) or isinstance(r, bool) or r < 1:
        raise UsageError(f"--lora-r must be a positive integer (the adapters' rank), got {r}")
    if not 0 < alpha < float("inf"):
        raise UsageError(f"--lora-alpha must be a positive finite number, got {alpha:g}")
    if not 0 <= dropout < 1:
        raise UsageError(f"--lora-dropout must be in [0, 1), got {dropout:g}")
    if target_modules is not None and not [m for m in target_modules if m.strip()]:
        raise UsageError("--target-modules is empty; name the modules to adapt, e.g. query,value")


def check_dp(epsilon: float, delta: float, max_grad_norm: float, accountant: str) -> None:
    """What can be checked before the data is read (δ against the row count comes later)."""
    if not epsilon > 0 or epsilon != epsilon or epsilon == float("inf"):
        raise UsageError(f"--dp-epsilon must be a positive finite number, got {epsilon:g}")
    if not 0 < delta < 1:
        raise UsageError(f"--dp-delta must be in (0, 1), got {delta:g}")
    if not 0 < max_grad_norm < float("inf"):
        raise UsageError(f"--max-grad-norm must be a positive finite number, got {max_grad_norm:g}")
    if accountant not in ACCOUNTANTS:
        raise UsageError(f"--dp-accountant must be one of {', '.join(ACCOUNTANTS)}, got {accountant!r}")


def check_delta_for_rows(delta: float, rows: int) -> None:
    """δ is the chance that the guarantee fails outright; at δ >= 1/n a mechanism may publish one whole
    record and still claim (ε, δ)-DP, so δ must stay below 1/n (the training rows)."""
    if delta >= 1.0 / rows:
        raise UsageError(f"--dp-delta {delta:g} is not below 1/n = 1/{rows} = {1.0 / rows:.3g} (n = training rows): "
                         f"at that δ the guarantee allows leaking a whole record; use e.g. {_suggest(rows)}")


def _suggest(rows: int) -> str:
    d = 10 ** -len(str(rows))  # the next power of ten below 1/n
    return f"--dp-delta {d:g}"


# ---------------------------------------------------------------- LoRA


def untrained_modules(missing_keys: list[str]) -> list[str]:
    """Top-level module names whose weights the base checkpoint lacks (the new classifier head, and e.g. a
    pooler a sentence encoder was saved without): they are initialised at random on every load, so a frozen
    copy of them would differ between training and audit. They are trained and saved with the adapter."""
    names = []
    for key in missing_keys:
        parts = key.split(".")
        # "classifier.weight" -> classifier; "bert.pooler.dense.weight" -> pooler
        name = parts[1] if len(parts) > 2 and parts[0] in ("bert", "roberta", "distilbert", "model") else parts[0]
        if name not in names:
            names.append(name)
    return names


def add_lora(model, *, r: int, alpha: float, dropout: float, target_modules: list[str] | None,
             modules_to_save: list[str]) -> tuple[Any, dict[str, Any]]:
    """Wrap a sequence classifier with LoRA adapters; returns (peft model, what the manifest records)."""
    peft = require("peft", "--peft lora")
    if target_modules:
        names = [n for n, _ in model.named_modules()]
        linear = sorted({n.split(".")[-1] for n, mod in model.named_modules() if type(mod).__name__ == "Linear"})
        for t in target_modules:
            if not any(n == t or n.endswith(f".{t}") for n in names):
                raise UsageError(f"--target-modules: the base model has no module named {t!r} "
                                 f"(its linear layers: {', '.join(linear)})")
    config = peft.LoraConfig(task_type=peft.TaskType.SEQ_CLS, r=r, lora_alpha=alpha, lora_dropout=dropout,
                             target_modules=list(target_modules) if target_modules else None,
                             modules_to_save=list(modules_to_save) or None, bias="none")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # transformers 5 deprecations that peft triggers
            wrapped = peft.get_peft_model(model, config)
    except ValueError as exc:  # e.g. target modules not found in the base model
        raise UsageError(f"--peft lora: {str(exc).strip().splitlines()[0]}") from None
    trainable = sum(p.numel() for p in wrapped.parameters() if p.requires_grad)
    total = sum(p.numel() for p in wrapped.parameters())
    names = {n.split(".")[-1] for n, _ in model.named_modules()}
    saved = sorted(m for m in wrapped.peft_config["default"].modules_to_save or [] if m in names)
    targets = wrapped.peft_config["default"].target_modules
    info = {"method": "lora", "library": f"peft {peft.__version__}", "r": r, "alpha": alpha, "dropout": dropout,
            "target_modules": sorted(targets) if isinstance(targets, (set, list, tuple)) else targets,
            "modules_to_save": saved, "trainable_parameters": int(trainable), "total_parameters": int(total),
            "merged": False, "adapter_file": "adapter_model.safetensors"}
    return wrapped, info


# ---------------------------------------------------------------- DP-SGD


def freeze_for_dp(model) -> list[str]:
    """Freeze the trainable parameters opacus cannot give per-sample gradients for; return their names.

    - modules opacus has no per-sample gradient rule for (`ModuleValidator.validate` lists them);
    - position embeddings: BERT looks them up with position ids of shape (1, length), shared by the whole
      batch, so their per-sample gradients cannot be separated by row (opacus would fail on the shape).
    """
    import torch
    from opacus.validators import ModuleValidator

    frozen: list[str] = []
    model.train()  # opacus validates a model in training mode

    def freeze(prefix: str, module) -> None:
        for name, p in module.named_parameters(recurse=True):
            if p.requires_grad:
                p.requires_grad_(False)
                frozen.append(f"{prefix}.{name}" if prefix else name)

    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Embedding) and "position" in name.split(".")[-1]:
            freeze(name, module)
    bad = {type(e).__name__ for e in ModuleValidator.validate(model, strict=False)}
    if bad:
        for name, module in model.named_modules():
            if any(p.requires_grad for p in module.parameters(recurse=False)) and not _supported(module):
                freeze(name, module)
    return frozen


def _supported(module) -> bool:
    from opacus.grad_sample import GradSampleModule

    return type(module) in GradSampleModule.GRAD_SAMPLERS


def epsilon_for(noise_multiplier: float, sample_rate: float, steps: int, delta: float, accountant: str) -> float:
    """ε spent after `steps` Poisson-sampled steps at these settings, by opacus' accountant (an independent
    recomputation from the recorded settings; the tests compare it with the manifest)."""
    from opacus.accountants import create_accountant

    acc = create_accountant(accountant)
    acc.history = [(noise_multiplier, sample_rate, steps)]
    return float(acc.get_epsilon(delta=delta))


class DPTraining:
    """DP-SGD with opacus: `make_private_with_epsilon` with Poisson sampling over the training rows.

    `epoch()` yields (input_ids, attention_mask, labels) batches padded to the longest row; a Poisson batch may
    (rarely) be empty, and still takes its noisy step, as the accountant assumes. `finish()` returns what the
    manifest records, with the ε actually spent by the accountant after the steps taken."""

    def __init__(self, model, optimizer, ids: list[list[int]], labels, pad_id: int, cfg) -> None:
        import torch
        from opacus import PrivacyEngine
        from torch.utils.data import DataLoader, Dataset

        class Rows(Dataset):
            def __len__(self) -> int:
                return len(ids)

            def __getitem__(self, i: int):
                return torch.tensor(ids[i], dtype=torch.long), labels[i]

        def collate(batch):
            width = max((len(x) for x, _ in batch), default=1)
            input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for j, (x, _) in enumerate(batch):
                input_ids[j, : len(x)] = x
                mask[j, : len(x)] = 1
            target = torch.stack([t for _, t in batch]) if batch else torch.zeros((0,), dtype=torch.long)
            return input_ids, mask, target

        self.cfg = cfg
        self.rows = len(ids)
        model.train()
        loader = DataLoader(Rows(), batch_size=cfg.batch_size, collate_fn=collate, shuffle=False)
        generator = torch.Generator().manual_seed(cfg.seed)
        with warnings.catch_warnings():
            # opacus warns that its default RNG is not cryptographically secure (secure_mode); recorded below
            warnings.simplefilter("ignore")
            self.engine = PrivacyEngine(accountant=cfg.dp_accountant)
            self.model, self.optimizer, self.loader = self.engine.make_private_with_epsilon(
                module=model, optimizer=optimizer, data_loader=loader, target_epsilon=cfg.dp_epsilon,
                target_delta=cfg.dp_delta, epochs=cfg.epochs, max_grad_norm=cfg.max_grad_norm,
                poisson_sampling=True, noise_generator=generator)
        self.loader.collate_fn = _empty_safe(collate, self.loader.collate_fn)
        self.sample_rate = float(self.loader.sample_rate)
        self.steps_per_epoch = len(self.loader)
        self.steps = 0
        self.empty_batches = 0

    def epoch(self):
        with warnings.catch_warnings():
            # opacus' backward hooks fire on modules whose inputs need no gradient (the frozen embeddings)
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            yield from self._epoch()

    def _epoch(self):
        for input_ids, mask, target in self.loader:
            self.steps += 1
            if len(target) == 0:
                self.empty_batches += 1
            yield input_ids, mask, target

    def empty_step(self) -> None:
        """The step of an empty batch: no gradient, only the noise (the model cannot run on zero rows)."""
        import torch

        for p in self.optimizer.params:
            p.grad_sample = torch.zeros((0, *p.shape), dtype=p.dtype)
        self.optimizer.step()

    def finish(self, frozen: list[str]) -> dict[str, Any]:
        import opacus

        cfg = self.cfg
        noise = float(self.optimizer.noise_multiplier)
        with warnings.catch_warnings():
            # RDP: "optimal order is the largest alpha" means a tighter bound exists; the bound given still holds
            warnings.simplefilter("ignore", UserWarning)
            spent = float(self.engine.get_epsilon(cfg.dp_delta))
        if hasattr(self.model, "remove_hooks"):
            self.model.remove_hooks()
        return {
            "library": f"opacus {opacus.__version__}", "mechanism": "DP-SGD (Gaussian, per-sample clipping)",
            "epsilon": spent, "target_epsilon": cfg.dp_epsilon, "delta": cfg.dp_delta,
            "accountant": cfg.dp_accountant, "noise_multiplier": noise, "max_grad_norm": cfg.max_grad_norm,
            "clipping": "flat", "sample_rate": self.sample_rate, "sampling": "poisson",
            "expected_batch_size": cfg.batch_size, "steps": self.steps, "planned_steps": self.steps_per_epoch * cfg.epochs,
            "empty_batches": self.empty_batches, "training_rows": self.rows, "secure_rng": False,
            "frozen_for_dp": frozen,
            "note": "ε is opacus' accountant over the steps taken at this noise multiplier and sampling rate; "
                    "it covers the training rows only (the eval split and the base model's pre-training are "
                    "outside the guarantee); the noise RNG is not cryptographically secure (secure_mode off).",
        }


def _empty_safe(collate, wrapped):
    """opacus' empty-batch collate gives tensors shaped like the first row; make it our (ids, mask, labels)."""
    def fn(batch):
        if len(batch) == 0:
            return collate([])
        return wrapped(batch)
    return fn
