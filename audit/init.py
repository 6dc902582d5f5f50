"""`audit init`: write audit-model.yaml for a model folder that `audit train` did not make (bring your own model).

What a manifest needs and where it comes from:
- the labels in the model's output order: config.json's `id2label` (placeholder names LABEL_0, LABEL_1 name
  nothing: then `--labels`);
- the text and label columns: guessed from the data (`survey`) and confirmed by a person on a terminal, or given
  as flags (`--text-column`/`--template`, `--label-column`);
- the favourable (positive) label: never guessed. Which outcome is good for the person the model decides about
  cannot be read from a model or a data file ("fraud: yes" and "approved: yes" point opposite ways);
- protected attributes (`--protected NAME=COLUMN[:EDGES|:VALUE=GROUP,…]`);
- the eval data: `whole` (every row of the data file is eval data: the model never saw it), another FILE that is,
  or `none` (`audit run` then needs `--data`). It is recorded with its sha256 (`eval_data`).

Everything is checked against the data before the manifest is written: the columns exist (a missing one is
named with the closest column), every label value is one of the labels, protected columns parse, texts are not
empty, the labels agree with `id2label`. An existing manifest is never overwritten without `force`.
This module asks nothing: the CLI does the asking (audit/cli.py `init`), so scripts and tests call it with every
answer given.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audit.errors import UsageError
from audit.manifest import MANIFEST_NAME, DataFile, EvalData, Manifest, ProtectedAttribute, TextRecipe

LABEL_NAMES = ("label", "labels", "target", "class", "y", "outcome", "gold", "category")
EVAL_CHOICES = "whole|FILE|none"


@dataclass
class Survey:
    """What a model folder and a data file say before anyone is asked: the labels from config.json (or None),
    the data's columns, and guesses of the text and label columns with the reason for each (None: no guess)."""

    model_dir: Path
    data_path: Path
    frame: Any
    config_labels: list[str] | None
    text_column: str | None = None
    text_why: str = ""
    label_column: str | None = None
    label_why: str = ""
    label_values: list[str] = field(default_factory=list)  # distinct values of the guessed label column

    @property
    def columns(self) -> list[str]:
        return [str(c) for c in self.frame.columns]


def survey(model_dir: str | Path, data_path: str | Path, labels: list[str] | None = None) -> Survey:
    """Check the folder (no manifest needed, no torch), read the data, and guess the text and label columns."""
    from audit.data import looks_like_text, read_table
    from audit.model import check_folder, config_labels

    model_dir, data_path = Path(model_dir), Path(data_path)
    config, _ = check_folder(model_dir)
    if not data_path.exists():
        raise UsageError(f"{data_path}: data file not found")
    frame = read_table(data_path)
    known = labels or config_labels(config)
    s = Survey(model_dir, data_path, frame, config_labels(config))
    texty = [c for c in s.columns if looks_like_text(frame[c].tolist())]
    if texty:
        lengths = {c: frame[c].dropna().astype(str).str.len().mean() for c in texty}
        s.text_column = max(texty, key=lambda c: (lengths[c], -s.columns.index(c)))
        s.text_why = "the column of longest free text" if len(texty) > 1 else "the one column of free text"
    s.label_column, s.label_why = _guess_label(frame, s.columns, known, exclude=set(texty))
    if s.label_column is not None:
        s.label_values = sorted(set(frame[s.label_column].dropna().astype(str).str.strip()))
    return s


def _guess_label(frame, columns: list[str], labels: list[str] | None, exclude: set[str]) -> tuple[str | None, str]:
    """A column whose values are all labels (when the labels are known), preferring a conventional name; else a
    column with a conventional label name and few values."""
    named = [c for c in columns if c.strip().lower() in LABEL_NAMES and c not in exclude]
    if labels:
        wanted = {x.strip() for x in labels}
        fits = [c for c in columns if c not in exclude and
                (vals := set(frame[c].dropna().astype(str).str.strip())) and vals <= wanted and len(vals) >= 2]
        if fits:
            best = sorted(fits, key=lambda c: (c not in named, columns.index(c)))[0]
            return best, "its values are the model's labels"
        return None, ""
    few = [c for c in named if frame[c].nunique(dropna=True) <= 20]
    if few:
        return few[0], "its name says so"
    return None, ""


