"""Functions the isolation tests run in a child process (they must be importable)."""

import os
import signal


def add(a: int, b: int) -> dict:
    return {"sum": a + b}


def fail(reason: str) -> dict:
    raise ValueError(f"bad input: {reason}")


def crash() -> dict:
    os.kill(os.getpid(), signal.SIGSEGV)
    return {}


# Results kept alive until interpreter teardown, as a module-level cache would keep them.
_KEPT: list = []


def tft_then_return() -> dict:
    """A real tf.Transform Beam pipeline. With its results still referenced at exit,
    a plain process dies with SIGSEGV during teardown (PLATFORM_NOTES)."""
    import tempfile

    import apache_beam as beam
    import tensorflow as tf
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

    spec = {"x": tf.io.FixedLenFeature([], tf.float32), "s": tf.io.FixedLenFeature([], tf.string)}
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(spec))
    temp = tempfile.mkdtemp()

    def preprocessing_fn(inputs):
        return {"y": tft.scale_to_0_1(inputs["x"]), "v": tft.compute_and_apply_vocabulary(inputs["s"])}

    with tft_beam.Context(temp_dir=temp), beam.Pipeline() as pipeline:
        rows = pipeline | beam.Create([{"x": 1.0, "s": b"a"}, {"x": 3.0, "s": b"b"}])
        (transformed, _), transform_fn = (rows, metadata) | tft_beam.AnalyzeAndTransformDataset(preprocessing_fn)
        _ = transform_fn | tft_beam.WriteTransformFn(f"{temp}/graph")
    _KEPT.append((transformed, transform_fn))
    output = tft.TFTransformOutput(f"{temp}/graph")
    return {"transformed": sorted(output.transformed_feature_spec())}
