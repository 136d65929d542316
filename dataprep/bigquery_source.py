"""`bq://PROJECT.DATASET.TABLE` as training data: pinned to an immutable table snapshot, read into the same
bounded shards the CSV path writes.

Two calls, two pipeline steps:

- `pin_data` (the pipeline's first step, never cached): a table is snapshotted,

      CREATE SNAPSHOT TABLE `PROJECT.DATASET_snapshots.TABLE_YYYYMMDD_HHMMSS_ffffff`
      CLONE `PROJECT.DATASET.TABLE` FOR SYSTEM_TIME AS OF CURRENT_TIMESTAMP()
      OPTIONS (expiration_timestamp = TIMESTAMP_ADD(CURRENT_TIMESTAMP(), INTERVAL N DAY))

  into a dataset of its own beside the table's (so the pipelines account needs no write right on the data),
  and a snapshot named in data_uri is used as it is. The snapshot's full name and time,
  `PROJECT.DATASET_snapshots.NAME@2026-11-23T10:15:00.123000Z`, become the run's data_version. Ingest takes
  both as inputs: on Vertex a rerun over the same snapshot is served from the cache, a new snapshot is
  ingested again, and the registered version's lineage names exactly the rows it was trained on.
- `ingest_table` (ingest, for a bq:// data_uri): the table's BigQuery column types are checked against the
  reviewed schema before any row is read (`dataprep.validation.bigquery_column_problems`); then its rows
  are read through the BigQuery Storage Read API (Arrow record batches; several streams read in parallel
  when BigQuery offers them), typed by their BigQuery types, labelled, split by the same hash of the same
  key text as a CSV batch, and written as the same bounded Parquet shards. Validation, transform, training
  and evaluation read them as they read a CSV ingest's. The table is one batch: a problem keeps all of
  its rows out, and validation reports it as a critical anomaly naming the table.

Where bq:// points: BigQuery (google-cloud-bigquery for the statement and tables.get over REST,
google-cloud-bigquery-storage for the read session over gRPC), or, when `MLOPS_BIGQUERY=duckdb` (local mode
sets it for its steps), the DuckDB stand-in of `batch_prediction/local_bigquery.py`. There a snapshot is an
immutable copy with its time; a second snapshot of an unchanged table shares the first one's copy.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import json
import os
import queue
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa

from batch_prediction.local_bigquery import SCHEME, BigQueryTable, BigQueryUriError, is_bigquery, parse_table

# Where snapshots go: a dataset beside the table's, named after it (a snapshot must stay in its base table's
# region, and the pipelines account writes only there).
SNAPSHOT_DATASET_SUFFIX = "_snapshots"
DEFAULT_EXPIRATION_DAYS = 90
# Streams asked of a read session: BigQuery gives fewer when the table is small (at least one), never more.
MAX_READ_STREAMS = 4
# Arrow record batches each stream's reader may hold ahead of ingest.
READ_AHEAD_BATCHES = 2
BACKEND_ENV = "MLOPS_BIGQUERY"
DUCKDB_BACKEND = "duckdb"
# A BigQuery Storage Read API server to talk to without credentials (tests' loopback stand-in), as
# google-cloud-bigquery goes to BIGQUERY_EMULATOR_HOST for the REST API.
STORAGE_HOST_ENV = "MLOPS_BIGQUERY_STORAGE_HOST"
SNAPSHOT = "SNAPSHOT"
TABLE = "TABLE"
# BigQuery's legacy type names (tables.get answers with them) -> standard SQL names.
_STANDARD_TYPES = {"INTEGER": "INT64", "FLOAT": "FLOAT64", "BOOLEAN": "BOOL", "RECORD": "STRUCT"}
# How each readable BigQuery type lands in the shards: the kinds a CSV column is typed as.
KINDS = {"INT64": "int", "BOOL": "int", "FLOAT64": "float", "NUMERIC": "float", "BIGNUMERIC": "float",
         "STRING": "text", "DATE": "text", "DATETIME": "text", "TIME": "text", "TIMESTAMP": "text"}
# DuckDB's types (information_schema.columns.data_type) as the BigQuery type a table loaded with them has.
_DUCKDB_TYPES = {"BIGINT": "INT64", "INTEGER": "INT64", "SMALLINT": "INT64", "TINYINT": "INT64",
                 "UINTEGER": "INT64", "USMALLINT": "INT64", "UTINYINT": "INT64", "DOUBLE": "FLOAT64",
                 "FLOAT": "FLOAT64", "VARCHAR": "STRING", "BOOLEAN": "BOOL", "DATE": "DATE", "TIME": "TIME",
                 "TIMESTAMP": "DATETIME", "TIMESTAMP WITH TIME ZONE": "TIMESTAMP", "BLOB": "BYTES"}


class BigQuerySourceError(ValueError):
    """A table, snapshot or filter that cannot be read; the message names the table and what was expected."""


@dataclasses.dataclass(frozen=True)
class TableInfo:
    table: BigQueryTable
    kind: str  # TABLE, SNAPSHOT, or another BigQuery table type (VIEW, EXTERNAL, ...)
    columns: dict[str, str]  # name -> BigQuery standard SQL type, in the table's order
    rows: int | None
    snapshot_time: datetime.datetime | None = None
    base_table: str = ""  # a snapshot's: PROJECT.DATASET.TABLE
    expiration_time: datetime.datetime | None = None

    @property
    def uri(self) -> str:
        return f"{SCHEME}{self.table.dotted}"

    @property
    def data_version(self) -> str:
        """`PROJECT.DATASET.SNAPSHOT@TIME`: which rows, exactly (a snapshot never changes)."""
        return f"{self.table.dotted}@{timestamp_text(self.snapshot_time)}"


@dataclasses.dataclass(frozen=True)
class PinnedData:
    data_uri: str  # what ingest reads: the snapshot, or the files as given
    data_version: str
    created: bool = False  # a new snapshot was made by this call


def timestamp_text(moment: datetime.datetime | None) -> str:
    if moment is None:
        return ""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def standard_type(bigquery_type: str, mode: str = "NULLABLE") -> str:
    """A column's type as standard SQL names it: INTEGER -> INT64; a REPEATED column is an ARRAY."""
    name = _STANDARD_TYPES.get(bigquery_type.upper(), bigquery_type.upper())
    return f"ARRAY<{name}>" if (mode or "").upper() == "REPEATED" else name


