"""ModelBundle: a model folder checked before anything is loaded, then loaded safely.

Safe means: weights from safetensors only (pickle files are refused, never opened), the safetensors header
validated before torch sees the file, `trust_remote_code` never set (a config that asks for remote code is
refused), and nothing fetched from a hub (`local_files_only`).
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audit.data import sha256_file
from audit.errors import ModelError
from audit.manifest import MANIFEST_NAME, Manifest, load_manifest
from audit.safeio import check_regular, open_regular, read_regular

MAX_JSON_BYTES = 16 * 2**20  # config.json, adapter_config.json
MAX_TOKENIZER_BYTES = 512 * 2**20  # tokenizer.json of a large vocabulary is tens of MB

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json",
                   "merges.txt", "vocab.json", "sentencepiece.bpe.model", "spiece.model")


@dataclass
class ModelBundle:
    path: Path
    manifest: Manifest
    config: dict[str, Any]
    weights: list[Path]
    hashes: dict[str, str] = field(default_factory=dict)  # file name -> sha256
    model: Any = None
    tokenizer: Any = None
    base: Path | None = None  # an adapter folder's base model (its weights checked against the manifest)
    base_hashes: dict[str, str] = field(default_factory=dict)  # base weight file name -> sha256

    @property
    def is_adapter(self) -> bool:
        return self.base is not None

    @property
    def name(self) -> str:
        return self.manifest.name

    def inputs(self) -> list[dict[str, Any]]:
        rows = []
        for name, digest in self.hashes.items():
            role = ("adapter weights" if name == ADAPTER_WEIGHTS else "weights" if name.endswith(".safetensors")
                    else "config" if name in ("config.json", ADAPTER_CONFIG)
                    else "manifest" if name == MANIFEST_NAME else "tokenizer")
            p = self.path / name
            rows.append({"role": role, "path": str(p), "sha256": digest, "bytes": p.stat().st_size})
        for name, digest in self.base_hashes.items():
            p = self.base / name
            rows.append({"role": "base weights", "path": str(p), "sha256": digest, "bytes": p.stat().st_size})
        return rows

    def load(self) -> ModelBundle:
        """Load tokenizer and model (imports torch and transformers)."""
        import os

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        import transformers
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(self.path), local_files_only=True,
                                                           trust_remote_code=False)
        except Exception as exc:  # transformers raises many types for a broken tokenizer
            raise ModelError(f"{self.path}: cannot load tokenizer: {_first_line(exc)}") from None
        if self.is_adapter:
            model = self._load_adapter()
        elif (model := _fast_load(self.path, self.weights)) is not None:
            pass  # the same tensors as from_pretrained, without its work (audit.fastload); else from_pretrained
        else:
            try:
                model, info = AutoModelForSequenceClassification.from_pretrained(
                    str(self.path), local_files_only=True, use_safetensors=True, trust_remote_code=False,
                    output_loading_info=True)
            except Exception as exc:
                raise ModelError(f"{self.path}: cannot load model: {_first_line(exc)}") from None
            _refuse_partial(self.path, info)
        model.eval()
        n_out = model.config.num_labels
        if n_out != len(self.manifest.labels):
            raise ModelError(f"{self.path}: the model has {n_out} outputs but {MANIFEST_NAME} lists "
                             f"{len(self.manifest.labels)} labels")
        self.model = model
        return self

    def _load_adapter(self):
        """The recorded base (its weights' sha256 checked when the folder was opened) with the LoRA adapter on
        top, unmerged: the same modules and the same arithmetic as in training. The adapter's settings are
        read from adapter_config.json through an allow-list, its weights from safetensors only."""
        import warnings

        from transformers import AutoConfig, AutoModelForSequenceClassification

        try:
            import peft
            from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict
            from safetensors.torch import load_file
        except ImportError:
            raise ModelError(f"{self.path}: a LoRA adapter model needs the package 'peft': "
                             "pip install 'audit[train]'") from None
        lora = peft.LoraConfig(**adapter_settings(self.path))
        lora.inference_mode = True
        try:
            config = AutoConfig.from_pretrained(str(self.path), local_files_only=True, trust_remote_code=False)
            base, info = AutoModelForSequenceClassification.from_pretrained(
                str(self.base), config=config, local_files_only=True, use_safetensors=True, trust_remote_code=False,
                output_loading_info=True)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                model = peft.get_peft_model(base, lora)
            state = load_file(str(self.path / ADAPTER_WEIGHTS))
            result = set_peft_model_state_dict(model, state)
        except Exception as exc:
            raise ModelError(f"{self.path}: cannot load the adapter on its base {self.base}: {_first_line(exc)}") from None
        if getattr(result, "unexpected_keys", None):
            raise ModelError(f"{self.path}: {ADAPTER_WEIGHTS} holds tensors the adapter does not have "
                             f"({result.unexpected_keys[0]}, …)")
        missing = sorted(set(get_peft_model_state_dict(model)) - set(state))
        if missing:
            raise ModelError(f"{self.path}: {ADAPTER_WEIGHTS} lacks adapter weights ({missing[0]}, …)")
        # what the base lacks (a sentence encoder has no classifier) the adapter must carry (modules_to_save)
        _refuse_partial(self.base, {**info, "missing_keys": [k for k in info.get("missing_keys", [])
                                                             if f"base_model.model.{k}" not in state]},
                        f"and {ADAPTER_WEIGHTS} ")
        return model

    @property
    def num_parameters(self) -> int | None:
        return None if self.model is None else int(sum(p.numel() for p in self.model.parameters()))


def _fast_load(path: Path, weights: list[Path]):
    from audit.fastload import load_classifier

    return load_classifier(path, weights)


def _refuse_partial(path: Path, info: dict, also: str = "") -> None:
    """A weights file that lacks a tensor the architecture needs (or holds one it does not have) would be
    audited with randomly initialised weights, giving a verdict on a model that does not exist: refused."""
    for key, what in (("missing_keys", f"the weights {also}lack"), ("unexpected_keys", "the weights hold"),
                      ("mismatched_keys", "the weights have the wrong shape for")):
        names = sorted(str(k if isinstance(k, str) else k[0]) for k in info.get(key) or [])
        if names:
            shown = ", ".join(names[:3]) + (", …" if len(names) > 3 else "")
            kind = "tensor(s) the architecture needs" if key == "missing_keys" else (
                "tensor(s) the architecture does not have" if key == "unexpected_keys" else "tensor(s)")
            raise ModelError(f"{path}: {what} {len(names)} {kind} ({shown}); refusing to audit a model with "
                             "randomly initialised or ignored weights")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
# adapter_config.json keys that are read; any other key must hold its default (several peft options import
# modules by name or run initialisation code, which a folder from elsewhere must not be able to ask for)
ADAPTER_KEYS = ("task_type", "r", "lora_alpha", "lora_dropout", "target_modules", "modules_to_save", "bias",
                "fan_in_fan_out", "use_rslora", "layers_to_transform", "layers_pattern", "rank_pattern",
                "alpha_pattern", "exclude_modules")
ADAPTER_IGNORED = ("peft_type", "base_model_name_or_path", "revision", "inference_mode", "auto_mapping",
                   "peft_version", "init_lora_weights")


def adapter_settings(path: Path) -> dict[str, Any]:
    """The LoRA settings of an adapter folder, through an allow-list (no torch import)."""
    cpath = path / ADAPTER_CONFIG
    raw = read_regular(cpath, MAX_JSON_BYTES, ADAPTER_CONFIG, ModelError)
    try:
        data = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ModelError(f"{cpath}: not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ModelError(f"{cpath}: not a JSON object")
    if str(data.get("peft_type", "")).upper() != "LORA":
        raise ModelError(f"{cpath}: peft_type {data.get('peft_type')!r} is not supported; audit loads LoRA adapters")
    if data.get("auto_mapping"):
        raise ModelError(f"{cpath}: the adapter asks for custom classes (auto_mapping); refused")
    defaults = _lora_defaults()
    for key, value in data.items():
        if key in ADAPTER_KEYS or key in ADAPTER_IGNORED:
            continue
        if key in defaults and value != defaults[key] and value not in (None, False, {}, []):
            raise ModelError(f"{cpath}: '{key}' is set; audit loads plain LoRA adapters only")
    return {k: data[k] for k in ADAPTER_KEYS if k in data}


def _lora_defaults() -> dict[str, Any]:
    try:
        from peft import LoraConfig
    except ImportError:
        return {}
    import dataclasses

    return {f.name: (f.default if f.default is not dataclasses.MISSING else None)
            for f in dataclasses.fields(LoraConfig)}


def _open_adapter(path: Path, manifest: Manifest) -> tuple[Path, dict[str, str]]:
    """An adapter folder: safetensors weights only, and a base model whose weights hash as the manifest says."""
    if (path / "adapter_model.bin").exists():
        raise ModelError(f"{path}: adapter_model.bin is a pickle file, which can run code: refused; "
                         f"keep only {ADAPTER_WEIGHTS}")
    if not (path / ADAPTER_WEIGHTS).exists():
        raise ModelError(f"{path}: {ADAPTER_CONFIG} without {ADAPTER_WEIGHTS}")
    adapter_settings(path)
    peft = manifest.training.get("peft") or {}
    if peft.get("adapter_sha256") and sha256_file(path / ADAPTER_WEIGHTS) != peft["adapter_sha256"]:
        raise ModelError(f"{path / ADAPTER_WEIGHTS}: sha256 differs from the one {MANIFEST_NAME} recorded when the "
                         "adapter was trained; the adapter was changed or replaced")
    info = manifest.base_model
    if info is None or not info.path or not info.sha256:
        raise ModelError(f"{path}: a LoRA adapter needs its base model: {MANIFEST_NAME} must record base_model "
                         "with its path and sha256")
    recorded = peft.get("base_weights") or {}
    base = Path(info.path)
    if not base.is_dir():
        raise ModelError(f"{path}: the adapter's base model {base} (from {MANIFEST_NAME}) is not there")
    files = sorted(base.glob("*.safetensors"))
    if not files:
        raise ModelError(f"{base}: the adapter's base model has no safetensors weights")
    expected = dict(recorded) or {files[0].name: info.sha256}
    hashes = {}
    for name, digest in expected.items():
        f = base / name
        if not f.exists():
            raise ModelError(f"{base}: base weights {name} recorded in {MANIFEST_NAME} are missing")
        check_safetensors(f)
        hashes[name] = sha256_file(f)
        if hashes[name] != digest:
            raise ModelError(f"{f}: the base model's weights changed since the adapter was trained (sha256 "
                             f"{hashes[name][:12]}…, {MANIFEST_NAME} records {digest[:12]}…); refusing to "
                             "audit the adapter on a different base")
    if files[0].name in hashes and hashes[files[0].name] != info.sha256:
        raise ModelError(f"{files[0]}: sha256 differs from base_model.sha256 in {MANIFEST_NAME}")
    return base, hashes


def check_safetensors(path: Path) -> None:
    """Validate a safetensors file's header without loading it: a regular file, size, JSON, offsets within it."""
    size = check_regular(path, None, "safetensors weights", ModelError)
    try:
        with open_regular(path, "safetensors weights", ModelError) as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise ValueError("shorter than its 8-byte header length")
            (n,) = struct.unpack("<Q", head)
            if n > min(size - 8, 100_000_000):
                raise ValueError("header length points past the end of the file")
            header = json.loads(fh.read(n))
        if not isinstance(header, dict):
            raise ValueError("header is not a JSON object")
        end = 0
        for key, info in header.items():
            if key == "__metadata__":
                continue
            start, stop = info["data_offsets"]
            if not 0 <= start <= stop:
                raise ValueError(f"tensor {key} has invalid offsets")
            end = max(end, stop)
        if 8 + n + end > size:
            raise ValueError(f"file is truncated ({size} bytes, tensors need {8 + n + end})")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, struct.error) as exc:
        raise ModelError(f"{path}: corrupt safetensors file: {exc}") from None


