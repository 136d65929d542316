"""The trainer's side of the raw-input contract (contract.model_inputs).

Which dtype each feature takes follows from the data set config and the
reviewed schema; frames are turned into the model's typed input arrays with
the contract's missing-value sentinels.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from tensorflow_metadata.proto.v0 import schema_pb2

from contract.dataset import DatasetConfig
from contract.model_inputs import MISSING_VALUES, RawFeature

_NUMPY_DTYPES = {"float32": np.float32, "int64": np.int64, "string": object}


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


def to_model_inputs(frame: pd.DataFrame, features: list[RawFeature],
                    missing_values: Mapping[str, Any] = MISSING_VALUES) -> dict[str, np.ndarray]:
    """Columns as the model takes them: typed arrays, missing values as the contract's sentinels."""
    inputs = {}
    for feature in features:
        column = frame[feature.name]
        if feature.dtype == "string":
            missing = missing_values["string"]
            values = column.astype(object).where(column.notna(), missing).astype(str).to_numpy(dtype=object)
        else:
            filled = pd.to_numeric(column, errors="raise").astype("float64").fillna(missing_values[feature.dtype])
            values = filled.to_numpy().astype(_NUMPY_DTYPES[feature.dtype])
        inputs[feature.name] = values
    return inputs