def snapshot_target(source: BigQueryTable, moment: datetime.datetime) -> BigQueryTable:
    """`PROJECT.DATASET_snapshots.TABLE_YYYYMMDD_HHMMSS_ffffff`: beside the table, named by when it was asked for."""
    return BigQueryTable(source.project, f"{source.dataset}{SNAPSHOT_DATASET_SUFFIX}",
                         f"{source.table}_{moment.astimezone(datetime.UTC):%Y%m%d_%H%M%S_%f}")


def _not_found(table: BigQueryTable, detail: str = "") -> BigQuerySourceError:
    return BigQuerySourceError(
        f"{SCHEME}{table.dotted} does not exist{f' ({detail})' if detail else ''}; expected a table or a table "
        f"snapshot (a snapshot is deleted by BigQuery when it expires: name its base table to take a new one)")


class Tables(Protocol):
    """What the bq:// source needs of BigQuery, on BigQuery or on the local stand-in."""

    def describe(self, table: BigQueryTable) -> TableInfo: ...

    def create_snapshot(self, source: BigQueryTable, target: BigQueryTable, expiration_days: int) -> TableInfo: ...

    def read_batches(self, table: BigQueryTable, columns: list[str], row_filter: str, chunk_rows: int
             ) -> Iterator[pa.RecordBatch]: ...


