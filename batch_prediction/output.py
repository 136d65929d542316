"""The one output schema of batch prediction, and where a run's output is published.

Every prediction row, locally and from a Vertex job alike:
    key, prediction, prediction_timestamp, model_resource_name, model_version, run_id
Every error row:
    key, shard, row, line, reason, run_id

A run publishes atomically and a rerun of the same run id replaces its output:
- a folder (local): written into a hidden staging folder beside the destination,
  then swapped in with renames; the manifest `_MANIFEST.json` inside is the
  success marker. A crash leaves only that staging folder, outside the destination.
- a gs:// prefix: objects have no rename, so parts go under a fresh attempt folder
  and the manifest at `DESTINATION/RUN_ID/_MANIFEST.json`, written last in one
  object write, lists them; the other attempts are deleted after it. Readers go
  through the manifest (`read_manifest`); a run without one has no output.
- `bq://project.dataset`: tables `predictions` and `prediction_errors`, the run's
  rows replaced in one transaction (local_bigquery.py here, BigQuery SQL on Vertex).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from storage import uri as storage_uri
from storage.local_files import write_json_atomically

MANIFEST_FILE = "_MANIFEST.json"
PREDICTIONS = "predictions"
ERRORS = "errors"
FORMATS = ("parquet", "jsonl")
# Rows per output file: a part is a few tens of MB, and readers can split the output.
PART_ROWS = 1_000_000

PREDICTION_SCHEMA = pa.schema([
    ("key", pa.string()),
    ("prediction", pa.float64()),
    ("prediction_timestamp", pa.timestamp("us", tz="UTC")),
    ("model_resource_name", pa.string()),
    ("model_version", pa.string()),
    ("run_id", pa.string()),
])
ERROR_SCHEMA = pa.schema([
    ("key", pa.string()),
    ("shard", pa.string()),
    ("row", pa.int64()),
    ("line", pa.int64()),
    ("reason", pa.string()),
    ("run_id", pa.string()),
])
SCHEMAS = {PREDICTIONS: PREDICTION_SCHEMA, ERRORS: ERROR_SCHEMA}


class OutputError(ValueError):
    """A destination or output format that cannot be written; the message says what is expected."""


class Publisher(Protocol):
    """Takes a run's rows as they are made; `commit` makes them visible all at once."""

    def write(self, table: str, batch: pa.RecordBatch) -> None: ...
    def commit(self, manifest: dict[str, Any]) -> str: ...
    def abort(self) -> None: ...


