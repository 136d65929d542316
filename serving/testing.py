"""A small SavedModel that follows the exported model's contract exactly.

Tests and the serving benchmark use it until (and besides) the real trained
model: `serving_default` takes one 1-D keyword argument per raw feature
(float32, int64 or string) and returns `{"probability": float32 [None]}`, and
`input_spec.json` sits next to `saved_model.pb`. Missing-value sentinels
(NaN, -1, "") are valid inputs, as they are for the trained model.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from serving.instances import INPUT_SPEC_FILE, InputSpec

# A few features of each dtype, named as in the taxi data set.
DEMO_FEATURES: dict[str, str] = {
    "trip_miles": "float32",
    "fare": "float32",
    "trip_start_hour": "int64",
    "pickup_community_area": "int64",
    "payment_type": "string",
    "company": "string",
}

# The raw feature set of the taxi data set (data/datasets/chicago_taxi.yaml),
# for a benchmark model whose input size matches the trained model's.
TAXI_FEATURES: dict[str, str] = {
    "trip_miles": "float32",
    "fare": "float32",
    "trip_seconds": "float32",
    "pickup_latitude": "float32",
    "pickup_longitude": "float32",
    "dropoff_latitude": "float32",
    "dropoff_longitude": "float32",
    "trip_start_hour": "int64",
    "trip_start_day": "int64",
    "trip_start_month": "int64",
    "pickup_community_area": "int64",
    "dropoff_community_area": "int64",
    "payment_type": "string",
    "company": "string",
}

_BUCKETS = 64
_EMBEDDING_WIDTH = 8


def build_demo_model(path: str | Path, features: dict[str, str] | None = None, hidden_units: int = 32,
                     seed: int = 0) -> Path:
    """Write a deterministic demo SavedModel and its input_spec.json into `path`."""
    import tensorflow as tf  # here, so importing serving.testing stays cheap

    features = dict(features or DEMO_FEATURES)
    spec = InputSpec(features=features, outputs=("probability",), label="big_tipper")
    tf_dtypes = {"float32": tf.float32, "int64": tf.int64, "string": tf.string}
    input_signature = {name: tf.TensorSpec([None], tf_dtypes[dtype], name=name)
                       for name, dtype in features.items()}
    rng = np.random.default_rng(seed)

    def weights(*shape: int) -> tf.Variable:
        return tf.Variable(rng.normal(0.0, 0.5, size=shape).astype(np.float32))

    class DemoModel(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            # Numbers: a learned projection; categories: an embedding table.
            self.tables = {name: weights(_BUCKETS if dtype != "float32" else 2, _EMBEDDING_WIDTH)
                           for name, dtype in features.items()}
            self.hidden = weights(len(features) * _EMBEDDING_WIDTH, hidden_units)
            self.out = weights(hidden_units, 1)

        @tf.function(input_signature=[input_signature])
        def serve(self, inputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
            embedded = []
            for name, dtype in features.items():
                value, table = inputs[name], self.tables[name]
                if dtype == "float32":
                    value = tf.where(tf.math.is_nan(value), tf.zeros_like(value), value)
                    embedded.append(tf.tanh(value[:, None] * table[0] + table[1]))
                elif dtype == "int64":
                    embedded.append(tf.gather(table, tf.math.floormod(value, _BUCKETS)))
                else:
                    embedded.append(tf.gather(table, tf.strings.to_hash_bucket_fast(value, _BUCKETS)))
            hidden = tf.nn.relu(tf.matmul(tf.concat(embedded, axis=1), self.hidden))
            return {"probability": tf.sigmoid(tf.matmul(hidden, self.out)[:, 0])}

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model = DemoModel()
    tf.saved_model.save(model, str(path), signatures={"serving_default": model.serve})
    (path / INPUT_SPEC_FILE).write_text(json.dumps(spec.to_dict(), indent=2) + "\n")
    return path


def demo_instances(count: int, features: dict[str, str] | None = None, seed: int = 0,
                   missing_share: float = 0.1) -> list[dict[str, object]]:
    """Valid instances for the demo model, some values null (missing)."""
    features = features or DEMO_FEATURES
    rng = np.random.default_rng(seed)
    companies = ["Flash Cab", "Taxi Affiliation Services", "Sun Taxi", "City Service", "Blue Ribbon Taxi"]
    instances: list[dict[str, object]] = []
    for _ in range(count):
        instance: dict[str, object] = {}
        for name, dtype in features.items():
            if rng.random() < missing_share:
                instance[name] = None
            elif dtype == "float32":
                instance[name] = round(float(rng.gamma(2.0, 4.0)), 3)
            elif dtype == "int64":
                instance[name] = int(rng.integers(0, 78))
            else:
                instance[name] = str(rng.choice(companies if name == "company" else ["Cash", "Credit Card"]))
        instances.append(instance)
    return instances
