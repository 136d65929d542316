"""The columnar fast path gives exactly the blocks serving's row conversion gives, and steps aside at any doubt."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from batch_prediction.rows import _fast_columns, feature_values
from contract.dataset import DEFAULT_MISSING_VALUES
from contract.model_inputs import InputSpec
from contract.paths import DEFAULT_DATA_URI, PROJECT_ROOT
from serving.instances import instances_to_columns
from serving.testing import TAXI_FEATURES
from storage import shards

SPEC = InputSpec(features=dict(TAXI_FEATURES))
TOKENS = pa.array(sorted(DEFAULT_MISSING_VALUES), pa.string())


def row_path_blocks(batch: pa.RecordBatch) -> dict:
    values = {name: feature_values(batch, name, dtype, frozenset(DEFAULT_MISSING_VALUES))
              for name, dtype in SPEC.features.items()}
    instances = [dict(zip(values, row, strict=True)) for row in zip(*values.values(), strict=True)]
    return instances_to_columns(instances, SPEC).blocks


def assert_same_blocks(fast: dict, slow: dict) -> None:
    assert fast.keys() == slow.keys()
    for dtype in fast:
        if dtype == "string":
            assert fast[dtype] == slow[dtype]
        else:
            np.testing.assert_array_equal(fast[dtype], slow[dtype])
            assert fast[dtype].dtype == slow[dtype].dtype


def test_the_shipped_sample_converts_identically_both_ways():
    chunks = list(shards.iter_chunks(str(PROJECT_ROOT / DEFAULT_DATA_URI), 4096, list(SPEC.features)))
    assert sum(chunk.batch.num_rows for chunk in chunks) == 15002
    for chunk in chunks:
        fast = _fast_columns(chunk.batch, SPEC, TOKENS)
        assert fast is not None
        assert_same_blocks(fast.blocks, row_path_blocks(chunk.batch))


def test_typed_columns_convert_identically_both_ways():
    batch = pa.RecordBatch.from_pydict({name: pa.array([1, None, 3] if dtype == "int64" else
                                                       [0.5, None, -2.0] if dtype == "float32" else
                                                       ["a", None, "Ünïon"]) for name, dtype in SPEC.features.items()})
    assert_same_blocks(_fast_columns(batch, SPEC, TOKENS).blocks, row_path_blocks(batch))


@pytest.mark.parametrize("column, values", [
    ("fare", ["1.5", "twelve"]), ("trip_start_hour", ["3", "3.5"]), ("fare", ["1e39", "2"]),
    ("trip_start_hour", [True, False]),
], ids=["text for a number", "not an integer", "beyond float32", "booleans"])
def test_any_doubtful_value_leaves_the_chunk_to_the_row_path(column, values):
    columns = {name: pa.array(["1", "2"]) for name in SPEC.features} | {column: pa.array(values)}
    assert _fast_columns(pa.RecordBatch.from_pydict(columns), SPEC, TOKENS) is None


def test_prefetching_keeps_order_hands_over_errors_and_stops_with_its_reader():
    import threading

    from batch_prediction.predictor import prefetched

    def source():
        yield from ("a", "b")
        raise ValueError("shard c: not readable")

    got = []
    with pytest.raises(ValueError, match="shard c: not readable"):
        for item in prefetched(source()):
            got.append(item)
    assert got == ["a", "b"]

    endless = prefetched(iter(range(10**9)), depth=2)
    assert [next(endless) for _ in range(3)] == [0, 1, 2]
    readers = [thread for thread in threading.enumerate() if thread.name == "batch-prediction-reader"]
    assert readers  # the endless one, blocked on its full queue
    endless.close()
    for reader in readers:
        reader.join(timeout=5)
        assert not reader.is_alive()