# ------------------------------------------------------------------------------------------ local (DuckDB)
class DuckDBTables:
    """Tables, snapshots and reads on the DuckDB stand-in (`LOCAL_DIR/bigquery/PROJECT.duckdb`).

    A snapshot is a view on a copy of the base table's rows in the hidden schema `_bigquery`, made in one
    transaction with its time, and recorded in `_bigquery.snapshots` (base table, time, expiration). The
    copy is named by a fingerprint of the table's columns and rows (count and sum of 64-bit row hashes), so a
    second snapshot of an unchanged table is one more view on the same copy: no data is copied again.
    An expired snapshot is dropped the next time the project is read, as BigQuery deletes it.
    """

    CATALOG = "_bigquery"

    def __init__(self, local_dir: Path | None = None, now: Callable[[], datetime.datetime] = _utc_now) -> None:
        self.local_dir, self.now = local_dir, now

    @contextlib.contextmanager
    def _connection(self, project: str):
        import duckdb

        from batch_prediction import local_bigquery

        try:
            connection = local_bigquery.connect(project, self.local_dir, must_exist=True)
        except FileNotFoundError as error:
            raise BigQuerySourceError(f"{error}; load a table first: python -m batch_prediction.local_bigquery "
                                      f"load 'data/processed/*/*/*/*/batch.csv' bq://{project}.DATASET.TABLE"
                                      ) from None
        except duckdb.Error as error:  # another process holds the file (DuckDB allows one writer)
            raise BigQuerySourceError(f"cannot open the stand-in of project {project!r}: "
                                      f"{str(error).splitlines()[0]}") from None
        try:
            # A name DuckDB does not find must never be read from a Python variable of that name.
            connection.execute("SET python_enable_replacements = false")
            self._expire(connection)
            yield connection
        finally:
            connection.close()

    def _catalog_exists(self, connection) -> bool:
        return bool(connection.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND "
                                       "table_name = 'snapshots'", [self.CATALOG]).fetchone()[0])

    def _expire(self, connection) -> None:
        if not self._catalog_exists(connection):
            return
        expired = connection.execute(f"SELECT snapshot FROM {self.CATALOG}.snapshots WHERE expiration_time <= ?",
                                     [self.now()]).fetchall()
        for (name,) in expired:
            dataset, table = name.split(".", 1)
            connection.execute(f"DROP VIEW IF EXISTS {_quoted(dataset, table)}")
            connection.execute(f"DELETE FROM {self.CATALOG}.snapshots WHERE snapshot = ?", [name])
        if expired:  # copies no snapshot refers to any more
            for (data_table,) in connection.execute(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = ? AND table_name <> "
                    f"'snapshots' AND table_name NOT IN (SELECT data_table FROM {self.CATALOG}.snapshots)",
                    [self.CATALOG]).fetchall():
                connection.execute(f"DROP TABLE {_quoted(self.CATALOG, data_table)}")

    def _describe(self, connection, table: BigQueryTable) -> TableInfo:
        found = connection.execute("SELECT table_type FROM information_schema.tables WHERE table_schema = ? AND "
                                   "table_name = ?", [table.dataset, table.table]).fetchone()
        if found is None or table.dataset == self.CATALOG:
            raise _not_found(table, f"no table {table.dataset}.{table.table} in "
                                    f"{_database_path(table.project, self.local_dir)}")
        columns = {name: _DUCKDB_TYPES.get(kind, "NUMERIC" if kind.startswith("DECIMAL") else kind)
                   for name, kind in connection.execute(
                       "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = ? AND "
                       "table_name = ? ORDER BY ordinal_position", [table.dataset, table.table]).fetchall()}
        snapshot = connection.execute(
            f"SELECT base_table, snapshot_time, expiration_time FROM {self.CATALOG}.snapshots WHERE snapshot = ?",
            [f"{table.dataset}.{table.table}"]).fetchone() if self._catalog_exists(connection) else None
        rows = connection.execute(f"SELECT count(*) FROM {_quoted(table.dataset, table.table)}").fetchone()[0]
        if snapshot:
            base, taken, expires = snapshot
            return TableInfo(table, SNAPSHOT, columns, rows, taken, base, expires)
        return TableInfo(table, TABLE if found[0] == "BASE TABLE" else found[0], columns, rows)

    def describe(self, table: BigQueryTable) -> TableInfo:
        with self._connection(table.project) as connection:
            return self._describe(connection, table)

    def create_snapshot(self, source: BigQueryTable, target: BigQueryTable, expiration_days: int) -> TableInfo:
        if target.project != source.project:
            raise BigQuerySourceError(f"the stand-in keeps one project per file: {target.dotted} must be in "
                                      f"{source.project}")
        with self._connection(source.project) as connection:
            base = self._describe(connection, source)
            connection.execute("BEGIN TRANSACTION")
            try:
                connection.execute(f"CREATE SCHEMA IF NOT EXISTS {self.CATALOG}")
                connection.execute(f"CREATE TABLE IF NOT EXISTS {self.CATALOG}.snapshots (snapshot VARCHAR PRIMARY "
                                   "KEY, base_table VARCHAR, snapshot_time TIMESTAMPTZ, expiration_time TIMESTAMPTZ, "
                                   "data_table VARCHAR)")
                quoted = _quoted(source.dataset, source.table)
                rows, hashes = connection.execute(
                    f"SELECT count(*), sum(hash(source_row)::HUGEINT) FROM {quoted} AS source_row").fetchone()
                fingerprint = hashlib.sha256(json.dumps([list(base.columns.items()), rows, str(hashes)]).encode())
                data_table = f"{source.dataset}__{source.table}__{fingerprint.hexdigest()[:16]}"
                connection.execute(f"CREATE TABLE IF NOT EXISTS {_quoted(self.CATALOG, data_table)} AS "
                                   f"SELECT * FROM {quoted}")
                connection.execute(f"CREATE SCHEMA IF NOT EXISTS {_quoted(target.dataset)}")
                connection.execute(f"CREATE VIEW {_quoted(target.dataset, target.table)} AS SELECT * FROM "
                                   f"{_quoted(self.CATALOG, data_table)}")
                # The transaction's start: every row it copied was there then, none added after.
                taken = connection.execute("SELECT current_timestamp").fetchone()[0]
                expires = taken + datetime.timedelta(days=expiration_days) if expiration_days else None
                connection.execute(f"INSERT INTO {self.CATALOG}.snapshots VALUES (?, ?, ?, ?, ?)",
                                   [f"{target.dataset}.{target.table}", source.dotted, taken, expires, data_table])
                connection.execute("COMMIT")
            except Exception as error:
                connection.execute("ROLLBACK")
                import duckdb

                if isinstance(error, duckdb.CatalogException):
                    raise BigQuerySourceError(f"cannot create snapshot {SCHEME}{target.dotted}: "
                                              f"{str(error).splitlines()[0]}") from None
                raise
            return self._describe(connection, target)

    def read_batches(self, table: BigQueryTable, columns: list[str], row_filter: str, chunk_rows: int
             ) -> Iterator[pa.RecordBatch]:
        import duckdb

        selected = ", ".join(_quoted(name) for name in columns) or "NULL"
        sql = f"SELECT {selected} FROM {_quoted(table.dataset, table.table)}"
        if row_filter.strip():
            sql += f" WHERE ({row_filter})"
            try:
                statements = len(duckdb.extract_statements(sql))
            except duckdb.Error as error:
                raise _bad_filter(table, row_filter, str(error).splitlines()[0]) from None
            if statements != 1:
                raise _bad_filter(table, row_filter, "it is more than one SQL statement")
        with self._connection(table.project) as connection:
            self._describe(connection, table)  # names a table that is missing (or expired) before the filter
            try:
                reader = connection.execute(sql).to_arrow_reader(chunk_rows)
                yield from reader
            except duckdb.Error as error:
                if not row_filter.strip():
                    raise
                raise _bad_filter(table, row_filter, str(error).splitlines()[0]) from None


