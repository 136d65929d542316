"""The data set description (`data/datasets/*.yaml`), loaded once and typed.

A config is read by URI: a path relative to the project root (the shipped
configs, which the pipeline image holds), an absolute path, `gs://` or the
`/gcs/` mount. Its schema is resolved relative to the config, so a new data
set on Vertex is an upload of two files and a parameter, not an image rebuild.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal

import yaml

from contract.paths import DEFAULT_DATASET_CONFIG, PROJECT_ROOT
from storage import uri as storage_uri

FeatureKind = Literal["numeric", "bucketized", "categorical"]
FEATURE_KINDS: tuple[str, ...] = ("numeric", "bucketized", "categorical")
# Cells that common CSV writers use for "no value", besides an empty field.
DEFAULT_MISSING_VALUES: tuple[str, ...] = ("", "NA", "N/A", "NaN", "nan", "null", "NULL", "None")
# The overall metrics a gate may put a floor on (names as the evaluation reports them).
GATE_METRICS: tuple[str, ...] = ("auc", "accuracy", "precision", "recall", "calibration")

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
class Gate:
    """What a model must show, besides the AUC floor and change threshold (pipeline parameters)."""

    # Fewer labelled eval examples than this and no metric is trusted: the model is refused.
    min_eval_examples: int = 200
    # Optional floors on other overall metrics, e.g. {"recall": 0.2}.
    metric_floors: dict[str, float] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class DatasetConfig:
    name: str
    model_name: str
    label: Label
    features: tuple[Feature, ...]
    split_key: tuple[str, ...]
    eval_percent: int
    slices: tuple[tuple[str, ...], ...]
    schema_uri: str  # a local path or gs:// URI, resolved relative to the config
    validation: ValidationTolerances
    source: str  # where the config was read from
    missing_values: tuple[str, ...] = DEFAULT_MISSING_VALUES
    gate: Gate = dataclasses.field(default_factory=Gate)
    # Pipeline parameter defaults for this data set (a run's own values override them).
    parameters: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def feature_names(self) -> list[str]:
        return [feature.name for feature in self.features]


def resolve_config_location(location: str | Path) -> str:
    """A relative path is relative to the project root, so the same parameter
    value works from any working directory and inside the pipeline image."""
    try:
        text = storage_uri.canonical(storage_uri.checked(location))
    except ValueError as error:
        raise DatasetConfigError(f"dataset_config: {error} (a path relative to the project root, an absolute "
                                 "path or gs://BUCKET/path.yaml)") from None
    if storage_uri.is_gcs(text) or Path(text).is_absolute():
        return text
    return str(PROJECT_ROOT / text)


def _schema_location(config_location: str, name: object, where: str) -> str:
    """The schema file named in the config, relative to the config (gs:// or local)."""
    if not isinstance(name, str) or not name.strip():
        raise DatasetConfigError(f"{where}: schema is {name!r}; expected a file name relative to this config "
                                 "(or a gs:// URI)")
    try:
        return storage_uri.beside(config_location, name)
    except ValueError as error:
        raise DatasetConfigError(f"{where}: schema {name!r}: {error}") from None


def _require(mapping: dict, key: str, where: str):
    if not isinstance(mapping, dict) or key not in mapping:
        raise DatasetConfigError(f"{where}: missing required key '{key}'")
    return mapping[key]


def _gate(raw: Any, where: str) -> Gate:
    if raw is None:
        return Gate()
    if not isinstance(raw, dict):
        raise DatasetConfigError(f"{where}: gate must be a mapping with min_eval_examples and metric_floors")
    unknown = set(raw) - {"min_eval_examples", "metric_floors"}
    if unknown:
        raise DatasetConfigError(f"{where}: gate has unknown key(s) {sorted(unknown)}; "
                                 "expected min_eval_examples, metric_floors")
    minimum = raw.get("min_eval_examples", Gate.min_eval_examples)
    if isinstance(minimum, bool) or not isinstance(minimum, int) or minimum < 1:
        raise DatasetConfigError(f"{where}: gate.min_eval_examples is {minimum!r}; expected a whole number >= 1")
    floors = raw.get("metric_floors") or {}
    if not isinstance(floors, dict):
        raise DatasetConfigError(f"{where}: gate.metric_floors must map a metric to its floor, got {floors!r}")
    for metric, floor in floors.items():
        if metric not in GATE_METRICS:
            raise DatasetConfigError(f"{where}: gate.metric_floors has {metric!r}; expected one of "
                                     f"{', '.join(GATE_METRICS)}")
        if isinstance(floor, bool) or not isinstance(floor, int | float):
            raise DatasetConfigError(f"{where}: gate.metric_floors.{metric} is {floor!r}; expected a number")
    return Gate(min_eval_examples=minimum, metric_floors={k: float(v) for k, v in floors.items()})


def _missing_values(raw: Any, where: str) -> tuple[str, ...]:
    if raw is None:
        return DEFAULT_MISSING_VALUES
    if not isinstance(raw, list) or not all(isinstance(value, str) for value in raw):
        raise DatasetConfigError(f"{where}: missing_values must be a list of strings such as ['', 'NA'], got {raw!r}")
    # An empty field always means missing: a CSV cannot say anything else with it.
    return tuple(dict.fromkeys(["", *raw]))


def load_dataset_config(config_location: str | Path = DEFAULT_DATASET_CONFIG) -> DatasetConfig:
    location = resolve_config_location(config_location)
    try:
        text = storage_uri.read_text(location)
    except FileNotFoundError:
        raise DatasetConfigError(f"data set config not found: {location}") from None
    except IsADirectoryError:
        raise DatasetConfigError(f"data set config {location} is a folder; expected a YAML file") from None
    except PermissionError as error:
        raise DatasetConfigError(f"data set config: {error}") from None
    except UnicodeDecodeError as error:
        raise DatasetConfigError(f"data set config {location} is not UTF-8 text: {error}") from None
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        raise DatasetConfigError(f"data set config {location} is not valid YAML: {error}") from None
    where = location
    if not isinstance(raw, dict):
        raise DatasetConfigError(f"{where}: expected a mapping of settings, got {type(raw).__name__}")

    raw_label = _require(raw, "label", where)
    label = Label(
        name=_require(raw_label, "name", f"{where}: label"),
        expression=_require(raw_label, "expression", f"{where}: label"),
    )
    features = []
    raw_features = _require(raw, "features", where)
    if not isinstance(raw_features, dict):
        raise DatasetConfigError(f"{where}: 'features' must map each feature name to {{kind: ...}}")
    for name, spec in raw_features.items():
        spec = spec or {}
        kind = spec.get("kind") if isinstance(spec, dict) else None
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

    model_name = _require(raw, "model_name", where)
    if not isinstance(model_name, str) or not model_name:
        raise DatasetConfigError(f"{where}: model_name is {model_name!r}; expected the registry name of the model "
                                 "this data set trains, such as chicago-taxi-big-tipper")

    parameters = raw.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise DatasetConfigError(f"{where}: parameters must map pipeline parameter names to values")

    return DatasetConfig(
        name=_require(raw, "name", where),
        model_name=model_name,
        label=label,
        features=tuple(features),
        split_key=split_key,
        eval_percent=eval_percent,
        slices=tuple(tuple(s) for s in raw.get("slices", ())),
        schema_uri=_schema_location(location, _require(raw, "schema", where), where),
        validation=ValidationTolerances(**raw.get("validation", {})),
        source=location,
        missing_values=_missing_values(raw.get("missing_values"), where),
        gate=_gate(raw.get("gate"), where),
        parameters=dict(parameters),
    )
