"""Train on the transformed splits, streamed by tf.data from their shards; export a SavedModel that
serves raw instances.

The exported signature `serving_default` takes one 1-D tensor per raw feature
(Vertex's `{"instances": [{feature: value}]}`, batched by the server), runs the
tf.Transform graph, then the network, and returns `{"probability": [...]}`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

# Rows tf.data shuffles among, drawn from SHUFFLE_SHARDS shards at a time (in a new shard order each
# epoch). The buffer holds each row's features as tensors, so its size bounds the step's memory.
SHUFFLE_BUFFER_ROWS = 10_000
SHUFFLE_SHARDS = 4


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


def transformed_dataset(transformed_dir: str, split: str, model_inputs: list[str], label: str, batch_size: int,
                        shuffle_seed: int | None = None):
    """A `tf.data.Dataset` of (features, label) batches streamed from a split's transformed shards
    (`storage.shards.iter_chunks`): memory holds a few chunks and, when shuffling, SHUFFLE_BUFFER_ROWS rows.
    Each feature is (rows, 1), as the network's inputs take it."""
    import pyarrow as pa
    import tensorflow as tf

    from dataprep.ingest import split_shards
    from storage import shards
    from trainer.preprocessing import transformed_schema_types

    found = split_shards(transformed_dir, split)
    dtypes = transformed_schema_types(shards.shard_schema(found[0]), model_inputs)
    signature = ({name: tf.TensorSpec([None, 1], dtypes[name], name=name) for name in model_inputs},
                 tf.TensorSpec([None], tf.float32))

    def chunks(shard: bytes):
        for chunk in shards.iter_chunks([shard.decode()], columns=[*model_inputs, label]):
            columns: dict[str, pa.Array] = dict(zip(chunk.batch.schema.names, chunk.batch.columns, strict=True))
            yield ({name: columns[name].to_numpy().reshape(-1, 1) for name in model_inputs},
                   columns[label].to_numpy().astype("float32"))

    def read(shard):
        return tf.data.Dataset.from_generator(chunks, args=(shard,), output_signature=signature)

    files = tf.data.Dataset.from_tensor_slices(found)
    if shuffle_seed is None:
        return files.flat_map(read).unbatch().batch(batch_size).prefetch(tf.data.AUTOTUNE)
    # Shards in a new order each epoch, several read at once, rows shuffled within a bounded buffer.
    files = files.shuffle(len(found), seed=shuffle_seed, reshuffle_each_iteration=True)
    rows = files.interleave(read, cycle_length=min(len(found), SHUFFLE_SHARDS), deterministic=True).unbatch()
    rows = rows.shuffle(SHUFFLE_BUFFER_ROWS, seed=shuffle_seed, reshuffle_each_iteration=True)
    return rows.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def train_and_export(transformed_dir: str, transform_graph_dir: str, dataset_config: str, schema_path: str,
                     model_dir: str, hyperparameters: dict) -> dict:
    """Returns the training history's last values and the export's timing."""
    import keras
    import tensorflow as tf
    import tensorflow_transform as tft

    from contract.artifacts import EVAL_SPLIT, TRAIN_SPLIT, TRAINING_SUMMARY_FILE, TRANSFORM_SUMMARY_FILE
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
    rows = json.loads((Path(transformed_dir) / TRANSFORM_SUMMARY_FILE).read_text())
    train_rows, eval_rows = rows["train_rows"], rows["eval_rows"]
    # Streams have no length Keras can see: each epoch is told its steps, and the streams repeat.
    train = transformed_dataset(transformed_dir, TRAIN_SPLIT, model_inputs, label, params.batch_size, params.seed)
    evaluation = (transformed_dataset(transformed_dir, EVAL_SPLIT, model_inputs, label, params.batch_size).repeat()
                  if eval_rows else None)
    model = build_model(numeric, tokens, list(params.hidden_units), params.learning_rate)
    history = model.fit(train.repeat(), steps_per_epoch=math.ceil(train_rows / params.batch_size),
                        validation_data=evaluation, validation_steps=math.ceil(eval_rows / params.batch_size) or None,
                        epochs=params.epochs, verbose=2)

    export_serving_model(model, tft_output, features, model_inputs, model_dir)
    InputSpec({feature.name: feature.dtype for feature in features}, label=label).write(model_dir)
    final = {name: round(float(values[-1]), 4) for name, values in history.history.items()}
    summary = {"history": final, "epochs": params.epochs, "train_rows": train_rows,
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
