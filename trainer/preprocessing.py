"""The tf.Transform `preprocessing_fn`, declared once from the data set config.

Its graph is exported inside the serving model, so the same code that shaped
the training data shapes every prediction request: no training/serving skew.

Speed matters here (each analyzer is a Beam phase): integer categories take
their range from the reviewed schema instead of a vocabulary analyzer, and
imputation shares its analysis phase with the scaling it feeds.
"""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa
import tensorflow as tf
import tensorflow_transform as tft
from tensorflow_metadata.proto.v0 import schema_pb2

from contract.dataset import DatasetConfig
from contract.model_inputs import RawFeature
from trainer.features import transformed_name

_QUANTILE_EPSILON = 0.01


def _integer_domains(schema: schema_pb2.Schema) -> dict[str, tuple[int, int]]:
    return {feature.name: (feature.int_domain.min, feature.int_domain.max) for feature in schema.feature
            if feature.HasField("int_domain") and feature.int_domain.is_categorical}


def num_tokens(config: DatasetConfig, schema: schema_pb2.Schema, features: list[RawFeature],
               vocabulary_size: Callable[[str], int]) -> dict[str, int]:
    """How many distinct ids each categorical transformed feature takes (for one-hot)."""
    domains = _integer_domains(schema)
    dtypes = {feature.name: feature.dtype for feature in features}
    tokens = {}
    for feature in config.features:
        name = transformed_name(feature.name)
        if feature.kind == "bucketized":
            tokens[name] = feature.buckets + 1  # + one for missing
        elif feature.kind == "categorical" and dtypes[feature.name] == "int64":
            low, high = domains[feature.name]
            tokens[name] = high - low + 2  # + one for missing or out of range
        elif feature.kind == "categorical":
            tokens[name] = vocabulary_size(feature.name) + 1  # + one out-of-vocabulary bucket
    return tokens


def make_preprocessing_fn(config: DatasetConfig, schema: schema_pb2.Schema,
                          features: list[RawFeature]) -> Callable[[dict], dict]:
    dtypes = {feature.name: feature.dtype for feature in features}
    domains = _integer_domains(schema)
    for feature in config.features:
        if feature.kind == "categorical" and dtypes[feature.name] == "int64" and feature.name not in domains:
            raise ValueError(f"integer categorical feature {feature.name!r} needs a categorical int_domain "
                             "in the schema (min and max)")

    def preprocessing_fn(inputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        outputs = {}
        for feature in config.features:
            values = inputs[feature.name]
            name = transformed_name(feature.name)
            if feature.kind in ("numeric", "bucketized"):
                missing = tf.math.is_nan(values)
                present = tf.boolean_mask(values, tf.logical_not(missing))
                if feature.kind == "numeric":
                    # Missing values land on the mean: z-score 0.
                    mean, variance = tft.mean(present), tft.var(present)
                    scaled = (values - mean) / tf.sqrt(tf.maximum(variance, 1e-12))
                    outputs[name] = tf.where(missing, tf.zeros_like(scaled), scaled)
                else:
                    boundaries = tft.quantiles(present, feature.buckets, _QUANTILE_EPSILON)
                    buckets = tft.apply_buckets(tf.where(missing, tf.zeros_like(values), values), boundaries)
                    outputs[name] = tf.where(missing, tf.cast(feature.buckets, tf.int64), buckets)
            elif dtypes[feature.name] == "int64":
                low, high = domains[feature.name]
                inside = tf.logical_and(values >= low, values <= high)
                outputs[name] = tf.where(inside, values - low, tf.cast(high - low + 1, tf.int64))
            else:
                outputs[name] = tft.compute_and_apply_vocabulary(
                    values, top_k=feature.top_k, num_oov_buckets=1, vocab_filename=feature.name)
        if config.label.name in inputs:
            outputs[config.label.name] = inputs[config.label.name]
        return outputs

    return preprocessing_fn


def transformed_schema(config: DatasetConfig, features: list[RawFeature]) -> pa.Schema:
    """The columns `preprocessing_fn` outputs, one value per row: z-scores as float32, bucket and
    category ids as int64, and the label. Declared once: transform writes its shards with it, and
    training reads them by it."""
    numeric = {feature.name for feature in config.features if feature.kind == "numeric"}
    fields = [pa.field(transformed_name(feature.name), pa.float32() if feature.name in numeric else pa.int64())
              for feature in features]
    return pa.schema(fields + [pa.field(config.label.name, pa.int64())])


def transformed_schema_types(schema: pa.Schema, names: list[str]) -> dict[str, tf.DType]:
    """The TensorFlow dtype of each named column of a transformed shard."""
    return {name: tf.dtypes.as_dtype(schema.field(name).type.to_pandas_dtype()) for name in names}