def _quoted(*names: str) -> str:
    return ".".join('"' + name.replace('"', '""') + '"' for name in names)


def _database_path(project: str, local_dir: Path | None) -> Path:
    from batch_prediction.local_bigquery import database_path

    return database_path(project, local_dir)


def _bad_filter(table: BigQueryTable, row_filter: str, why: str) -> BigQuerySourceError:
    return BigQuerySourceError(f"row_filter {row_filter!r} cannot filter {SCHEME}{table.dotted}: {why}; expected "
                               "one SQL condition on its columns, e.g. \"trip_start_timestamp >= 1388534400\"")


# ----------------------------------------------------------------------------------------------- BigQuery
class CloudTables:
    """BigQuery through its official clients: google-cloud-bigquery (REST: the snapshot statement as a query
    job, tables.get) and google-cloud-bigquery-storage (gRPC: a read session, its streams read in parallel).
    Jobs and read sessions are billed to `billing_project`."""

    def __init__(self, billing_project: str) -> None:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import bigquery

        self.billing_project = billing_project
        # An emulator or a test's stand-in takes no credentials (google-cloud-bigquery honours the variable).
        credentials = AnonymousCredentials() if os.environ.get("BIGQUERY_EMULATOR_HOST") else None
        self.client = bigquery.Client(project=billing_project, credentials=credentials)
        self._read_client = None

    @property
    def read_client(self):
        if self._read_client is None:
            from google.cloud import bigquery_storage_v1

            host = os.environ.get(STORAGE_HOST_ENV)
            if host:
                import grpc
                from google.cloud.bigquery_storage_v1.services.big_query_read.transports import (
                    BigQueryReadGrpcTransport,
                )

                transport = BigQueryReadGrpcTransport(channel=grpc.insecure_channel(host))
                self._read_client = bigquery_storage_v1.BigQueryReadClient(transport=transport)
            else:
                self._read_client = bigquery_storage_v1.BigQueryReadClient()
        return self._read_client

    def describe(self, table: BigQueryTable) -> TableInfo:
        from google.api_core import exceptions

        try:
            resource = self.client.get_table(table.dotted)
        except exceptions.NotFound as error:
            raise _not_found(table, _reason(error)) from None
        except exceptions.GoogleAPICallError as error:
            raise BigQuerySourceError(f"cannot read {SCHEME}{table.dotted}'s metadata: {_reason(error)}") from None
        columns = {field.name: standard_type(field.field_type, field.mode) for field in resource.schema}
        snapshot = resource.snapshot_definition
        if resource.table_type == SNAPSHOT and snapshot is not None:
            base = snapshot.base_table_reference
            return TableInfo(table, SNAPSHOT, columns, resource.num_rows, snapshot.snapshot_time,
                             f"{base.project}.{base.dataset_id}.{base.table_id}", resource.expires)
        return TableInfo(table, resource.table_type or TABLE, columns, resource.num_rows,
                         expiration_time=resource.expires)

    def create_snapshot(self, source: BigQueryTable, target: BigQueryTable, expiration_days: int) -> TableInfo:
        from google.api_core import exceptions

        try:
            self.client.query(snapshot_statement(source, target, expiration_days)).result()
        except exceptions.NotFound as error:  # the table was just described: the snapshot dataset is missing
            raise BigQuerySourceError(
                f"cannot snapshot {SCHEME}{source.dotted} into {SCHEME}{target.dotted}: {_reason(error)}; expected "
                f"the dataset {target.project}.{target.dataset} beside the table (Terraform creates it: DDL does "
                "not)") from None
        except exceptions.GoogleAPICallError as error:
            raise BigQuerySourceError(f"BigQuery refused to snapshot {SCHEME}{source.dotted} into "
                                      f"{SCHEME}{target.dotted}: {_reason(error)}") from None
        return self.describe(target)

    def read_batches(self, table: BigQueryTable, columns: list[str], row_filter: str, chunk_rows: int
             ) -> Iterator[pa.RecordBatch]:
        from google.api_core import exceptions
        from google.cloud.bigquery_storage_v1 import types

        requested = types.ReadSession(
            table=f"projects/{table.project}/datasets/{table.dataset}/tables/{table.table}",
            data_format=types.DataFormat.ARROW,
            read_options=types.ReadSession.TableReadOptions(selected_fields=columns, row_restriction=row_filter))
        try:
            session = self.read_client.create_read_session(parent=f"projects/{self.billing_project}",
                                                           read_session=requested, max_stream_count=MAX_READ_STREAMS)
        except exceptions.NotFound as error:
            raise _not_found(table, error.message) from None
        except exceptions.InvalidArgument as error:
            if not row_filter.strip():
                raise BigQuerySourceError(f"BigQuery refused to read {SCHEME}{table.dotted}: {error.message}"
                                          ) from None
            raise _bad_filter(table, row_filter, error.message) from None
        # A session over an empty table has no stream (google/cloud/bigquery/_pandas_helpers.py reads none).
        sources = [lambda stream=stream: self._stream_batches(session, stream.name, chunk_rows)
                   for stream in session.streams]
        try:
            yield from interleaved(sources, READ_AHEAD_BATCHES)
        except exceptions.GoogleAPICallError as error:  # a stream refused after retries (expired, a filter...)
            raise BigQuerySourceError(f"reading {SCHEME}{table.dotted} failed: {error.message}"
                                      + (f" (row_filter {row_filter!r})" if row_filter.strip() else "")) from None

    def _stream_batches(self, session, stream: str, chunk_rows: int) -> Iterator[pa.RecordBatch]:
        for page in self.read_client.read_rows(stream).rows(session).pages:
            batch = page.to_arrow()
            for start in range(0, batch.num_rows, chunk_rows):  # bounded pandas work per chunk
                yield batch.slice(start, chunk_rows)


