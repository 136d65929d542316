"""bq:// fixtures: DuckDB stand-in projects filled from the shipped sample, typed as a team's SQL would type
the table (by the reviewed schema), once per module."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from tensorflow_metadata.proto.v0 import schema_pb2

from batch_prediction.local_bigquery import database_path
from contract.dataset import load_dataset_config
from contract.schema import load_schema
from tests.pipeline.conftest import SAMPLE, SMALL_PARTITIONS

PROJECT = "local-project"
TABLE = f"bq://{PROJECT}.taxi.trips"
_DUCKDB_TYPES = {schema_pb2.INT: "BIGINT", schema_pb2.FLOAT: "DOUBLE", schema_pb2.BYTES: "VARCHAR"}


def sample_batches(partitions=None) -> list[str]:
    """The shipped batch files, all of them or those of some partitions (YYYY/MM/DD/HHMM), sorted."""
    if partitions is None:
        return sorted(str(path) for path in SAMPLE.glob("*/*/*/*/batch.csv"))
    return [str(SAMPLE / partition / "batch.csv") for partition in partitions]


def column_types() -> dict[str, str]:
    """Each column the reviewed schema names, as the DuckDB type a BigQuery table of it would have."""
    schema = load_schema(load_dataset_config().schema_uri)
    return {feature.name: _DUCKDB_TYPES[feature.type] for feature in schema.feature}


def connect(local_dir: Path) -> duckdb.DuckDBPyConnection:
    path = database_path(PROJECT, local_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    return duckdb.connect(str(path))


def load_table(local_dir: Path, files: list[str], table: str = "taxi.trips", types: dict | None = None) -> int:
    """Creates (or replaces) `table` from CSV files, typed by the reviewed schema; returns its rows. Also creates
    the snapshot dataset beside it (Terraform does on BigQuery; the DDL does not)."""
    dataset = table.split(".")[0]
    files_sql = "[" + ", ".join("'" + name.replace("'", "''") + "'" for name in files) + "]"
    with connect(local_dir) as connection:
        connection.execute(f"CREATE SCHEMA IF NOT EXISTS {dataset}")
        connection.execute(f"CREATE SCHEMA IF NOT EXISTS {dataset}_snapshots")
        connection.execute(f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM read_csv({files_sql}, "
                           f"types = {types or column_types()!r})")
        return connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def append_rows(local_dir: Path, files: list[str], table: str = "taxi.trips") -> int:
    with connect(local_dir) as connection:
        files_sql = "[" + ", ".join(f"'{name}'" for name in files) + "]"
        connection.execute(f"INSERT INTO {table} SELECT * FROM read_csv({files_sql}, types = {column_types()!r})")
        return connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


@pytest.fixture(scope="module")
def small_table(tmp_path_factory) -> Path:
    """A local dir whose stand-in project holds taxi.trips: the two small partitions (about 800 rows)."""
    local_dir = tmp_path_factory.mktemp("bigquery")
    load_table(local_dir, sample_batches(SMALL_PARTITIONS))
    return local_dir


@pytest.fixture(scope="module")
def sample_table(tmp_path_factory) -> Path:
    """A local dir whose stand-in project holds taxi.trips: the whole shipped sample (15,002 rows)."""
    local_dir = tmp_path_factory.mktemp("bigquery-sample")
    load_table(local_dir, sample_batches())
    return local_dir