def eval_data(spec: str, data_path: Path, model_dir: Path) -> EvalData | None:
    """`--eval-split whole|FILE|none` as the manifest's eval_data (None for none)."""
    from audit.data import read_table, sha256_file

    spec = str(spec).strip()
    if spec.lower() == "none":
        return None
    if spec.lower() == "whole":
        path, note = data_path, "every row of the data file given to 'audit init' is eval data"
    else:
        path, note = Path(spec), "an eval file named to 'audit init'"
        if not path.exists():
            raise UsageError(f"--eval-split: {path}: eval data file not found (give whole, none or a file)")
    rows = len(read_table(path))
    return EvalData(source=DataFile(path=str(path.resolve()), sha256=sha256_file(path), rows=rows,
                                    bytes=path.stat().st_size), note=note)


def build_manifest(model_dir: str | Path, data_path: str | Path, *, labels: list[str] | None,
                   positive_label: str | None, label_column: str | None, text_column: str | None = None,
                   template: str | None = None, protected: dict[str, ProtectedAttribute] | None = None,
                   eval_split: str | None = None, id_column: str | None = None, name: str | None = None,
                   max_length: int = 128) -> Manifest:
    """The manifest from every answer, checked against config.json and the data (one UsageError/DataError line
    naming the flag, column or rows on any problem)."""
    from pydantic import ValidationError

    from audit.data import group_series, label_indices, make_texts, read_table, require_columns
    from audit.model import check_folder, check_labels, config_labels

    model_dir, data_path = Path(model_dir), Path(data_path)
    config, _ = check_folder(model_dir)
    labels = labels or config_labels(config)
    if not labels:
        raise UsageError(f"{model_dir / 'config.json'}: id2label names no labels (only LABEL_0, LABEL_1, … or none): "
                         "give --labels in the model's output order")
    if not label_column:
        raise UsageError("give --label-column (the column that holds the true label)")
    if text_column is None and template is None:
        raise UsageError("give --text-column or --template (where the model's text comes from)")
    if text_column is not None and template is not None:
        raise UsageError("give one of --text-column or --template")
    if not positive_label:
        raise UsageError(f"which label is favourable cannot be read from the model or the data: give "
                         f"--positive-label (one of: {', '.join(labels)})")
    if eval_split is None:
        raise UsageError(f"give --eval-split {EVAL_CHOICES}: whether the model never saw {data_path} (whole), which "
                         "file holds its eval rows, or none (then 'audit run' needs --data)")
    try:
        manifest = Manifest(name=name or model_dir.resolve().name, labels=labels, positive_label=positive_label,
                            label_column=label_column, text=TextRecipe(column=text_column, template=template),
                            id_column=id_column, max_length=max_length, protected_attributes=protected or {},
                            eval_data=eval_data(eval_split, data_path, model_dir))
    except ValidationError as exc:
        from audit.api import _flag_error

        raise UsageError(_flag_error(exc)) from None
    n_out = config.get("num_labels") or len(config.get("id2label") or {}) or None
    if n_out is not None and int(n_out) != len(labels):
        raise UsageError(f"--labels: the model has {n_out} outputs (config.json), {len(labels)} labels given")
    check_labels(config, manifest, model_dir / "config.json")
    frame = read_table(data_path)
    if id_column:
        require_columns(frame, {id_column: "id"}, data_path)
    make_texts(frame, manifest.text, data_path)
    label_indices(frame, label_column, labels, data_path)
    for attr_name, attr in manifest.protected_attributes.items():
        group_series(frame, attr_name, attr, data_path)
    return manifest


def write_manifest(model_dir: str | Path, manifest: Manifest, *, force: bool = False) -> Path:
    """Write MODEL_DIR/audit-model.yaml atomically; an existing one is kept unless `force`."""
    target = Path(model_dir) / MANIFEST_NAME
    if os.path.lexists(target) and not force:
        raise UsageError(f"{target}: already exists; give --force to overwrite it")
    text = ("# Written by 'audit init' for a model that 'audit train' did not make; edit it freely "
            "('audit run' validates it).\n" + manifest.to_yaml())
    fd, tmp = tempfile.mkstemp(prefix=f".{MANIFEST_NAME}.", dir=str(target.parent))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return target