def _reason(error) -> str:
    """BigQuery's own words for a failed call: the first error's message (a job's exception text repeats it,
    with the job's location and id on further lines)."""
    first = (getattr(error, "errors", None) or [None])[0]
    return first["message"] if isinstance(first, dict) and first.get("message") else error.message.splitlines()[0]


def snapshot_statement(source: BigQueryTable, target: BigQueryTable, expiration_days: int) -> str:
    """The DDL that pins a table: an immutable copy as of the statement's time, expiring after N days (0: never)."""
    expiration = (f"\nOPTIONS (expiration_timestamp = TIMESTAMP_ADD(CURRENT_TIMESTAMP(), INTERVAL {expiration_days} "
                  "DAY))") if expiration_days else ""
    return (f"CREATE SNAPSHOT TABLE `{target.dotted}`\nCLONE `{source.dotted}`\n"
            f"FOR SYSTEM_TIME AS OF CURRENT_TIMESTAMP(){expiration}")


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


_END = object()


def interleaved(sources: list[Callable[[], Iterator[Any]]], read_ahead: int) -> Iterator[Any]:
    """The items of every source, each source read in a thread of its own at most `read_ahead` items ahead,
    taken in turn (one from the first, one from the second, ...): memory holds at most read_ahead items per
    source, and the same sources give the same order. A source's error is raised here; leaving early stops
    every reader."""
    if len(sources) <= 1:
        for source in sources:
            yield from source()
        return
    stop = threading.Event()
    queues: list[queue.Queue] = [queue.Queue(maxsize=read_ahead) for _ in sources]

    def put(out: queue.Queue, item: Any) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def pump(source: Callable[[], Iterator[Any]], out: queue.Queue) -> None:
        try:
            for item in source():
                if not put(out, item):
                    return
            put(out, _END)
        except BaseException as error:  # handed to the consumer, which raises it
            put(out, _Failed(error))

    threads = [threading.Thread(target=pump, args=(source, out), daemon=True) for source, out in zip(
        sources, queues, strict=True)]
    for thread in threads:
        thread.start()
    try:
        live = list(queues)
        while live:
            for out in list(live):
                item = out.get()
                if item is _END:
                    live.remove(out)
                elif isinstance(item, _Failed):
                    raise item.error
                else:
                    yield item
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=5)


