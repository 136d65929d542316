"""`bq://` on this machine: one embedded DuckDB database file per project, a real SQL database.

`bq://project.dataset.table` is table `dataset.table` (schema `dataset`) in
`LOCAL_DIR/bigquery/project.duckdb`: the same dataset and table names, the same
columns, so a query written for BigQuery's tables reads the same here:

    duckdb local/bigquery/my-project.duckdb "SELECT count(*) FROM my_dataset.predictions"

From a terminal (the duckdb Python package is the client; no CLI needed):

    python -m batch_prediction.local_bigquery load 'data/processed/2014/03/*/*/batch.csv' bq://my-project.taxi.trips
    python -m batch_prediction.local_bigquery load 'data/processed/*/*/*/*/batch.csv' bq://local-project.taxi.trips \
        --schema data/datasets/chicago_taxi.schema.pbtxt   # columns typed as the reviewed schema says
    python -m batch_prediction.local_bigquery query my-project "SELECT count(*) FROM scores.predictions"

A batch prediction run's output goes to tables `predictions` and
`prediction_errors` of the destination dataset. The run's rows are replaced in
one transaction: a reader sees the old rows or the new ones, a crash rolls back,
and a rerun with the same run id never leaves duplicates.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from batch_prediction.output import ERRORS, PREDICTIONS, SCHEMAS
from pipelines.settings import SETTINGS
from storage.shards import Chunk

SCHEME = "bq://"
# BigQuery's names: project ids are lowercase with dashes, dataset and table names letters, digits, _.
_PROJECT = r"[a-z][a-z0-9-]{4,28}[a-z0-9]"
_NAME = r"[A-Za-z_][A-Za-z0-9_]{0,1023}"
_TABLE_URI = re.compile(rf"^bq://(?P<project>{_PROJECT})\.(?P<dataset>{_NAME})\.(?P<table>{_NAME})$")
_DATASET_URI = re.compile(rf"^bq://(?P<project>{_PROJECT})\.(?P<dataset>{_NAME})$")
# The tables a run writes into the destination dataset.
TABLES = {PREDICTIONS: "predictions", ERRORS: "prediction_errors"}
_DUCKDB_TYPES = {pa.string(): "VARCHAR", pa.float64(): "DOUBLE", pa.int64(): "BIGINT",
                 pa.timestamp("us", tz="UTC"): "TIMESTAMPTZ"}


class BigQueryUriError(ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class BigQueryTable:
    project: str
    dataset: str
    table: str = ""

    @property
    def dotted(self) -> str:
        return ".".join(part for part in (self.project, self.dataset, self.table) if part)


def is_bigquery(uri: str) -> bool:
    return str(uri).startswith(SCHEME)


def parse_table(uri: str) -> BigQueryTable:
    match = _TABLE_URI.match(uri)
    if not match:
        raise BigQueryUriError(f"{uri!r} is not a BigQuery table; expected bq://PROJECT.DATASET.TABLE "
                               "(project: lowercase letters, digits and dashes; dataset, table: letters, digits, _)")
    return BigQueryTable(**match.groupdict())


def parse_dataset(uri: str) -> BigQueryTable:
    match = _DATASET_URI.match(uri)
    if not match:
        raise BigQueryUriError(f"{uri!r} is not a BigQuery dataset; expected bq://PROJECT.DATASET "
                               "(the run writes tables predictions and prediction_errors into it)")
    return BigQueryTable(**match.groupdict())


def database_path(project: str, local_dir: Path | None = None) -> Path:
    """The DuckDB file standing in for a BigQuery project."""
    return Path(local_dir or SETTINGS.local_dir) / "bigquery" / f"{project}.duckdb"


def connect(project: str, local_dir: Path | None = None, must_exist: bool = False):
    """A connection to the project's database. Always read-write: DuckDB lets one process hold several
    connections to a file only with one configuration, and a run may read and write the same project."""
    import duckdb

    path = database_path(project, local_dir)
    if must_exist and not path.exists():
        raise FileNotFoundError(f"no local BigQuery stand-in for project {project!r}: {path} does not exist")
    path.parent.mkdir(parents=True, exist_ok=True)
    return duckdb.connect(str(path))


def _quoted(*names: str) -> str:
    return ".".join('"' + name.replace('"', '""') + '"' for name in names)


def iter_table_chunks(uri: str, chunk_rows: int, columns: list[str] | None = None,
                      local_dir: Path | None = None) -> Iterator[Chunk]:
    """A `bq://project.dataset.table` source as `storage.shards` chunks, streamed from DuckDB."""
    table = parse_table(uri)
    connection = connect(table.project, local_dir, must_exist=True)
    try:
        known = connection.execute("SELECT column_name FROM information_schema.columns WHERE table_schema = ? "
                                   "AND table_name = ? ORDER BY ordinal_position",
                                   [table.dataset, table.table]).fetchall()
        if not known:
            raise FileNotFoundError(f"{uri}: no table {table.dataset}.{table.table} in "
                                    f"{database_path(table.project, local_dir)}")
        present = [name for (name,) in known if columns is None or name in columns]
        selected = ", ".join(_quoted(name) for name in present)
        reader = connection.execute(f"SELECT {selected} FROM {_quoted(table.dataset, table.table)}"
                                    ).fetch_record_batch(chunk_rows)
        position = 0
        for batch in reader:
            # The table's scan order (DuckDB keeps insertion order): what a key without key_field counts here.
            yield Chunk(uri, np.arange(position, position + batch.num_rows, dtype=np.int64), batch)
            position += batch.num_rows
    finally:
        connection.close()


def create_table_sql(dataset: str, table: str, schema: pa.Schema) -> str:
    columns = ", ".join(f"{_quoted(field.name)} {_DUCKDB_TYPES[field.type]}" for field in schema)
    return f"CREATE TABLE IF NOT EXISTS {_quoted(dataset, table)} ({columns})"


class DuckDBPublisher:
    """A run's rows into DESTINATION's tables, replacing that run's earlier rows, in one transaction."""

    def __init__(self, destination: str, run_id: str, local_dir: Path | None = None) -> None:
        self.target = parse_dataset(destination)
        self.run_id = run_id
        self.rows = dict.fromkeys(SCHEMAS, 0)
        self.connection = connect(self.target.project, local_dir)
        self.connection.execute("BEGIN TRANSACTION")
        self.connection.execute(f"CREATE SCHEMA IF NOT EXISTS {_quoted(self.target.dataset)}")
        for kind, schema in SCHEMAS.items():
            self.connection.execute(create_table_sql(self.target.dataset, TABLES[kind], schema))
            self.connection.execute(f"DELETE FROM {_quoted(self.target.dataset, TABLES[kind])} WHERE run_id = ?",
                                    [run_id])

    def write(self, table: str, batch: pa.RecordBatch) -> None:
        if not batch.num_rows:
            return
        self.connection.register("incoming", batch)
        self.connection.execute(f"INSERT INTO {_quoted(self.target.dataset, TABLES[table])} SELECT * FROM incoming")
        self.connection.unregister("incoming")
        self.rows[table] += batch.num_rows

    def commit(self, manifest: dict[str, Any]) -> str:
        self.connection.execute("COMMIT")
        self.connection.close()
        return f"{SCHEME}{self.target.dotted}"

    def abort(self) -> None:
        try:
            self.connection.execute("ROLLBACK")
        finally:
            self.connection.close()


