"""The local streaming batch predictor: source shards in bounded chunks -> the model -> the run's output.

Each chunk is read (storage.shards, or the local BigQuery stand-in), checked
against the model's input contract (rows.py), predicted in one call of the
SavedModel's signature (serving.model), and written out (output.py) before the
next is read: memory holds one chunk, whatever the size of the source.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from queue import Full, Queue
from typing import Any

import pyarrow as pa

from batch_prediction import local_bigquery
from batch_prediction.output import ERROR_SCHEMA, ERRORS, PREDICTION_SCHEMA, PREDICTIONS, FolderPublisher, Publisher
from batch_prediction.rows import RowError, check_chunk
from storage import shards

log = logging.getLogger(__name__)

DEFAULT_CHUNK_ROWS = 8192


@dataclasses.dataclass(frozen=True)
class ModelIdentity:
    """What every output row says about the model that made it."""

    resource_name: str  # Vertex: projects/P/locations/L/models/ID; locally: REGISTRY/MODEL_NAME
    version: str


@dataclasses.dataclass
class RunResult:
    run_id: str
    output: str  # where the run was published
    rows_read: int = 0
    rows_predicted: int = 0
    rows_failed: int = 0
    chunks: int = 0
    seconds: float = 0.0
    first_errors: list[str] = dataclasses.field(default_factory=list)  # a few, for the summary

    @property
    def metrics(self) -> dict[str, float]:
        return {"rows_read": self.rows_read, "rows_predicted": self.rows_predicted, "rows_failed": self.rows_failed,
                "rows_per_second": round(self.rows_read / self.seconds, 1) if self.seconds else 0.0}


def source_chunks(source: str, chunk_rows: int, columns: list[str] | None,
                  local_dir: Path | None = None) -> Iterator[shards.Chunk]:
    if local_bigquery.is_bigquery(source):
        return local_bigquery.iter_table_chunks(source, chunk_rows, columns, local_dir)
    return shards.iter_chunks(source, chunk_rows, columns)


def prefetched(chunks: Iterator[shards.Chunk], depth: int = 2) -> Iterator[shards.Chunk]:
    """The chunks, read `depth` ahead in a thread: reading and parsing (pyarrow, which releases the GIL)
    overlap with predicting and writing. Memory: at most `depth` + 1 chunks."""
    queue: Queue = Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def read() -> None:
        try:
            for chunk in chunks:
                while not stop.is_set():
                    try:
                        queue.put(chunk, timeout=0.1)
                        break
                    except Full:
                        continue
                if stop.is_set():
                    return
            queue.put(done)
        except BaseException as error:  # handed to the consumer, raised there with its own message
            queue.put(error)

    reader = threading.Thread(target=read, name="batch-prediction-reader", daemon=True)
    reader.start()
    try:
        while (item := queue.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


def open_publisher(destination: str, run_id: str, output_format: str, local_dir: Path | None = None) -> Publisher:
    if local_bigquery.is_bigquery(destination):
        return local_bigquery.DuckDBPublisher(destination, run_id, local_dir)
    return FolderPublisher(destination, run_id, output_format)


def error_batch(errors: list[RowError], run_id: str) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict({
        "key": [error.key for error in errors], "shard": [error.shard for error in errors],
        "row": [error.row for error in errors], "line": [error.line for error in errors],
        "reason": [error.reason for error in errors], "run_id": [run_id] * len(errors)}, schema=ERROR_SCHEMA)


def prediction_batch(keys: list[str], scores: Any, model: ModelIdentity, run_id: str) -> pa.RecordBatch:
    size = len(keys)
    now = datetime.now(UTC)
    return pa.RecordBatch.from_arrays([
        pa.array(keys, pa.string()), pa.array(scores.astype("float64").reshape(size), pa.float64()),
        pa.repeat(pa.scalar(now, PREDICTION_SCHEMA.field("prediction_timestamp").type), size),
        pa.repeat(pa.scalar(model.resource_name, pa.string()), size),
        pa.repeat(pa.scalar(model.version, pa.string()), size),
        pa.repeat(pa.scalar(run_id, pa.string()), size)], schema=PREDICTION_SCHEMA)


def predict_source(model, identity: ModelIdentity, source: str, destination: str, run_id: str,
                   key_field: str = "", output_format: str = "parquet", chunk_rows: int = DEFAULT_CHUNK_ROWS,
                   local_dir: Path | None = None) -> RunResult:
    """Scores every row of `source` with `model` (a serving.model.ServingModel) and publishes the run.

    Nothing is visible at `destination` until the whole source is scored; an
    error that stops the run (an unreadable shard, a missing column) leaves the
    previous output of this run id as it was.
    """
    if not run_id or "/" in run_id or run_id.startswith((".", "_")):
        raise ValueError(f"run_id {run_id!r}: expected a non-empty name without '/' that does not start "
                         "with '.' or '_'")
    output = model.spec.outputs[0]
    columns = [*model.spec.features, *([key_field] if key_field else [])]
    started = time.perf_counter()
    publisher = open_publisher(destination, run_id, output_format, local_dir)
    result = RunResult(run_id, destination)
    try:
        for chunk in prefetched(source_chunks(source, chunk_rows, columns, local_dir)):
            checked = check_chunk(chunk, model.spec, key_field)
            result.chunks += 1
            result.rows_read += chunk.batch.num_rows + len(chunk.problems)
            if checked.columns is not None:
                scores = model.call_blocks(model.block_tensors(checked.columns))[output]
                publisher.write(PREDICTIONS, prediction_batch(checked.keys, scores, identity, run_id))
                result.rows_predicted += len(checked.keys)
            if checked.errors:
                publisher.write(ERRORS, error_batch(checked.errors, run_id))
                result.rows_failed += len(checked.errors)
                result.first_errors.extend(_describe(error) for error in checked.errors[:5 - len(result.first_errors)])
        result.seconds = time.perf_counter() - started
        manifest = {"source": source, "model_resource_name": identity.resource_name,
                    "model_version": identity.version, "key_field": key_field,
                    "finished": datetime.now(UTC).isoformat(), "metrics": result.metrics}
        result.output = publisher.commit(manifest)
    except BaseException:
        publisher.abort()
        raise
    log.info("run %s: %d rows predicted, %d failed, in %.1f s", run_id, result.rows_predicted, result.rows_failed,
             result.seconds)
    return result


def _describe(error: RowError) -> str:
    where = f"{error.shard}, line {error.line}" if error.line is not None else f"{error.shard}, row {error.row}"
    return f"{where}" + (f" (key {error.key})" if error.key else "") + f": {error.reason}"

