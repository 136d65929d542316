"""The raw-input contract shared by transform, training, evaluation and serving.

Numeric and bucketized features are float32; categorical ones are int64 or
string, as the schema says. Missing values have one sentinel per dtype, used in
training and written into the exported model's `input_spec.json`, so that
serving maps JSON null to exactly what the model was trained with.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
from tensorflow_metadata.proto.v0 import schema_pb2

from mlops.dataset import DatasetConfig

INPUT_SPEC_FILE = "input_spec.json"
PROBABILITY_OUTPUT = "probability"
MISSING_VALUES: dict[str, object] = {"float32": float("nan"), "int64": -1, "string": ""}
_NUMPY_DTYPES = {"float32": np.float32, "int64": np.int64, "string": object}


@dataclasses.dataclass(frozen=True)
class RawFeature:
    name: str
    dtype: str  # float32 | int64 | string


def raw_features(config: DatasetConfig, schema: schema_pb2.Schema) -> list[RawFeature]:
    types = {feature.name: feature.type for feature in schema.feature}
    features = []
    for feature in config.features:
        if feature.name not in types:
            raise ValueError(f"feature {feature.name!r} of {config.source} is not in the schema")
        if feature.kind in ("numeric", "bucketized"):
            dtype = "float32"
        else:
            dtype = "int64" if types[feature.name] == schema_pb2.INT else "string"
        features.append(RawFeature(feature.name, dtype))
    return features


def transformed_name(name: str) -> str:
    return f"{name}_xf"


def to_model_inputs(frame: pd.DataFrame, features: list[RawFeature]) -> dict[str, np.ndarray]:
    """Columns as the model takes them: typed arrays, missing values as sentinels."""
    inputs = {}
    for feature in features:
        column = frame[feature.name]
        if feature.dtype == "string":
            values = column.astype(object).where(column.notna(), "").astype(str).to_numpy(dtype=object)
        else:
            filled = pd.to_numeric(column, errors="raise").astype("float64").fillna(MISSING_VALUES[feature.dtype])
            values = filled.to_numpy().astype(_NUMPY_DTYPES[feature.dtype])
        inputs[feature.name] = values
    return inputs


def write_input_spec(features: list[RawFeature], label: str, model_dir: str | Path) -> None:
    spec = {"features": {feature.name: {"dtype": feature.dtype} for feature in features},
            "outputs": [PROBABILITY_OUTPUT], "label": label,
            # JSON has no NaN: the float sentinel is written as the string "NaN".
            "missing_values": {dtype: "NaN" if value != value else value for dtype, value in MISSING_VALUES.items()}}
    (Path(model_dir) / INPUT_SPEC_FILE).write_text(json.dumps(spec, indent=1))


def read_input_spec(model_dir: str | Path) -> list[RawFeature]:
    spec = json.loads((Path(model_dir) / INPUT_SPEC_FILE).read_text())
    return [RawFeature(name, entry["dtype"]) for name, entry in spec["features"].items()]
