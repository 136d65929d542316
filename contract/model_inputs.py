"""The exported model's input contract, `input_spec.json`: written by the trainer, read by everyone else.

Numeric and bucketized features are float32; categorical ones are int64 or
string, as the schema says. A missing value has one sentinel per dtype. The
trainer fills missing values with them and writes them into the spec; serving,
evaluation and batch prediction read them from the spec of the model they run,
so JSON `null` becomes exactly what that model was trained with.

Standard library only: the serving image ships this module.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from storage import uri as storage_uri

INPUT_SPEC_FILE = "input_spec.json"
PROBABILITY_OUTPUT = "probability"
# A key an instance may carry so that a label arriving later (the canary's feedback table) finds the logged
# request and its prediction; not a feature: serving ignores keys that are not features.
INSTANCE_ID_KEY = "instance_id"
DTYPES = ("float32", "int64", "string")
# The one table of missing-value sentinels.
MISSING_VALUES: dict[str, Any] = {"float32": math.nan, "int64": -1, "string": ""}


@dataclass(frozen=True)
class RawFeature:
    name: str
    dtype: str  # one of DTYPES


def _sentinel_to_json(value: Any) -> Any:
    return "NaN" if isinstance(value, float) and math.isnan(value) else value  # JSON has no NaN


def _sentinel_from_json(dtype: str, value: Any, source: str) -> Any:
    if dtype == "float32":
        if value == "NaN" or isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif dtype == "int64":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(value, str):
        return value
    raise ValueError(f"{source}: missing value {value!r} for dtype {dtype} does not fit that dtype")


@dataclass(frozen=True)
class InputSpec:
    """Raw feature dtypes, output names, the label, and the missing-value sentinels."""

    features: dict[str, str]
    outputs: tuple[str, ...] = (PROBABILITY_OUTPUT,)
    label: str | None = None
    missing_values: dict[str, Any] = field(default_factory=lambda: dict(MISSING_VALUES))

    @property
    def raw_features(self) -> list[RawFeature]:
        return [RawFeature(name, dtype) for name, dtype in self.features.items()]

    @classmethod
    def from_dict(cls, data: Any, source: str = INPUT_SPEC_FILE) -> InputSpec:
        if not isinstance(data, dict) or not isinstance(data.get("features"), dict) or not data["features"]:
            raise ValueError(f'{source}: expected {{"features": {{name: {{"dtype": ...}}}}, '
                             '"outputs": [...]}')
        features: dict[str, str] = {}
        for name, description in data["features"].items():
            dtype = description.get("dtype") if isinstance(description, dict) else None
            if dtype not in DTYPES:
                raise ValueError(f"{source}: feature {name!r} has dtype {dtype!r}, expected one of {DTYPES}")
            features[name] = dtype
        outputs = data.get("outputs")
        if not isinstance(outputs, list) or not outputs or not all(isinstance(o, str) for o in outputs):
            raise ValueError(f'{source}: "outputs" must be a non-empty list of output names, got {outputs!r}')
        written = data.get("missing_values", {})
        if not isinstance(written, dict):
            raise ValueError(f'{source}: "missing_values" must be an object {{dtype: sentinel}}, got {written!r}')
        # A spec written before sentinels were recorded used today's defaults.
        missing = dict(MISSING_VALUES) | {dtype: _sentinel_from_json(dtype, value, source)
                                          for dtype, value in written.items() if dtype in DTYPES}
        return cls(features=features, outputs=tuple(outputs), label=data.get("label"), missing_values=missing)

    @classmethod
    def load(cls, model_uri: str | Path) -> InputSpec:
        """From a model folder: a local path, `gs://` or the `/gcs/` mount."""
        path = storage_uri.join(model_uri, INPUT_SPEC_FILE)
        try:
            text = storage_uri.read_text(path)
        except FileNotFoundError:
            raise FileNotFoundError(f"{path} is missing: the exported model must carry its input spec") from None
        return cls.from_dict(json.loads(text), source=path)

    def differences(self, other: InputSpec, this: str, that: str) -> list[str]:
        """How `other`'s features and dtypes differ from these, one line per feature;
        `this` and `that` name the two models in the lines. Empty: the same contract."""
        lines = []
        for name in sorted(self.features.keys() | other.features.keys()):
            mine, theirs = self.features.get(name), other.features.get(name)
            if theirs is None:
                lines.append(f"feature {name!r} ({mine}) only in {this}")
            elif mine is None:
                lines.append(f"feature {name!r} ({theirs}) only in {that}")
            elif mine != theirs:
                lines.append(f"feature {name!r} is {mine} in {this}, {theirs} in {that}")
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {
            "features": {name: {"dtype": dtype} for name, dtype in self.features.items()},
            "outputs": list(self.outputs),
            "label": self.label,
            "missing_values": {dtype: _sentinel_to_json(value) for dtype, value in self.missing_values.items()},
        }

    def write(self, model_dir: str | Path) -> Path:
        path = Path(model_dir) / INPUT_SPEC_FILE
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        return path
