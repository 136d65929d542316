"""Transform: analyze the train split with tf.Transform, transform both splits.

`run_transform` is what the pipeline step calls: the Beam/TFT work runs in an
isolated child (dataprep.isolation) so the known exit-time segfault neither fails
the step nor hides a real error. On Dataflow the same Beam pipeline scales out
by passing DataflowRunner options; locally it is the DirectRunner.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from contract.artifacts import EVAL_SPLIT, TRAIN_SPLIT, TRANSFORM_SUMMARY_FILE
from dataprep.isolation import run_isolated


def run_transform(examples_dir: str, dataset_config: str, schema_path: str, transform_graph_dir: str,
                  transformed_dir: str) -> dict:
    return run_isolated("dataprep.transform:analyze_and_transform", examples_dir=examples_dir,
                        dataset_config=dataset_config, schema_path=schema_path,
                        transform_graph_dir=transform_graph_dir, transformed_dir=transformed_dir)


def analyze_and_transform(examples_dir: str, dataset_config: str, schema_path: str, transform_graph_dir: str,
                          transformed_dir: str) -> dict:
    """The work itself; runs in the isolated child. Returns row counts and timings."""
    import apache_beam as beam
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam

    from contract.dataset import load_dataset_config
    from contract.schema import load_schema
    from dataprep.ingest import load_split
    from trainer.features import raw_features
    from trainer.preprocessing import make_preprocessing_fn

    started = time.perf_counter()
    config = load_dataset_config(dataset_config)
    schema = load_schema(schema_path)
    features = raw_features(config, schema)
    train_batch, adapter_config = _record_batch(load_split(examples_dir, "train"), features, config.label.name)
    eval_batch, _ = _record_batch(load_split(examples_dir, "eval"), features, config.label.name)

    output = Path(transformed_dir)
    output.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split in (TRAIN_SPLIT, EVAL_SPLIT):
        (output / split).mkdir(exist_ok=True)
        paths[split] = str(output / split / "part-00000.parquet")
    with (tempfile.TemporaryDirectory(prefix="tft-") as temp_dir, tft_beam.Context(temp_dir=temp_dir),
          beam.Pipeline() as pipeline):
        train_rows = pipeline | "TrainRows" >> beam.Create([train_batch], reshuffle=False)
        eval_rows = pipeline | "EvalRows" >> beam.Create([eval_batch], reshuffle=False)
        (train_transformed, _), transform_fn = (
            (train_rows, adapter_config)
            | "AnalyzeAndTransform" >> tft_beam.AnalyzeAndTransformDataset(
                make_preprocessing_fn(config, schema, features), output_record_batches=True))
        eval_transformed, _ = (
            ((eval_rows, adapter_config), transform_fn)
            | "TransformEval" >> tft_beam.TransformDataset(output_record_batches=True))
        _ = transform_fn | "WriteTransformFn" >> tft_beam.WriteTransformFn(transform_graph_dir)
        for split, transformed in (("train", train_transformed), ("eval", eval_transformed)):
            _ = (transformed
                 | f"{split}RecordBatches" >> beam.Map(lambda batch_and_passthrough: batch_and_passthrough[0])
                 | f"{split}Collect" >> beam.combiners.ToList()
                 | f"{split}Write" >> beam.Map(_write_parquet, paths[split]))
    result = {"train_rows": train_batch.num_rows, "eval_rows": eval_batch.num_rows,
              "transformed_features": sorted(tft.TFTransformOutput(transform_graph_dir).transformed_feature_spec()),
              "seconds": round(time.perf_counter() - started, 2)}
    (output / TRANSFORM_SUMMARY_FILE).write_text(json.dumps(result, indent=1))
    return result


def _write_parquet(record_batches: list, path: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_batches(record_batches), path)


def _record_batch(frame, features, label: str):
    """One Arrow batch of the model's raw inputs, each a one-value list per row,
    and the TFXIO adapter config that tells tf.Transform how to read it."""
    import numpy as np
    import pyarrow as pa
    from tensorflow_metadata.proto.v0 import schema_pb2
    from tfx_bsl.public import tfxio

    from trainer.features import to_model_inputs

    columns = to_model_inputs(frame, features)
    columns[label] = frame[label].to_numpy(dtype="int64")
    arrow_types = {"float32": pa.float32(), "int64": pa.int64(), "string": pa.large_binary()}
    dtypes = {feature.name: feature.dtype for feature in features} | {label: "int64"}
    offsets = pa.array(np.arange(len(frame) + 1, dtype=np.int64))
    arrays = {}
    for name, values in columns.items():
        if dtypes[name] == "string":
            values = [value.encode() for value in values]
        arrays[name] = pa.LargeListArray.from_arrays(offsets, pa.array(values, type=arrow_types[dtypes[name]]))
    batch = pa.RecordBatch.from_pydict(arrays)
    representations = {
        name: schema_pb2.TensorRepresentation(dense_tensor=schema_pb2.TensorRepresentation.DenseTensor(
            column_name=name, shape=schema_pb2.FixedShape()))
        for name in arrays}
    return batch, tfxio.TensorAdapterConfig(batch.schema, representations)
