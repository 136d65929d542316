"""The data set description (`data/datasets/*.yaml`), loaded once and typed."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

import yaml

from contract.paths import DEFAULT_DATASET_CONFIG, PROJECT_ROOT

FeatureKind = Literal["numeric", "bucketized", "categorical"]
FEATURE_KINDS: tuple[str, ...] = ("numeric", "bucketized", "categorical")

# Columns whose names start with this are bookkeeping added by ingest (which
# batch a row came from, which split it belongs to), never data.
RESERVED_PREFIX = "_"
BATCH_COLUMN = "_batch"


class DatasetConfigError(ValueError):
    """The data set description is malformed; the message says where."""


@dataclasses.dataclass(frozen=True)
class Feature:
    name: str
    kind: FeatureKind
    buckets: int = 10
    top_k: int = 100


@dataclasses.dataclass(frozen=True)
class Label:
    name: str
    expression: str


@dataclasses.dataclass(frozen=True)
class ValidationTolerances:
    unseen_category_tolerance: float = 0.05
    out_of_range_tolerance: float = 0.02
    presence_slack: float = 0.10


@dataclasses.dataclass(frozen=True)
class DatasetConfig:
    name: str
    model_name: str
    label: Label
    features: tuple[Feature, ...]
    split_key: tuple[str, ...]
    eval_percent: int
    slices: tuple[tuple[str, ...], ...]
    schema_path: Path
    validation: ValidationTolerances
    source: Path

    @property
    def feature_names(self) -> list[str]:
        return [feature.name for feature in self.features]


def resolve_config_path(config_path: str | Path) -> Path:
    """A relative path is relative to the project root, so the same parameter
    value works from any working directory and inside the pipeline image."""
    path = Path(config_path)
    return path if path.is_absolute() else PROJECT_ROOT / path


def _require(mapping: dict, key: str, where: str):
    if key not in mapping:
        raise DatasetConfigError(f"{where}: missing required key '{key}'")
    return mapping[key]


def load_dataset_config(config_path: str | Path = DEFAULT_DATASET_CONFIG) -> DatasetConfig:
    path = resolve_config_path(config_path)
    if not path.is_file():
        raise DatasetConfigError(f"data set config not found: {path}")
    raw = yaml.safe_load(path.read_text()) or {}
    where = str(path)

    raw_label = _require(raw, "label", where)
    label = Label(
        name=_require(raw_label, "name", f"{where}: label"),
        expression=_require(raw_label, "expression", f"{where}: label"),
    )
    features = []
    for name, spec in _require(raw, "features", where).items():
        spec = spec or {}
        kind = spec.get("kind")
        if kind not in FEATURE_KINDS:
            raise DatasetConfigError(
                f"{where}: feature '{name}' has kind {kind!r}; expected one of {', '.join(FEATURE_KINDS)}"
            )
        features.append(Feature(name=name, kind=kind, buckets=int(spec.get("buckets", 10)),
                                top_k=int(spec.get("top_k", 100))))
    if not features:
        raise DatasetConfigError(f"{where}: 'features' is empty")

    raw_split = _require(raw, "split", where)
    eval_percent = int(raw_split.get("eval_percent", 20))
    if not 0 < eval_percent < 100:
        raise DatasetConfigError(f"{where}: split.eval_percent is {eval_percent}; expected 1..99")
    split_key = tuple(_require(raw_split, "key", f"{where}: split"))
    if not split_key:
        raise DatasetConfigError(f"{where}: split.key is empty; expected at least one column")

    return DatasetConfig(
        name=_require(raw, "name", where),
        model_name=_require(raw, "model_name", where),
        label=label,
        features=tuple(features),
        split_key=split_key,
        eval_percent=eval_percent,
        slices=tuple(tuple(s) for s in raw.get("slices", ())),
        schema_path=path.parent / _require(raw, "schema", where),
        validation=ValidationTolerances(**raw.get("validation", {})),
        source=path,
    )