def open_tables(project: str) -> Tables:
    """The bq:// backend of this process: the DuckDB stand-in in local mode, BigQuery anywhere else."""
    backend = os.environ.get(BACKEND_ENV, "")
    if backend == DUCKDB_BACKEND:
        from pipelines.settings import Settings

        return DuckDBTables(Settings.from_environment().local_dir)
    if backend:
        raise BigQuerySourceError(f"{BACKEND_ENV}={backend!r}; expected {DUCKDB_BACKEND!r} (the local stand-in) "
                                  "or unset (BigQuery)")
    return CloudTables(project)


def parsed(data_uri: str) -> BigQueryTable:
    try:
        return parse_table(data_uri.strip())
    except BigQueryUriError as error:
        raise BigQuerySourceError(str(error)) from None


# ------------------------------------------------------------------------------------------------- pin
def pin_data(data_uri: str, data_version: str = "", expiration_days: int = DEFAULT_EXPIRATION_DAYS,
             tables: Tables | None = None, now: Callable[[], datetime.datetime] = _utc_now) -> PinnedData:
    """What ingest reads and its version. Files pass through as given (their triggers name their bytes);
    a BigQuery table is snapshotted, a snapshot is used as it is, and its name and time are the version."""
    if not is_bigquery(data_uri.strip()):
        return PinnedData(data_uri, data_version)
    if isinstance(expiration_days, bool) or not isinstance(expiration_days, int) or expiration_days < 0:
        raise BigQuerySourceError(f"snapshot_expiration_days={expiration_days!r}; expected a whole number of days "
                                  ">= 0 (0: the snapshot never expires)")
    table = parsed(data_uri)
    tables = tables or open_tables(table.project)
    found = tables.describe(table)
    if found.kind == SNAPSHOT:
        return PinnedData(found.uri, found.data_version)
    if found.kind != TABLE:
        raise BigQuerySourceError(f"{found.uri} is a {found.kind}; expected a table or a table snapshot (BigQuery "
                                  "snapshots tables only)")
    snapshot = tables.create_snapshot(table, snapshot_target(table, now()), expiration_days)
    return PinnedData(snapshot.uri, snapshot.data_version, created=True)