class _PartWriter:
    """One output table's files in a folder: part-00000.parquet, part-00001... of at most PART_ROWS rows."""

    def __init__(self, folder: Path, schema: pa.Schema, output_format: str) -> None:
        self.folder, self.schema, self.format = folder, schema, output_format
        self.files: list[Path] = []
        self.rows = 0
        self._part_rows = 0
        self._writer: pq.ParquetWriter | Any = None

    def _open(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"part-{len(self.files):05d}.{self.format}"
        self.files.append(path)
        self._writer = pq.ParquetWriter(path, self.schema) if self.format == "parquet" else open(path, "wb")  # noqa: SIM115
        self._part_rows = 0

    def write(self, batch: pa.RecordBatch) -> None:
        if self._writer is None or self._part_rows >= PART_ROWS:
            self.close()
            self._open()
        if self.format == "parquet":
            self._writer.write_batch(batch)
        else:
            self._writer.write(b"".join(orjson.dumps(row, default=_json_default) + b"\n"
                                        for row in batch.to_pylist()))
        self.rows += batch.num_rows
        self._part_rows += batch.num_rows

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


class FolderPublisher:
    """A run's output under DESTINATION/RUN_ID/, on local disk or a gs:// prefix."""

    def __init__(self, destination: str, run_id: str, output_format: str = "parquet") -> None:
        if output_format not in FORMATS:
            raise OutputError(f"output format {output_format!r}; expected one of {', '.join(FORMATS)}")
        self.destination = storage_uri.checked(destination).rstrip("/")
        self.run_id, self.format = run_id, output_format
        self.attempt = f"attempt-{datetime.now().strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
        self.gcs = storage_uri.is_gcs(self.destination)
        if self.gcs:
            self.scratch = Path(tempfile.mkdtemp(prefix="batch-output-"))
        else:
            # Staged beside the destination, not in it: globbing readers (DuckDB's `**`) list hidden folders too.
            # The same file system as the destination, so the swap is two renames.
            folder = Path(self.destination).resolve()
            folder.mkdir(parents=True, exist_ok=True)
            self.scratch = folder.parent / f"{self._staging_prefix}{self.attempt}"
        self.writers = {table: _PartWriter(self.scratch / table, schema, output_format)
                        for table, schema in SCHEMAS.items()}

    @property
    def _staging_prefix(self) -> str:
        return f".batch-staging.{Path(self.destination).resolve().name}.{self.run_id}."

    @property
    def run_uri(self) -> str:
        return storage_uri.join(self.destination, self.run_id)

    def write(self, table: str, batch: pa.RecordBatch) -> None:
        if batch.num_rows:
            self.writers[table].write(batch)

    def commit(self, manifest: dict[str, Any]) -> str:
        for writer in self.writers.values():
            writer.close()
        files = {table: [path.relative_to(self.scratch).as_posix() for path in writer.files]
                 for table, writer in self.writers.items()}
        manifest = manifest | {"run_id": self.run_id, "format": self.format, "files": files,
                               "rows": {table: writer.rows for table, writer in self.writers.items()}}
        if self.gcs:
            self._commit_gcs(manifest)
        else:
            self._commit_local(manifest)
        return self.run_uri

    def _commit_local(self, manifest: dict[str, Any]) -> None:
        write_json_atomically(self.scratch / MANIFEST_FILE, manifest)
        final = Path(self.run_uri)
        replaced = self.scratch.with_name(f"{self.scratch.name}.replaced")
        if final.exists():
            os.rename(final, replaced)  # the old output leaves whole...
        os.rename(self.scratch, final)  # ...and the new one arrives whole
        for leftover in self.scratch.parent.glob(f"{self._staging_prefix}*"):  # this one's, and crashed attempts'
            shutil.rmtree(leftover, ignore_errors=True)

    def _commit_gcs(self, manifest: dict[str, Any]) -> None:
        bucket_name, run_prefix = storage_uri.split_gcs(storage_uri.canonical(self.run_uri))
        bucket = storage_uri._client(self.run_uri).bucket(bucket_name)  # noqa: SLF001 - the one client factory
        attempt_prefix = f"{run_prefix}/{self.attempt}"
        manifest["files"] = {table: [f"{self.attempt}/{name}" for name in names]
                             for table, names in manifest["files"].items()}
        for names in manifest["files"].values():
            for name in names:
                local = self.scratch / name.split("/", 1)[1]
                bucket.blob(f"{run_prefix}/{name}").upload_from_filename(str(local))
        bucket.blob(f"{run_prefix}/{MANIFEST_FILE}").upload_from_string(
            json.dumps(manifest, indent=2), content_type="application/json")  # the success marker: last
        for blob in bucket.list_blobs(prefix=f"{run_prefix}/attempt-"):
            if not blob.name.startswith(attempt_prefix + "/"):
                blob.delete()
        shutil.rmtree(self.scratch, ignore_errors=True)

    def abort(self) -> None:
        for writer in self.writers.values():
            writer.close()
        shutil.rmtree(self.scratch, ignore_errors=True)


def read_manifest(destination: str, run_id: str) -> dict[str, Any]:
    """A published run's manifest; FileNotFoundError when the run has no (complete) output."""
    location = storage_uri.join(destination, run_id, MANIFEST_FILE)
    try:
        return json.loads(storage_uri.read_text(location))
    except FileNotFoundError:
        raise FileNotFoundError(f"no published output for run {run_id!r} under {destination} "
                                f"(no {MANIFEST_FILE}: never run, or the run did not finish)") from None


def output_files(destination: str, run_id: str, table: str = PREDICTIONS) -> list[str]:
    """The files of a published run's table, as the manifest lists them."""
    manifest = read_manifest(destination, run_id)
    return [storage_uri.join(destination, run_id, name) for name in manifest["files"][table]]