_PLACEHOLDER = re.compile(r"LABEL_\d+")


def config_labels(config: dict[str, Any]) -> list[str] | None:
    """The label names of config.json's id2label in output order, or None when it has none, or only the
    placeholders transformers writes when nobody named them (LABEL_0, LABEL_1)."""
    id2label = config.get("id2label")
    if not isinstance(id2label, dict) or not id2label:
        return None
    try:
        by_index = {int(k): str(v) for k, v in id2label.items()}
    except (TypeError, ValueError):
        return None
    if sorted(by_index) != list(range(len(by_index))):
        return None
    names = [by_index[i] for i in range(len(by_index))]
    if all(_PLACEHOLDER.fullmatch(n) for n in names):
        return None
    return names


def check_labels(config: dict[str, Any], manifest: Manifest, config_path: Path) -> None:
    """Refuse labels that contradict config.json's id2label: a name that id2label puts at another output
    (compared without case) means the labels were given in the wrong order, and every score would be read
    backwards (an AUC of 0.1 for a model of 0.9). Labels that id2label does not name at all (other names for the
    same outputs) are left alone: there is nothing to compare them with."""
    names = config_labels(config)
    if names is None:
        return
    where = {n.strip().lower(): i for i, n in enumerate(names)}
    clash = [(i, label) for i, label in enumerate(manifest.labels)
             if label.strip().lower() in where and where[label.strip().lower()] != i]
    if clash:
        said = ", ".join(f"{i}={n}" for i, n in enumerate(names))
        raise ModelError(f"{config_path}: id2label names the model's outputs {said}, but the labels given in "
                         f"output order are {', '.join(manifest.labels)} ('{clash[0][1]}' is output "
                         f"{where[clash[0][1].strip().lower()]}, not {clash[0][0]}); give --labels (or the "
                         f"manifest's labels) in the model's output order")