# ----------------------------------------------------------------------------------------------- ingest
def key_text(column: pa.Array | pa.ChunkedArray) -> list[str]:
    """A split key column as the text a CSV writer gives it (what the CSV path hashes): Python's shortest
    text that reads back the same float (7.0 as "7.0", as pandas and the csv module write it), whole
    numbers and text as they are, NULL as an empty cell."""
    return ["" if value is None else repr(value) if isinstance(value, float) else str(value)
            for value in column.to_pylist()]


def typed_columns(batch: pa.RecordBatch, kinds: dict[str, str], missing_values: tuple[str, ...]) -> list[pa.Array]:
    """Each column as its kind's Arrow type, as a CSV ingest types it: a text cell holding a missing-value
    marker (as "" or "NA") is missing, a float NaN is missing, BOOL is 0/1, dates and times are text."""
    import pyarrow.compute as pc

    missing = pa.array(missing_values, pa.string())
    arrays = []
    for name, kind in kinds.items():
        column = batch.column(name)
        if kind == "text":
            text = column if pa.types.is_string(column.type) else pc.cast(column, pa.string())
            arrays.append(pc.if_else(pc.is_in(text, value_set=missing), pa.scalar(None, pa.string()), text))
        elif kind == "float":
            numbers = pc.cast(column, pa.float64())
            arrays.append(pc.if_else(pc.is_nan(numbers), pa.scalar(None, pa.float64()), numbers))
        else:
            arrays.append(pc.cast(column, pa.int64()))
    return arrays


def _source_problems(found: TableInfo, config, inputs: list[str]):
    """What keeps the table's rows out before any is read: a column the label reads missing, a reviewed
    schema's column missing or of another type (none yet on first use: validate infers one)."""
    from contract.schema import load_schema
    from dataprep.ingest import MISSING_COLUMN, BatchProblem
    from dataprep.validation import bigquery_column_problems
    from storage import uri as storage_uri

    expression = config.label.expression
    problems = [BatchProblem(column, MISSING_COLUMN, f"{found.uri} has no column {column!r}; the label expression "
                                                     f"{expression!r} reads it")
                for column in inputs if column not in found.columns]
    if storage_uri.exists(config.schema_uri):
        problems += bigquery_column_problems(found.columns, load_schema(config.schema_uri), found.uri,
                                             explained={problem.column for problem in problems})
    return problems


