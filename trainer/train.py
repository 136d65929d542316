"""Train on the transformed splits and export a SavedModel that serves raw instances.

The exported signature `serving_default` takes one 1-D tensor per raw feature
(Vertex's `{"instances": [{feature: value}]}`, batched by the server), runs the
tf.Transform graph, then the network, and returns `{"probability": [...]}`.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np


@dataclasses.dataclass(frozen=True)
class Hyperparameters:
    learning_rate: float = 0.001
    hidden_units: tuple[int, ...] = (64, 32)
    epochs: int = 8
    batch_size: int = 256
    seed: int = 42

    @classmethod
    def from_parameters(cls, values: dict) -> Hyperparameters:
        """From pipeline parameters, where a list of ints arrives as JSON numbers (64.0)."""
        values = dict(values)
        units = values.get("hidden_units", cls.hidden_units)
        if any(float(unit) != int(float(unit)) for unit in units):
            raise ValueError(f"bad hyperparameters: hidden_units must be whole numbers, got {list(units)}")
        values["hidden_units"] = tuple(int(float(unit)) for unit in units)
        return cls(**values)

    def __post_init__(self) -> None:
        problems = []
        if not self.learning_rate > 0:
            problems.append(f"learning_rate must be > 0, got {self.learning_rate}")
        if not self.hidden_units or any(int(units) < 1 for units in self.hidden_units):
            problems.append(f"hidden_units must be positive layer widths, got {list(self.hidden_units)}")
        if self.epochs < 1:
            problems.append(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            problems.append(f"batch_size must be >= 1, got {self.batch_size}")
        if problems:
            raise ValueError("bad hyperparameters: " + "; ".join(problems))


def _load_transformed(path: Path, names: list[str]) -> dict[str, np.ndarray]:
    import pyarrow.parquet as pq

    table = pq.read_table(path, columns=names)
    # Each transformed value is a one-element list: flatten to (rows, 1) for Keras.
    return {name: table.column(name).combine_chunks().flatten().to_numpy().reshape(-1, 1) for name in names}


def train_and_export(transformed_dir: str, transform_graph_dir: str, dataset_config: str, schema_path: str,
                     model_dir: str, hyperparameters: dict) -> dict:
    """Returns the training history's last values and the export's timing."""
    import keras
    import tensorflow as tf
    import tensorflow_transform as tft

    from contract.artifacts import EVAL_SPLIT, TRAIN_SPLIT, TRAINING_SUMMARY_FILE
    from contract.dataset import load_dataset_config
    from contract.model_inputs import PROBABILITY_OUTPUT, InputSpec
    from contract.schema import load_schema
    from trainer.features import raw_features, transformed_name
    from trainer.model import build_model
    from trainer.preprocessing import num_tokens

    started = time.perf_counter()
    params = Hyperparameters.from_parameters(hyperparameters)
    keras.utils.set_random_seed(params.seed)
    tf.config.experimental.enable_op_determinism()

    config = load_dataset_config(dataset_config)
    schema = load_schema(schema_path)
    features = raw_features(config, schema)
    tft_output = tft.TFTransformOutput(transform_graph_dir)
    tokens = num_tokens(config, schema, features, tft_output.vocabulary_size_by_name)
    numeric = [transformed_name(f.name) for f in config.features if f.kind == "numeric"]
    model_inputs = numeric + sorted(tokens)

    label = config.label.name
    train = _load_transformed(Path(transformed_dir) / TRAIN_SPLIT, model_inputs + [label])
    evaluation = _load_transformed(Path(transformed_dir) / EVAL_SPLIT, model_inputs + [label])
    model = build_model(numeric, tokens, list(params.hidden_units), params.learning_rate)
    history = model.fit({name: train[name] for name in model_inputs}, train[label].astype("float32"),
                        validation_data=({name: evaluation[name] for name in model_inputs},
                                         evaluation[label].astype("float32")),
                        epochs=params.epochs, batch_size=params.batch_size, shuffle=True, verbose=2)

    export_serving_model(model, tft_output, features, model_inputs, model_dir)
    InputSpec({feature.name: feature.dtype for feature in features}, label=label).write(model_dir)
    final = {name: round(float(values[-1]), 4) for name, values in history.history.items()}
    summary = {"history": final, "epochs": params.epochs, "train_rows": int(len(train[label])),
               "hyperparameters": dataclasses.asdict(params), "seconds": round(time.perf_counter() - started, 2),
               "output": PROBABILITY_OUTPUT}
    (Path(model_dir) / TRAINING_SUMMARY_FILE).write_text(json.dumps(summary, indent=1))
    return summary


def export_serving_model(model, tft_output, features, model_inputs: list[str], model_dir: str) -> None:
    import keras
    import tensorflow as tf

    from contract.model_inputs import PROBABILITY_OUTPUT

    tf_dtypes = {"float32": tf.float32, "int64": tf.int64, "string": tf.string}
    signature = {feature.name: tf.TensorSpec([None], tf_dtypes[feature.dtype], name=feature.name)
                 for feature in features}
    transform_layer = tft_output.transform_features_layer()

    @tf.function(input_signature=[signature])
    def serve(raw_features):
        transformed = transform_layer(raw_features)
        network_inputs = {name: tf.expand_dims(transformed[name], -1) for name in model_inputs}
        return {PROBABILITY_OUTPUT: tf.reshape(model(network_inputs), [-1])}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.track(transform_layer)
    archive.add_endpoint(name="serving_default", fn=serve)
    archive.write_out(model_dir, verbose=False)
