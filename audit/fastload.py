"""Load a classifier's weights without the work `from_pretrained` does for nothing here.

`from_pretrained` initialises every weight at random and then overwrites it, and walks a general loading machinery
(sharding, device maps, dtype conversion, hub look-ups, progress bars). For a model folder that audit.model has
already checked (safetensors only, headers validated, hashed), this builds the architecture from config.json with
its parameters on the meta device (no memory, no random initialisation; buffers such as BERT's position ids are
built as usual), then assigns the tensors of the safetensors files directly (`safetensors.torch.load_file`).

Any doubt falls back to `from_pretrained` (returns None), so that its own checks run and audit.model refuses what it
refuses: a tensor the architecture needs and the files lack, one the files hold that the architecture does not
have, a shape that differs, a dtype other than the architecture's (from_pretrained's dtype rules then apply), a
parameter left on the meta device. The result is the same model: the same tensors, bit for bit, and the same
outputs (tests/test_startup.py compares with from_pretrained).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def _parameters_on_meta() -> Iterator[None]:
    """While a module is built: every parameter registered goes to the meta device (its random initialisation is
    then a no-op on an empty tensor); buffers are built on the CPU as usual."""
    import torch

    original = torch.nn.Module.register_parameter

    def register(module, name, param):
        original(module, name, param)
        if param is not None and param.device.type != "meta":
            module._parameters[name] = torch.nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)

    torch.nn.Module.register_parameter = register
    try:
        yield
    finally:
        torch.nn.Module.register_parameter = original


def load_classifier(path: Path, weights: Sequence[Path]) -> Any | None:
    """The sequence classifier of a checked model folder with its weights assigned, or None: load it with
    from_pretrained instead (see the module docstring). Raises nothing for a folder it cannot load fast."""
    try:
        return _load(Path(path), [Path(w) for w in weights])
    except Exception:  # from_pretrained then says what is wrong, in audit.model's words
        return None


def _load(path: Path, weights: list[Path]):
    if not weights or any(w.suffix != ".safetensors" for w in weights):
        return None
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForSequenceClassification

    config = AutoConfig.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)
    stated = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    if stated is not None and str(stated).replace("torch.", "") != "float32":
        return None  # from_pretrained's dtype rules decide what a model saved in another dtype loads as
    with _parameters_on_meta():
        model = AutoModelForSequenceClassification.from_config(config, trust_remote_code=False)
    state: dict[str, Any] = {}
    for w in weights:
        part = load_file(str(w))
        if set(part) & set(state):
            return None
        state.update(part)
    expected = model.state_dict(keep_vars=True)
    if set(state) != set(expected):  # renamed, missing, tied or extra tensors: from_pretrained's rules apply
        return None
    for name, tensor in state.items():
        have = expected[name]
        if tuple(tensor.shape) != tuple(have.shape) or tensor.dtype != have.dtype:
            return None
    model.load_state_dict(state, strict=True, assign=True)
    if any(p.device.type == "meta" for p in model.parameters()) or any(
            b.device.type == "meta" for b in model.buffers()):
        return None
    return model