def ingest_table(data_uri: str, config, output_dir: str | Path, shard_rows: int, row_filter: str = "",
                 tables: Tables | None = None):
    """Ingest for `bq://PROJECT.DATASET.TABLE` (a snapshot, as `pin_data` gives it): the same manifest and
    train/eval shards as for CSV batches, the table being the one batch. Memory holds a few Arrow record
    batches and one chunk, whatever the table's size."""
    import pyarrow.compute as pc

    from contract.artifacts import EVAL_SPLIT, MANIFEST_FILE, TRAIN_SPLIT
    from contract.dataset import BATCH_COLUMN
    from dataprep.ingest import (
        CHUNK_ROWS,
        NO_ROWS,
        BatchInfo,
        BatchProblem,
        IngestError,
        IngestSummary,
        _label,
        examples_schema,
        label_input_columns,
        split_assignment,
    )
    from storage import shards

    table = parsed(data_uri)
    tables = tables or open_tables(table.project)
    found = tables.describe(table)
    missing_keys = [column for column in config.split_key if column not in found.columns]
    if missing_keys:
        raise IngestError(f"split key column(s) {missing_keys} not in {found.uri}; its columns are "
                          f"{list(found.columns)}")
    inputs = label_input_columns(config.label.expression)
    problems = _source_problems(found, config, inputs)
    kinds = {name: KINDS[kind] for name, kind in found.columns.items() if kind in KINDS}
    schema = examples_schema(kinds, config)
    names = list(kinds)
    output = Path(output_dir)
    label_sum = 0
    with (shards.ShardWriter(output / TRAIN_SPLIT, schema, shard_rows) as train,
          shards.ShardWriter(output / EVAL_SPLIT, schema, shard_rows) as evaluation):
        read = 0
        for batch in ([] if problems else tables.read_batches(table, names, row_filter, CHUNK_ROWS)):
            read += batch.num_rows
            arrays = typed_columns(batch, kinds, config.missing_values)
            typed = pa.Table.from_arrays(arrays, names=names)
            frame = typed.select([name for name in inputs if name in kinds]).to_pandas(
                types_mapper={pa.int64(): _pandas_int64()}.get)
            try:
                labels = _label(frame, config.label.expression)
            except Exception as error:  # the expression does not fit the table's columns
                raise IngestError(f"label expression {config.label.expression!r} failed on {found.uri}: "
                                  f"{error}") from error
            label_sum += int(labels.sum())
            raw_keys = _frame({column: key_text(batch.column(column)) for column in config.split_key})
            is_eval = pa.array(split_assignment(raw_keys, config.split_key, config.eval_percent))
            rows = typed.append_column(BATCH_COLUMN, pa.array([0] * batch.num_rows, pa.int32())).append_column(
                config.label.name, pa.array(labels.to_numpy(), pa.int64()))
            train.write(rows.filter(pc.invert(is_eval)))
            evaluation.write(rows.filter(is_eval))
        if not problems and not read:
            selected = f"row_filter {row_filter!r} selects no row of it" if row_filter.strip() else "it has no rows"
            problems.append(BatchProblem("", NO_ROWS, f"{selected}; expected rows to train on"))
    rows_written = train.rows + evaluation.rows
    info = BatchInfo(uri=found.uri, rows=read, columns=list(found.columns), problems=problems)
    summary = IngestSummary(data_uri=found.uri, batches=[info], rows=rows_written, train_rows=train.rows,
                            eval_rows=evaluation.rows,
                            label_positive_rate=label_sum / rows_written if rows_written else None)
    (output / MANIFEST_FILE).write_text(json.dumps(dataclasses.asdict(summary), indent=1, allow_nan=False))
    return summary


def _pandas_int64():
    import pandas as pd

    return pd.Int64Dtype()


def _frame(columns: dict[str, list[str]]):
    """Text columns as the object-dtype frame the CSV path hashes."""
    import pandas as pd

    return pd.DataFrame({name: pd.Series(values, dtype=object) for name, values in columns.items()})

