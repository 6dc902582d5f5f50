"""audit-model.yaml: what a later audit needs to know about a model, written by `audit train`.

Labels (in the model's output order) and the positive (favourable) label, how text is made (a column, or a
jinja2 template over columns), the label column, protected attributes mapped to columns (with bins or a
value map), the data files with sha256, the split, the base model with its hash, hyperparameters and seed.
A model that `audit train` did not make is audited with a manifest the user writes, or with flags.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from audit.errors import ManifestError

MANIFEST_NAME = "audit-model.yaml"


class TextRecipe(BaseModel):
    model_config = ConfigDict(extra="forbid")

    column: str | None = None
    template: str | None = None

    @model_validator(mode="after")
    def _one(self) -> TextRecipe:
        if (self.column is None) == (self.template is None):
            raise ValueError("give exactly one of column or template")
        if self.template is not None:
            from audit.data import parse_template
            from audit.errors import DataError

            try:
                parse_template(self.template)  # syntax, loops and reserved names fail when the manifest loads
            except DataError as exc:
                raise ValueError(str(exc)) from None
        return self

    def describe(self) -> str:
        return f"column '{self.column}'" if self.column else "a template over columns"


class ProtectedAttribute(BaseModel):
    """A protected attribute read from `column`: numeric `bins` (edges; groups are [-inf, e1), [e1, e2) …,
    named by `labels` or as "<25" / ">=25"), a `map` from values to group names, or the raw values."""

    model_config = ConfigDict(extra="forbid")

    column: str
    bins: list[float] | None = None
    labels: list[str] | None = None
    map: dict[str, str] | None = None
    note: str = ""

    @model_validator(mode="after")
    def _shape(self) -> ProtectedAttribute:
        if self.bins is not None and self.map is not None:
            raise ValueError("give bins or map, not both")
        if self.bins is not None:
            if not all(math.isfinite(b) for b in self.bins):
                raise ValueError("bins must be finite numbers (no .nan or .inf)")
            if not self.bins or sorted(self.bins) != self.bins or len(set(self.bins)) != len(self.bins):
                raise ValueError("bins must be increasing edges")
            if self.labels is not None and len(self.labels) != len(self.bins) + 1:
                raise ValueError(f"{len(self.bins)} bin edges need {len(self.bins) + 1} labels")
        elif self.labels is not None:
            raise ValueError("labels name bins: give bins too")
        return self

    def group_names(self) -> list[str]:
        if self.bins is None:
            return sorted(set(self.map.values())) if self.map else []
        if self.labels:
            return list(self.labels)
        edges = [f"{b:g}" for b in self.bins]
        names = [f"<{edges[0]}"]
        names += [f"{lo}–<{hi}" for lo, hi in zip(edges, edges[1:])]
        names.append(f">={edges[-1]}")
        return names


class DataFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str
    sha256: str
    rows: int
    bytes: int = 0


class Split(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: Literal["stratified"] = "stratified"
    eval_fraction: float = Field(gt=0, lt=1)
    seed: int
    train_rows: int
    eval_rows: int
    train_index: list[int]
    eval_index: list[int]


class EvalData(BaseModel):
    """The eval data of a model that `audit train` did not make (written by `audit init`): a file whose every row
    is eval data (the model was not trained on it), with its sha256, so that `audit run` without --data audits
    exactly those rows."""

    model_config = ConfigDict(extra="forbid")

    source: DataFile
    rows: Literal["whole"] = "whole"
    note: str = ""


class TrainingData(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: DataFile
    split: Split
    description: str = ""


class BaseModelInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    path: str = ""
    sha256: str = ""


class Card(BaseModel):
    """The model card's words that only people can supply."""

    model_config = ConfigDict(extra="forbid")

    intended_use: str = ""
    users: str = ""
    out_of_scope: str = ""
    limitations: str = ""
    ethical_considerations: str = ""
    license: str = ""  # a Hub license id (apache-2.0, mit, other, ...); the model card says "other"/unknown without
    license_link: str = ""  # where a license that is not a common one is written
    language: list[str] = Field(default_factory=list)  # ISO 639-1 codes of the text the model reads ("en")

    @field_validator("language", mode="before")
    @classmethod
    def _languages(cls, value: Any) -> Any:
        return value.replace(",", " ").split() if isinstance(value, str) else value


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: str = "1"
    task: Literal["text-classification"] = "text-classification"
    name: str
    labels: list[str] = Field(min_length=2)
    positive_label: str
    label_column: str
    text: TextRecipe
    id_column: str | None = None
    max_length: int = Field(default=128, gt=0, le=8192)
    protected_attributes: dict[str, ProtectedAttribute] = Field(default_factory=dict)
    data: TrainingData | None = None
    eval_data: EvalData | None = None
    card: Card = Field(default_factory=Card)
    base_model: BaseModelInfo | None = None
    training: dict[str, Any] = Field(default_factory=dict)
    environment: dict[str, Any] = Field(default_factory=dict)
    created: str = ""

    @field_validator("labels")
    @classmethod
    def _distinct(cls, labels: list[str]) -> list[str]:
        if len(set(labels)) != len(labels):
            raise ValueError("labels must be distinct")
        return labels

    @field_validator("positive_label")
    @classmethod
    def _positive(cls, value: str, info) -> str:
        labels = info.data.get("labels")
        if labels is not None and value not in labels:
            raise ValueError(f"positive_label '{value}' is not one of the labels {labels}")
        return value

    @property
    def negative_label(self) -> str:
        """The other label of a binary model; for more classes, the words for every class but the positive one."""
        others = [label for label in self.labels if label != self.positive_label]
        return others[0] if len(others) == 1 else f"not {self.positive_label}"

    def to_yaml(self) -> str:
        import yaml

        data = self.model_dump(mode="json", exclude_none=True)
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)