# A reviewed schema's types as the DuckDB column types a BigQuery table of them has (INT64, FLOAT64, STRING).
SCHEMA_TYPES = {"INT": "BIGINT", "FLOAT": "DOUBLE", "BYTES": "VARCHAR"}


def schema_types(schema_uri: str) -> dict[str, str]:
    """Each column a tensorflow-metadata schema names -> its DuckDB type."""
    from tensorflow_metadata.proto.v0 import schema_pb2

    from contract.schema import load_schema

    return {feature.name: SCHEMA_TYPES[schema_pb2.FeatureType.Name(feature.type)]
            for feature in load_schema(schema_uri).feature if schema_pb2.FeatureType.Name(feature.type) in SCHEMA_TYPES}


def load_files(files: str | list[str], table_uri: str, types: dict[str, str] | None = None,
               local_dir: Path | None = None) -> int:
    """Creates or replaces a table from CSV/JSONL/Parquet files (a glob, or a list of paths), typed by DuckDB or,
    for the columns `types` names, as it says (a column that is empty in every row sampled is otherwise text);
    also creates the dataset `DATASET_snapshots` the bq:// training source snapshots into. Returns the rows."""
    table = parse_table(table_uri)
    listed = [files] if isinstance(files, str) else files
    source = "[" + ", ".join("'" + name.replace("'", "''") + "'" for name in listed) + "]"
    reader = f"read_csv({source}, types = {dict(types)!r})" if types else source if len(listed) > 1 else source[1:-1]
    with connect(table.project, local_dir) as connection:
        connection.execute(f"CREATE SCHEMA IF NOT EXISTS {_quoted(table.dataset)}")
        connection.execute(f"CREATE SCHEMA IF NOT EXISTS {_quoted(table.dataset + '_snapshots')}")
        connection.execute(f"CREATE OR REPLACE TABLE {_quoted(table.dataset, table.table)} AS SELECT * FROM {reader}")
        return connection.execute(f"SELECT count(*) FROM {_quoted(table.dataset, table.table)}").fetchone()[0]


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    import duckdb

    parser = argparse.ArgumentParser(prog="python -m batch_prediction.local_bigquery",
                                     description="The local bq:// stand-in: load files into a table, or query.")
    commands = parser.add_subparsers(dest="command", required=True)
    load = commands.add_parser("load", help="create or replace a table from CSV/JSONL/Parquet files, typed by DuckDB")
    load.add_argument("files", help="a file, or a glob such as 'data/processed/2014/03/*/*/batch.csv'")
    load.add_argument("table", help="bq://PROJECT.DATASET.TABLE")
    load.add_argument("--schema", help="a reviewed schema (.pbtxt): type the columns it names as it says")
    query = commands.add_parser("query", help="run SQL against a project's database and print the result")
    query.add_argument("project")
    query.add_argument("sql")
    args = parser.parse_args(argv)
    try:
        if args.command == "load":
            rows = load_files(args.files, args.table, schema_types(args.schema) if args.schema else None)
            print(f"{args.table}: {rows} rows from {args.files} ({database_path(parse_table(args.table).project)})")
        else:
            with connect(args.project, must_exist=True) as connection:
                print(connection.sql(args.sql))
    except (BigQueryUriError, FileNotFoundError, duckdb.Error) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
