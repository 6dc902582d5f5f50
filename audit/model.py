"""ModelBundle: a model folder checked before anything is loaded, then loaded safely.

Safe means: weights from safetensors only (pickle files are refused, never opened), the safetensors header
validated before torch sees the file, `trust_remote_code` never set (a config that asks for remote code is
refused), and nothing fetched from a hub (`local_files_only`).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audit.data import sha256_file
from audit.errors import ModelError
from audit.manifest import MANIFEST_NAME, Manifest, load_manifest

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

    @property
    def name(self) -> str:
        return self.manifest.name

    def inputs(self) -> list[dict[str, Any]]:
        rows = []
        for name, digest in self.hashes.items():
            role = "weights" if name.endswith(".safetensors") else ("config" if name == "config.json" else
                                                                    "manifest" if name == MANIFEST_NAME else "tokenizer")
            p = self.path / name
            rows.append({"role": role, "path": str(p), "sha256": digest, "bytes": p.stat().st_size})
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
        try:
            model = AutoModelForSequenceClassification.from_pretrained(
                str(self.path), local_files_only=True, use_safetensors=True, trust_remote_code=False)
        except Exception as exc:
            raise ModelError(f"{self.path}: cannot load model: {_first_line(exc)}") from None
        model.eval()
        n_out = model.config.num_labels
        if n_out != len(self.manifest.labels):
            raise ModelError(f"{self.path}: the model has {n_out} outputs but {MANIFEST_NAME} lists "
                             f"{len(self.manifest.labels)} labels")
        self.model = model
        return self

    @property
    def num_parameters(self) -> int | None:
        return None if self.model is None else int(sum(p.numel() for p in self.model.parameters()))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def check_safetensors(path: Path) -> None:
    """Validate a safetensors file's header without loading it: size, JSON, offsets within the file."""
    size = path.stat().st_size
    try:
        with open(path, "rb") as fh:
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


def open_bundle(path: str | Path, manifest: Manifest | None = None, manifest_path: Path | None = None) -> ModelBundle:
    """Check a model folder (no torch import): files present, no pickle-only weights, no remote code,
    a valid safetensors header, a manifest; and hash what will be loaded."""
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
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelError(f"{config_path}: not valid JSON: {exc}") from None
    if not isinstance(config, dict):
        raise ModelError(f"{config_path}: not a JSON object")
    if "auto_map" in config:
        raise ModelError(f"{config_path}: the model asks to run its own code (auto_map); refused, "
                         "remote code is never trusted")
    weights = sorted(path.glob("*.safetensors"))
    if not weights:
        pickles = sorted(p.name for p in path.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
        if pickles:
            raise ModelError(f"{path}: weights only as pickle ({', '.join(pickles)}): refused, pickle files can run "
                             "code; convert them to safetensors")
        raise ModelError(f"{path}: no model.safetensors weights")
    for w in weights:
        check_safetensors(w)
    if manifest is None:
        mpath = manifest_path or (path / MANIFEST_NAME)
        if not mpath.exists():
            raise ModelError(f"{path}: no {MANIFEST_NAME}; train with 'audit train', or give --manifest FILE or "
                             "--label-column, --positive-label and --text-column/--template")
        manifest = load_manifest(mpath)
    hashes = {w.name: sha256_file(w) for w in weights}
    for name in ("config.json", MANIFEST_NAME, *TOKENIZER_FILES):
        if (path / name).exists():
            hashes[name] = sha256_file(path / name)
    return ModelBundle(path=path, manifest=manifest, config=config, weights=weights, hashes=hashes)
