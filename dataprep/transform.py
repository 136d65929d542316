"""Transform: analyze the train split with tf.Transform, transform both splits, on Beam.

The Beam pipeline streams: each split's Parquet shards are listed when the
pipeline is built, read one shard per element (`storage.shards.iter_chunks`,
the project's one shard reader, so gs://, the /gcs/ mount and local paths all
work), turned into the model's raw inputs chunk by chunk, and handed to
tf.Transform as Arrow RecordBatches with a tfx_bsl `TensorAdapterConfig` (the
TFXIO form TFT reads). Transformed rows are written as Parquet shards by Beam's
own sink. Nothing is collected in one place, so the same pipeline scales out on
Dataflow: `beam_runner` and `beam_pipeline_args` (dataprep.beam_options, as TFX
passes them) choose the runner and its settings; locally it is the DirectRunner.

`run_transform` is what the pipeline step calls: the Beam/TFT work runs in an
isolated child (dataprep.isolation) so the known exit-time segfault neither fails
the step nor hides a real error.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from contract.artifacts import EVAL_SPLIT, TRAIN_SPLIT, TRANSFORM_SUMMARY_FILE
from dataprep.beam_options import DIRECT_RUNNER, BeamOptions, beam_options
from dataprep.isolation import run_isolated

SHARD_PREFIX = "part"


def run_transform(examples_dir: str, dataset_config: str, schema_path: str, transform_graph_dir: str,
                  transformed_dir: str, beam_runner: str = DIRECT_RUNNER,
                  beam_pipeline_args: list[str] | None = None) -> dict:
    beam_options(beam_runner, beam_pipeline_args)  # refused here, before the child starts, if it cannot run
    return run_isolated("dataprep.transform:analyze_and_transform", examples_dir=examples_dir,
                        dataset_config=dataset_config, schema_path=schema_path,
                        transform_graph_dir=transform_graph_dir, transformed_dir=transformed_dir,
                        beam_runner=beam_runner, beam_pipeline_args=list(beam_pipeline_args or []))


def build_transform_pipeline(pipeline, options: BeamOptions, examples_dir: str, dataset_config: str,
                             schema_path: str, transform_graph_dir: str, transformed_dir: str) -> None:
    """Adds the transform to a Beam pipeline; call inside a `tft_beam.Context`. Every location is
    given to Beam as `options.location` says (gs:// on Dataflow, whose workers have no mount)."""
    import apache_beam as beam
    import tensorflow_transform.beam as tft_beam

    from contract.dataset import load_dataset_config
    from contract.schema import load_schema
    from dataprep.ingest import split_shards
    from storage import shards
    from trainer.features import raw_features
    from trainer.preprocessing import make_preprocessing_fn, transformed_schema

    config = load_dataset_config(dataset_config)
    schema = load_schema(schema_path)
    features = raw_features(config, schema)
    inputs = {split: [options.location(uri) for uri in split_shards(examples_dir, split)]
              for split in (TRAIN_SPLIT, EVAL_SPLIT)}
    empty = shards.shard_schema(inputs[TRAIN_SPLIT][0]).empty_table().to_pandas()
    _, adapter_config = raw_inputs(empty, features, config.label.name)
    output_schema = transformed_schema(config, features)

    def read(split: str, purpose: str):
        return (pipeline
                | f"List{split}ShardsFor{purpose}" >> beam.Create(inputs[split])  # file names, not rows
                | f"Spread{split}ShardsFor{purpose}" >> beam.Reshuffle()
                | f"Read{split}For{purpose}" >> beam.FlatMap(_read_raw_inputs, features, config.label.name))

    # The train split is read twice, once to analyze and once to transform, rather than analyzed and
    # transformed from one PCollection: a runner must then keep that PCollection whole between the
    # two phases (the DirectRunner holds it in memory), where a second read streams.
    transform_fn = ((read(TRAIN_SPLIT, "Analysis"), adapter_config)
                    | "Analyze" >> tft_beam.AnalyzeDataset(make_preprocessing_fn(config, schema, features)))
    transformed = {split: (((read(split, "Transform"), adapter_config), transform_fn)
                           | f"Transform{split}" >> tft_beam.TransformDataset(output_record_batches=True))[0]
                   for split in (TRAIN_SPLIT, EVAL_SPLIT)}
    _ = transform_fn | "WriteTransformFn" >> tft_beam.WriteTransformFn(options.location(transform_graph_dir))
    for split, rows in transformed.items():
        _ = (rows
             | f"Flatten{split}" >> beam.Map(_flat_table, output_schema, split)
             | f"Write{split}" >> beam.io.WriteToParquetBatched(
                 f"{options.location(transformed_dir).rstrip('/')}/{split}/{SHARD_PREFIX}", output_schema,
                 file_name_suffix=".parquet"))


def analyze_and_transform(examples_dir: str, dataset_config: str, schema_path: str, transform_graph_dir: str,
                          transformed_dir: str, beam_runner: str = DIRECT_RUNNER,
                          beam_pipeline_args: list[str] | None = None) -> dict:
    """The work itself; runs in the isolated child. Returns row counts and timings."""
    import apache_beam as beam
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from apache_beam.metrics.metric import MetricsFilter

    started = time.perf_counter()
    Path(transformed_dir).mkdir(parents=True, exist_ok=True)
    options = beam_options(beam_runner, beam_pipeline_args)
    with (tempfile.TemporaryDirectory(prefix="tft-") as local_temp,
          tft_beam.Context(temp_dir=options.temp_location() or local_temp)):
        pipeline = beam.Pipeline(runner=options.local_runner(), options=options.pipeline_options())
        build_transform_pipeline(pipeline, options, examples_dir, dataset_config, schema_path,
                                 transform_graph_dir, transformed_dir)
        run = pipeline.run()
        run.wait_until_finish()
    counters = {result.key.metric.name: result.committed
                for result in run.metrics().query(MetricsFilter().with_namespace(__name__))["counters"]}
    result = {"train_rows": counters.get(f"{TRAIN_SPLIT}_rows", 0), "eval_rows": counters.get(f"{EVAL_SPLIT}_rows", 0),
              "transformed_features": sorted(tft.TFTransformOutput(transform_graph_dir).transformed_feature_spec()),
              "seconds": round(time.perf_counter() - started, 2)}
    (Path(transformed_dir) / TRANSFORM_SUMMARY_FILE).write_text(json.dumps(result, indent=1))
    return result


def _read_raw_inputs(shard: str, features, label: str):
    """One shard's rows as the model's raw inputs, a chunk at a time."""
    from storage import shards

    for chunk in shards.iter_chunks([shard]):
        yield raw_inputs(chunk.batch.to_pandas(), features, label)[0]


def _flat_table(batch_and_passthrough, schema, split: str):
    """TFT's output (one-value lists per row) as flat columns, with the schema every shard shares."""
    import apache_beam as beam
    import pyarrow as pa

    batch = batch_and_passthrough[0]
    beam.metrics.Metrics.counter(__name__, f"{split}_rows").inc(batch.num_rows)
    columns = {}
    for field in schema:
        values = batch.column(field.name)
        flat = values.flatten() if pa.types.is_list(values.type) or pa.types.is_large_list(values.type) else values
        if len(flat) != batch.num_rows:
            raise ValueError(f"transformed feature {field.name!r} has {len(flat)} values for {batch.num_rows} rows; "
                             "expected one per row")
        columns[field.name] = flat.cast(field.type)
    return pa.Table.from_pydict(columns, schema=schema)


def raw_inputs(frame, features, label: str):
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