def _load(path: Path, model: type[BaseModel], what: str):
    """Read YAML safely and validate it as `model`; errors name file:line and key, as for the policy."""
    from audit.policy import _first_error
    from audit.yamlsrc import load_yaml

    data, loc = load_yaml(path, ManifestError, what=what)
    if not isinstance(data, dict):
        raise ManifestError(f"{loc.where(())}: a {what} must be a mapping of keys")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ManifestError(_first_error(exc, loc)) from None


def load_manifest(path: Path) -> Manifest:
    return _load(path, Manifest, "model manifest")


class Recipe(BaseModel):
    """How to make a training set from a data file (`audit train --recipe FILE`): the manifest's data half."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    label_column: str
    positive_label: str | None = None
    text: TextRecipe
    id_column: str | None = None
    protected_attributes: dict[str, ProtectedAttribute] = Field(default_factory=dict)
    description: str = ""
    card: Card = Field(default_factory=Card)


def load_recipe(path: Path) -> Recipe:
    return _load(path, Recipe, "recipe")


def parse_protected(item: str) -> tuple[str, ProtectedAttribute]:
    """One `--protected` value: NAME=COLUMN or COLUMN (the attribute named as its column), then optionally
    `:EDGE,EDGE` (numeric bins: age:25,65 gives <25, 25–<65, >=65) or `:VALUE=GROUP,VALUE=GROUP` (a value map:
    sex_code:1=male,2=female). Raises ValueError with the reason."""
    head, colon, spec = item.partition(":")
    name, eq, column = head.partition("=")
    if not eq:
        name = column = head
    name, column = name.strip(), column.strip()
    if not name or not column or (colon and not spec.strip()):
        raise ValueError("expected NAME=COLUMN, COLUMN, COLUMN:EDGE,EDGE or COLUMN:VALUE=GROUP,VALUE=GROUP")
    bins = mapping = None
    if colon:
        parts = [p.strip() for p in spec.split(",")]
        if all("=" in p for p in parts):
            mapping = {}
            for p in parts:
                value, _, group = p.partition("=")
                if not value.strip() or not group.strip():
                    raise ValueError(f"'{p}' in the value map: expected VALUE=GROUP")
                mapping[value.strip()] = group.strip()
        elif any("=" in p for p in parts):
            raise ValueError("mixes bin edges and VALUE=GROUP pairs")
        else:
            try:
                bins = [float(p) for p in parts]
            except ValueError:
                raise ValueError(f"bin edges must be numbers, got '{spec}'") from None
    try:
        return name, ProtectedAttribute(column=column, bins=bins, map=mapping)
    except ValidationError as exc:
        raise ValueError(exc.errors()[0]["msg"].removeprefix("Value error, ")) from None


# The keys a flag may set on a manifest (`audit run --label-column …` beside an audit-model.yaml): each replaces
# only its own key; protected attributes are merged by name.
OVERRIDABLE = ("labels", "positive_label", "label_column", "text", "max_length", "protected_attributes", "name")


def override(manifest: Manifest, **keys: Any) -> Manifest:
    """A copy of `manifest` with the keys given (not None) replaced and validated again; `protected_attributes`
    are merged by name (a flag's attribute replaces the manifest's of that name, the others stay). Raises
    pydantic's ValidationError when the result is not a valid manifest (e.g. a positive label that is not one of
    the labels)."""
    unknown = set(keys) - set(OVERRIDABLE)
    if unknown:
        raise TypeError(f"not an overridable manifest key: {sorted(unknown)}")
    data = manifest.model_dump()
    for key, value in keys.items():
        if value is None:
            continue
        if key == "protected_attributes":
            data[key] = {**data[key], **{n: a.model_dump() if isinstance(a, BaseModel) else a
                                         for n, a in value.items()}}
        elif key == "text":
            data[key] = value.model_dump() if isinstance(value, BaseModel) else value
        else:
            data[key] = value
    return Manifest.model_validate(data)
