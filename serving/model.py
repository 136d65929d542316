"""Loads the exported SavedModel (local path or gs:// prefix) and runs batched predictions.

The only serving module that imports TensorFlow.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from serving.instances import Columns, InputSpec, features_by_dtype, instances_to_columns
from storage import uri

log = logging.getLogger(__name__)

SIGNATURE = "serving_default"
_TF_DTYPES = {"float32": tf.float32, "int64": tf.int64, "string": tf.string}


class ServingModel:
    """The `serving_default` signature of one SavedModel and its input spec."""

    def __init__(self, model_dir: Path, source_uri: str) -> None:
        self.source_uri = source_uri
        self.spec = InputSpec.load(model_dir)
        loaded = tf.saved_model.load(str(model_dir))
        if SIGNATURE not in loaded.signatures:
            raise ValueError(f"{source_uri}: the SavedModel has no {SIGNATURE!r} signature "
                             f"(has {sorted(loaded.signatures)})")
        self._loaded = loaded  # the signature needs its variables alive
        self._signature = loaded.signatures[SIGNATURE]
        self._check_signature_matches_spec()
        self._call_with_blocks = self._signature_taking_blocks()

    def _check_signature_matches_spec(self) -> None:
        _, inputs = self._signature.structured_input_signature
        expected = {name: _TF_DTYPES[dtype] for name, dtype in self.spec.features.items()}
        actual = {name: tensor_spec.dtype for name, tensor_spec in inputs.items()}
        if expected != actual:
            raise ValueError(
                f"{self.source_uri}: input_spec.json features {sorted(expected.items())} do not match the "
                f"signature inputs {sorted((name, dtype.name) for name, dtype in actual.items())}"
            )
        missing_outputs = set(self.spec.outputs) - set(self._signature.structured_outputs)
        if missing_outputs:
            raise ValueError(f"{self.source_uri}: outputs {sorted(missing_outputs)} from input_spec.json are "
                             f"not signature outputs {sorted(self._signature.structured_outputs)}")

    def _signature_taking_blocks(self) -> tf.types.experimental.ConcreteFunction:
        """The signature behind one input per dtype, each a block of `Columns` (flat, instance after instance).

        TensorFlow spends about 10 µs of Python per argument of a concrete
        function before the graph runs (binding, casting, checking each spec),
        and about 6 µs to make each tensor: for the 14 taxi features that was
        as much as the graph's own work (figures in docs/serving.md). The split
        into features happens inside the graph, which is otherwise the
        signature's own (the server tests check the answers bit-for-bit against
        calling it directly).
        """
        names = features_by_dtype(self.spec)
        signature = self._signature

        @tf.function(input_signature=[tf.TensorSpec([None], _TF_DTYPES[dtype], name=dtype) for dtype in names])
        def call(*blocks: tf.Tensor) -> dict[str, tf.Tensor]:
            inputs = {}
            for group, block in zip(names.values(), blocks, strict=True):
                rows = tf.reshape(block, [-1, len(group)])
                inputs.update({name: rows[:, index] for index, name in enumerate(group)})
            return signature(**inputs)

        return call.get_concrete_function()

    def block_tensors(self, columns: Columns) -> list[tf.Tensor]:
        """One tensor per dtype block, in the order `call_blocks` takes them."""
        return [tf.constant(columns.blocks[dtype], dtype=_TF_DTYPES[dtype]) for dtype in columns.names]

    def call_blocks(self, tensors: list[tf.Tensor]) -> dict[str, np.ndarray]:
        """One call of the signature on a whole batch; numpy outputs named by the spec."""
        # The flat call, which `ConcreteFunction.__call__` ends in: its binding
        # and checking of the arguments (45 µs a call here) is skipped, as
        # `block_tensors` makes exactly the dtypes and shapes the function was
        # traced for. The function's captures (the model's variables) follow.
        function = self._call_with_blocks
        outputs = function.inference_fn.call_preflattened([*tensors, *function.captured_inputs])
        return {name: outputs[name].numpy() for name in self.spec.outputs}

    def predictions(self, columns: Columns) -> list[dict[str, Any]]:
        """Per-instance predictions, in instance order: [{output name: scalar}, ...]."""
        return per_instance(self.call_blocks(self.block_tensors(columns)))

    def warm_up(self) -> None:
        """Trace and run once, so the first client request is not the slow one."""
        instance = {name: None for name in self.spec.features}
        self.predictions(instances_to_columns([instance, instance], self.spec))


def per_instance(outputs: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """The signature's outputs as the answer lists them: [{output name: scalar}, ...], in instance order."""
    per_output = {name: _to_json_values(array) for name, array in outputs.items()}
    if len(per_output) == 1:  # the usual case, and 8 times faster than dict(zip()) per instance
        [(name, values)] = per_output.items()
        return [{name: value} for value in values]
    names = list(per_output)
    return [dict(zip(names, values, strict=True)) for values in zip(*per_output.values(), strict=True)]


def _to_json_values(array: np.ndarray) -> list[Any]:
    # The contract is one scalar per instance; a trailing dimension of 1 is the
    # same thing and is common in Keras exports.
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.dtype == object:
        return [value.decode() if isinstance(value, bytes) else value for value in array.tolist()]
    return array.tolist()


def limit_tensorflow_threads(threads: int) -> None:
    """Size TensorFlow's thread pools (0: its default); only before TensorFlow has run anything."""
    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)


def load_model(storage_uri: str) -> ServingModel:
    """Load the model the way the container does: gs:// prefixes are downloaded first."""
    started = time.perf_counter()
    if storage_uri.startswith("gs://"):
        try:
            model_dir = uri.download_prefix(storage_uri, Path(tempfile.mkdtemp(prefix="model-")))
        except FileNotFoundError:
            raise FileNotFoundError(f"no objects under {storage_uri}: expected the exported model "
                                    "(saved_model.pb, variables/, input_spec.json)") from None
    else:
        model_dir = Path(storage_uri)
        if not model_dir.is_dir():
            raise FileNotFoundError(f"AIP_STORAGE_URI {storage_uri!r} is not a directory: "
                                    "expected the exported model directory or a gs:// prefix")
    model = ServingModel(model_dir, storage_uri)
    model.warm_up()
    log.info("loaded %s in %.2f s", storage_uri, time.perf_counter() - started)
    return model