def _refuse_remote_tokenizer(path: Path) -> None:
    """tokenizer_config.json can name its own classes (auto_map) too: refused before transformers reads it,
    with the same words as config.json's auto_map (transformers would refuse it later with a longer message)."""
    tpath = path / "tokenizer_config.json"
    if not tpath.exists():
        return
    try:
        data = json.loads(read_regular(tpath, MAX_JSON_BYTES, "tokenizer_config.json", ModelError).decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ModelError(f"{tpath}: not valid JSON: {exc}") from None
    if isinstance(data, dict) and "auto_map" in data:
        raise ModelError(f"{tpath}: the tokenizer asks to run its own code (auto_map); refused, "
                         "remote code is never trusted")


def check_folder(path: str | Path) -> tuple[dict[str, Any], list[Path]]:
    """The checks of a model folder that need no manifest (no torch import): a folder with config.json that asks
    for no remote code (config.json's or tokenizer_config.json's auto_map), and safetensors weights with a valid
    header (pickle-only weights refused). Returns config.json's content and the weight files."""
    path = Path(path)
    if not path.exists():
        hint = " (hub names are not fetched: give a local folder)" if "/" in str(path) and not str(path).startswith(("/", ".")) else ""
        raise ModelError(f"{path}: model folder not found{hint}")
    if not path.is_dir():
        raise ModelError(f"{path}: not a folder; a model is a save_pretrained folder")
    config_path = path / "config.json"
    if not config_path.exists():
        raise ModelError(f"{path}: no config.json; a model is a save_pretrained folder")
    try:
        config = json.loads(read_regular(config_path, MAX_JSON_BYTES, "config.json", ModelError).decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ModelError(f"{config_path}: not valid JSON: {exc}") from None
    if not isinstance(config, dict):
        raise ModelError(f"{config_path}: not a JSON object")
    if "auto_map" in config:
        raise ModelError(f"{config_path}: the model asks to run its own code (auto_map); refused, "
                         "remote code is never trusted")
    _refuse_remote_tokenizer(path)
    weights = sorted(path.glob("*.safetensors"))
    if not weights:
        pickles = sorted(p.name for p in path.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
        if pickles:
            raise ModelError(f"{path}: weights only as pickle ({', '.join(pickles)}): refused, pickle files can run "
                             "code; convert them to safetensors")
        raise ModelError(f"{path}: no model.safetensors weights")
    for w in weights:
        check_safetensors(w)
    return config, weights


def open_bundle(path: str | Path, manifest: Manifest | None = None, manifest_path: Path | None = None) -> ModelBundle:
    """Check a model folder (no torch import): files present, no pickle-only weights, no remote code,
    a valid safetensors header, a manifest; and hash what will be loaded."""
    path = Path(path)
    config, weights = check_folder(path)
    config_path = path / "config.json"
    if manifest is None:
        mpath = manifest_path or (path / MANIFEST_NAME)
        if not mpath.exists():
            raise ModelError(f"{path}: no {MANIFEST_NAME}; write one with 'audit init {path} --data FILE', train "
                             "with 'audit train', or give --manifest FILE or --labels, --label-column, "
                             "--positive-label and --text-column/--template")
        manifest = load_manifest(mpath)
    check_labels(config, manifest, config_path)
    base, base_hashes = (None, {})
    if (path / ADAPTER_CONFIG).exists():
        base, base_hashes = _open_adapter(path, manifest)
    hashes = {w.name: sha256_file(w) for w in weights}
    for name in ("config.json", ADAPTER_CONFIG, MANIFEST_NAME, *TOKENIZER_FILES):
        if (path / name).exists():
            # a tokenizer file that is a FIFO or a device would hang transformers' reader: refused first
            check_regular(path / name, MAX_TOKENIZER_BYTES, name, ModelError)
            hashes[name] = sha256_file(path / name)
    return ModelBundle(path=path, manifest=manifest, config=config, weights=weights, hashes=hashes, base=base,
                       base_hashes=base_hashes)
